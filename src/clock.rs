//! The appliance's clock. A Raspberry Pi has no real-time clock: offline and
//! without NTP it boots at the last time it saved, possibly hours or days
//! wrong, and is stepped later when NTP arrives. Expiry, idle timeouts, rate
//! limits, retention and timestamps all depend on the time, so:
//!
//! - [`now`] is the time the daemon works with: the system clock read once
//!   at start, plus the monotonic time since. Stepping the system clock
//!   (NTP arriving late, `date -s`) does not shorten or stretch a session's
//!   TTL, an idle timeout or a rate-limit window. [`step`] moves it on
//!   purpose, when the daemon itself set the clock.
//! - The network's time comes from the modems: `+CCLK?` once `AT+CTZU=1`
//!   lets the network (NITZ) set the modem's clock, and the SMSC timestamp of every received SMS-DELIVER
//!   (TS 23.040 §9.2.3.11: when the network took the message, so never
//!   later than now). [`record_network_time`] keeps the best sample per
//!   source; [`status`] compares it with the system clock.
//! - Whether the system clock is synchronised: systemd-timesyncd's flag
//!   file `/run/systemd/timesync/synchronized`, else unknown; and any jump
//!   of the system clock against [`now`] since start.
//!
//! Layer: a foundation beside [`crate::events`]: it knows nothing of modems,
//! SMS or the store. The bank and the relay feed it samples; the daemon, the
//! API and `doctor` read its [`status`]. One clock per process, like the
//! system's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a network time sample came from, best first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `+CCLK?` of a modem whose clock the network set (`AT+CTZU=1`).
    Cclk,
    /// The SMSC timestamp of a received SMS (a lower bound: the message may
    /// have waited in the network).
    Smsc,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cclk => "cclk",
            Source::Smsc => "smsc",
        }
    }
}

/// Times before this are a modem's unset clock (SIM800s start in 2004), not
/// the network's.
const EARLIEST_PLAUSIBLE: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

/// How long a sample counts: the system clock may have been stepped since.
const SAMPLE_LIFETIME_SECONDS: u64 = 6 * 3600;

#[derive(Debug, Clone)]
struct Sample {
    /// Network time minus system time when the sample was taken.
    offset: time::Duration,
    taken: Instant,
    /// The modem or SIM it came from, for the log and the status.
    from: String,
}

struct State {
    /// The system clock at `started`.
    wall_at_start: OffsetDateTime,
    started: Instant,
    samples: BTreeMap<Source, Sample>,
    /// What [`step`] moved [`now`] by, in total.
    stepped: time::Duration,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            Mutex::new(State {
                wall_at_start: OffsetDateTime::now_utc(),
                started: Instant::now(),
                samples: BTreeMap::new(),
                stepped: time::Duration::ZERO,
            })
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The daemon's time: the system clock at start plus the monotonic time
/// since (plus what [`step`] added).
pub fn now() -> OffsetDateTime {
    let state = state();
    state.wall_at_start + state.started.elapsed() + state.stepped
}

/// What [`step`] moved [`now`] by since start: clocks kept apart from
/// [`now`] (an outbox worker's) add it to follow the same steps.
pub fn stepped() -> time::Duration {
    state().stepped
}

/// Moves [`now`] by `by` (after the system clock was stepped by as much),
/// so the two agree again.
pub fn step(by: time::Duration) {
    state().stepped += by;
}

/// Records a network time `network` seen now from `source` on `from` (a
/// modem port or a SIM's ICCID tail). Implausible times (a modem's unset
/// clock) are ignored; from the SMSC the latest-looking sample wins, since
/// a message that waited in the network carries an older time.
pub fn record_network_time(source: Source, network: OffsetDateTime, from: &str) {
    if network.unix_timestamp() < EARLIEST_PLAUSIBLE {
        tracing::debug!(source = source.as_str(), %network, "implausible network time ignored");
        return;
    }
    // `+CCLK` shows whole seconds, cut short: on average the modem's clock
    // is half a second past what it says.
    let truncation = match source {
        Source::Cclk => time::Duration::milliseconds(500),
        Source::Smsc => time::Duration::ZERO,
    };
    let offset = network + truncation - OffsetDateTime::now_utc();
    let mut state = state();
    let sample = Sample {
        offset,
        taken: Instant::now(),
        from: from.to_string(),
    };
    let keep_old = source == Source::Smsc
        && state.samples.get(&source).is_some_and(|old| {
            old.offset > offset && old.taken.elapsed().as_secs() < SAMPLE_LIFETIME_SECONDS
        });
    if !keep_old {
        state.samples.insert(source, sample);
    }
}

/// Forgets every network sample (tests; a daemon that stepped the clock).
pub fn forget_network_time() {
    state().samples.clear();
}

/// Whether the system clock is synchronised, and who says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sync {
    /// systemd-timesyncd has synchronised it since boot.
    Synchronized,
    /// systemd-timesyncd runs but has not synchronised it (offline).
    Unsynchronized,
    /// No time daemon that says (no timesyncd): see the network offset.
    Unknown,
}

/// Reads systemd-timesyncd's state under `root` (`/` on a real system).
pub fn system_sync(root: &Path) -> Sync {
    let timesync = root.join("run/systemd/timesync");
    if timesync.join("synchronized").exists() {
        Sync::Synchronized
    } else if timesync.is_dir() {
        Sync::Unsynchronized
    } else {
        Sync::Unknown
    }
}

/// The clock as `/healthz`, the dashboard and `doctor` show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClockStatus {
    /// The system clock now (RFC 3339).
    pub system_time: String,
    pub sync: Sync,
    /// The best network time source heard from, if any.
    pub network_source: Option<Source>,
    /// Where that sample came from (modem port or SIM).
    pub network_from: Option<String>,
    /// How far the system clock is ahead of the network's (negative:
    /// behind), in whole seconds.
    pub offset_seconds: Option<i64>,
    /// Age of that sample.
    pub sample_age_seconds: Option<u64>,
    /// How far the system clock moved against the monotonic clock since
    /// the daemon started (a step by NTP or by hand), in whole seconds.
    pub jump_seconds: i64,
    /// True when the clock looks wrong: timesyncd says unsynchronised or
    /// nobody says, and the network disagrees by more than a minute.
    pub suspect: bool,
    /// The above in one sentence, for people.
    pub summary: String,
    /// Every source heard from, best first.
    pub samples: Vec<SampleStatus>,
}

/// One network time source as last heard.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleStatus {
    pub source: Source,
    pub from: String,
    /// How far the system clock is ahead of this source's time.
    pub offset_seconds: i64,
    pub age_seconds: u64,
}

/// Offsets up to this are the network's own imprecision and the age of
/// SMSC timestamps, not a wrong clock.
pub const TOLERANCE_SECONDS: i64 = 60;

/// The clock's status, with `sync` as read by [`system_sync`].
pub fn status(sync: Sync) -> ClockStatus {
    let system = OffsetDateTime::now_utc();
    let state = state();
    let daemon_now = state.wall_at_start + state.started.elapsed() + state.stepped;
    let best = state
        .samples
        .iter()
        .find(|(_, s)| s.taken.elapsed().as_secs() < SAMPLE_LIFETIME_SECONDS);
    let offset_seconds = best.map(|(_, s)| seconds_ahead(s.offset));
    let mut status = ClockStatus {
        system_time: rfc3339(system),
        sync,
        network_source: best.map(|(source, _)| *source),
        network_from: best.map(|(_, s)| s.from.clone()),
        offset_seconds,
        sample_age_seconds: best.map(|(_, s)| s.taken.elapsed().as_secs()),
        jump_seconds: (system - daemon_now).whole_seconds(),
        suspect: sync != Sync::Synchronized
            && offset_seconds.is_some_and(|o| o.abs() > TOLERANCE_SECONDS),
        summary: String::new(),
        samples: state
            .samples
            .iter()
            .map(|(source, s)| SampleStatus {
                source: *source,
                from: s.from.clone(),
                offset_seconds: seconds_ahead(s.offset),
                age_seconds: s.taken.elapsed().as_secs(),
            })
            .collect(),
    };
    status.summary = status.describe();
    status
}

impl ClockStatus {
    /// One sentence for people: the dashboard, `doctor`, the log.
    fn describe(&self) -> String {
        let sync = match self.sync {
            Sync::Synchronized => "synchronised (systemd-timesyncd)",
            Sync::Unsynchronized => "not synchronised (systemd-timesyncd has no time server)",
            Sync::Unknown => "synchronisation unknown (no systemd-timesyncd)",
        };
        let network = match (self.offset_seconds, self.network_source) {
            (Some(offset), Some(source)) => format!(
                "; {} the network's time ({} via {})",
                describe_offset(offset),
                source.as_str(),
                self.network_from.as_deref().unwrap_or("?")
            ),
            _ => "; no network time heard yet".to_string(),
        };
        format!("system clock {sync}{network}")
    }
}

/// How far the system clock is ahead of the network, to the nearest
/// second (network times come in whole seconds).
fn seconds_ahead(network_minus_system: time::Duration) -> i64 {
    -(network_minus_system.as_seconds_f64().round() as i64)
}

/// "3 h 2 min ahead of", "12 s behind", "within a minute of".
pub fn describe_offset(seconds: i64) -> String {
    if seconds.abs() <= TOLERANCE_SECONDS {
        return "within a minute of".into();
    }
    let side = if seconds > 0 { "ahead of" } else { "behind" };
    let s = seconds.unsigned_abs();
    let amount = match s {
        0..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{amount} {side}")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// When the daemon should step the system clock: allowed by the operator,
/// the clock not synchronised by anyone else, and a network sample that
/// disagrees by more than [`TOLERANCE_SECONDS`]. The step to make
/// (network minus system), or `None`.
pub fn step_to_make(status: &ClockStatus, allowed: bool) -> Option<time::Duration> {
    if !allowed || status.sync == Sync::Synchronized {
        return None;
    }
    // The SMSC's time is a lower bound only: never step backwards on it.
    let offset = status.offset_seconds?;
    if offset.abs() <= TOLERANCE_SECONDS
        || (status.network_source == Some(Source::Smsc) && offset > 0)
    {
        return None;
    }
    Some(time::Duration::seconds(-offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(sync: Sync, offset: Option<i64>, source: Source) -> ClockStatus {
        ClockStatus {
            system_time: String::new(),
            sync,
            network_source: offset.map(|_| source),
            network_from: None,
            offset_seconds: offset,
            sample_age_seconds: Some(0),
            jump_seconds: 0,
            suspect: false,
            summary: String::new(),
            samples: Vec::new(),
        }
    }

    #[test]
    fn the_clock_is_stepped_only_when_allowed_unsynchronised_and_off() {
        let off = status_with(Sync::Unsynchronized, Some(-7200), Source::Cclk);
        assert_eq!(step_to_make(&off, false), None);
        assert_eq!(step_to_make(&off, true), Some(time::Duration::hours(2)));
        let unknown = status_with(Sync::Unknown, Some(3600), Source::Cclk);
        assert_eq!(
            step_to_make(&unknown, true),
            Some(time::Duration::hours(-1))
        );
        let synced = status_with(Sync::Synchronized, Some(-7200), Source::Cclk);
        assert_eq!(step_to_make(&synced, true), None);
        let close = status_with(Sync::Unsynchronized, Some(30), Source::Cclk);
        assert_eq!(step_to_make(&close, true), None);
        let none = status_with(Sync::Unsynchronized, None, Source::Cclk);
        assert_eq!(step_to_make(&none, true), None);
        // An SMS that waited in the network looks old: no step backwards.
        let smsc_ahead = status_with(Sync::Unsynchronized, Some(600), Source::Smsc);
        assert_eq!(step_to_make(&smsc_ahead, true), None);
        let smsc_behind = status_with(Sync::Unsynchronized, Some(-600), Source::Smsc);
        assert_eq!(
            step_to_make(&smsc_behind, true),
            Some(time::Duration::minutes(10))
        );
    }

    #[test]
    fn timesyncd_state_is_read_from_its_flag_file() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(system_sync(root.path()), Sync::Unknown);
        std::fs::create_dir_all(root.path().join("run/systemd/timesync")).unwrap();
        assert_eq!(system_sync(root.path()), Sync::Unsynchronized);
        std::fs::write(root.path().join("run/systemd/timesync/synchronized"), "").unwrap();
        assert_eq!(system_sync(root.path()), Sync::Synchronized);
    }

    #[test]
    fn offsets_read_as_people_say_them() {
        assert_eq!(describe_offset(30), "within a minute of");
        assert_eq!(describe_offset(-3600), "1 h 0 min behind");
        assert_eq!(describe_offset(90), "1 min 30 s ahead of");
        assert_eq!(describe_offset(2 * 86_400 + 3 * 3600), "2 d 3 h ahead of");
    }

    // The samples are process-wide: one test walks through them in order.
    #[test]
    fn network_samples_prefer_the_modem_clock_and_the_latest_smsc_time() {
        forget_network_time();
        let system = OffsetDateTime::now_utc();
        record_network_time(Source::Smsc, system - time::Duration::hours(3), "sim 0001");
        // An older SMSC timestamp (a message that waited) does not win.
        record_network_time(Source::Smsc, system - time::Duration::hours(5), "sim 0001");
        let s = status(Sync::Unknown);
        assert_eq!(s.network_source, Some(Source::Smsc));
        let offset = s.offset_seconds.unwrap();
        assert!((3 * 3600 - 5..=3 * 3600 + 5).contains(&offset), "{offset}");
        assert!(s.suspect);
        assert!(
            s.summary
                .contains("ahead of the network's time (smsc via sim 0001)")
        );

        // A modem's unset clock is ignored; a network-set one wins.
        record_network_time(
            Source::Cclk,
            time::macros::datetime!(2004-01-01 0:00 UTC),
            "x",
        );
        assert_eq!(status(Sync::Unknown).network_source, Some(Source::Smsc));
        record_network_time(
            Source::Cclk,
            system + time::Duration::minutes(10),
            "/dev/m0",
        );
        let s = status(Sync::Unsynchronized);
        assert_eq!(s.network_source, Some(Source::Cclk));
        assert!((-605..=-595).contains(&s.offset_seconds.unwrap()));
        assert!(!status(Sync::Synchronized).suspect);
        forget_network_time();
        assert_eq!(status(Sync::Unknown).offset_seconds, None);
    }
}
