//! Looks after the clock (see [`crate::clock`]) while the daemon runs:
//! says in the log when the system clock looks wrong against the network's
//! time; with `[clock] set_system_clock`, steps it to the network's time
//! when nothing else synchronises it; and follows any step of the system
//! clock (its own, NTP arriving late, `date -s`): the daemon's time moves by
//! as much, and so do the deadlines of open sessions, so each keeps the time
//! it had left instead of expiring early or living on.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::{self, ClockStatus};
use crate::config::LiveConfig;
use crate::store::Store;

/// How often the clock is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(15);

pub async fn run(config: LiveConfig, store: Store, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    let mut warned = false;
    let mut refused = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let status = clock::status(clock::system_sync(Path::new("/")));
        if status.suspect != warned {
            warned = status.suspect;
            if warned {
                tracing::warn!(summary = %status.summary, "the system clock looks wrong");
            } else {
                tracing::info!(summary = %status.summary, "the system clock agrees with the network");
            }
        }
        if let Some(step) = clock::step_to_make(&status, config.get().clock.set_system_clock) {
            match set_system_clock(step) {
                Ok(()) => tracing::warn!(
                    step_seconds = step.whole_seconds(),
                    "system clock set to the network's time ([clock] set_system_clock)"
                ),
                Err(error) if !refused => {
                    refused = true;
                    tracing::warn!(
                        %error,
                        "cannot set the system clock: the service needs CAP_SYS_TIME \
                         (install /usr/share/doc/simmask/examples/clock.conf)"
                    );
                }
                Err(_) => {}
            }
        }
        follow_steps(&store, &clock::status(status.sync)).await;
    }
}

/// Moves the daemon's time and the open sessions' deadlines by a step of
/// the system clock larger than the tolerance.
async fn follow_steps(store: &Store, status: &ClockStatus) {
    if status.jump_seconds.abs() <= clock::TOLERANCE_SECONDS {
        return;
    }
    let step = time::Duration::seconds(status.jump_seconds);
    // The deadlines first, then the daemon's time: a sweep in between sees
    // a session living a little longer, never one expiring early.
    match store.shift_open_sessions(step).await {
        Ok(sessions) => tracing::warn!(
            step_seconds = status.jump_seconds,
            sessions,
            "the system clock was stepped: the daemon's time follows, open sessions keep the time they had left"
        ),
        Err(error) => tracing::error!(%error, "cannot move the open sessions' deadlines"),
    }
    clock::step(step);
    // Samples were taken against the old system time.
    clock::forget_network_time();
}

/// Steps the system clock by `by` (needs CAP_SYS_TIME).
fn set_system_clock(by: time::Duration) -> nix::Result<()> {
    use nix::sys::time::TimeSpec;
    use nix::time::{ClockId, clock_gettime, clock_settime};
    const NANOS: i128 = 1_000_000_000;
    let now = clock_gettime(ClockId::CLOCK_REALTIME)?;
    let target =
        i128::from(now.tv_sec()) * NANOS + i128::from(now.tv_nsec()) + by.whole_nanoseconds();
    let seconds = i64::try_from(target.div_euclid(NANOS)).map_err(|_| nix::errno::Errno::EINVAL)?;
    let nanos = i64::try_from(target.rem_euclid(NANOS)).map_err(|_| nix::errno::Errno::EINVAL)?;
    clock_settime(ClockId::CLOCK_REALTIME, TimeSpec::new(seconds, nanos))
}
