//! Each SIM's signal over the last day, sampled from the bank in memory: a
//! chart does not need it to survive a restart, and the store is spared a
//! write per SIM per minute.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::PoolView;

/// How long samples are kept.
const SPAN: time::Duration = time::Duration::hours(24);
/// How often the bank is sampled.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

type Series = VecDeque<(OffsetDateTime, Option<i32>)>;

/// Signal samples per ICCID. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SignalHistory {
    series: Arc<Mutex<HashMap<String, Series>>>,
}

impl SignalHistory {
    /// Records one sample per SIM the bank reports and forgets samples
    /// older than a day.
    pub fn record(&self, pool: &dyn PoolView, now: OffsetDateTime) {
        let statuses = pool.sim_statuses();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for status in statuses {
            series
                .entry(status.iccid)
                .or_default()
                .push_back((now, status.signal_dbm));
        }
        for samples in series.values_mut() {
            while samples.front().is_some_and(|(at, _)| now - *at > SPAN) {
                samples.pop_front();
            }
        }
        series.retain(|_, samples| !samples.is_empty());
    }

    /// `iccid`'s samples taken after `since`, oldest first.
    pub fn series(&self, iccid: &str, since: OffsetDateTime) -> Vec<(OffsetDateTime, Option<i32>)> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(iccid)
            .map(|samples| {
                samples
                    .iter()
                    .filter(|(at, _)| *at >= since)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Samples the pool every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn sample(self, pool: Arc<dyn PoolView>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.record(pool.as_ref(), crate::clock::now()),
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SimStatusRecord;

    struct OneSim(Mutex<Option<i32>>);

    impl PoolView for OneSim {
        fn sim_statuses(&self) -> Vec<SimStatusRecord> {
            vec![SimStatusRecord {
                iccid: "8944".into(),
                state: "up".into(),
                healthy: true,
                signal_dbm: *self.0.lock().unwrap(),
                registration: "home".into(),
                roaming: false,
                operator: "Virtual".into(),
                voice_method: None,
                port: String::new(),
                last_error: String::new(),
                updated_at: OffsetDateTime::UNIX_EPOCH,
            }]
        }

        fn ussd(
            &self,
            _: String,
            _: String,
        ) -> futures::future::BoxFuture<'static, Result<String, String>> {
            Box::pin(async { Err("no network".to_string()) })
        }
    }

    #[test]
    fn samples_are_kept_for_a_day() {
        let pool = OneSim(Mutex::new(Some(-70)));
        let history = SignalHistory::default();
        let start = time::macros::datetime!(2026-11-25 00:00 UTC);
        history.record(&pool, start);
        *pool.0.lock().unwrap() = None;
        history.record(&pool, start + time::Duration::hours(12));
        let all = history.series("8944", start - time::Duration::hours(1));
        assert_eq!(
            all,
            vec![
                (start, Some(-70)),
                (start + time::Duration::hours(12), None)
            ]
        );
        assert_eq!(
            history
                .series("8944", start + time::Duration::hours(1))
                .len(),
            1
        );
        assert!(history.series("other", start).is_empty());

        history.record(&pool, start + time::Duration::hours(25));
        let kept = history.series("8944", start - time::Duration::hours(1));
        assert_eq!(
            kept.len(),
            2,
            "the first sample is over a day old: {kept:?}"
        );
        assert_eq!(kept[0].0, start + time::Duration::hours(12));
    }
}
