//! `[appliance]` (its name) and `[mqtt]` (events and health published to an
//! MQTT broker, with Home Assistant discovery; the publisher is
//! `crate::mqtt`).
//!
//! ```toml
//! [appliance]
//! name = "pi-bank-1"                  # default: the host name
//!
//! [mqtt]
//! url = "mqtts://broker.lan:8883"     # absent: nothing is published
//! username = "simmask"
//! password = "…"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// `[appliance]` of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// What this appliance is called where several are seen together (Home
    /// Assistant, MQTT topics). Default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// In a fleet (`[store] backend = "postgres"`): an appliance silent
    /// this long is offline, its SIMs skipped by allocation. Each appliance
    /// beats every third of it. Default 30; 3 to 3600.
    #[serde(default)]
    pub heartbeat_timeout_seconds: Option<u64>,
}

/// The heartbeat timeout's bounds, in seconds.
pub const HEARTBEAT_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 3..=3600;

impl ApplianceConfig {
    /// How long an appliance of the fleet may be silent before it is
    /// offline (`heartbeat_timeout_seconds`, default 30 s).
    pub fn heartbeat_timeout(&self) -> std::time::Duration {
        self.heartbeat_timeout_seconds.map_or(
            crate::store::DEFAULT_HEARTBEAT_TIMEOUT,
            std::time::Duration::from_secs,
        )
    }

    /// The configured name, else the host name, else `simmask`.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(host_name)
            .unwrap_or_else(|| "simmask".into())
    }
}

/// The machine's host name, as the kernel has it.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// `name` as an MQTT topic level and a Home Assistant id: lower-case
/// letters, digits, `-` and `_` (Home Assistant's `[a-zA-Z0-9_-]`), every
/// other character an `_`.
pub fn slug(name: &str) -> String {
    let slug: String = name
        .trim()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if slug.is_empty() {
        "simmask".into()
    } else {
        slug
    }
}

/// `[mqtt]` of the configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://host[:port]` (1883 by default) or
    /// `mqtts://host[:port]` (TLS, 8883 by default). Absent: MQTT is off.
    #[serde(default)]
    pub url: Option<String>,
    /// Default `simmask-<appliance>`. Two clients with one id push each
    /// other off the broker: give each appliance its own.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM certificates trusted for an `mqtts://` broker besides the
    /// system's (a home CA, or the broker's self-signed certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Where the appliance's topics live. Default `simmask/<appliance>`.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// Publish Home Assistant discovery configurations. Default true.
    #[serde(default = "yes")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix. Default `homeassistant`.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// QoS of what is published and subscribed (0, 1 or 2). Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Participants' real numbers in events. Default false: masked as a
    /// viewer token sees them (`+44*******456`).
    #[serde(default)]
    pub publish_numbers: bool,
    /// Message texts in events. Default false.
    #[serde(default)]
    pub publish_bodies: bool,
    /// Accept commands (enable or disable a SIM, USSD, close a session):
    /// whoever may publish to `<prefix>/command/#` on the broker acts as an
    /// admin. Default false.
    #[serde(default)]
    pub commands: bool,
    /// Messages held while the broker is away or slow; beyond it the oldest
    /// state goes first, then the oldest event (counted). Default 1000.
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    /// Seconds between complete state refreshes (changes are published as
    /// they happen). Default 30.
    #[serde(default = "default_state_interval")]
    pub state_interval_seconds: u64,
    /// Seconds between keep-alive pings; the broker publishes `offline`
    /// after one and a half of them without a word. Default 30.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    /// A SIM with discovery on the broker that the bank has not seen this
    /// long after the daemon started, or that has been unplugged this long,
    /// has left the bank: its Home Assistant device is removed (and comes
    /// back if it does). 0: never. Default 600.
    #[serde(default = "default_forget")]
    pub forget_missing_sims_seconds: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: None,
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            topic_prefix: None,
            discovery: true,
            discovery_prefix: default_discovery_prefix(),
            qos: default_qos(),
            publish_numbers: false,
            publish_bodies: false,
            commands: false,
            queue_size: default_queue(),
            state_interval_seconds: default_state_interval(),
            keep_alive_seconds: default_keep_alive(),
            forget_missing_sims_seconds: default_forget(),
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("ca_file", &self.ca_file)
            .field("topic_prefix", &self.topic_prefix)
            .field("discovery", &self.discovery)
            .field("discovery_prefix", &self.discovery_prefix)
            .field("qos", &self.qos)
            .field("publish_numbers", &self.publish_numbers)
            .field("publish_bodies", &self.publish_bodies)
            .field("commands", &self.commands)
            .field("queue_size", &self.queue_size)
            .field("state_interval_seconds", &self.state_interval_seconds)
            .field("keep_alive_seconds", &self.keep_alive_seconds)
            .field(
                "forget_missing_sims_seconds",
                &self.forget_missing_sims_seconds,
            )
            .finish()
    }
}

/// Where the broker is, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Reads `mqtt://host[:port]` or `mqtts://host[:port]` (an IPv6 address in
/// brackets). Credentials go in their own keys, so the URL can be logged.
pub fn parse_broker(url: &str) -> Result<Broker, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(format!(
            "{url:?}: the broker is mqtt://host[:port] or mqtts://host[:port]"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(format!(
            "{url:?}: put the credentials in username and password, not in the URL"
        ));
    }
    if rest.contains('/') || rest.contains('?') {
        return Err(format!("{url:?}: a broker URL has no path or query"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: an IPv6 address needs its closing ]"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let port = match port {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url:?}: {port:?} is not a port"))?,
    };
    Ok(Broker {
        host: host.to_string(),
        port,
        tls,
    })
}

/// A prefix of topics: levels of printable characters, no wildcard, no
/// empty level.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains("//")
    {
        return Err(format!(
            "{prefix:?}: levels separated by single slashes, with no slash first or last"
        ));
    }
    if prefix
        .chars()
        .any(|c| c == '+' || c == '#' || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "{prefix:?}: no wildcard (+, #), space or control character in a topic"
        ));
    }
    Ok(())
}

impl MqttConfig {
    /// Whether anything is published.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// The broker, when MQTT is on and the URL is valid.
    pub fn broker(&self) -> Option<Broker> {
        self.url.as_deref().and_then(|url| parse_broker(url).ok())
    }

    /// The topics' prefix for the appliance called `appliance`.
    pub fn prefix(&self, appliance: &str) -> String {
        self.topic_prefix
            .clone()
            .unwrap_or_else(|| format!("simmask/{}", slug(appliance)))
    }

    /// The client id for the appliance called `appliance`.
    pub fn client_id(&self, appliance: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("simmask-{}", slug(appliance)))
    }

    /// The first value that cannot be used, as `key: problem`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            parse_broker(url).map_err(|problem| format!("url: {problem}"))?;
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("password: a password needs its username".into());
        }
        if self
            .client_id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err("client_id: empty".into());
        }
        if let Some(prefix) = &self.topic_prefix {
            check_prefix(prefix).map_err(|problem| format!("topic_prefix: {problem}"))?;
        }
        check_prefix(&self.discovery_prefix)
            .map_err(|problem| format!("discovery_prefix: {problem}"))?;
        if self.qos > 2 {
            return Err(format!("qos: {} is not 0, 1 or 2", self.qos));
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            return Err("queue_size: between 1 and 1000000".into());
        }
        if self.state_interval_seconds == 0 {
            return Err("state_interval_seconds: at least 1".into());
        }
        if !(5..=3600).contains(&self.keep_alive_seconds) {
            return Err("keep_alive_seconds: between 5 and 3600".into());
        }
        if self.ca_file.is_some() && self.broker().is_some_and(|b| !b.tls) {
            return Err("ca_file: only an mqtts:// broker uses it".into());
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_qos() -> u8 {
    1
}
fn default_queue() -> usize {
    1000
}
fn default_state_interval() -> u64 {
    30
}
fn default_keep_alive() -> u64 {
    30
}
fn default_forget() -> u64 {
    600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_name_host_port_and_tls() {
        let broker = |host: &str, port, tls| Broker {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            parse_broker("mqtt://broker.lan"),
            Ok(broker("broker.lan", 1883, false))
        );
        assert_eq!(
            parse_broker("mqtts://broker.lan"),
            Ok(broker("broker.lan", 8883, true))
        );
        assert_eq!(
            parse_broker("mqtt://10.0.0.5:1884/"),
            Ok(broker("10.0.0.5", 1884, false))
        );
        assert_eq!(
            parse_broker("mqtts://[fd00::5]:8884"),
            Ok(broker("fd00::5", 8884, true))
        );
        assert_eq!(
            parse_broker("mqtts://[fd00::5]:8884").unwrap().to_string(),
            "mqtts://[fd00::5]:8884"
        );
        for bad in [
            "tcp://broker.lan",
            "mqtt://",
            "mqtt://broker.lan:0",
            "mqtt://broker.lan:99999",
            "mqtt://user:secret@broker.lan",
            "mqtt://broker.lan/topic",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
        let error = parse_broker("mqtt://user:secret@broker.lan").unwrap_err();
        assert!(error.contains("username and password"), "{error}");
    }

    #[test]
    fn names_become_topic_levels_and_ids() {
        assert_eq!(slug("Pi Bank #1"), "pi_bank__1");
        assert_eq!(slug("pi-bank_2"), "pi-bank_2");
        assert_eq!(slug("  "), "simmask");
        let config = MqttConfig::default();
        assert_eq!(config.prefix("Pi Bank"), "simmask/pi_bank");
        assert_eq!(config.client_id("Pi Bank"), "simmask-pi_bank");
        assert!(!ApplianceConfig::default().name().is_empty());
        let named = ApplianceConfig {
            name: Some("attic".into()),
            ..ApplianceConfig::default()
        };
        assert_eq!(named.name(), "attic");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let with = |change: fn(&mut MqttConfig)| {
            let mut config = MqttConfig {
                url: Some("mqtt://broker.lan".into()),
                ..MqttConfig::default()
            };
            change(&mut config);
            config.validate()
        };
        assert_eq!(with(|_| {}), Ok(()));
        type Change = fn(&mut MqttConfig);
        let cases: [(Change, &str); 8] = [
            (|c| c.url = Some("http://x".into()), "url:"),
            (|c| c.password = Some("secret".into()), "password:"),
            (
                |c| c.topic_prefix = Some("simmask/#".into()),
                "topic_prefix:",
            ),
            (
                |c| c.topic_prefix = Some("/simmask".into()),
                "topic_prefix:",
            ),
            (|c| c.discovery_prefix = String::new(), "discovery_prefix:"),
            (|c| c.qos = 3, "qos:"),
            (|c| c.queue_size = 0, "queue_size:"),
            (|c| c.ca_file = Some("/etc/ca.pem".into()), "ca_file:"),
        ];
        for (change, key) in cases {
            let problem = with(change).unwrap_err();
            assert!(problem.starts_with(key), "{key}: {problem}");
        }
        let config = MqttConfig {
            password: Some("hunter2".into()),
            ..MqttConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
