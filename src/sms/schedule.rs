//! Outbox scheduling rules: per-SIM rate limits, retry backoff and the
//! classification of `+CMS ERROR` codes. Time is passed in (milliseconds since
//! the epoch), so every rule is a plain function over data.

use std::collections::VecDeque;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Sliding-window send limits for one SIM: at most `per_minute` sends in any
/// 60 s and `per_day` in any 24 h.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: u32,
    per_day: u32,
    /// Send times within the last day, oldest first.
    sent_at: VecDeque<i64>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, per_day: u32) -> Self {
        Self {
            per_minute,
            per_day,
            sent_at: VecDeque::new(),
        }
    }

    /// Changes the limits (a reload); the sends already made still count.
    pub fn set_limits(&mut self, per_minute: u32, per_day: u32) {
        self.per_minute = per_minute;
        self.per_day = per_day;
    }

    /// When a send may happen, at `now` or later.
    pub fn next_allowed(&mut self, now: i64) -> i64 {
        while self.sent_at.front().is_some_and(|&at| at <= now - DAY_MS) {
            self.sent_at.pop_front();
        }
        let mut allowed = now;
        if let Some(at) = Self::window_blocker(&self.sent_at, now - MINUTE_MS, self.per_minute) {
            allowed = allowed.max(at + MINUTE_MS);
        }
        if let Some(at) = Self::window_blocker(&self.sent_at, now - DAY_MS, self.per_day) {
            allowed = allowed.max(at + DAY_MS);
        }
        allowed
    }

    /// Starts from the sends already made (ms since the epoch, any order):
    /// a restarted daemon keeps the budget its previous run used.
    pub fn seed(&mut self, sent_at: &[i64]) {
        let mut sent_at = sent_at.to_vec();
        sent_at.extend(self.sent_at.drain(..));
        sent_at.sort_unstable();
        self.sent_at = sent_at.into();
    }

    /// Records a send at `now`.
    pub fn record(&mut self, now: i64) {
        self.sent_at.push_back(now);
    }

    /// If the window starting after `since` already holds `limit` sends, the
    /// send time whose expiry frees a slot.
    fn window_blocker(sent_at: &VecDeque<i64>, since: i64, limit: u32) -> Option<i64> {
        let in_window: Vec<i64> = sent_at.iter().copied().filter(|&at| at > since).collect();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit == 0 {
            // A zero limit blocks for the whole window from now.
            return Some(since + 1);
        }
        (in_window.len() >= limit).then(|| in_window[in_window.len() - limit])
    }
}

/// Delays before successive retries; the last one repeats.
const BACKOFF_MS: [i64; 5] = [5_000, 15_000, 60_000, 300_000, 900_000];

/// What to do after a failed attempt number `attempts` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAt(i64),
    GiveUp,
}

/// The retry decision after `attempts` failed attempts, the last at `now`.
pub fn retry_after(attempts: u32, max_attempts: u32, now: i64) -> RetryDecision {
    if attempts >= max_attempts {
        return RetryDecision::GiveUp;
    }
    let index = usize::try_from(attempts.saturating_sub(1))
        .unwrap_or(usize::MAX)
        .min(BACKOFF_MS.len() - 1);
    RetryDecision::RetryAt(now + BACKOFF_MS[index])
}

/// Whether a failed send is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The network or the number refuses the message: retrying cannot help.
    Permanent,
    /// A passing condition: retry later on the same SIM.
    Transient,
}

/// Classifies a `+CMS ERROR: <n>` code (3GPP TS 27.005 §3.2.5: 0..=127 are the
/// RP cause values of TS 24.011 Annex E-2, 128..=255 the TP-FCS values of
/// TS 23.040 §9.2.3.22, 300 and up the ME/SMSC errors). Unknown codes are
/// transient: a bounded number of retries is cheaper than losing a message.
pub fn classify_cms_error(code: u16) -> ErrorClass {
    match code {
        // TS 24.011 Annex E-2: unassigned number, operator determined barring,
        // call barred, short message transfer rejected, unidentified / unknown
        // subscriber, facility rejected, facility not subscribed, invalid
        // mandatory information, semantically incorrect message.
        1 | 8 | 10 | 21 | 28 | 29 | 30 | 50 | 95 | 96 | 97 => ErrorClass::Permanent,
        // TS 23.040 §9.2.3.22: TP-FCS errors in the PDU itself (0x80..0x8F
        // telematic/PID errors, 0x90.. data coding errors).
        128..=159 => ErrorClass::Permanent,
        // TS 27.005 §3.2.5: invalid PDU / text mode parameter, invalid
        // character, invalid memory index (the PDU we built is wrong).
        304 | 305 | 321 => ErrorClass::Permanent,
        // Network out of order (38), temporary failure (41), congestion (42),
        // resources unavailable (47), no network (331), network timeout (332),
        // unknown (500) and anything else.
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_under_the_limits_go_now() {
        let mut limiter = RateLimiter::new(2, 100);
        assert_eq!(limiter.next_allowed(1_000), 1_000);
        limiter.record(1_000);
        assert_eq!(limiter.next_allowed(2_000), 2_000);
    }

    #[test]
    fn the_minute_window_delays_the_third_send() {
        let mut limiter = RateLimiter::new(2, 100);
        limiter.record(1_000);
        limiter.record(5_000);
        assert_eq!(limiter.next_allowed(10_000), 61_000);
        assert_eq!(limiter.next_allowed(61_000), 61_000);
    }

    #[test]
    fn the_day_window_delays_past_the_minute_window() {
        let mut limiter = RateLimiter::new(10, 2);
        limiter.record(0);
        limiter.record(120_000);
        assert_eq!(limiter.next_allowed(200_000), DAY_MS);
        assert_eq!(limiter.next_allowed(DAY_MS + 1), DAY_MS + 1);
    }

    #[test]
    fn a_seeded_limiter_keeps_the_budget_of_a_previous_run() {
        let mut limiter = RateLimiter::new(10, 3);
        limiter.seed(&[5_000, 1_000]);
        limiter.record(9_000);
        assert_eq!(limiter.next_allowed(10_000), 1_000 + DAY_MS);
    }

    #[test]
    fn backoff_grows_then_caps_then_gives_up() {
        assert_eq!(retry_after(1, 10, 0), RetryDecision::RetryAt(5_000));
        assert_eq!(retry_after(2, 10, 0), RetryDecision::RetryAt(15_000));
        assert_eq!(retry_after(9, 10, 0), RetryDecision::RetryAt(900_000));
        assert_eq!(retry_after(10, 10, 0), RetryDecision::GiveUp);
    }

    #[test]
    fn cms_errors_are_classified_by_cause() {
        assert_eq!(classify_cms_error(21), ErrorClass::Permanent);
        assert_eq!(classify_cms_error(28), ErrorClass::Permanent);
        assert_eq!(classify_cms_error(304), ErrorClass::Permanent);
        for transient in [38, 41, 42, 331, 332, 500, 999] {
            assert_eq!(classify_cms_error(transient), ErrorClass::Transient);
        }
    }
}
