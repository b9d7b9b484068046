//! The daemon's configuration: one TOML file (`/etc/simmask/simmask.toml`).
//!
//! Only `[api] listen`, `[store] path` and `[modems] ports` matter to most
//! installations; everything else has the default documented beside its
//! field. Unknown keys are errors, and every error names the key and the
//! line, so a typo never silently becomes a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::masking::allocation::{PoolLimits, SimLimits};
use crate::masking::policy::OutOfSessionPolicy;
use crate::number::{NumberValidation, PhoneNumber};
use crate::profile::BridgeMethod;

mod api;
mod callbacks;
mod live;

pub use live::{LiveConfig, Reload};
mod check;
mod hubs;
mod mqtt;
mod rails;

pub use api::{Api, MIN_TOKEN_LENGTH, check_token, parse_net};
pub use callbacks::{CallbackTarget, CallbacksConfig, parse_fingerprint};
pub use check::Problem;
pub use hubs::{Hubs, fill as fill_hub_notice};
pub use mqtt::{ApplianceConfig, Broker, MqttConfig, parse_broker, slug};
pub use rails::{Intercept, LoopProtection, OptOut};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// toml's message names the line, the column and the key.
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {path}: {key}{}: {problem}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        path: String,
        key: String,
        line: Option<usize>,
        problem: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub api: Api,
    pub store: StoreConfig,
    pub modems: Modems,
    #[serde(default)]
    pub numbers: Numbers,
    #[serde(default)]
    pub sessions: Sessions,
    #[serde(default)]
    pub sms: Sms,
    #[serde(default)]
    pub voice: Voice,
    /// What happens to traffic from numbers with no open session on a proxy.
    #[serde(default)]
    pub out_of_session: OutOfSessionPolicy,
    /// Per-SIM settings, by ICCID.
    #[serde(default)]
    pub sims: Vec<SimConfig>,
    /// Events POSTed to local URLs.
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// STOP and START.
    #[serde(default)]
    pub opt_out: OptOut,
    /// Rules evaluated before every relay.
    #[serde(default)]
    pub intercept: Intercept,
    /// Auto-responders answering each other through a relay.
    #[serde(default)]
    pub loop_protection: LoopProtection,
    /// The appliance's name.
    #[serde(default)]
    pub appliance: ApplianceConfig,
    /// Events and health published to an MQTT broker (Home Assistant).
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// How hubs' messages look, and how long a hub has to key a code.
    #[serde(default)]
    pub hubs: Hubs,
    /// The system clock and the network's time.
    #[serde(default)]
    pub clock: ClockConfig,
    /// The Twilio Proxy v1 facade under `/twilio/v1` (off unless an
    /// account SID is set).
    #[serde(default)]
    pub twilio: TwilioConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID clients send as the Basic auth user (`AC` + 32 hex
    /// digits); their password is an appliance API token.
    pub account_sid: Option<String>,
    /// The secret that signs the services' callbacks (`X-Twilio-Signature`,
    /// as Twilio signs with the account's auth token): give the receivers'
    /// `RequestValidator` the same. Needed for a service's `CallbackUrl`.
    pub auth_token: Option<String>,
    /// How clients reach the appliance (`https://proxy.example`), for the
    /// `url` fields of callbacks; default `http://` and `[api] listen`.
    pub public_url: Option<String>,
}

/// Whether `sid` is an account SID: `AC` and 32 lower-case hex digits.
pub fn is_account_sid(sid: &str) -> bool {
    sid.len() == 34
        && sid.starts_with("AC")
        && sid[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// Set the system clock from the network's time (reported by the
    /// modems and in received SMS) when nothing else synchronises it. Needs
    /// CAP_SYS_TIME: install the unit's clock.conf drop-in. Default false.
    #[serde(default)]
    pub set_system_clock: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database file (created if missing). Required with
    /// `backend = "sqlite"`; refused with `postgres` (the data is in the
    /// database at `url`, and the offline commands that work on the file —
    /// backup, restore, doctor — must not act on a stale one). Empty when
    /// absent.
    #[serde(default)]
    pub path: PathBuf,
    /// `sqlite` (default: the file at `path`) or `postgres` (the fleet's
    /// database at `url`, shared by several appliances).
    #[serde(default)]
    pub backend: crate::store::Backend,
    /// The PostgreSQL database, `postgres://user[:password]@host:port/db`
    /// (or `host=… user=… dbname=…`), when `backend = "postgres"`.
    #[serde(default)]
    pub url: Option<String>,
}

impl StoreConfig {
    /// What the store's configuration asks for, checked: the backend and,
    /// for PostgreSQL, its url.
    pub fn location(&self) -> Result<crate::store::Location, String> {
        match (self.backend, &self.url) {
            (crate::store::Backend::Sqlite, _) => {
                Ok(crate::store::Location::Sqlite(self.sqlite_path()?.to_path_buf()))
            }
            (crate::store::Backend::Postgres, _) if !self.path.as_os_str().is_empty() => Err(
                "path is the SQLite file: with backend = \"postgres\" the data is in the database at url; remove path".into(),
            ),
            (crate::store::Backend::Postgres, Some(url)) if !url.trim().is_empty() => {
                Ok(crate::store::Location::Postgres(url.clone()))
            }
            (crate::store::Backend::Postgres, _) => Err(
                "backend = \"postgres\" needs url = \"postgres://user@host:port/database\"".into(),
            ),
        }
    }

    /// The SQLite file, for the commands that work on it directly (backup,
    /// restore, doctor, the offline shell): refused on PostgreSQL.
    pub fn sqlite_path(&self) -> Result<&Path, String> {
        match self.backend {
            crate::store::Backend::Postgres => Err(
                "this works on the SQLite file: with backend = \"postgres\" the data is in the fleet's database (use its own tools, e.g. pg_dump)".into(),
            ),
            crate::store::Backend::Sqlite if self.path.as_os_str().is_empty() => Err(
                "missing: the SQLite file, e.g. path = \"/var/lib/simmask/simmask.db\" (or backend = \"postgres\" with url)".into(),
            ),
            crate::store::Backend::Sqlite => Ok(&self.path),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modems {
    /// Globs of serial ports to probe for modems, e.g.
    /// `/dev/serial/by-id/*-if02-port0` or `/dev/ttyUSB*`.
    pub ports: Vec<String>,
    /// Extra model profiles (`*.toml`) on top of the built-in ones.
    #[serde(default)]
    pub profiles_dir: Option<PathBuf>,
    /// Seconds between health polls (signal, registration). Default 30.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u64,
    /// Baud rate of the serial ports. Default 115200.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// A shell command that power-cycles a modem's hub port, run after a
    /// reset did not help: `{hub}` and `{port}` are replaced by the modem's
    /// USB hub and port (from sysfs, as `uhubctl -l {hub} -p {port}` takes
    /// them), `{tty}` by its serial port's path.
    #[serde(default)]
    pub power_cycle_command: Option<String>,
    /// Failed recoveries in a row before a modem is quarantined. Default 3.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numbers {
    /// ISO 3166 region for numbers written without a country code. Default
    /// none: such numbers are refused.
    #[serde(default)]
    pub default_region: Option<String>,
    /// `possible` (default): a number of the right length for its country
    /// is accepted even when the built-in numbering plan does not know its
    /// range yet (carriers open new ranges; an appliance runs offline for
    /// years), and that is logged; `strict`: such numbers are refused.
    /// For numbers operators type; numbers the network delivers (senders,
    /// callers) are always read as possible.
    #[serde(default)]
    pub validation: NumberValidation,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// Default absolute lifetime of a session when the request gives none;
    /// 0 means no limit. Default 0.
    #[serde(default)]
    pub default_ttl_seconds: u64,
    /// Prefer a proxy a participant used before. Default true.
    #[serde(default = "yes")]
    pub sticky: bool,
    /// Seconds between sweeps that mark sessions expired (traffic enforces
    /// expiry at once regardless). Default 30.
    #[serde(default = "default_sweep")]
    pub sweep_interval_seconds: u64,
    /// Days after a session ends before its participants' numbers are
    /// forgotten (out-of-session senders likewise, counted from their
    /// message); the records stay. Absent: kept until `simmask erase`.
    #[serde(default)]
    pub forget_numbers_days: Option<u32>,
    /// Where calls from a former participant to an expired session's proxy
    /// go when the session names no fallback of its own. Absent: they
    /// follow `[out_of_session]`.
    #[serde(default)]
    pub fallback_number: Option<PhoneNumber>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            default_ttl_seconds: 0,
            sticky: true,
            sweep_interval_seconds: default_sweep(),
            forget_numbers_days: None,
            fallback_number: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// Messages a SIM may send per minute. Default 10.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Messages a SIM may send per day. Default 1000.
    #[serde(default = "default_per_day")]
    pub per_day: u32,
    /// Seconds to wait for the missing parts of a multipart message before
    /// relaying what arrived, marked incomplete. Default 120.
    #[serde(default = "default_reassembly")]
    pub reassembly_timeout_seconds: u64,
    /// Days message bodies are kept before they are erased. Default 7.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Send attempts before a message is marked failed. Default 5.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Distinct numbers a SIM may send to per calendar month (many
    /// "unlimited" plans cap them, often at 99 to 250); 0: no limit.
    /// Default 0.
    #[serde(default)]
    pub recipients_per_month: u32,
    /// Percent of each SIM budget (messages per day, recipients per month)
    /// that allocation leaves for the sessions a SIM already has: a SIM
    /// closer than this to a budget gets no new session. Default 10.
    #[serde(default = "default_reserve")]
    pub budget_reserve_percent: u8,
    /// Ask the network for a status report on each sent message, so an
    /// interaction becomes `delivered` or `undelivered` rather than staying
    /// `sent`. Each report costs the line a `+CDS` (and, on phase 2+
    /// modems, its `AT+CNMA`): about 80 bytes per message. Default true.
    #[serde(default = "yes")]
    pub delivery_reports: bool,
}

impl Default for Sms {
    fn default() -> Self {
        Self {
            per_minute: default_per_minute(),
            per_day: default_per_day(),
            reassembly_timeout_seconds: default_reassembly(),
            retention_days: default_retention(),
            max_attempts: default_attempts(),
            recipients_per_month: 0,
            budget_reserve_percent: default_reserve(),
            delivery_reports: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    /// Seconds the other participant's phone may ring before the caller is
    /// released. Default 30.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_seconds: u64,
    /// The longest a bridged call may last, counted from the other
    /// participant's answer; the appliance then ends it for both sides.
    /// 0 means no limit. Default 0. It holds for calls the appliance stays
    /// in (multiparty); a transferred call is the network's alone.
    #[serde(default)]
    pub max_duration_seconds: u64,
}

impl Default for Voice {
    fn default() -> Self {
        Self {
            ring_timeout_seconds: default_ring_timeout(),
            max_duration_seconds: 0,
        }
    }
}

/// Settings of one SIM, named by its ICCID, or by its IMSI when its
/// modem cannot read the ICCID (one of the two).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    #[serde(default)]
    pub iccid: Option<String>,
    /// For a SIM whose modem cannot read its ICCID (the pool knows it by
    /// its IMSI then).
    #[serde(default)]
    pub imsi: Option<String>,
    /// The SIM's own number, for SIMs that do not know it (`AT+CNUM` empty).
    #[serde(default)]
    pub msisdn: Option<PhoneNumber>,
    /// The PIN to unlock the SIM with. Tried once: a wrong PIN is never
    /// retried (a SIM locks after three).
    #[serde(default)]
    pub pin: Option<String>,
    /// How calls through this SIM are bridged: `"multiparty"` (a muted
    /// conference: each side sees only the proxy) or `"transfer"` (explicit
    /// call transfer: frees the modem, but the network may show each side
    /// the other's number). Absent: the profile's `[voice] method`, else
    /// multiparty.
    #[serde(default)]
    pub voice_method: Option<BridgeMethod>,
    /// This SIM's own messages per day (its country or plan may cap it
    /// lower than `[sms] per_day`).
    #[serde(default)]
    pub per_day: Option<u32>,
    /// This SIM's own distinct recipients per month.
    #[serde(default)]
    pub recipients_per_month: Option<u32>,
}

impl SimConfig {
    /// The id the pool knows this SIM by: its ICCID, else `imsi:<IMSI>`.
    pub fn id(&self) -> String {
        match (&self.iccid, &self.imsi) {
            (Some(iccid), _) => iccid.clone(),
            (None, Some(imsi)) => format!("imsi:{imsi}"),
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("iccid", &self.iccid)
            .field("imsi", &self.imsi)
            .field("msisdn", &self.msisdn)
            .field("pin", &self.pin.as_ref().map(|_| "****"))
            .field("voice_method", &self.voice_method)
            .field("per_day", &self.per_day)
            .field("recipients_per_month", &self.recipients_per_month)
            .finish()
    }
}

fn yes() -> bool {
    true
}
fn default_poll_interval() -> u64 {
    30
}
fn default_baud() -> u32 {
    115_200
}
fn default_quarantine_after() -> u32 {
    3
}
fn default_sweep() -> u64 {
    30
}
fn default_per_minute() -> u32 {
    10
}
fn default_per_day() -> u32 {
    1000
}
fn default_reassembly() -> u64 {
    120
}
fn default_retention() -> u32 {
    7
}
fn default_attempts() -> u32 {
    5
}
fn default_ring_timeout() -> u64 {
    30
}
fn default_reserve() -> u8 {
    10
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_string(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    fn validate(&self, path: &str, text: &str) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some((key, problem)) => Err(ConfigError::Invalid {
                path: path.to_string(),
                line: check::line_of_key(text, &key),
                key,
                problem,
            }),
        }
    }

    /// Every value that cannot be used, as (key, problem).
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut invalid = |key: &str, problem: String| problems.push((key.to_string(), problem));
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            invalid(
                "api.listen",
                format!(
                    "{:?} is not an address and port such as \"127.0.0.1:8080\"",
                    self.api.listen
                ),
            );
        }
        for (key, problem) in self.api.problems() {
            invalid(&key, problem);
        }
        if let Some(sid) = &self.twilio.account_sid
            && !is_account_sid(sid)
        {
            invalid(
                "twilio.account_sid",
                format!("{sid:?} is not an account SID: \"AC\" and 32 lower-case hex digits"),
            );
        }
        if self
            .twilio
            .auth_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            invalid(
                "twilio.auth_token",
                "at least 16 characters (it signs callbacks)".into(),
            );
        }
        if let Some(url) = &self.twilio.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            invalid(
                "twilio.public_url",
                format!("{url:?} is not an http(s) URL"),
            );
        }
        if self.modems.ports.is_empty() {
            invalid(
                "modems.ports",
                "no port globs: list the modems' serial ports, e.g. [\"/dev/ttyUSB*\"]".into(),
            );
        }
        for glob in &self.modems.ports {
            if let Err(error) = glob::Pattern::new(glob) {
                invalid("modems.ports", format!("{glob:?}: {error}"));
            }
        }
        if self.modems.poll_interval_seconds == 0 {
            invalid("modems.poll_interval_seconds", "must be at least 1".into());
        }
        if let Some(region) = &self.numbers.default_region
            && let Err(error) = PhoneNumber::parse("+447911123456", Some(region))
        {
            invalid("numbers.default_region", error.to_string());
        }
        for (key, value) in [
            ("sms.per_minute", self.sms.per_minute),
            ("sms.per_day", self.sms.per_day),
        ] {
            if value == 0 {
                invalid(
                    key,
                    "a SIM that may send nothing cannot relay: use at least 1".into(),
                );
            }
        }
        if let OutOfSessionPolicy::AutoReply { text } = &self.out_of_session
            && text.trim().is_empty()
        {
            invalid("out_of_session.text", "the auto-reply is empty".into());
        }
        if let Err(problem) = self.callbacks.validate() {
            // The callbacks' own checks lead with their key (`urls.kind: …`).
            let (key, problem) = match problem.split_once(": ") {
                Some((key, rest)) if !key.contains(' ') => {
                    (format!("callbacks.{key}"), rest.to_string())
                }
                _ => ("callbacks".to_string(), problem),
            };
            invalid(&key, problem);
        }
        if let Err(problem) = self.mqtt.validate() {
            // Like the callbacks' checks, these lead with their key.
            let (key, problem) = match problem.split_once(": ") {
                Some((key, rest)) if !key.contains(' ') => {
                    (format!("mqtt.{key}"), rest.to_string())
                }
                _ => ("mqtt".to_string(), problem),
            };
            invalid(&key, problem);
        }
        if let Err(problem) = self.store.location() {
            let key = match self.store.backend {
                crate::store::Backend::Sqlite => "store.path",
                _ if !self.store.path.as_os_str().is_empty() => "store.path",
                _ => "store.url",
            };
            invalid(key, problem);
        }
        if self
            .appliance
            .name
            .as_ref()
            .is_some_and(|name| name.trim().is_empty())
        {
            invalid(
                "appliance.name",
                "empty: leave it out to use the host name".into(),
            );
        }
        if let Some(seconds) = self.appliance.heartbeat_timeout_seconds
            && !mqtt::HEARTBEAT_TIMEOUT_RANGE.contains(&seconds)
        {
            invalid(
                "appliance.heartbeat_timeout_seconds",
                format!(
                    "{seconds}: from {} to {} seconds (an appliance beats every third of it)",
                    mqtt::HEARTBEAT_TIMEOUT_RANGE.start(),
                    mqtt::HEARTBEAT_TIMEOUT_RANGE.end()
                ),
            );
        }
        if self.sms.budget_reserve_percent > 90 {
            invalid(
                "sms.budget_reserve_percent",
                "at most 90: a SIM must be able to take sessions".into(),
            );
        }
        if let Err(problem) = self.opt_out.validate() {
            invalid("opt_out", problem);
        }
        if let Err(problem) = self.intercept.validate() {
            invalid("intercept", problem);
        }
        if let Err(problem) = self.loop_protection.validate() {
            invalid("loop_protection", problem);
        }
        if let Err(problem) = self.hubs.validate() {
            invalid("hubs", problem);
        }
        let mut seen = std::collections::HashSet::new();
        for sim in &self.sims {
            let id = match (&sim.iccid, &sim.imsi) {
                (Some(_), Some(_)) | (None, None) => {
                    invalid(
                        "sims",
                        "name each SIM by its iccid, or by its imsi when its modem cannot read the ICCID (one of the two)".into(),
                    );
                    continue;
                }
                _ => sim.id(),
            };
            if sim.imsi.as_ref().is_some_and(|imsi| {
                !(6..=15).contains(&imsi.len()) || !imsi.chars().all(|c| c.is_ascii_digit())
            }) {
                invalid("sims.imsi", format!("IMSI {id}: expected 6 to 15 digits"));
            }
            if !seen.insert(id.clone()) {
                invalid("sims", format!("SIM {id} is configured twice"));
            }
            if sim.pin.is_some() && sim.iccid.is_none() {
                invalid(
                    "sims.pin",
                    format!("SIM {id}: a PIN needs the SIM's iccid (a locked SIM gives no IMSI)"),
                );
            }
            if let Some(pin) = &sim.pin
                && !(4..=8).contains(&pin.len())
            {
                invalid(
                    "sims.pin",
                    format!("the PIN of SIM {id} must have 4 to 8 digits"),
                );
            }
            if sim
                .pin
                .as_ref()
                .is_some_and(|p| !p.chars().all(|c| c.is_ascii_digit()))
            {
                invalid(
                    "sims.pin",
                    format!("the PIN of SIM {id} must be digits only"),
                );
            }
        }
        problems
    }

    /// Every problem of configuration `text`, each with its key and line:
    /// what `simmask config check` prints. Nothing is opened or created.
    pub fn check(text: &str) -> Vec<Problem> {
        check::check(text)
    }

    /// The SIMs' budgets, pool-wide and per SIM.
    pub fn pool_limits(&self) -> PoolLimits {
        let limit = |n: u32| (n > 0).then_some(n);
        PoolLimits {
            per_day: limit(self.sms.per_day),
            recipients_per_month: limit(self.sms.recipients_per_month),
            per_sim: self
                .sims
                .iter()
                .map(|sim| {
                    let own = SimLimits {
                        per_day: sim.per_day,
                        recipients_per_month: sim.recipients_per_month,
                    };
                    (sim.id(), own)
                })
                .collect(),
            reserve_percent: self.sms.budget_reserve_percent,
        }
    }

    /// The per-SIM settings of the SIM `id` (its ICCID, or `imsi:<IMSI>`),
    /// if configured.
    pub fn sim(&self, id: &str) -> Option<&SimConfig> {
        self.sims.iter().find(|s| s.id() == id)
    }

    /// The settings of a SIM known as `id`, whose modem read `iccid` and
    /// `imsi`: by its id, its ICCID or its IMSI (a SIM first known by its
    /// IMSI keeps that id when a modem reads its ICCID, and the reverse).
    pub fn sim_of(&self, id: &str, iccid: Option<&str>, imsi: Option<&str>) -> Option<&SimConfig> {
        self.sim(id).or_else(|| {
            self.sims.iter().find(|s| {
                (iccid.is_some() && s.iccid.as_deref() == iccid)
                    || (imsi.is_some() && s.imsi.as_deref() == imsi)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[api]
listen = "127.0.0.1:8080"

[store]
path = "/var/lib/simmask/simmask.db"

[modems]
ports = ["/dev/serial/by-id/*-if02-port0", "/dev/ttyUSB*"]
"#;

    #[test]
    fn the_example_config_parses_and_states_the_defaults() {
        let text = include_str!("../../simmask.example.toml");
        let example = Config::parse(text, "simmask.example.toml").unwrap();
        let minimal = Config::parse(MINIMAL, "simmask.toml").unwrap();
        assert_eq!(format!("{:?}", example.sms), format!("{:?}", minimal.sms));
        assert_eq!(
            format!("{:?}", example.sessions),
            format!("{:?}", minimal.sessions)
        );
        assert_eq!(
            format!("{:?}", example.voice),
            format!("{:?}", minimal.voice)
        );
        assert_eq!(
            example.modems.poll_interval_seconds,
            minimal.modems.poll_interval_seconds
        );
        assert_eq!(example.modems.baud, minimal.modems.baud);
        assert_eq!(
            example.modems.quarantine_after,
            minimal.modems.quarantine_after
        );
        assert_eq!(example.out_of_session, minimal.out_of_session);
        assert_eq!(
            format!("{:?}", example.clock),
            format!("{:?}", minimal.clock)
        );
        assert_eq!(
            format!("{:?}", example.opt_out),
            format!("{:?}", minimal.opt_out)
        );
        assert_eq!(
            format!("{:?}", example.intercept),
            format!("{:?}", minimal.intercept)
        );
        assert_eq!(
            format!("{:?}", example.loop_protection),
            format!("{:?}", minimal.loop_protection)
        );
        assert_eq!(example.numbers.validation, minimal.numbers.validation);
        assert_eq!(format!("{:?}", example.mqtt), format!("{:?}", minimal.mqtt));
        assert!(!example.mqtt.enabled());
        assert_eq!(format!("{:?}", example.api), format!("{:?}", minimal.api));
        assert_eq!(format!("{:?}", example.hubs), format!("{:?}", minimal.hubs));
    }

    #[test]
    fn the_minimal_config_takes_documented_defaults() {
        let config = Config::parse(MINIMAL, "simmask.toml").unwrap();
        assert_eq!(config.modems.poll_interval_seconds, 30);
        assert_eq!(config.modems.baud, 115_200);
        assert_eq!(config.sms.per_minute, 10);
        assert_eq!(config.sms.retention_days, 7);
        assert!(config.sessions.sticky);
        assert_eq!(config.sessions.forget_numbers_days, None);
        assert_eq!(config.out_of_session, OutOfSessionPolicy::Reject);
        assert!(config.sims.is_empty());
    }

    #[test]
    fn a_full_config_reads_every_section() {
        let text = format!(
            "{MINIMAL}
[numbers]
default_region = \"GB\"

[sessions]
forget_numbers_days = 90

[sms]
per_minute = 4
per_day = 200

[out_of_session]
policy = \"forward\"
to = \"+447911000100\"

[voice]
max_duration_seconds = 3600

[[sims]]
iccid = \"8944110000000000001\"
msisdn = \"+447700900001\"
pin = \"1234\"
voice_method = \"transfer\"

[[sims]]
iccid = \"8944110000000000002\"
voice_method = \"multiparty\"

[[sims]]
imsi = \"001010123456789\"
msisdn = \"+447700900002\"
"
        );
        let config = Config::parse(&text, "simmask.toml").unwrap();
        assert_eq!(config.voice.max_duration_seconds, 3600);
        assert_eq!(
            config.sim("8944110000000000001").unwrap().voice_method,
            Some(BridgeMethod::Transfer)
        );
        assert_eq!(
            config.sim("8944110000000000002").unwrap().voice_method,
            Some(BridgeMethod::Multiparty)
        );
        assert_eq!(config.sms.per_minute, 4);
        assert_eq!(config.sessions.forget_numbers_days, Some(90));
        assert!(matches!(
            config.out_of_session,
            OutOfSessionPolicy::Forward { .. }
        ));
        let sim = config.sim("8944110000000000001").unwrap();
        assert_eq!(sim.pin.as_deref(), Some("1234"));
        assert!(
            !format!("{sim:?}").contains("1234"),
            "the PIN stays out of logs"
        );
        // A SIM whose ICCID its modem cannot read is named by its IMSI,
        // and found so whatever id the pool gave it.
        let by_imsi = config.sim("imsi:001010123456789").unwrap();
        assert_eq!(by_imsi.msisdn.as_ref().unwrap().e164(), "+447700900002");
        assert!(
            config
                .sim_of(
                    "8944110000000000077",
                    Some("8944110000000000077"),
                    Some("001010123456789")
                )
                .is_some()
        );
    }

    #[test]
    fn a_sim_is_named_by_its_iccid_or_its_imsi() {
        for (sims, problem) in [
            ("[[sims]]\nmsisdn = \"+447700900001\"", "one of the two"),
            (
                "[[sims]]\niccid = \"8944110000000000001\"\nimsi = \"001010123456789\"",
                "one of the two",
            ),
            ("[[sims]]\nimsi = \"00101x\"", "6 to 15 digits"),
            (
                "[[sims]]\nimsi = \"001010123456789\"\npin = \"1234\"",
                "needs the SIM's iccid",
            ),
            (
                "[[sims]]\nimsi = \"001010123456789\"\n[[sims]]\nimsi = \"001010123456789\"",
                "configured twice",
            ),
        ] {
            let error = Config::parse(&format!("{MINIMAL}\n{sims}\n"), "simmask.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{sims}: {error}");
        }
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("[modems]", "[modems]\npoll_intervall = 5");
        let error = Config::parse(&text, "simmask.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("poll_intervall"), "{error}");
        assert!(error.contains("line 9"), "{error}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let text = MINIMAL.replace("[modems]", "[modems]\nbaud = \"fast\"");
        let error = Config::parse(&text, "simmask.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 9"), "{error}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (MINIMAL.replace("127.0.0.1:8080", "localhost"), "api.listen"),
            (
                MINIMAL.replace(
                    "ports = [\"/dev/serial/by-id/*-if02-port0\", \"/dev/ttyUSB*\"]",
                    "ports = []",
                ),
                "modems.ports",
            ),
            (
                format!("{MINIMAL}\n[numbers]\ndefault_region = \"XX\""),
                "numbers.default_region",
            ),
            (
                format!("{MINIMAL}\n[twilio]\naccount_sid = \"AC123\""),
                "twilio.account_sid",
            ),
            (
                format!("{MINIMAL}\n[[sims]]\niccid = \"1\"\npin = \"12\""),
                "sims.pin",
            ),
            (
                format!("{MINIMAL}\n[out_of_session]\npolicy = \"auto-reply\"\ntext = \" \""),
                "out_of_session.text",
            ),
            (
                format!("{MINIMAL}\n[opt_out]\nstop_keywords = []"),
                "opt_out",
            ),
            (
                format!("{MINIMAL}\n[opt_out]\nstart_keywords = [\"stop\"]"),
                "opt_out",
            ),
            (
                format!("{MINIMAL}\n[intercept]\nblock_keywords = [\" \"]"),
                "intercept",
            ),
            (
                format!("{MINIMAL}\n[loop_protection]\nmax_burst = 1"),
                "loop_protection",
            ),
            (
                format!("{MINIMAL}\n[numbers]\nvalidation = \"lenient\""),
                "validation",
            ),
            (format!("{MINIMAL}\n[hubs]\nformat = \"{{text}}\""), "hubs"),
        ];
        for (text, key) in cases {
            let error = Config::parse(&text, "simmask.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn an_unknown_voice_method_is_refused() {
        let text = format!("{MINIMAL}\n[[sims]]\niccid = \"1\"\nvoice_method = \"relay\"");
        let error = Config::parse(&text, "simmask.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("relay"), "{error}");
        assert!(error.contains("multiparty"), "{error}");
    }

    #[test]
    fn a_missing_file_says_which() {
        let error = Config::load(Path::new("/nonexistent/simmask.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/simmask.toml"));
    }

    #[test]
    fn the_store_backend_is_sqlite_unless_postgres_is_asked_with_a_url() {
        let with = |store: &str| {
            Config::parse(
                &MINIMAL.replace(
                    "[store]\npath = \"/var/lib/simmask/simmask.db\"",
                    &format!("[store]\n{store}"),
                ),
                "simmask.toml",
            )
        };
        let path = "path = \"/var/lib/simmask/simmask.db\"";
        let default = with(path).unwrap();
        assert_eq!(
            default.store.location().unwrap(),
            crate::store::Location::Sqlite("/var/lib/simmask/simmask.db".into())
        );
        assert_eq!(
            default.store.sqlite_path().unwrap(),
            Path::new("/var/lib/simmask/simmask.db")
        );
        // PostgreSQL needs no path.
        let fleet =
            with("backend = \"postgres\"\nurl = \"postgres://simmask:secret@db:5432/simmask\"")
                .unwrap();
        assert_eq!(
            fleet.store.location().unwrap(),
            crate::store::Location::Postgres("postgres://simmask:secret@db:5432/simmask".into())
        );
        // The commands that work on the SQLite file refuse, naming why.
        let refused = fleet.store.sqlite_path().unwrap_err();
        assert!(refused.contains("postgres"), "{refused}");
        // A path beside postgres is refused, not silently ignored: backup,
        // restore and doctor would act on a stale file.
        let both = with(&format!(
            "{path}\nbackend = \"postgres\"\nurl = \"postgres://db/simmask\""
        ))
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("store.path") && both.contains("remove path"),
            "{both}"
        );
        // SQLite without a path names the key.
        let no_path = with("").unwrap_err().to_string();
        assert!(
            no_path.contains("store.path") && no_path.contains("missing"),
            "{no_path}"
        );
        let unknown = with(&format!("{path}\nbackend = \"mysql\""))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("mysql") && unknown.contains("sqlite") && unknown.contains("postgres"),
            "{unknown}"
        );
        let no_url = with("backend = \"postgres\"").unwrap_err().to_string();
        assert!(no_url.contains("store.url"), "{no_url}");
    }
}
