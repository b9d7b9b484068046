//! Turns the bank's events into decisions: SIMs join the pool and get an
//! outbox worker, received PDUs go through intake into the store (and only
//! then are deleted from the SIM), delivery reports update interactions.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pool::{BankSink, status_record};
use super::voice::{self, VoiceInbox};
use crate::bank::{Bank, BankEvent, InboundSms};
use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::masking::policy::OutOfSessionPolicy;
use crate::modem::actor::ModemEvent;
use crate::number::PhoneNumber;
use crate::sms::accept::{InboundOutcome, InboundPart, accept_inbound};
use crate::sms::intake::{Intake, intake};
use crate::sms::schedule::RateLimiter;
use crate::sms::worker::OutboxWorker;
use crate::store::{DeliveryStatus, ModemRecord, Store};

/// The wake-up of each SIM's outbox worker, by ICCID.
pub type Wakers = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// Wakes the worker of `iccid`, if it runs.
pub fn wake(wakers: &Wakers, iccid: &str) {
    if let Some(notify) = wakers.lock().ok().and_then(|w| w.get(iccid).cloned()) {
        notify.notify_one();
    }
}

pub struct Router {
    config: Arc<Config>,
    store: Store,
    bank: Bank,
    events: EventBus,
    wakers: Wakers,
    /// The SIM's own number, by ICCID, once known.
    numbers: HashMap<String, PhoneNumber>,
    workers: Vec<JoinHandle<()>>,
    workers_stop: CancellationToken,
    /// Each SIM's voice desk, by ICCID.
    voice: HashMap<String, VoiceInbox>,
    desk: IntakeDesk,
}

impl Router {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        bank: Bank,
        events: EventBus,
        workers_stop: CancellationToken,
    ) -> Self {
        let wakers = Wakers::default();
        Self {
            config: config.clone(),
            store: store.clone(),
            bank,
            events: events.clone(),
            wakers: wakers.clone(),
            numbers: HashMap::new(),
            workers: Vec::new(),
            workers_stop,
            voice: HashMap::new(),
            desk: IntakeDesk {
                store: store.clone(),
                events: events.clone(),
                wakers: wakers.clone(),
                policy: config.out_of_session.clone(),
            },
        }
    }

    pub fn wakers(&self) -> Wakers {
        self.wakers.clone()
    }

    /// Handles bank events until `stop`; returns the outbox workers so the
    /// caller can wait for their sends in flight.
    pub async fn run(
        mut self,
        mut bank_events: mpsc::Receiver<BankEvent>,
        stop: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                event = bank_events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            self.handle(event).await;
        }
        self.workers
    }

    async fn handle(&mut self, event: BankEvent) {
        match event {
            BankEvent::SimUp { iccid } => self.sim_up(iccid).await,
            BankEvent::SimDown { iccid, reason } => {
                tracing::warn!(%iccid, %reason, "SIM down");
                // Unplugged or reset, the modem lost its calls: the voice
                // desk records the call in progress as cut off.
                if let Some(desk) = self.voice.get(&iccid)
                    && desk.send(ModemEvent::Unplugged).await.is_err()
                {
                    tracing::warn!(%iccid, "the voice desk stopped");
                }
                self.save_status(&iccid).await;
                let imei = self
                    .bank
                    .sims()
                    .into_iter()
                    .find(|s| s.iccid == iccid)
                    .and_then(|s| s.imei)
                    .unwrap_or_default();
                self.events.publish(Event::ModemDown { imei, reason });
            }
            BankEvent::Health { iccid } => self.save_status(&iccid).await,
            BankEvent::Inbound { iccid, sms } => self.inbound(iccid, sms).await,
            BankEvent::Modem { iccid, event } => self.modem_event(iccid, event).await,
        }
    }

    async fn save_status(&self, iccid: &str) {
        if !self.numbers.contains_key(iccid) {
            return;
        }
        if let Some(status) = self.bank.sims().into_iter().find(|s| s.iccid == iccid)
            && let Err(error) = self.store.save_sim_status(status_record(&status)).await
        {
            tracing::error!(%iccid, %error, "cannot save the SIM's status");
        }
    }

    async fn sim_up(&mut self, iccid: String) {
        let Some(status) = self.bank.sims().into_iter().find(|s| s.iccid == iccid) else {
            return;
        };
        let configured = self.config.sim(&iccid).and_then(|s| s.msisdn.clone());
        let reported = status
            .msisdn
            .as_deref()
            .and_then(|n| PhoneNumber::from_e164(n).ok());
        // The configuration wins: SIMs often store a wrong or empty +CNUM.
        let Some(msisdn) = configured.or(reported) else {
            tracing::error!(
                %iccid,
                "the SIM does not know its own number: set it with [[sims]] iccid = \"{iccid}\", msisdn = \"+...\""
            );
            return;
        };
        let now = OffsetDateTime::now_utc();
        if let Some(handle) = self.bank.handle(&iccid)
            && let identity = handle.identity()
            && let Some(imei) = identity.imei.clone()
        {
            let modem = ModemRecord {
                imei,
                manufacturer: identity.manufacturer.clone(),
                model: identity.model.clone(),
                revision: identity.revision.clone(),
                profile: identity.profile.clone(),
                port: status.port.clone(),
            };
            if let Err(error) = self.store.upsert_modem(modem, now).await {
                tracing::error!(%iccid, %error, "cannot record the modem");
            }
        }
        if let Err(error) = self
            .store
            .upsert_sim(
                iccid.clone(),
                msisdn.clone(),
                status.imsi.clone().unwrap_or_default(),
                status.imei.clone(),
                now,
            )
            .await
        {
            tracing::error!(%iccid, %error, "cannot record the SIM");
            return;
        }
        self.numbers.insert(iccid.clone(), msisdn);
        self.save_status(&iccid).await;
        self.ensure_worker(&iccid);
        if !self.voice.contains_key(&iccid) {
            let desk = voice::spawn(
                iccid.clone(),
                self.home_region(&iccid),
                self.config.clone(),
                self.store.clone(),
                self.bank.clone(),
                self.events.clone(),
                self.workers_stop.clone(),
            );
            self.voice.insert(iccid.clone(), desk);
        }
        // Calls the modem kept from before (the daemon restarted mid-call):
        // the desk reads them and releases what nobody bridges any more.
        if let Some(desk) = self.voice.get(&iccid)
            && desk.send(ModemEvent::CallsChanged).await.is_err()
        {
            tracing::warn!(%iccid, "the voice desk stopped");
        }
        wake(&self.wakers, &iccid);
        tracing::info!(%iccid, port = %status.port, "SIM up");
        self.events.publish(Event::ModemUp {
            imei: status.imei.unwrap_or_default(),
            port: status.port,
        });
    }

    fn ensure_worker(&mut self, iccid: &str) {
        let Ok(mut wakers) = self.wakers.lock() else {
            return;
        };
        if wakers.contains_key(iccid) {
            return;
        }
        let wake = Arc::new(Notify::new());
        wakers.insert(iccid.to_string(), wake.clone());
        let sms = &self.config.sms;
        let worker = OutboxWorker {
            store: self.store.clone(),
            sink: BankSink::new(self.bank.clone(), iccid.to_string()),
            proxy_iccid: iccid.to_string(),
            limiter: RateLimiter::new(sms.per_minute, sms.per_day),
            max_attempts: sms.max_attempts,
            wall_at_start: OffsetDateTime::now_utc(),
            started: tokio::time::Instant::now(),
            wake,
            stop: self.workers_stop.clone(),
            events: self.events.clone(),
        };
        let iccid = iccid.to_string();
        self.workers.push(tokio::spawn(async move {
            if let Err(error) = worker.run().await {
                tracing::error!(%iccid, %error, "outbox worker stopped");
            }
        }));
    }

    fn home_region(&self, iccid: &str) -> Option<String> {
        self.numbers
            .get(iccid)
            .and_then(PhoneNumber::region)
            .or_else(|| self.config.numbers.default_region.clone())
    }

    /// One received PDU: queued for the store here, in the order the SIM
    /// delivered it, then awaited on its own task, so that messages from
    /// many SIMs are committed together (the store groups their fsyncs).
    async fn inbound(&mut self, iccid: String, sms: InboundSms) {
        let region = self.home_region(&iccid);
        tokio::spawn(self.desk.clone().inbound(iccid, region, sms));
    }

    async fn modem_event(&mut self, iccid: String, event: ModemEvent) {
        match event {
            ModemEvent::StatusReport { pdu_hex } => {
                let region = self.home_region(&iccid);
                if let Ok(Intake::StatusReport {
                    message_reference,
                    status,
                }) = intake(&iccid, region.as_deref(), &pdu_hex, None)
                {
                    self.desk
                        .delivery_report(&iccid, message_reference, status)
                        .await;
                }
            }
            ModemEvent::StatusReportStored { storage, index } => {
                let Some(handle) = self.bank.handle(&iccid) else {
                    return;
                };
                match handle.read_sms(&storage, index).await {
                    Ok(stored) => {
                        let region = self.home_region(&iccid);
                        let done = match intake(&iccid, region.as_deref(), &stored.pdu_hex, None) {
                            Ok(Intake::StatusReport {
                                message_reference,
                                status,
                            }) => {
                                self.desk
                                    .delivery_report(&iccid, message_reference, status)
                                    .await
                            }
                            _ => true,
                        };
                        if done && let Err(error) = handle.delete_sms(&storage, index).await {
                            tracing::warn!(%iccid, %error, "cannot delete a status report");
                        }
                    }
                    Err(error) => tracing::warn!(%iccid, %error, "cannot read a status report"),
                }
            }
            call @ (ModemEvent::Ring { .. } | ModemEvent::CallsChanged | ModemEvent::Busy) => {
                match self.voice.get(&iccid) {
                    Some(desk) => {
                        if desk.send(call).await.is_err() {
                            tracing::warn!(%iccid, "the voice desk stopped");
                        }
                    }
                    None => tracing::warn!(%iccid, "a call on a SIM not yet in the pool"),
                }
            }
            other => tracing::debug!(%iccid, event = ?other, "modem event"),
        }
    }
}

/// What handling a received message needs; cloned into a task per message.
#[derive(Clone)]
struct IntakeDesk {
    store: Store,
    events: EventBus,
    wakers: Wakers,
    policy: OutOfSessionPolicy,
}

impl IntakeDesk {
    /// One received PDU: committed to the store, then deleted from the SIM.
    /// Decoding and queueing happen now; the returned future waits for the
    /// commit and does the rest.
    fn inbound(
        self,
        iccid: String,
        region: Option<String>,
        sms: InboundSms,
    ) -> impl Future<Output = ()> + Send + 'static {
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
        let accepted = accept_inbound(
            &self.store,
            part,
            self.policy.clone(),
            OffsetDateTime::now_utc(),
        );
        let desk = self.clone();
        async move {
            match accepted.await {
                Ok(outcome) => {
                    match &outcome {
                        InboundOutcome::Relayed { interaction_id } => {
                            wake(&desk.wakers, &iccid);
                            let session_id = desk.session_of(*interaction_id).await;
                            desk.events.publish(Event::MessageRelayed {
                                session_id,
                                interaction_id: *interaction_id,
                                parts: 1,
                            });
                        }
                        InboundOutcome::AutoReplied { .. } | InboundOutcome::Forwarded { .. } => {
                            wake(&desk.wakers, &iccid);
                        }
                        InboundOutcome::Dropped { reason, .. } => {
                            tracing::info!(%iccid, %reason, "inbound SMS not relayed");
                        }
                        InboundOutcome::Duplicate | InboundOutcome::Waiting { .. } => {}
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

    async fn session_of(&self, interaction_id: i64) -> Option<String> {
        self.store
            .interaction_session(interaction_id)
            .await
            .ok()
            .flatten()
    }

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
                OffsetDateTime::now_utc(),
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
