//! The paced line's clock: sleeps to the microsecond. Tokio's timer wakes
//! on whole milliseconds, so a chunk meant for the host when its last byte
//! has crossed the line came up to a millisecond late, and every answer of
//! the host waited for it: at 115200 baud the bench's wire ratio lost some
//! 4 % to the simulator's timer, not to the host.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::time::TimeSpec;
use nix::sys::timer::Expiration;
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A one-shot `timerfd` the runtime polls; tokio's timer if the kernel
/// refuses one.
pub(super) struct LineClock(Option<AsyncFd<Timer>>);

struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl LineClock {
    pub(super) fn new() -> Self {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()
        // SAFETY: the `TimerFd` owns its descriptor and moves into the
        // AsyncFd, so it stays open and the same for the AsyncFd's life.
        .and_then(|timer| unsafe { AsyncFd::register(Timer(timer)) }.ok());
        LineClock(timer)
    }

    /// Returns at `due`, within microseconds.
    pub(super) async fn sleep_until(&self, due: Instant) {
        let wait = due.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        let Some(timer) = &self.0 else {
            return tokio::time::sleep_until(due).await;
        };
        // Setting the timer also forgets an expiry nobody read (a sleep
        // that was cancelled).
        let armed = timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        );
        if armed.is_err() {
            return tokio::time::sleep_until(due).await;
        }
        loop {
            let Ok(mut ready) = timer.readable().await else {
                return tokio::time::sleep_until(due).await;
            };
            // Not yet expired reads as "would block", which clears the
            // readiness until the timer fires.
            match ready.try_io(|fd| fd.get_ref().0.wait().map_err(std::io::Error::from)) {
                Ok(_) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Never early (a chunk must not reach the host before its bytes have
    /// crossed the line), again after a cancelled sleep, and at once for a
    /// time already past. How late is the bench's to measure, not a test's.
    #[tokio::test]
    async fn sleeps_never_end_before_their_time() {
        let clock = LineClock::new();
        assert!(clock.0.is_some(), "no timerfd on this kernel");
        let cancelled = Instant::now() + Duration::from_millis(50);
        let _ =
            tokio::time::timeout(Duration::from_micros(100), clock.sleep_until(cancelled)).await;
        for step_us in [150u64, 400, 900, 1_300, 2_700] {
            let due = Instant::now() + Duration::from_micros(step_us);
            clock.sleep_until(due).await;
            let now = Instant::now();
            assert!(now >= due, "woke {:?} early", due - now);
        }
        let past = Instant::now();
        clock.sleep_until(past - Duration::from_millis(1)).await;
    }
}
