//! `[callbacks]`: events POSTed to local URLs (the dispatcher is
//! `crate::api::callbacks`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::events::KINDS as EVENT_KINDS;

/// `[callbacks]` of the configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// The shared secret that signs every body (required with any URL).
    #[serde(default)]
    pub secret: Option<String>,
    /// A URL per event kind (`message_relayed = "http://…"`).
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// Attempts per event before it is given up. Default 6.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each next wait doubles. Default 1000.
    #[serde(default = "default_backoff")]
    pub retry_after_ms: u64,
    /// Seconds a receiver may take to answer. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
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
            max_attempts: default_attempts(),
            retry_after_ms: default_backoff(),
            timeout_seconds: default_timeout(),
        }
    }
}

impl std::fmt::Debug for CallbacksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbacksConfig")
            .field("secret", &self.secret.as_ref().map(|_| "****"))
            .field("urls", &self.urls)
            .field("max_attempts", &self.max_attempts)
            .field("retry_after_ms", &self.retry_after_ms)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

impl CallbacksConfig {
    /// Why this configuration cannot be used, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (kind, url) in &self.urls {
            if !EVENT_KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "urls.{kind}: no such event kind (known: {})",
                    EVENT_KINDS.join(", ")
                ));
            }
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("urls.{kind}: {e}"))?;
            if parsed.scheme() != "http" {
                return Err(format!(
                    "urls.{kind}: {url:?}: only http:// receivers on the LAN are supported"
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
