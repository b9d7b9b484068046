//! The outbox worker: one tokio task per SIM, draining that SIM's outbox
//! through an [`SmsSink`] (the modem driver's handle plugs in here) within
//! the rate limits, retrying transient failures with backoff.
//!
//! A message waits for its own proxy while the proxy is unhealthy: sending it
//! from another SIM would reveal a different number to the recipient.

use std::time::Duration;

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schedule::{ErrorClass, RateLimiter, RetryDecision, classify_cms_error, retry_after};
use crate::events::{Event, EventBus};
use crate::number::PhoneNumber;
use crate::store::{OutboxItem, Store, StoreError};

/// Why a send failed, as the sending side reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("send rejected: +CMS ERROR: {0}")]
    Cms(u16),
    #[error("send timed out")]
    Timeout,
    #[error("the modem is unplugged")]
    Unplugged,
}

impl SendError {
    fn class(&self) -> ErrorClass {
        match self {
            SendError::Cms(code) => classify_cms_error(*code),
            SendError::Timeout | SendError::Unplugged => ErrorClass::Transient,
        }
    }
}

/// The sending side of one SIM.
pub trait SmsSink: Send + Sync {
    /// Sends `text` to `to`; the message references of its parts on success.
    fn send_sms(
        &self,
        to: &PhoneNumber,
        text: &str,
        status_report: bool,
    ) -> impl Future<Output = Result<Vec<u8>, SendError>> + Send;
    /// Whether the SIM is registered and usable now.
    fn healthy(&self) -> bool;
}

/// How often an idle or unhealthy SIM's outbox is looked at again.
const POLL: Duration = Duration::from_secs(1);

/// The worker for one SIM.
pub struct OutboxWorker<S> {
    pub store: Store,
    pub sink: S,
    pub proxy_iccid: String,
    pub limiter: RateLimiter,
    pub max_attempts: u32,
    /// Wall-clock time at `started`; time then advances with tokio's clock,
    /// so tests can drive it with `tokio::time::pause()`.
    pub wall_at_start: OffsetDateTime,
    pub started: Instant,
    /// Notified when something is queued for this SIM, so a relay does not
    /// wait for the next poll.
    pub wake: Arc<Notify>,
    /// Cancelled at shutdown; a send in flight is finished first.
    pub stop: CancellationToken,
    pub events: EventBus,
    /// Where the limits come from while the daemon runs (a reload changes
    /// them); `None` keeps the limiter's own.
    pub config: Option<crate::config::LiveConfig>,
}

impl<S: SmsSink> OutboxWorker<S> {
    /// Waits `duration`, or less when woken or stopped.
    async fn pause(&self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.wake.notified() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Runs until stopped or the store's writer stops. The limiter starts
    /// from the sends of the last day that the store recorded, so a restart
    /// (or a crash loop) never resets a SIM's budget.
    pub async fn run(mut self) -> Result<(), StoreError> {
        let since = self.now() - time::Duration::days(1);
        let sent = self
            .store
            .recent_sends(self.proxy_iccid.clone(), since)
            .await?;
        if !sent.is_empty() {
            tracing::debug!(iccid = %self.proxy_iccid, sends = sent.len(), "rate limiter seeded from the send log");
        }
        self.limiter.seed(&sent);
        while !self.stop.is_cancelled() {
            if !self.sink.healthy() {
                self.pause(POLL).await;
                continue;
            }
            if let Some(config) = &self.config {
                let config = config.get();
                let per_day = config.pool_limits().of(&self.proxy_iccid).per_day;
                self.limiter
                    .set_limits(config.sms.per_minute, per_day.unwrap_or(config.sms.per_day));
            }
            let now = self.now_ms();
            let allowed = self.limiter.next_allowed(now);
            if allowed > now {
                let wait = u64::try_from(allowed - now).unwrap_or(0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = self.stop.cancelled() => {}
                }
                continue;
            }
            let Some(item) = self
                .store
                .claim_next_due(self.proxy_iccid.clone(), self.now())
                .await?
            else {
                self.pause(POLL).await;
                continue;
            };
            let to = match PhoneNumber::from_e164(&item.to_number) {
                Ok(to) => to,
                Err(error) => {
                    let reason = format!("invalid recipient: {error}");
                    self.fail(&item, reason).await?;
                    continue;
                }
            };
            self.limiter.record(self.now_ms());
            match self.sink.send_sms(&to, &item.body, true).await {
                Ok(refs) => {
                    self.store.mark_sent(item.id, refs, self.now()).await?;
                    let waited = self.now_ms().saturating_sub(item.created_ms).max(0);
                    crate::metrics::relay_latency(Duration::from_millis(waited as u64));
                }
                Err(error) => {
                    tracing::warn!(outbox = item.id, attempt = item.attempts, %error, "sms send failed");
                    let decision = match error.class() {
                        ErrorClass::Permanent => RetryDecision::GiveUp,
                        ErrorClass::Transient => {
                            retry_after(item.attempts, self.max_attempts, self.now_ms())
                        }
                    };
                    match decision {
                        RetryDecision::GiveUp => self.fail(&item, error.to_string()).await?,
                        RetryDecision::RetryAt(at) => {
                            let at = self.wall_at_start
                                + (time::Duration::milliseconds(at - self.start_ms()));
                            self.store
                                .mark_retry(item.id, error.to_string(), at)
                                .await?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail(&self, item: &OutboxItem, reason: String) -> Result<(), StoreError> {
        self.store
            .mark_failed(item.id, reason.clone(), self.now())
            .await?;
        self.events.publish(Event::MessageFailed {
            session_id: item.session_id.clone(),
            interaction_id: item.interaction_id,
            reason,
        });
        Ok(())
    }

    /// The worker's clock: monotonic from its start, plus the steps the
    /// daemon's clock followed since (see [`crate::clock`]), so rows queued
    /// by the relay and retries agree on the time.
    fn now(&self) -> OffsetDateTime {
        self.wall_at_start + self.started.elapsed() + crate::clock::stepped()
    }

    fn start_ms(&self) -> i64 {
        (self.wall_at_start.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn now_ms(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use time::macros::datetime;

    use super::*;
    use crate::store::NewOutbound;

    const PROXY: &str = "8944000000000000000";

    type SendResult = Result<Vec<u8>, SendError>;

    /// A sink that records what it sends and answers from a script
    /// (then `Ok` once the script is exhausted).
    #[derive(Clone, Default)]
    struct FakeSink {
        /// What was sent, with tokio's (paused, virtual) time of the send.
        sent: Arc<Mutex<Vec<(Instant, String)>>>,
        script: Arc<Mutex<VecDeque<SendResult>>>,
        unhealthy: Arc<AtomicBool>,
    }

    impl SmsSink for FakeSink {
        async fn send_sms(
            &self,
            _to: &PhoneNumber,
            text: &str,
            _status_report: bool,
        ) -> Result<Vec<u8>, SendError> {
            self.sent
                .lock()
                .unwrap()
                .push((Instant::now(), text.to_string()));
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(vec![1]))
        }

        fn healthy(&self) -> bool {
            !self.unhealthy.load(Ordering::SeqCst)
        }
    }

    fn start(
        dir: &tempfile::TempDir,
        sink: FakeSink,
        per_minute: u32,
    ) -> (Store, tokio::task::JoinHandle<Result<(), StoreError>>) {
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        let worker = OutboxWorker {
            store: store.clone(),
            sink,
            proxy_iccid: PROXY.into(),
            limiter: RateLimiter::new(per_minute, 1000),
            max_attempts: 3,
            wall_at_start: datetime!(2026-11-25 12:00 UTC),
            started: Instant::now(),
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
            events: EventBus::new(),
            config: None,
        };
        (store, tokio::spawn(worker.run()))
    }

    async fn queue(store: &Store, body: &str) {
        let new = NewOutbound {
            session_id: None,
            proxy_iccid: PROXY.into(),
            from_position: None,
            to: PhoneNumber::from_e164("+447911000002").unwrap(),
            body: body.into(),
        };
        store
            .queue_sms(new, datetime!(2026-11-25 12:00 UTC))
            .await
            .unwrap();
    }

    fn statuses(dir: &tempfile::TempDir) -> Vec<String> {
        let conn = rusqlite::Connection::open(dir.path().join("simmask.db")).unwrap();
        let mut statement = conn
            .prepare("SELECT status FROM interactions ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn texts(sink: &FakeSink) -> Vec<String> {
        sink.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Lets virtual time run until `done` holds. The store answers from its
    /// own thread, during which paused time may jump ahead, so tests wait for
    /// outcomes and compare the virtual times the sink recorded.
    async fn wait_until(mut done: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("condition never held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_retried_then_sent() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        sink.script
            .lock()
            .unwrap()
            .push_back(Err(SendError::Cms(42)));
        let (store, worker) = start(&dir, sink.clone(), 10);
        queue(&store, "hello").await;
        wait_until(|| statuses(&dir) == ["sent"]).await;
        worker.abort();
        assert_eq!(texts(&sink), ["hello", "hello"]);
        let sent = sink.sent.lock().unwrap().clone();
        assert!(sent[1].0 - sent[0].0 >= Duration::from_secs(5), "backoff");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        sink.script
            .lock()
            .unwrap()
            .push_back(Err(SendError::Cms(21)));
        let (store, worker) = start(&dir, sink.clone(), 10);
        queue(&store, "hello").await;
        wait_until(|| statuses(&dir) == ["failed"]).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        worker.abort();
        assert_eq!(texts(&sink), ["hello"]);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_give_up_after_max_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        for _ in 0..5 {
            sink.script
                .lock()
                .unwrap()
                .push_back(Err(SendError::Timeout));
        }
        let (store, worker) = start(&dir, sink.clone(), 10);
        queue(&store, "hello").await;
        wait_until(|| statuses(&dir) == ["failed"]).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        worker.abort();
        assert_eq!(texts(&sink).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_sim_holds_its_messages_until_it_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        sink.unhealthy.store(true, Ordering::SeqCst);
        let (store, worker) = start(&dir, sink.clone(), 10);
        queue(&store, "hello").await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(sink.sent.lock().unwrap().is_empty());
        assert_eq!(statuses(&dir), ["queued"]);
        sink.unhealthy.store(false, Ordering::SeqCst);
        wait_until(|| statuses(&dir) == ["sent"]).await;
        worker.abort();
        assert_eq!(texts(&sink), ["hello"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_worker_keeps_the_day_budget_of_the_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        let (store, worker) = start(&dir, sink.clone(), 10);
        for body in ["one", "two"] {
            queue(&store, body).await;
        }
        wait_until(|| statuses(&dir) == ["sent", "sent"]).await;
        worker.abort();
        let _ = worker.await;
        // The daemon starts again, the same day, with a budget of three a day.
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        let again = OutboxWorker {
            store: store.clone(),
            sink: sink.clone(),
            proxy_iccid: PROXY.into(),
            limiter: RateLimiter::new(10, 3),
            max_attempts: 3,
            wall_at_start: datetime!(2026-11-25 12:00 UTC) + Duration::from_secs(120),
            started: Instant::now(),
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
            events: EventBus::new(),
            config: None,
        };
        let worker = tokio::spawn(again.run());
        for body in ["three", "four"] {
            queue(&store, body).await;
        }
        wait_until(|| statuses(&dir).iter().filter(|s| *s == "sent").count() == 3).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            texts(&sink),
            ["one", "two", "three"],
            "the fourth waits for tomorrow"
        );
        assert_eq!(statuses(&dir)[3], "queued");
        worker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spreads_sends_over_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        let (store, worker) = start(&dir, sink.clone(), 2);
        for body in ["one", "two", "three"] {
            queue(&store, body).await;
        }
        wait_until(|| statuses(&dir) == ["sent", "sent", "sent"]).await;
        worker.abort();
        assert_eq!(texts(&sink), ["one", "two", "three"]);
        let sent = sink.sent.lock().unwrap().clone();
        assert!(sent[1].0 - sent[0].0 < Duration::from_secs(60));
        assert!(
            sent[2].0 - sent[0].0 >= Duration::from_secs(60),
            "third waits"
        );
    }
}
