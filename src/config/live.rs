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

    /// Puts `new` in force, keeping what needs a restart as it was, and
    /// says what changed and what did not take effect.
    pub fn reload(&self, mut new: Config) -> Reload {
        let old = self.get();
        let plan = plan(&old, &new);
        // What needs a restart stays as the daemon started with it, so every
        // reader agrees with what actually runs.
        new.api = old.api.clone();
        new.store = old.store.clone();
        new.modems = super::Modems {
            ports: new.modems.ports.clone(),
            ..old.modems.clone()
        };
        new.numbers = old.numbers.clone();
        new.sessions.default_ttl_seconds = old.sessions.default_ttl_seconds;
        new.sessions.sticky = old.sessions.sticky;
        new.sms.max_attempts = old.sms.max_attempts;
        new.sims = old.sims.clone();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
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

/// Compares two configurations key by key.
pub fn plan(old: &Config, new: &Config) -> Reload {
    let mut reload = Reload::default();
    let mut compare = |key: &'static str, live: bool, a: String, b: String| {
        if a != b {
            if live {
                reload.applied.push(key);
            } else {
                reload.needs_restart.push(key);
            }
        }
    };
    let d = |value: &dyn std::fmt::Debug| format!("{value:?}");
    compare(
        "modems.ports",
        true,
        d(&old.modems.ports),
        d(&new.modems.ports),
    );
    compare(
        "sms.per_minute",
        true,
        d(&old.sms.per_minute),
        d(&new.sms.per_minute),
    );
    compare(
        "sms.per_day",
        true,
        d(&old.sms.per_day),
        d(&new.sms.per_day),
    );
    compare(
        "sms.reassembly_timeout_seconds",
        true,
        d(&old.sms.reassembly_timeout_seconds),
        d(&new.sms.reassembly_timeout_seconds),
    );
    compare(
        "sms.retention_days",
        true,
        d(&old.sms.retention_days),
        d(&new.sms.retention_days),
    );
    compare(
        "out_of_session",
        true,
        d(&old.out_of_session),
        d(&new.out_of_session),
    );
    compare(
        "voice.ring_timeout_seconds",
        true,
        d(&old.voice.ring_timeout_seconds),
        d(&new.voice.ring_timeout_seconds),
    );
    compare(
        "voice.max_duration_seconds",
        true,
        d(&old.voice.max_duration_seconds),
        d(&new.voice.max_duration_seconds),
    );
    compare(
        "sessions.sweep_interval_seconds",
        true,
        d(&old.sessions.sweep_interval_seconds),
        d(&new.sessions.sweep_interval_seconds),
    );
    compare(
        "sessions.forget_numbers_days",
        true,
        d(&old.sessions.forget_numbers_days),
        d(&new.sessions.forget_numbers_days),
    );
    // Debug hides the secret and the PINs: compare them too (never shown).
    let callbacks = |c: &Config| d(&(&c.callbacks, &c.callbacks.secret));
    compare("callbacks", true, callbacks(old), callbacks(new));
    compare("clock", true, d(&old.clock), d(&new.clock));
    compare("opt_out", true, d(&old.opt_out), d(&new.opt_out));
    compare("intercept", true, d(&old.intercept), d(&new.intercept));
    compare(
        "loop_protection",
        true,
        d(&old.loop_protection),
        d(&new.loop_protection),
    );

    compare("api.listen", false, d(&old.api), d(&new.api));
    compare("store.path", false, d(&old.store), d(&new.store));
    let rest = |m: &super::Modems| {
        d(&(
            m.baud,
            &m.profiles_dir,
            m.poll_interval_seconds,
            &m.power_cycle_command,
            m.quarantine_after,
        ))
    };
    compare(
        "modems (baud, profiles_dir, poll_interval_seconds, power_cycle_command, quarantine_after)",
        false,
        rest(&old.modems),
        rest(&new.modems),
    );
    compare(
        "numbers.default_region",
        false,
        d(&old.numbers),
        d(&new.numbers),
    );
    compare(
        "sessions.default_ttl_seconds",
        false,
        d(&old.sessions.default_ttl_seconds),
        d(&new.sessions.default_ttl_seconds),
    );
    compare(
        "sessions.sticky",
        false,
        d(&old.sessions.sticky),
        d(&new.sessions.sticky),
    );
    compare(
        "sms.max_attempts",
        false,
        d(&old.sms.max_attempts),
        d(&new.sms.max_attempts),
    );
    let sims = |c: &Config| d(&(&c.sims, c.sims.iter().map(|s| &s.pin).collect::<Vec<_>>()));
    compare("sims", false, sims(old), sims(new));
    reload
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
