//! Where callbacks may go. Every client is built here: it follows no
//! redirect (a receiver answering 307 would otherwise have the signed body
//! sent on to a host nobody configured), ignores the environment's proxy
//! settings (which would hide the real destination), and resolves host
//! names through [`AllowedResolver`], which keeps only the addresses
//! `[callbacks] allowed_networks` permits. A URL holding an address is not
//! resolved at all, so the dispatcher checks those itself ([`check_url`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::CallbacksConfig;

/// Resolves with the system's resolver, then refuses a name none of whose
/// addresses is allowed, naming what it resolved to.
struct AllowedResolver {
    config: Arc<CallbacksConfig>,
}

impl Resolve for AllowedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let config = self.config.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|address| config.permits(address.ip()).is_ok());
            if allowed.is_empty() {
                let why = refused
                    .first()
                    .and_then(|address| config.permits(address.ip()).err())
                    .unwrap_or_else(|| "no address".to_string());
                return Err(format!("callback host {host} resolves to {why}").into());
            }
            if !refused.is_empty() {
                tracing::warn!(
                    host,
                    refused = refused.len(),
                    "callbacks: some of the host's addresses are not allowed; using the others"
                );
            }
            let addresses: Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

/// A client builder with the restrictions above.
pub fn client_builder(config: &CallbacksConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_seconds))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(AllowedResolver {
            config: Arc::new(config.clone()),
        }))
}

/// Refuses a URL whose host is an address callbacks may not reach (a host
/// name is checked when it is resolved).
pub fn check_url(config: &CallbacksConfig, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or_default();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(address) => config.permits(address),
        Err(_) => Ok(()),
    }
}
