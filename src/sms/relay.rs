//! The SMS relay of the whole bank, as the daemon runs it: what each SIM
//! receives is decoded, committed to the store (only then deleted from the
//! SIM) and its relay queued; delivery reports update interactions; one
//! outbox worker per SIM sends what is queued, from that SIM only.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::accept::{InboundOutcome, InboundPart, accept_inbound, sweep_incomplete};
use super::intake::{Intake, intake};
use super::rails::Rules;
use super::schedule::RateLimiter;
use super::worker::{OutboxWorker, SendError, SmsSink};
use crate::bank::{Bank, InboundSms};
use crate::config::LiveConfig;
use crate::events::{Event, EventBus};
use crate::modem::error::AtError;
use crate::number::PhoneNumber;
use crate::store::{DeliveryStatus, Store};

/// The relay. Cheap to clone: a task per received message holds a copy.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    bank: Bank,
    events: EventBus,
    /// The policy and the SMS settings in force (a reload changes them).
    config: LiveConfig,
    /// The wake-up of each SIM's outbox worker, by ICCID.
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Cancelled at shutdown; each worker finishes its send in flight.
    workers_stop: CancellationToken,
}

impl Relay {
    pub fn new(
        config: LiveConfig,
        store: Store,
        bank: Bank,
        events: EventBus,
        workers_stop: CancellationToken,
    ) -> Self {
        Self {
            store,
            bank,
            events,
            config,
            wakers: Arc::default(),
            workers: Arc::default(),
            workers_stop,
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
        if let Some(notify) = wakers.get(iccid) {
            notify.notify_one();
        }
    }

    /// Wakes every outbox worker (something was queued for several SIMs).
    pub fn wake_all(&self) {
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.values().for_each(|notify| notify.notify_one());
    }

    /// Starts the outbox worker of `iccid` unless it runs; a SIM that comes
    /// back (on any port) keeps its worker.
    pub fn start_worker(&self, iccid: &str) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if wakers.contains_key(iccid) {
            return;
        }
        let wake = Arc::new(Notify::new());
        wakers.insert(iccid.to_string(), wake.clone());
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

    /// A status report delivered directly (`+CDS`).
    pub async fn status_report(&self, iccid: &str, region: Option<&str>, pdu_hex: &str) {
        if let Ok(Intake::StatusReport {
            message_reference,
            status,
        }) = intake(iccid, region, pdu_hex, None)
        {
            self.delivery_report(iccid, message_reference, status).await;
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

    /// One received PDU: committed to the store, then deleted from the SIM.
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
        let stored: Pin<Box<dyn Future<Output = bool> + Send>> = match intake(
            &iccid,
            region.as_deref(),
            &sms.pdu_hex,
            sms.location.clone(),
        ) {
            Ok(Intake::Part(part)) => Box::pin(self.accept(part)),
            Ok(Intake::StatusReport {
                message_reference,
                status,
            }) => {
                let iccid = iccid.clone();
                Box::pin(async move {
                    self.delivery_report(&iccid, message_reference, status)
                        .await
                })
            }
            Ok(Intake::Unroutable { reason }) => {
                tracing::info!(%iccid, %reason, "received SMS not relayed");
                Box::pin(std::future::ready(true))
            }
            Err(error) => {
                // Left on the SIM: a later version may read it; deleting
                // would lose it.
                tracing::warn!(%iccid, location = ?sms.location, %error, "received PDU undecodable; left on the SIM");
                Box::pin(std::future::ready(false))
            }
        };
        async move {
            // The delete is the modem's work: the other SIMs' messages need
            // not wait for it.
            if stored.await
                && let Err(error) = sms.confirm_stored().await
            {
                // Stored but not deleted: it is read again later and
                // recognised as a duplicate.
                tracing::warn!(%iccid, %error, "cannot delete a stored SMS from the SIM");
            }
        }
    }

    /// Accepts a part, queued now; the future is `true` once it is durably
    /// stored.
    fn accept(&self, part: InboundPart) -> impl Future<Output = bool> + Send + 'static {
        let iccid = part.proxy_iccid.clone();
        let accepted = accept_inbound(&self.store, part, self.rules(), crate::clock::now());
        let desk = self.clone();
        async move {
            match accepted.await {
                Ok(outcome) => {
                    match &outcome {
                        InboundOutcome::Relayed { interaction_id } => {
                            desk.wake(&iccid);
                            let session_id = desk.session_of(*interaction_id).await;
                            desk.events.publish(Event::MessageRelayed {
                                session_id,
                                interaction_id: *interaction_id,
                                parts: 1,
                            });
                        }
                        InboundOutcome::AutoReplied { .. } | InboundOutcome::Forwarded { .. } => {
                            desk.wake(&iccid);
                        }
                        InboundOutcome::Dropped { reason, .. } => {
                            tracing::info!(%iccid, %reason, "inbound SMS not relayed");
                        }
                        // Duplicates, waiting parts and the rails' outcomes.
                        other => desk.publish_rails(&iccid, other),
                    }
                    tracing::debug!(%iccid, ?outcome, "inbound SMS stored");
                    true
                }
                Err(error) => {
                    tracing::error!(%iccid, %error, "cannot store an inbound SMS; it stays on the SIM");
                    false
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
        self.bank
            .sims()
            .iter()
            .any(|sim| sim.id == self.iccid && sim.healthy)
    }
}

/// The last four characters of an ICCID, as the log shows SIMs.
fn iccid_tail(iccid: &str) -> String {
    let skip = iccid.chars().count().saturating_sub(4);
    iccid.chars().skip(skip).collect()
}
