//! The outbox worker: one tokio task per SIM, draining that SIM's outbox
//! through an [`SmsSink`] (the modem driver's handle plugs in here) within
//! the rate limits, retrying transient failures with backoff.
//!
//! A message waits for its own proxy while the proxy is unhealthy: sending it
//! from another SIM would reveal a different number to the recipient.
//!
//! The hot path: while the worker is idle, the inbound transaction that
//! queues a relay also claims it and, once that transaction is on disk,
//! hands it over in memory ([`Handoff`]), so the send starts without another
//! trip to the store. After each send one store job marks it sent and
//! claims the next due message of the SIM.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schedule::{ErrorClass, RateLimiter, RetryDecision, classify_cms_error, retry_after};
use crate::events::{Event, EventBus};
use crate::number::PhoneNumber;
use crate::store::{NextClaim, OutboxItem, Store, StoreError};

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

/// How often an unhealthy SIM's outbox is looked at again.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between tries of a write the store refused.
const MAX_PERSIST_WAIT: Duration = Duration::from_secs(5);

/// How often an idle SIM's outbox is looked at again at the latest.
/// Whatever is queued wakes the worker at once, and it sleeps until the
/// next retry falls due; this is only a safety net.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// How long a worker waits for a message the inbound transaction reserved
/// for it (its fsync) before it looks in the store instead.
const HANDOFF_WAIT: Duration = Duration::from_secs(5);

/// Work to do once a handed message has been sent (the received message's
/// delete from the SIM, or its `AT+CNMA`): after the send, so the SIM's
/// line carries the relayed message first.
pub type AfterSend = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A message claimed for the worker in the transaction that queued it.
pub struct Handed {
    pub item: OutboxItem,
    pub after_send: Option<AfterSend>,
}

const BUSY: u8 = 0;
const IDLE: u8 = 1;
const HANDING: u8 = 2;

/// The way from the inbound transaction to one SIM's idle worker. Only one
/// message is handed at a time: the worker, once idle, waits for the one
/// reserved for it before it looks at the store again, so the messages it
/// sends keep their order.
#[derive(Clone)]
pub struct Handoff {
    state: Arc<AtomicU8>,
    sender: mpsc::UnboundedSender<Handed>,
}

/// The worker's end of its [`Handoff`].
pub struct HandoffInbox {
    state: Arc<AtomicU8>,
    receiver: mpsc::UnboundedReceiver<Handed>,
}

/// A connected [`Handoff`] and [`HandoffInbox`].
pub fn handoff() -> (Handoff, HandoffInbox) {
    let state = Arc::new(AtomicU8::new(BUSY));
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        Handoff {
            state: state.clone(),
            sender,
        },
        HandoffInbox { state, receiver },
    )
}

impl Handoff {
    /// Whether the worker is idle now (a hint; [`Handoff::reserve`] decides).
    pub fn is_idle(&self) -> bool {
        self.state.load(Ordering::Acquire) == IDLE
    }

    /// Reserves the idle worker for one message, which must then be
    /// [`Handoff::hand`]ed to it. False when the worker is busy.
    pub fn reserve(&self) -> bool {
        self.state
            .compare_exchange(IDLE, HANDING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Hands the reserved message over.
    pub fn hand(&self, handed: Handed) {
        // A stopped worker leaves the row claimed: requeued at the next start.
        let _ = self.sender.send(handed);
    }
}

impl HandoffInbox {
    /// A message handed over before the worker went busy, if any.
    fn try_take(&mut self) -> Option<Handed> {
        self.receiver.try_recv().ok()
    }

    /// Leaves the idle state; if a message was reserved meanwhile, waits
    /// for it (bounded) and returns it.
    async fn leave_idle(&mut self) -> Option<Handed> {
        if self
            .state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return None;
        }
        let handed = tokio::time::timeout(HANDOFF_WAIT, self.receiver.recv())
            .await
            .ok()
            .flatten();
        self.state.store(BUSY, Ordering::Release);
        handed
    }
}

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
    /// Messages claimed for this worker by the inbound transaction.
    pub inbox: HandoffInbox,
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

    /// Nothing is due: waits idle until `next_due` (or woken), taking a
    /// message handed over meanwhile.
    async fn idle(&mut self, next_due: Option<OffsetDateTime>) -> Option<Handed> {
        let wait = next_due
            .map(|due| {
                let wait = due - self.now();
                Duration::try_from(wait).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        self.inbox.state.store(IDLE, Ordering::Release);
        tokio::select! {
            handed = self.inbox.receiver.recv() => {
                self.inbox.state.store(BUSY, Ordering::Release);
                return handed;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = self.wake.notified() => {}
            _ = self.stop.cancelled() => {}
        }
        self.inbox.leave_idle().await
    }

    /// Runs until stopped or the store's writer stops. The limiter starts
    /// from the sends of the last day that the store recorded, so a restart
    /// (or a crash loop) never resets a SIM's budget.
    pub async fn run(mut self) -> Result<(), StoreError> {
        let since = self.now() - time::Duration::days(1);
        let sent = self
            .persist(|| self.store.recent_sends(self.proxy_iccid.clone(), since))
            .await?;
        if !sent.is_empty() {
            tracing::debug!(iccid = %self.proxy_iccid, sends = sent.len(), "rate limiter seeded from the send log");
        }
        self.limiter.seed(&sent);
        // Claimed and not yet sent, with what follows its send.
        let mut next: Option<Handed> = None;
        // What the last claim found, when it found nothing due.
        let mut nothing_due: Option<NextClaim> = None;
        while !self.stop.is_cancelled() {
            let handed = match next.take().or_else(|| self.inbox.try_take()) {
                Some(handed) => handed,
                None => {
                    if !self.sink.healthy() {
                        self.pause(POLL).await;
                        continue;
                    }
                    if self.wait_for_the_rate_limit().await {
                        continue;
                    }
                    let claim = match nothing_due.take() {
                        Some(known) => known,
                        None => match self
                            .store
                            .claim_next(self.proxy_iccid.clone(), self.now())
                            .await
                        {
                            // A full disk, a database away: nothing is claimed
                            // until the store takes writes again.
                            Err(error) if error.is_transient() => {
                                tracing::debug!(iccid = %self.proxy_iccid, %error, "outbox: the store refuses writes");
                                self.pause(POLL).await;
                                continue;
                            }
                            other => other?,
                        },
                    };
                    match claim {
                        NextClaim::Claimed(item) => Handed {
                            item,
                            after_send: None,
                        },
                        NextClaim::NothingDue { next_due } => {
                            next = self.idle(next_due).await;
                            continue;
                        }
                    }
                }
            };
            // A claimed message still keeps to the rate limit.
            let mut stopped = false;
            while self.wait_for_the_rate_limit().await {
                if self.stop.is_cancelled() {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                next = Some(handed);
                break;
            }
            match self.send(handed).await? {
                Some(NextClaim::Claimed(item)) => {
                    next = Some(Handed {
                        item,
                        after_send: None,
                    })
                }
                found => nothing_due = found,
            }
        }
        // Stopped: what was claimed and not sent goes back to the queue.
        let mut unsent: Vec<i64> = next.into_iter().map(|handed| handed.item.id).collect();
        while let Some(handed) = self.inbox.try_take() {
            unsent.push(handed.item.id);
        }
        if !unsent.is_empty() {
            self.store.unclaim(unsent).await?;
        }
        Ok(())
    }

    /// Sleeps until the rate limit allows a send (or the worker stops);
    /// true when it had to wait.
    async fn wait_for_the_rate_limit(&mut self) -> bool {
        if let Some(config) = &self.config {
            let config = config.get();
            let per_day = config.pool_limits().of(&self.proxy_iccid).per_day;
            self.limiter
                .set_limits(config.sms.per_minute, per_day.unwrap_or(config.sms.per_day));
        }
        let now = self.now_ms();
        let allowed = self.limiter.next_allowed(now);
        if allowed <= now {
            return false;
        }
        let mut wait = Duration::from_millis(u64::try_from(allowed - now).unwrap_or(0));
        if self.config.is_some() {
            // A reload may raise the limits: look again soon.
            wait = wait.min(POLL);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.cancelled() => {}
        }
        true
    }

    /// Sends one claimed message and records the outcome; on success the
    /// same store job claims the SIM's next due message (or says when the
    /// next falls due), returned.
    async fn send(&mut self, handed: Handed) -> Result<Option<NextClaim>, StoreError> {
        let Handed { item, after_send } = handed;
        let to = match PhoneNumber::from_e164(&item.to_number) {
            Ok(to) => to,
            Err(error) => {
                let reason = format!("invalid recipient: {error}");
                self.fail(&item, reason).await?;
                finish(after_send);
                return Ok(None);
            }
        };
        self.limiter.record(self.now_ms());
        let reports = self
            .config
            .as_ref()
            .is_none_or(|config| config.get().sms.delivery_reports);
        let result = self.sink.send_sms(&to, &item.body, reports).await;
        // The received message is committed; it leaves the SIM now.
        finish(after_send);
        match result {
            Ok(refs) => {
                let now_ms = self.now_ms();
                let waited = now_ms.saturating_sub(item.created_ms).max(0);
                crate::metrics::relay_latency(Duration::from_millis(waited as u64));
                let more = self.sink.healthy() && self.limiter.next_allowed(now_ms) <= now_ms;
                if more {
                    // Sent: that must be recorded, or a restart would send
                    // it again; a full disk is waited out.
                    let next = self
                        .persist(|| {
                            self.store.mark_sent_and_claim_next(
                                item.id,
                                refs.clone(),
                                self.proxy_iccid.clone(),
                                self.now(),
                            )
                        })
                        .await?;
                    return Ok(Some(next));
                }
                self.persist(|| self.store.mark_sent(item.id, refs.clone(), self.now()))
                    .await?;
            }
            Err(error) => {
                tracing::warn!(outbox = item.id, session = %item.session_id.as_deref().unwrap_or("-"), attempt = item.attempts, %error, "sms send failed");
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
                        self.persist(|| self.store.mark_retry(item.id, error.to_string(), at))
                            .await?
                    }
                }
            }
        }
        Ok(None)
    }

    /// Runs a store write again, with a growing wait, while the disk
    /// refuses it (full, failing) or the database does not answer: what it
    /// records has happened. Gives up only at shutdown.
    async fn persist<R, F, Fut>(&self, mut write: F) -> Result<R, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, StoreError>>,
    {
        let mut wait = Duration::from_millis(250);
        let mut warned = false;
        loop {
            match write().await {
                Err(error) if error.is_transient() && !self.stop.is_cancelled() => {
                    if !warned {
                        tracing::warn!(iccid = %self.proxy_iccid, %error, "outbox: cannot record a send; trying again until the store writes");
                        warned = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => {}
                    }
                    wait = (wait * 2).min(MAX_PERSIST_WAIT);
                }
                other => return other,
            }
        }
    }

    async fn fail(&self, item: &OutboxItem, reason: String) -> Result<(), StoreError> {
        self.persist(|| self.store.mark_failed(item.id, reason.clone(), self.now()))
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

/// Starts what follows a send, without waiting for it.
fn finish(after_send: Option<AfterSend>) {
    if let Some(after_send) = after_send {
        tokio::spawn(after_send);
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
            inbox: handoff().1,
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
            inbox: handoff().1,
            config: None,
        };
        let restarted = Instant::now();
        let worker = tokio::spawn(again.run());
        for body in ["three", "four"] {
            queue(&store, body).await;
        }
        // Paused time jumps to the worker's next timer whenever every task
        // waits (for the store's threads too), so the day is judged by the
        // virtual times of the sends, not by when the test looks.
        tokio::time::sleep(Duration::from_secs(2 * 24 * 3600)).await;
        // The worker may still be claiming "four" from the store when the
        // test's own timer ends.
        wait_until(|| texts(&sink).len() == 4).await;
        worker.abort();
        assert_eq!(texts(&sink), ["one", "two", "three", "four"]);
        let sent = sink.sent.lock().unwrap().clone();
        let after_restart = |text: &str| {
            sent.iter()
                .find(|(_, sent)| sent == text)
                .map(|(at, _)| at.duration_since(restarted))
                .unwrap()
        };
        assert!(after_restart("three") < Duration::from_secs(60));
        // "one" and "two" went at 12:00, the restart was at 12:02: the budget
        // of three a day frees a send when they are a day old.
        assert!(
            after_restart("four") >= Duration::from_secs(24 * 3600 - 120),
            "the fourth waits for tomorrow: {:?}",
            after_restart("four")
        );
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

    #[tokio::test(start_paused = true)]
    async fn a_message_handed_to_the_idle_worker_is_sent_before_what_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FakeSink::default();
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        let (giver, inbox) = handoff();
        let worker = OutboxWorker {
            store: store.clone(),
            sink: sink.clone(),
            proxy_iccid: PROXY.into(),
            limiter: RateLimiter::new(10, 1000),
            max_attempts: 3,
            wall_at_start: datetime!(2026-11-25 12:00 UTC),
            started: Instant::now(),
            wake: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
            events: EventBus::new(),
            inbox,
            config: None,
        };
        let task = tokio::spawn(worker.run());
        // Due an hour after the worker's clock: only the handoff brings it.
        let later = datetime!(2026-11-25 13:00 UTC);
        let new = NewOutbound {
            session_id: None,
            proxy_iccid: PROXY.into(),
            from_position: None,
            to: PhoneNumber::from_e164("+447911000002").unwrap(),
            body: "handed".into(),
        };
        store.queue_sms(new, later).await.unwrap();
        let item = store
            .claim_next_due(PROXY.into(), later)
            .await
            .unwrap()
            .unwrap();
        // Reserved as the inbound transaction does, when the worker is idle.
        wait_until(|| giver.reserve()).await;
        assert!(!giver.reserve(), "one message at a time");
        let followed = Arc::new(Mutex::new(None));
        let (seen, sent) = (followed.clone(), sink.sent.clone());
        giver.hand(Handed {
            item,
            after_send: Some(Box::pin(async move {
                *seen.lock().unwrap() = Some(sent.lock().unwrap().len());
            })),
        });
        wait_until(|| statuses(&dir) == ["sent"]).await;
        wait_until(|| followed.lock().unwrap().is_some()).await;
        task.abort();
        assert_eq!(texts(&sink), ["handed"]);
        assert_eq!(*followed.lock().unwrap(), Some(1), "after the send");
    }
}
