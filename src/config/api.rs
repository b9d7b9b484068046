//! `[api]`: where the API and dashboard listen, and how they hold up
//! against clients on a network the appliance does not control.
//!
//! ```toml
//! [api]
//! listen = "127.0.0.1:8080"
//! max_connections = 256
//! reserve_connections = 16
//! header_read_timeout_seconds = 10
//! request_timeout_seconds = 30
//! max_event_streams = 32
//! max_event_streams_per_token = 4
//! failed_auth_burst = 10
//! failed_auth_per_minute = 6
//! trusted_proxies = ["127.0.0.1"]
//! ```

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The shortest token accepted as `SIMMASK_ADMIN_TOKEN` (or `simmask demo
/// --admin-token`): a guessable bootstrap token is an open door.
pub const MIN_TOKEN_LENGTH: usize = 32;

/// Why `token` cannot be a bootstrap token: at least [`MIN_TOKEN_LENGTH`]
/// characters of RFC 6750's token alphabet (letters, digits and
/// `-._~+/`, `=` only at the end), so it travels in a header unchanged.
pub fn check_token(token: &str) -> Result<(), String> {
    let body = token.trim_end_matches('=');
    if let Some(bad) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~+/".contains(*c)))
    {
        return Err(format!(
            "the admin token contains {bad:?}: use letters, digits and -._~+/ only \
             (`simmask token create` or `openssl rand -hex 24` make one)"
        ));
    }
    if token.chars().count() < MIN_TOKEN_LENGTH {
        return Err(format!(
            "the admin token has {} characters; at least {MIN_TOKEN_LENGTH} are needed \
             (`openssl rand -hex 24` makes one)",
            token.chars().count()
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Address of the API and dashboard. Default loopback only: put TLS in
    /// front before binding elsewhere.
    pub listen: String,
    /// Connections served at once. When they are all taken, the oldest
    /// that has not sent a request yet is closed for the newcomer. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections accepted beyond `max_connections` while all of those are
    /// busy, for `/healthz` and admin tokens only, one request each.
    /// Default 16.
    #[serde(default = "default_reserve_connections")]
    pub reserve_connections: usize,
    /// Seconds a client has to send a request's headers, from when the
    /// connection opens or its previous answer was sent: idle, slow and
    /// dripped connections are closed after it. Default 10.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a request (its body included) may take before it is answered
    /// 408. Event streams and exports answer at once and then run on.
    /// Default 30.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Event streams (`/api/v1/events`) open at once. Default 32.
    #[serde(default = "default_max_event_streams")]
    pub max_event_streams: usize,
    /// Event streams open at once on one token. Default 4.
    #[serde(default = "default_max_event_streams_per_token")]
    pub max_event_streams_per_token: usize,
    /// Failed authentications a client may make at once before it is
    /// answered 429 (apart from the general rate limit). Default 10.
    #[serde(default = "default_failed_auth_burst")]
    pub failed_auth_burst: u32,
    /// Failed authentications per minute a client regains. Default 6.
    #[serde(default = "default_failed_auth_per_minute")]
    pub failed_auth_per_minute: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `Forwarded` or
    /// `X-Forwarded-For` header names the client for the rate limits.
    /// From any other peer those headers are ignored. Default none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_max_connections() -> usize {
    256
}
fn default_reserve_connections() -> usize {
    16
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_event_streams() -> usize {
    32
}
fn default_max_event_streams_per_token() -> usize {
    4
}
fn default_failed_auth_burst() -> u32 {
    10
}
fn default_failed_auth_per_minute() -> u32 {
    6
}

impl Api {
    /// The connection limits.
    pub fn serve_limits(&self) -> crate::serve::ServeLimits {
        crate::serve::ServeLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            max_connections: self.max_connections,
            reserve_connections: self.reserve_connections,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// The trusted proxies, parsed (`validate` has refused the unparsable).
    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|text| parse_net(text).ok())
            .collect()
    }

    /// Every value that cannot be used, as (key, problem).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut at_least_one = |key: &str, value: u64| {
            if value == 0 {
                problems.push((format!("api.{key}"), "must be at least 1".to_string()));
            }
        };
        at_least_one("max_connections", self.max_connections as u64);
        at_least_one(
            "header_read_timeout_seconds",
            self.header_read_timeout_seconds,
        );
        at_least_one("request_timeout_seconds", self.request_timeout_seconds);
        at_least_one("max_event_streams", self.max_event_streams as u64);
        at_least_one(
            "max_event_streams_per_token",
            self.max_event_streams_per_token as u64,
        );
        at_least_one("failed_auth_burst", u64::from(self.failed_auth_burst));
        at_least_one(
            "failed_auth_per_minute",
            u64::from(self.failed_auth_per_minute),
        );
        if self.max_event_streams > self.max_connections {
            problems.push((
                "api.max_event_streams".into(),
                format!(
                    "{} event streams cannot stay open within max_connections = {}",
                    self.max_event_streams, self.max_connections
                ),
            ));
        }
        for text in &self.trusted_proxies {
            if let Err(problem) = parse_net(text) {
                problems.push(("api.trusted_proxies".into(), problem));
            }
        }
        problems
    }
}

/// An address (`10.0.0.1`, `::1`) or a range (`10.0.0.0/24`).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    text.parse::<IpNet>().map_err(|_| {
        format!("{text:?} is neither an address nor a CIDR range such as \"10.0.0.0/24\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_need_length_and_a_header_safe_alphabet() {
        assert!(check_token("smk_test_admin_token_for_end_to_end_tests").is_ok());
        assert!(
            check_token(&"a".repeat(31))
                .unwrap_err()
                .contains("31 characters")
        );
        assert!(check_token("x").unwrap_err().contains("at least 32"));
        let spaced = format!("{} {}", "a".repeat(20), "b".repeat(20));
        assert!(check_token(&spaced).unwrap_err().contains("' '"));
        assert!(check_token(&format!("{}é", "a".repeat(40))).is_err());
        assert!(check_token(&format!("{}==", "a".repeat(40))).is_ok());
        assert!(check_token(&format!("{}=a", "a".repeat(40))).is_err());
    }

    #[test]
    fn proxies_are_addresses_or_ranges() {
        assert_eq!(parse_net("10.0.0.1").unwrap().prefix_len(), 32);
        assert_eq!(parse_net("fd00::/8").unwrap().prefix_len(), 8);
        assert!(parse_net("proxy.lan").unwrap_err().contains("CIDR"));
    }
}
