//! Wiring: hands each of the bank's events to the part of the product it
//! concerns. A SIM that comes up is recorded in the store and gets its
//! outbox worker (the relay) and its voice desk; received PDUs and delivery
//! reports go to the relay ([`crate::sms::relay`]); call events to the SIM's
//! voice desk ([`crate::voice::desk`]).

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pool::{status_record, storage_record};
use crate::bank::{Bank, BankEvent, InboundSms};
use crate::config::LiveConfig;
use crate::events::{Event, EventBus};
use crate::modem::actor::ModemEvent;
use crate::number::PhoneNumber;
use crate::sms::relay::Relay;
use crate::store::{ModemRecord, Store};
use crate::voice::CallDesks;
use crate::voice::desk::{self as voice, DeskContext, VoiceInbox};

pub struct Dispatch {
    config: LiveConfig,
    store: Store,
    bank: Bank,
    events: EventBus,
    relay: Relay,
    /// The SIM's own number, by SIM id (its ICCID, else `imsi:<IMSI>`),
    /// once known, with its home region (read once: the numbering plan's
    /// lookup cost more than the rest of routing a message).
    numbers: HashMap<String, (PhoneNumber, Option<String>)>,
    workers_stop: CancellationToken,
    /// Each SIM's voice desk, by SIM id.
    voice: HashMap<String, VoiceInbox>,
    /// The desks as the API reaches them.
    desks: CallDesks,
}

impl Dispatch {
    pub fn new(
        config: LiveConfig,
        store: Store,
        bank: Bank,
        events: EventBus,
        desks: CallDesks,
        workers_stop: CancellationToken,
    ) -> Self {
        let relay = Relay::new(
            config.clone(),
            store.clone(),
            bank.clone(),
            events.clone(),
            workers_stop.clone(),
        );
        Self {
            config,
            store,
            bank,
            events,
            relay,
            numbers: HashMap::new(),
            workers_stop,
            voice: HashMap::new(),
            desks,
        }
    }

    /// The relay, for the periodic sweeps.
    pub fn relay(&self) -> Relay {
        self.relay.clone()
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
        self.relay.take_workers()
    }

    async fn handle(&mut self, event: BankEvent) {
        match event {
            BankEvent::SimUp { sim: iccid } => self.sim_up(iccid).await,
            BankEvent::SimDown { sim: iccid, reason } => {
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
                    .find(|s| s.id == iccid)
                    .and_then(|s| s.imei)
                    .unwrap_or_default();
                self.events.publish(Event::ModemDown { imei, reason });
            }
            BankEvent::Health { sim: iccid } => self.save_status(&iccid).await,
            BankEvent::Inbound { sim: iccid, sms } => self.inbound(iccid, sms),
            BankEvent::Modem { sim: iccid, event } => self.modem_event(iccid, event).await,
        }
    }

    async fn save_status(&self, iccid: &str) {
        if !self.numbers.contains_key(iccid) {
            return;
        }
        let Some(status) = self.bank.sims().into_iter().find(|s| s.id == iccid) else {
            return;
        };
        let record = status_record(&self.config.get(), &self.bank, &status);
        if let Err(error) = self.store.save_sim_status(record).await {
            tracing::error!(%iccid, %error, "cannot save the SIM's status");
        }
        if let Some(storage) = storage_record(&status)
            && let Err(error) = self
                .store
                .save_sim_storage(iccid.to_string(), storage)
                .await
        {
            tracing::error!(%iccid, %error, "cannot save the SIM's storage fill");
        }
    }

    async fn sim_up(&mut self, iccid: String) {
        let Some(status) = self.bank.sims().into_iter().find(|s| s.id == iccid) else {
            return;
        };
        let configured = self
            .config
            .get()
            .sim_of(&iccid, status.iccid.as_deref(), status.imsi.as_deref())
            .and_then(|s| s.msisdn.clone());
        let reported = status
            .msisdn
            .as_deref()
            .and_then(|n| PhoneNumber::from_e164(n).ok());
        // The configuration wins: SIMs often store a wrong or empty +CNUM.
        let Some(msisdn) = configured.or(reported) else {
            let key = match (&status.iccid, &status.imsi) {
                (Some(iccid), _) => format!("iccid = \"{iccid}\""),
                (None, Some(imsi)) => format!("imsi = \"{imsi}\""),
                (None, None) => format!("iccid = \"{iccid}\""),
            };
            tracing::error!(
                sim = %iccid,
                "the SIM does not know its own number: set it with [[sims]] {key}, msisdn = \"+...\""
            );
            return;
        };
        let now = crate::clock::now();
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
        let region = msisdn.region();
        self.numbers.insert(iccid.clone(), (msisdn, region));
        self.save_status(&iccid).await;
        self.relay.start_worker(&iccid);
        if !self.voice.contains_key(&iccid) {
            let context = DeskContext {
                config: self.config.clone(),
                store: self.store.clone(),
                bank: self.bank.clone(),
                events: self.events.clone(),
                desks: self.desks.clone(),
            };
            let desk = voice::spawn(
                iccid.clone(),
                self.home_region(&iccid),
                context,
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
        self.relay.wake(&iccid);
        tracing::info!(%iccid, port = %status.port, "SIM up");
        self.events.publish(Event::ModemUp {
            imei: status.imei.unwrap_or_default(),
            port: status.port,
        });
    }

    fn home_region(&self, iccid: &str) -> Option<String> {
        self.numbers
            .get(iccid)
            .and_then(|(_, region)| region.clone())
            .or_else(|| self.config.get().numbers.default_region.clone())
    }

    /// One received PDU, handed to the relay in the order the SIM
    /// delivered it.
    fn inbound(&self, iccid: String, sms: InboundSms) {
        let region = self.home_region(&iccid);
        self.relay.inbound(iccid, region, sms);
    }

    async fn modem_event(&mut self, iccid: String, event: ModemEvent) {
        match event {
            ModemEvent::StatusReport { pdu_hex } => {
                let region = self.home_region(&iccid);
                self.relay
                    .status_report(&iccid, region.as_deref(), &pdu_hex);
            }
            ModemEvent::StatusReportStored { storage, index } => {
                let region = self.home_region(&iccid);
                self.relay
                    .status_report_stored(&iccid, region.as_deref(), &storage, index)
                    .await;
            }
            call @ (ModemEvent::Ring { .. }
            | ModemEvent::CallsChanged
            | ModemEvent::Busy
            | ModemEvent::Dtmf { .. }) => match self.voice.get(&iccid) {
                Some(desk) => {
                    if desk.send(call).await.is_err() {
                        tracing::warn!(%iccid, "the voice desk stopped");
                    }
                }
                None => tracing::warn!(%iccid, "a call on a SIM not yet in the pool"),
            },
            other => tracing::debug!(%iccid, event = ?other, "modem event"),
        }
    }
}
