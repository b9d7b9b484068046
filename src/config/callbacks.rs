//! `[callbacks]`: events POSTed to URLs on the LAN or a home server (the
//! dispatcher is `crate::api::callbacks`).
//!
//! ```toml
//! [callbacks]
//! secret = "a long random string"
//! allowed_networks = ["10.0.0.0/24", "203.0.113.7"]
//! ca_file = "/etc/simmask/home-ca.pem"   # trusted besides the system's CAs
//! [callbacks.urls]
//! message_relayed = "https://home.example:8443/simmask"
//! session_expired = { url = "https://10.0.0.5:8443/hook", fingerprint = "sha256:4f:…" }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;

use serde::Deserialize;

use crate::events::KINDS as EVENT_KINDS;

/// Where one kind of event goes: a URL, and for an `https://` receiver with
/// a self-signed certificate, that certificate's SHA-256 fingerprint (the
/// one certificate then trusted for it, whatever its name or dates).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "TargetSpec")]
pub struct CallbackTarget {
    pub url: String,
    pub fingerprint: Option<String>,
}

/// How a target is written: a URL, or a table with a fingerprint.
#[derive(Deserialize)]
#[serde(untagged)]
enum TargetSpec {
    Url(String),
    Table(TargetTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetTable {
    url: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

impl From<TargetSpec> for CallbackTarget {
    fn from(spec: TargetSpec) -> Self {
        match spec {
            TargetSpec::Url(url) => Self {
                url,
                fingerprint: None,
            },
            TargetSpec::Table(table) => Self {
                url: table.url,
                fingerprint: table.fingerprint,
            },
        }
    }
}

impl From<&str> for CallbackTarget {
    fn from(url: &str) -> Self {
        Self {
            url: url.to_string(),
            fingerprint: None,
        }
    }
}

/// A certificate fingerprint: 64 hex digits, with or without `:` between
/// bytes, optionally after `sha256:` (as `openssl x509 -fingerprint -sha256`
/// prints it, or its bare form).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .trim_start_matches("sha256 Fingerprint=")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint (64 hex digits, `:` between bytes allowed)"
        ));
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// `[callbacks]` of the configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// The shared secret that signs every body (required with any URL).
    #[serde(default)]
    pub secret: Option<String>,
    /// A receiver per event kind (`message_relayed = "https://…"`, or a
    /// table `{ url = "https://…", fingerprint = "sha256:…" }`).
    #[serde(default)]
    pub urls: BTreeMap<String, CallbackTarget>,
    /// PEM certificates trusted for `https://` receivers besides the
    /// system's (a home CA). Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Attempts per event before it is given up. Default 6.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each next wait doubles. Default 1000.
    #[serde(default = "default_backoff")]
    pub retry_after_ms: u64,
    /// Seconds a receiver may take to answer. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// The addresses callbacks may reach (`"10.0.0.5"`, `"192.168.1.0/24"`,
    /// `"127.0.0.1"`): every receiver's address, written in its URL or
    /// resolved from its host name at each connection, must be in one.
    /// Link-local and cloud metadata addresses are never reached, listed
    /// or not. Default none: list the receivers' addresses.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
}

fn default_attempts() -> u32 {
    6
}
fn default_backoff() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    10
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            secret: None,
            urls: BTreeMap::new(),
            ca_file: None,
            max_attempts: default_attempts(),
            retry_after_ms: default_backoff(),
            timeout_seconds: default_timeout(),
            allowed_networks: Vec::new(),
        }
    }
}

impl std::fmt::Debug for CallbacksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbacksConfig")
            .field("secret", &self.secret.as_ref().map(|_| "****"))
            .field("urls", &self.urls)
            .field("ca_file", &self.ca_file)
            .field("max_attempts", &self.max_attempts)
            .field("retry_after_ms", &self.retry_after_ms)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("allowed_networks", &self.allowed_networks)
            .finish()
    }
}

/// Why `address` is never a callback target, whatever is allowed: the
/// ranges through which a request reaches the machine's own surroundings
/// rather than a receiver (link-local, where clouds and some routers serve
/// instance metadata and credentials), or no single host at all.
pub fn forbidden_address(address: IpAddr) -> Option<&'static str> {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match address {
        IpAddr::V4(v4) if v4 == Ipv4Addr::new(100, 100, 100, 200) => {
            Some("a cloud metadata address")
        }
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("link-local (169.254.169.254 serves cloud metadata)")
        }
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => {
            Some("not the address of one host")
        }
        IpAddr::V6(v6) if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Some("a cloud metadata address")
        }
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => {
            Some("not the address of one host")
        }
        _ => None,
    }
}

/// The networks a forbidden address may lie in, to refuse a listed range
/// that lies wholly within one.
const FORBIDDEN_NETWORKS: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "224.0.0.0/4",
    "ff00::/8",
    "0.0.0.0/32",
    "::/128",
    "255.255.255.255/32",
];

impl CallbacksConfig {
    /// The allowed networks, parsed (`validate` refused the unparsable).
    pub fn allowed(&self) -> Vec<IpNet> {
        self.allowed_networks
            .iter()
            .filter_map(|text| super::parse_net(text).ok())
            .collect()
    }

    /// Whether a callback may connect to `address`, and if not, why.
    pub fn permits(&self, address: IpAddr) -> Result<(), String> {
        if let Some(why) = forbidden_address(address) {
            return Err(format!("{address} is {why}: never a callback target"));
        }
        if self.allowed().iter().any(|net| net.contains(&address)) {
            Ok(())
        } else {
            Err(format!(
                "{address} is not in callbacks.allowed_networks: list it (or its range) to send callbacks there"
            ))
        }
    }

    /// Why this configuration cannot be used, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for text in &self.allowed_networks {
            let net = super::parse_net(text).map_err(|e| format!("allowed_networks: {e}"))?;
            for forbidden in FORBIDDEN_NETWORKS {
                if let Ok(forbidden) = forbidden.parse::<IpNet>()
                    && forbidden.contains(&net)
                {
                    let why = forbidden_address(net.network()).unwrap_or("forbidden");
                    return Err(format!(
                        "allowed_networks: {text:?} is {why}: never a callback target"
                    ));
                }
            }
        }
        for (kind, target) in &self.urls {
            if !EVENT_KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "urls.{kind}: no such event kind (known: {})",
                    EVENT_KINDS.join(", ")
                ));
            }
            let url = &target.url;
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("urls.{kind}: {e}"))?;
            match parsed.scheme() {
                "https" => {}
                "http" if target.fingerprint.is_none() => {}
                "http" => {
                    return Err(format!(
                        "urls.{kind}: a fingerprint pins an https:// receiver's certificate; {url:?} is http://"
                    ));
                }
                _ => {
                    return Err(format!(
                        "urls.{kind}: {url:?}: only http:// and https:// receivers are supported"
                    ));
                }
            }
            let host = parsed.host_str().unwrap_or_default();
            match host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                Ok(address) => self
                    .permits(address)
                    .map_err(|e| format!("urls.{kind}: {e}"))?,
                Err(_) if self.allowed_networks.is_empty() => {
                    return Err(format!(
                        "urls.{kind}: {host} is checked against allowed_networks each \
                         time it is resolved, and none is listed: list its addresses"
                    ));
                }
                Err(_) => {}
            }
            if let Some(fingerprint) = &target.fingerprint {
                parse_fingerprint(fingerprint)
                    .map_err(|e| format!("urls.{kind}.fingerprint: {e}"))?;
            }
        }
        if let Some(path) = &self.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "ca_file: {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
        if !self.urls.is_empty() && self.secret.as_deref().is_none_or(|s| s.len() < 16) {
            return Err("secret: at least 16 characters are needed to sign callbacks".into());
        }
        if self.max_attempts == 0 || self.retry_after_ms == 0 || self.timeout_seconds == 0 {
            return Err(
                "max_attempts, retry_after_ms and timeout_seconds must be at least 1".into(),
            );
        }
        Ok(())
    }
}
