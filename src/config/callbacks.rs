//! `[callbacks]`: events POSTed to URLs on the LAN or a home server (the
//! dispatcher is `crate::api::callbacks`).
//!
//! ```toml
//! [callbacks]
//! secret = "a long random string"
//! ca_file = "/etc/simmask/home-ca.pem"   # trusted besides the system's CAs
//! [callbacks.urls]
//! message_relayed = "https://home.example:8443/simmask"
//! session_expired = { url = "https://10.0.0.5:8443/hook", fingerprint = "sha256:4f:…" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

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
            .finish()
    }
}

impl CallbacksConfig {
    /// Why this configuration cannot be used, naming the key.
    pub fn validate(&self) -> Result<(), String> {
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
