//! The SMS relay of the whole bank, as the daemon runs it: what each SIM
//! receives is decoded, committed to the store (only then deleted from the
//! SIM) and its relay queued; delivery reports update interactions; one
//! outbox worker per SIM sends what is queued, from that SIM only.
//!
//! The hot path from a received message to its relayed send holds one
//! store job: the durable transaction that stores the message also claims
//! its relay when the SIM's worker is idle, and the worker gets it in memory
//! as soon as that transaction is on disk. The received message leaves the
//! SIM (`AT+CMGD`, or `AT+CNMA` for a direct delivery) after the relayed
//! send, so the line carries the send first. Delivery reports are written in
//! batches, off the path of received messages.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use tokio::sync::mpsc;

use super::accept::{InboundOutcome, InboundPart, accept_in, sweep_incomplete};
use super::intake::{Intake, intake};
use super::rails::Rules;
use super::schedule::RateLimiter;
use super::worker::{AfterSend, Handed, Handoff, OutboxWorker, SendError, SmsSink, handoff};
use crate::bank::{Bank, InboundSms};
use crate::config::LiveConfig;
use crate::events::{Event, EventBus};
use crate::modem::error::AtError;
use crate::number::PhoneNumber;
use crate::store::{DeliveryReport, DeliveryStatus, InboundTx, OutboxItem, Store, StoreError};

/// One SIM's outbox worker as the relay reaches it.
#[derive(Clone)]
struct WorkerLink {
    /// Something was queued: look at the store.
    wake: Arc<Notify>,
    /// A message claimed for the idle worker goes this way.
    handoff: Handoff,
}

/// The relay. Cheap to clone: a task per received message holds a copy.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    bank: Bank,
    events: EventBus,
    /// The policy and the SMS settings in force (a reload changes them).
    config: LiveConfig,
    /// Each SIM's outbox worker, by ICCID.
    wakers: Arc<Mutex<HashMap<String, WorkerLink>>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Cancelled at shutdown; each worker finishes its send in flight.
    workers_stop: CancellationToken,
    /// Direct status reports, written in batches.
    reports: mpsc::UnboundedSender<DeliveryReport>,
}

impl Relay {
    pub fn new(
        config: LiveConfig,
        store: Store,
        bank: Bank,
        events: EventBus,
        workers_stop: CancellationToken,
    ) -> Self {
        let (reports, pending) = mpsc::unbounded_channel();
        tokio::spawn(write_reports(store.clone(), events.clone(), pending));
        Self {
            store,
            bank,
            events,
            config,
            wakers: Arc::default(),
            workers: Arc::default(),
            workers_stop,
            reports,
        }
    }

    /// The relay's rules from the configuration in force (a reload changes
    /// them; they are a few clones, taken per message).
    fn rules(&self) -> Arc<Rules> {
        Arc::new(Rules::from_config(&self.config.get()))
    }

    /// Wakes the outbox worker of `iccid`, if it runs.
    pub fn wake(&self, iccid: &str) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = wakers.get(iccid) {
            link.wake.notify_one();
        }
    }

    /// Wakes every outbox worker (something was queued for several SIMs).
    pub fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.values().for_each(|link| link.wake.notify_one());
    }

    fn worker_link(&self, iccid: &str) -> Option<WorkerLink> {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.get(iccid).cloned()
    }

    /// Starts the outbox worker of `iccid` unless it runs; a SIM that comes
    /// back (on any port) keeps its worker.
    pub fn start_worker(&self, iccid: &str) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if wakers.contains_key(iccid) {
            return;
        }
        let wake = Arc::new(Notify::new());
        let (handoff, inbox) = handoff();
        wakers.insert(
            iccid.to_string(),
            WorkerLink {
                wake: wake.clone(),
                handoff,
            },
        );
        let settings = self.config.get().sms.clone();
        let rules = self.rules();
        let worker = OutboxWorker {
            store: self.store.clone(),
            sink: BankSink {
                bank: self.bank.clone(),
                iccid: iccid.to_string(),
            },
            proxy_iccid: iccid.to_string(),
            limiter: RateLimiter::new(
                settings.per_minute,
                rules.limits.of(iccid).per_day.unwrap_or(settings.per_day),
            ),
            max_attempts: settings.max_attempts,
            // The worker adds the clock's steps itself (its `now`).
            wall_at_start: crate::clock::now() - crate::clock::stepped(),
            started: tokio::time::Instant::now(),
            wake,
            stop: self.workers_stop.clone(),
            events: self.events.clone(),
            inbox,
            config: Some(self.config.clone()),
        };
        let task = tokio::spawn(
            async move {
                if let Err(error) = worker.run().await {
                    tracing::error!(%error, "outbox worker stopped");
                }
            }
            .instrument(crate::bank::sim_span(iccid)),
        );
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// The outbox workers started so far, for the caller to wait for their
    /// sends in flight at shutdown.
    pub fn take_workers(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// One PDU received on `iccid` (whose home region reads national
    /// numbers): queued for the store now, in the order the SIM delivered
    /// it, then awaited on its own task, so that messages from many SIMs
    /// are committed together (the store groups their fsyncs).
    pub fn inbound(&self, iccid: String, region: Option<String>, sms: InboundSms) {
        tokio::spawn(self.clone().receive(iccid, region, sms));
    }

    /// A status report delivered directly (`+CDS`): written with others
    /// in one store job, off the path of received messages.
    pub fn status_report(&self, iccid: &str, region: Option<&str>, pdu_hex: &str) {
        if let Ok(Intake::StatusReport {
            message_reference,
            status: Some(status),
        }) = intake(iccid, region, pdu_hex, None)
        {
            let _ = self.reports.send(DeliveryReport {
                proxy_iccid: iccid.to_string(),
                message_reference,
                status,
            });
        }
    }

    /// A status report stored on the SIM (`+CDSI`): read, recorded, then
    /// deleted.
    pub async fn status_report_stored(
        &self,
        iccid: &str,
        region: Option<&str>,
        storage: &str,
        index: u32,
    ) {
        let Some(handle) = self.bank.handle(iccid) else {
            return;
        };
        match handle.read_sms(storage, index).await {
            Ok(stored) => {
                let done = match intake(iccid, region, &stored.pdu_hex, None) {
                    Ok(Intake::StatusReport {
                        message_reference,
                        status,
                    }) => self.delivery_report(iccid, message_reference, status).await,
                    _ => true,
                };
                if done && let Err(error) = handle.delete_sms(storage, index).await {
                    tracing::warn!(%iccid, %error, "cannot delete a status report");
                }
            }
            Err(error) => tracing::warn!(%iccid, %error, "cannot read a status report"),
        }
    }

    /// Relays what arrived of multipart messages waiting longer than the
    /// reassembly timeout, marked incomplete.
    pub async fn sweep_incomplete(&self, now: OffsetDateTime) {
        let config = self.config.get();
        let timeout = i64::try_from(config.sms.reassembly_timeout_seconds).unwrap_or(i64::MAX);
        let cutoff = now - time::Duration::seconds(timeout);
        match sweep_incomplete(&self.store, cutoff, self.rules(), now).await {
            Ok(outcomes) if !outcomes.is_empty() => {
                tracing::info!(
                    messages = outcomes.len(),
                    "incomplete multipart messages relayed after the reassembly timeout"
                );
                for outcome in &outcomes {
                    if let Some(iccid) = self.iccid_of(outcome).await {
                        self.publish_rails(&iccid, outcome);
                    }
                }
                self.wake_all();
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "reassembly sweep failed"),
        }
    }

    /// One received PDU: committed to the store, then deleted from the SIM
    /// (after its relayed send when the worker took that over).
    /// Decoding and queueing happen now; the returned future waits for the
    /// commit and does the rest.
    fn receive(
        self,
        iccid: String,
        region: Option<String>,
        sms: InboundSms,
    ) -> impl Future<Output = ()> + Send + 'static {
        // Every SMSC timestamp is the network's time: the clock's evidence
        // when the appliance has no other.
        if let Some(network) = super::intake::network_time(&sms.pdu_hex) {
            crate::clock::record_network_time(
                crate::clock::Source::Smsc,
                network,
                &format!("sim {}", iccid_tail(&iccid)),
            );
        }
        let location = sms.location.clone();
        // Taken by whoever lets it leave the SIM: the worker after the
        // relayed send, or this task once the message is stored.
        let pending = Arc::new(Mutex::new(Some(sms)));
        let pdu_hex = lock(&pending)
            .as_ref()
            .map(|sms| sms.pdu_hex.clone())
            .unwrap_or_default();
        let stored: Pin<Box<dyn Future<Output = Stored> + Send>> = match intake(
            &iccid,
            region.as_deref(),
            &pdu_hex,
            location.clone(),
        ) {
            Ok(Intake::Part(part)) => Box::pin(self.accept(part, pending.clone())),
            Ok(Intake::StatusReport {
                message_reference,
                status,
            }) => {
                let iccid = iccid.clone();
                Box::pin(async move {
                    if self
                        .delivery_report(&iccid, message_reference, status)
                        .await
                    {
                        Stored::Yes
                    } else {
                        Stored::No
                    }
                })
            }
            Ok(Intake::Unroutable { reason }) => {
                tracing::info!(%iccid, %reason, "received SMS not relayed");
                Box::pin(std::future::ready(Stored::Yes))
            }
            Err(error) => {
                // Left on the SIM: a later version may read it; deleting
                // would lose it.
                tracing::warn!(%iccid, ?location, %error, "received PDU undecodable; left on the SIM");
                Box::pin(std::future::ready(Stored::No))
            }
        };
        async move {
            // The delete is the modem's work: the other SIMs' messages need
            // not wait for it. Handed to the worker, it follows the send.
            if stored.await == Stored::Yes {
                let sms = lock(&pending).take();
                if let Some(sms) = sms {
                    confirm(iccid, sms).await;
                }
            }
        }
    }

    /// Accepts a part, queued now; the future says once it is durably
    /// stored. When the SIM's worker is idle the same transaction claims
    /// the relay, and the writer thread hands it over as soon as the
    /// transaction has committed, without waiting for its fsync: a power
    /// cut before that fsync can only repeat the relayed send (the message
    /// is still on its SIM, read again after the restart), never lose it.
    /// `pending` leaves the SIM after the send, and only once the
    /// transaction is durable.
    fn accept(
        &self,
        part: InboundPart,
        pending: Arc<Mutex<Option<InboundSms>>>,
    ) -> impl Future<Output = Stored> + Send + 'static {
        let iccid = part.proxy_iccid.clone();
        let claimer = self.worker_link(&iccid).map(|link| link.handoff);
        let giver = claimer.clone();
        let rules = self.rules();
        let now = crate::clock::now();
        let confirm_iccid = iccid.clone();
        // Said once the transaction is durable; dropped if it is not.
        let (durable, on_durable) = tokio::sync::oneshot::channel::<()>();
        let accepted = self.store.inbound_durable_then(
            move |tx| accept_and_claim(tx, &part, &rules, now, claimer.as_ref()),
            move |result| {
                if let (Ok(accepted), Some(handoff)) = (result, giver)
                    && let Some(item) = accepted.claimed.take()
                {
                    let after_send = lock(&pending).take().map(|sms| {
                        Box::pin(async move {
                            if on_durable.await.is_ok() {
                                confirm(confirm_iccid, sms).await;
                            }
                        }) as AfterSend
                    });
                    handoff.hand(Handed { item, after_send });
                    accepted.handed = true;
                }
            },
        );
        let desk = self.clone();
        async move {
            match accepted.await {
                Ok(Accepted {
                    outcome,
                    session_id,
                    handed,
                    ..
                }) => {
                    let _ = durable.send(());
                    match &outcome {
                        InboundOutcome::Relayed { interaction_id } => {
                            if !handed {
                                desk.wake(&iccid);
                            }
                            desk.events.publish(Event::MessageRelayed {
                                session_id,
                                interaction_id: *interaction_id,
                                parts: 1,
                            });
                        }
                        InboundOutcome::AutoReplied { .. } | InboundOutcome::Forwarded { .. } => {
                            if !handed {
                                desk.wake(&iccid);
                            }
                        }
                        InboundOutcome::Dropped { reason, .. } => {
                            tracing::info!(%iccid, %reason, "inbound SMS not relayed");
                        }
                        // Duplicates, waiting parts and the rails' outcomes.
                        other => desk.publish_rails(&iccid, other),
                    }
                    tracing::debug!(%iccid, ?outcome, handed, "inbound SMS stored");
                    Stored::Yes
                }
                Err(error) => {
                    tracing::error!(%iccid, %error, "cannot store an inbound SMS; it stays on the SIM");
                    Stored::No
                }
            }
        }
    }

    /// The events of what the rails did with a message, and a wake-up for
    /// what they queued (confirmations, a front desk's first relay).
    fn publish_rails(&self, iccid: &str, outcome: &InboundOutcome) {
        let proxy_number = || {
            self.bank
                .sims()
                .into_iter()
                .find(|sim| sim.id == iccid)
                .and_then(|sim| sim.msisdn)
                .unwrap_or_default()
        };
        match outcome {
            InboundOutcome::Blocked {
                interaction_id,
                rule,
                stopped_session,
            } => {
                tracing::info!(%iccid, rule, "inbound SMS blocked by an intercept rule");
                let session_id = stopped_session.as_ref().map(|(id, _)| id.clone());
                self.events.publish(Event::MessageBlocked {
                    session_id,
                    interaction_id: *interaction_id,
                    rule: (*rule).to_string(),
                });
                if let Some((session_id, reason)) = stopped_session {
                    tracing::warn!(%iccid, session = %session_id, %reason, "loop detected: the session stops relaying");
                    self.events.publish(Event::LoopDetected {
                        session_id: session_id.clone(),
                        reason: reason.clone(),
                    });
                    self.events.publish(Event::SessionClosed {
                        session_id: session_id.clone(),
                    });
                }
            }
            InboundOutcome::OptedOut {
                sessions_closed, ..
            } => {
                tracing::info!(%iccid, sessions = sessions_closed.len(), "a participant opted out");
                for session_id in sessions_closed {
                    self.events.publish(Event::SessionClosed {
                        session_id: session_id.clone(),
                    });
                }
                self.events.publish(Event::OptedOut {
                    proxy_number: proxy_number(),
                    sessions_closed: sessions_closed.clone(),
                });
                self.wake(iccid);
            }
            InboundOutcome::OptedIn { .. } => {
                tracing::info!(%iccid, "a participant opted back in");
                self.events.publish(Event::OptedIn {
                    proxy_number: proxy_number(),
                });
                self.wake(iccid);
            }
            InboundOutcome::FrontDesk {
                interaction_id,
                session_id,
            } => {
                tracing::info!(%iccid, session = %session_id, "front desk: a stranger's session with the staff number opened");
                self.events.publish(Event::SessionOpened {
                    session_id: session_id.clone(),
                    proxy_number: proxy_number(),
                    mode: "both".into(),
                });
                self.events.publish(Event::MessageRelayed {
                    session_id: Some(session_id.clone()),
                    interaction_id: *interaction_id,
                    parts: 1,
                });
                self.wake(iccid);
            }
            InboundOutcome::HubRefused { reason, .. } => {
                tracing::info!(%iccid, %reason, "a hub's message not relayed; the hub is told why");
                self.wake(iccid);
            }
            _ => {}
        }
    }

    /// The proxy of a swept message's interaction, for its events.
    async fn iccid_of(&self, outcome: &InboundOutcome) -> Option<String> {
        self.store
            .interaction_proxy(outcome.interaction_id()?)
            .await
            .ok()
            .flatten()
    }

    async fn session_of(&self, interaction_id: i64) -> Option<String> {
        self.store
            .interaction_session(interaction_id)
            .await
            .ok()
            .flatten()
    }

    /// Records a delivery report; `false` when it could not be stored (the
    /// report then stays on the SIM).
    async fn delivery_report(
        &self,
        iccid: &str,
        message_reference: u8,
        status: Option<DeliveryStatus>,
    ) -> bool {
        let Some(status) = status else {
            return true;
        };
        match self
            .store
            .record_delivery_report(
                iccid.to_string(),
                message_reference,
                status,
                crate::clock::now(),
            )
            .await
        {
            Ok(Some(interaction_id)) => {
                let session_id = self.session_of(interaction_id).await;
                self.events.publish(match status {
                    DeliveryStatus::Delivered => Event::MessageDelivered {
                        session_id,
                        interaction_id,
                    },
                    DeliveryStatus::Failed => Event::MessageFailed {
                        session_id,
                        interaction_id,
                        reason: "the network could not deliver it".into(),
                    },
                });
                true
            }
            Ok(None) => true,
            Err(error) => {
                tracing::error!(%iccid, %error, "cannot record a delivery report");
                false
            }
        }
    }
}

/// One SIM as its outbox worker's sending side. The handle is looked up on
/// each send, so a SIM that comes back on another port keeps its worker.
struct BankSink {
    bank: Bank,
    iccid: String,
}

impl SmsSink for BankSink {
    async fn send_sms(
        &self,
        to: &PhoneNumber,
        text: &str,
        status_report: bool,
    ) -> Result<Vec<u8>, SendError> {
        let Some(handle) = self.bank.handle(&self.iccid) else {
            return Err(SendError::Unplugged);
        };
        handle
            .send_sms(to.e164(), text, status_report)
            .await
            .map_err(|error| match error {
                // 500 is 27.005's "unknown error": a verbose error without
                // its number is retried like one.
                AtError::Cms { code, .. } => SendError::Cms(code.unwrap_or(500)),
                AtError::Unplugged => SendError::Unplugged,
                _ => SendError::Timeout,
            })
    }

    fn healthy(&self) -> bool {
        self.bank.sim_healthy(&self.iccid)
    }
}

/// What became of a received PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Not stored: it stays on the SIM.
    No,
    /// Durably stored (or nothing to store): it may leave the SIM, unless
    /// the worker took that over with its relay.
    Yes,
}

/// What the relay's transaction for one received part did, with the send
/// it claimed.
pub struct Accepted {
    pub outcome: InboundOutcome,
    /// The session of a relayed message.
    pub session_id: Option<String>,
    /// The relayed send, claimed for the SIM's idle worker.
    pub claimed: Option<OutboxItem>,
    /// The claimed send went to the worker (set once it has, at commit).
    pub handed: bool,
}

/// The SIM's outbox worker as the relay's transaction sees it: whether it
/// may take the send the transaction queued.
pub trait Claimer {
    /// A hint, checked before the store is asked whether the send may go
    /// now.
    fn is_idle(&self) -> bool;
    /// Reserves the worker for the send; false when it is busy after all.
    fn reserve(&self) -> bool;
}

impl Claimer for Handoff {
    fn is_idle(&self) -> bool {
        Handoff::is_idle(self)
    }

    fn reserve(&self) -> bool {
        Handoff::reserve(self)
    }
}

/// A worker that is always free, as every SIM's is when a burst reaches an
/// idle bank: what the benches and tests claim with.
pub struct AlwaysIdle;

impl Claimer for AlwaysIdle {
    fn is_idle(&self) -> bool {
        true
    }

    fn reserve(&self) -> bool {
        true
    }
}

/// The relay's transaction for one received part: stored, routed and
/// queued ([`accept_in`]), and, when the SIM's worker is idle and nothing of
/// its SIM is due before it, the relayed send claimed for the worker in the
/// same transaction (the caller hands it over at commit). One store job
/// from the read to the send: `simmask bench relay` and the store bench
/// measure this.
pub fn accept_and_claim<C: Claimer>(
    tx: &mut InboundTx<'_>,
    part: &InboundPart,
    rules: &Rules,
    now: OffsetDateTime,
    worker: Option<&C>,
) -> Result<Accepted, StoreError> {
    let outcome = accept_in(tx, part, rules, now)?;
    let queued = match outcome {
        InboundOutcome::Relayed { interaction_id }
        | InboundOutcome::AutoReplied { interaction_id }
        | InboundOutcome::Forwarded { interaction_id } => Some(interaction_id),
        _ => None,
    };
    let session_id = match outcome {
        InboundOutcome::Relayed { interaction_id } => tx.interaction_session(interaction_id)?,
        _ => None,
    };
    let mut claimed = None;
    if let (Some(interaction), Some(worker)) = (queued, worker)
        && worker.is_idle()
        && let Some(row) = tx.claimable(interaction, now)?
        && worker.reserve()
    {
        claimed = tx.claim(row, now)?;
    }
    Ok(Accepted {
        outcome,
        session_id,
        claimed,
        handed: false,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes a stored message from the SIM (or acknowledges a direct one).
async fn confirm(iccid: String, sms: InboundSms) {
    if let Err(error) = sms.confirm_stored().await {
        // Stored but not deleted: it is read again later and recognised
        // as a duplicate.
        tracing::warn!(%iccid, %error, "cannot delete a stored SMS from the SIM");
    }
}

/// Writes direct status reports in batches: whatever arrived while the
/// last batch was written goes in the next, in one store job.
async fn write_reports(
    store: Store,
    events: EventBus,
    mut pending: mpsc::UnboundedReceiver<DeliveryReport>,
) {
    const BATCH: usize = 256;
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match pending.try_recv() {
                Ok(report) => batch.push(report),
                Err(_) => break,
            }
        }
        let statuses: Vec<DeliveryStatus> = batch.iter().map(|r| r.status).collect();
        match store
            .record_delivery_reports(batch, crate::clock::now())
            .await
        {
            Ok(found) => {
                for (status, found) in statuses.into_iter().zip(found) {
                    let Some((interaction_id, session_id)) = found else {
                        continue;
                    };
                    events.publish(match status {
                        DeliveryStatus::Delivered => Event::MessageDelivered {
                            session_id,
                            interaction_id,
                        },
                        DeliveryStatus::Failed => Event::MessageFailed {
                            session_id,
                            interaction_id,
                            reason: "the network could not deliver it".into(),
                        },
                    });
                }
            }
            Err(error) => {
                tracing::error!(%error, reports = statuses.len(), "cannot record delivery reports")
            }
        }
    }
}

/// The last four characters of an ICCID, as the log shows SIMs.
fn iccid_tail(iccid: &str) -> String {
    let skip = iccid.chars().count().saturating_sub(4);
    iccid.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::fixtures::{A, NOW, PROXY, number, store_with_session};

    /// The rules of an appliance configured with nothing but its ports.
    fn default_rules() -> Arc<Rules> {
        let config = Config::parse(
            "[api]\nlisten = \"127.0.0.1:8080\"\n[store]\npath = \"/unused.db\"\n\
             [modems]\nports = [\"/dev/unused\"]\n",
            "test",
        )
        .unwrap();
        Arc::new(Rules::from_config(&config))
    }

    /// Each table or index the relay's transaction touches is one page, a
    /// 4 KiB frame the commit writes to the log (and a checkpoint copies
    /// later): on a slow disk the writes are a quarter of the writer's time
    /// per message. A new index on the hot path shows up here.
    #[tokio::test]
    async fn a_relayed_message_writes_eleven_pages_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let log = rusqlite::Connection::open(dir.path().join("simmask.db")).unwrap();
        let rules = default_rules();
        let mut pages = Vec::new();
        for n in 0..3 {
            let emptied: i64 = log
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .unwrap();
            assert_eq!(emptied, 0, "the log was emptied");
            let part = InboundPart {
                proxy_iccid: PROXY.into(),
                sender: number(A),
                location: Some(("SM".into(), n)),
                pdu_hex: format!("0{n}AA"),
                concat: None,
                text: "on my way".into(),
            };
            let rules = rules.clone();
            let accepted = store
                .inbound_durable(move |tx| {
                    accept_and_claim(tx, &part, &rules, NOW, Some(&AlwaysIdle))
                })
                .await
                .unwrap();
            assert!(matches!(accepted.outcome, InboundOutcome::Relayed { .. }));
            assert!(accepted.session_id.is_some() && accepted.claimed.is_some());
            pages.push(
                log.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    row.get::<_, i64>(1)
                })
                .unwrap(),
            );
        }
        // The first message to a number also records it as one of the
        // SIM's recipients this month.
        assert_eq!(pages, [12, 11, 11]);
    }
}
