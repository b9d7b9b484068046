//! The configuration while the daemon runs: `simmask run` re-reads the file
//! on SIGHUP (`systemctl reload simmask`) and swaps in what can change
//! without a restart; the readers take a snapshot per decision.

use std::sync::{Arc, RwLock};

use super::Config;

/// The configuration in force. Cheap to clone; [`LiveConfig::get`] is a
/// snapshot that a later reload does not change.
#[derive(Debug, Clone)]
pub struct LiveConfig(Arc<RwLock<Arc<Config>>>);

impl LiveConfig {
    pub fn new(config: Config) -> Self {
        LiveConfig(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts in force what of `new` can change while the daemon runs, and
    /// says what changed and what did not take effect. Everything else
    /// stays as the daemon started with it, so every reader agrees with
    /// what actually runs.
    pub fn reload(&self, new: Config) -> Reload {
        let old = self.get();
        let (effective, plan) = apply(&old, &new);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(effective);
        plan
    }
}

/// What a reload changed: the keys now in force, and the keys that changed
/// in the file but need a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reload {
    pub applied: Vec<&'static str>,
    pub needs_restart: Vec<&'static str>,
}

/// Named in [`Reload::needs_restart`] when something changed that no key
/// below names (a setting added without being classified here): it waits
/// for a restart, like every key not known to be safe to swap.
pub const OTHER_KEYS: &str = "other settings";

/// The configuration to run with after reading `new` while `old` runs
/// (`old` with the live keys of `new`), and what changed.
fn apply(old: &Config, new: &Config) -> (Config, Reload) {
    let mut reload = Reload::default();
    let mut effective = old.clone();
    // `old` with every key named below taken from `new`: equal to `new`
    // unless a key no line names changed.
    let mut named = old.clone();
    let d = |value: &dyn std::fmt::Debug| format!("{value:?}");
    // Debug hides the callbacks' secret and the PINs: their keys compare
    // them too (never shown).
    let nothing = |_: &Config| String::new();
    let secret = |c: &Config| d(&c.callbacks.secret);
    let pins = |c: &Config| d(&c.sims.iter().map(|s| &s.pin).collect::<Vec<_>>());
    let mqtt_password = |c: &Config| d(&c.mqtt.password);
    const LIVE: bool = true;
    const RESTART: bool = false;
    macro_rules! key {
        ($name:literal, $live:expr, $($field:ident).+) => {
            key!($name, $live, $($field).+; nothing)
        };
        ($name:literal, $live:expr, $($field:ident).+; $hidden:expr) => {{
            if d(&old.$($field).+) != d(&new.$($field).+) || $hidden(old) != $hidden(new) {
                if $live {
                    reload.applied.push($name);
                } else {
                    reload.needs_restart.push($name);
                }
            }
            if $live {
                effective.$($field).+ = new.$($field).+.clone();
            }
            named.$($field).+ = new.$($field).+.clone();
        }};
    }
    // Read at each use by the bank, the relay, the outbox workers, the
    // desks, the sweeper, the clock task and the API.
    key!("modems.ports", LIVE, modems.ports);
    key!("sms.per_minute", LIVE, sms.per_minute);
    key!("sms.per_day", LIVE, sms.per_day);
    key!("sms.recipients_per_month", LIVE, sms.recipients_per_month);
    key!(
        "sms.budget_reserve_percent",
        LIVE,
        sms.budget_reserve_percent
    );
    key!(
        "sms.reassembly_timeout_seconds",
        LIVE,
        sms.reassembly_timeout_seconds
    );
    key!("sms.retention_days", LIVE, sms.retention_days);
    key!("sms.delivery_reports", LIVE, sms.delivery_reports);
    key!("out_of_session", LIVE, out_of_session);
    key!(
        "voice.ring_timeout_seconds",
        LIVE,
        voice.ring_timeout_seconds
    );
    key!(
        "voice.max_duration_seconds",
        LIVE,
        voice.max_duration_seconds
    );
    key!(
        "sessions.sweep_interval_seconds",
        LIVE,
        sessions.sweep_interval_seconds
    );
    key!(
        "sessions.forget_numbers_days",
        LIVE,
        sessions.forget_numbers_days
    );
    key!("sessions.fallback_number", LIVE, sessions.fallback_number);
    key!("callbacks", LIVE, callbacks; secret);
    key!("clock", LIVE, clock);
    key!("opt_out", LIVE, opt_out);
    key!("intercept", LIVE, intercept);
    key!("loop_protection", LIVE, loop_protection);

    // Read once at start: the listener, the store, the bank's modems, the
    // API's session defaults, the SIMs' identities and PINs.
    key!("api.listen", RESTART, api.listen);
    // The connection limits are the listener's: they need a restart too.
    key!("api.max_connections", RESTART, api.max_connections);
    key!("api.reserve_connections", RESTART, api.reserve_connections);
    key!(
        "api.header_read_timeout_seconds",
        RESTART,
        api.header_read_timeout_seconds
    );
    key!(
        "api.request_timeout_seconds",
        RESTART,
        api.request_timeout_seconds
    );
    key!("api.max_event_streams", RESTART, api.max_event_streams);
    key!(
        "api.max_event_streams_per_token",
        RESTART,
        api.max_event_streams_per_token
    );
    key!("api.failed_auth_burst", RESTART, api.failed_auth_burst);
    key!(
        "api.failed_auth_per_minute",
        RESTART,
        api.failed_auth_per_minute
    );
    key!("api.trusted_proxies", RESTART, api.trusted_proxies);
    key!("store.path", RESTART, store.path);
    key!("modems.baud", RESTART, modems.baud);
    key!("modems.profiles_dir", RESTART, modems.profiles_dir);
    key!(
        "modems.poll_interval_seconds",
        RESTART,
        modems.poll_interval_seconds
    );
    key!(
        "modems.power_cycle_command",
        RESTART,
        modems.power_cycle_command
    );
    key!("modems.quarantine_after", RESTART, modems.quarantine_after);
    key!("numbers.default_region", RESTART, numbers.default_region);
    key!("numbers.validation", RESTART, numbers.validation);
    key!(
        "sessions.default_ttl_seconds",
        RESTART,
        sessions.default_ttl_seconds
    );
    key!("sessions.sticky", RESTART, sessions.sticky);
    key!("sms.max_attempts", RESTART, sms.max_attempts);
    key!("sims", RESTART, sims; pins);
    // The MQTT connection, its topics and Home Assistant's devices are
    // set up once.
    key!("appliance.name", RESTART, appliance.name);
    key!(
        "appliance.heartbeat_timeout_seconds",
        RESTART,
        appliance.heartbeat_timeout_seconds
    );
    key!("mqtt", RESTART, mqtt; mqtt_password);

    if d(&named) != d(new) {
        reload.needs_restart.push(OTHER_KEYS);
    }
    (effective, reload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(old: &Config, new: &Config) -> Reload {
        apply(old, new).1
    }

    const BASE: &str = r#"
[api]
listen = "127.0.0.1:8080"
[store]
path = "/var/lib/simmask/simmask.db"
[modems]
ports = ["/dev/simmask/*"]
"#;

    #[test]
    fn a_reload_applies_what_it_can_and_names_the_rest() {
        let live = LiveConfig::new(Config::parse(BASE, "a").unwrap());
        let changed = BASE.replace("8080", "9090").replace("simmask/*", "ttyUSB*")
            + "[sms]\nper_minute = 3\n[out_of_session]\npolicy = \"auto-reply\"\ntext = \"no\"\n";
        let reload = live.reload(Config::parse(&changed, "b").unwrap());
        assert_eq!(
            reload.applied,
            ["modems.ports", "sms.per_minute", "out_of_session"]
        );
        assert_eq!(reload.needs_restart, ["api.listen"]);
        let now = live.get();
        assert_eq!(now.modems.ports, ["/dev/ttyUSB*"]);
        assert_eq!(now.sms.per_minute, 3);
        assert_eq!(now.api.listen, "127.0.0.1:8080", "the listener stays");
        // The same file again changes nothing.
        let again = live.reload(Config::parse(&changed, "b").unwrap());
        assert_eq!(again.applied, Vec::<&str>::new());
        assert_eq!(again.needs_restart, ["api.listen"]);
    }

    /// The example file sets most keys away from their defaults: every
    /// difference from the minimal file is named by its key, none falls
    /// through to "other settings", and the secret and PINs count.
    #[test]
    fn every_key_of_the_example_is_classified() {
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("simmask.example.toml"),
        )
        .unwrap();
        let example = Config::parse(&example, "example").unwrap();
        let full = format!(
            "{BASE}[numbers]\ndefault_region = \"GB\"\nvalidation = \"strict\"\n\
             [sessions]\ndefault_ttl_seconds = 60\nsticky = false\nsweep_interval_seconds = 5\n\
             forget_numbers_days = 3\nfallback_number = \"+447700900123\"\n\
             [sms]\nper_minute = 1\nper_day = 2\nreassembly_timeout_seconds = 3\n\
             retention_days = 4\nmax_attempts = 6\nrecipients_per_month = 7\n\
             budget_reserve_percent = 8\n[voice]\nring_timeout_seconds = 9\n\
             max_duration_seconds = 10\n[clock]\nset_system_clock = true\n\
             [callbacks]\nsecret = \"0123456789abcdef0\"\n\
             [[sims]]\niccid = \"8944000000000000001\"\npin = \"1234\"\nper_day = 5\n"
        );
        let full = Config::parse(&full, "full").unwrap();
        let minimal = Config::parse(BASE, "minimal").unwrap();
        for other in [&example, &full] {
            let reload = plan(&minimal, other);
            assert!(!reload.needs_restart.contains(&OTHER_KEYS), "{reload:?}");
            let (effective, _) = apply(&minimal, other);
            assert_eq!(effective.api.listen, minimal.api.listen);
        }
        let reload = plan(&minimal, &full);
        for key in [
            "sms.recipients_per_month",
            "sms.budget_reserve_percent",
            "sessions.fallback_number",
            "callbacks",
            "clock",
        ] {
            assert!(reload.applied.contains(&key), "{key}: {reload:?}");
        }
        for key in ["numbers.validation", "sessions.sticky", "sims"] {
            assert!(reload.needs_restart.contains(&key), "{key}: {reload:?}");
        }

        // A changed secret or PIN alone is seen, though Debug hides both.
        let mut secret = full.clone();
        secret.callbacks.secret = Some("another secret, long enough".into());
        assert_eq!(plan(&full, &secret).applied, ["callbacks"]);
        let mut pin = full.clone();
        pin.sims[0].pin = Some("4321".into());
        assert_eq!(plan(&full, &pin).needs_restart, ["sims"]);
        let (effective, _) = apply(&full, &pin);
        assert_eq!(effective.sims[0].pin.as_deref(), Some("1234"));

        // MQTT is set up once: a change, a new password alone too, is named
        // for a restart.
        let mut mqtt = full.clone();
        mqtt.mqtt.commands = true;
        mqtt.appliance.name = Some("attic".into());
        assert_eq!(plan(&full, &mqtt).needs_restart, ["appliance.name", "mqtt"]);
        let mut password = full.clone();
        password.mqtt.password = Some("another".into());
        assert_eq!(plan(&full, &password).needs_restart, ["mqtt"]);
    }
}
