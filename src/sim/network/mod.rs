//! The virtual GSM network: the bank's SIMs (subscribers), the handsets
//! outside the bank, and the SMSC between them.
//!
//! One [`Network`] is shared by every virtual modem, the control API and the
//! background ticker. It is a cheap `Clone` around one `std::sync::Mutex`;
//! no lock is ever held across an `.await`. Modems reach their pty task
//! through a queue of unsolicited output plus a [`Notify`] that wakes it.
//!
//! Messages are never dropped: whatever cannot be delivered now (handset off,
//! SIM storage full, modem unplugged, unregistered or PIN-locked, `+CMT` not
//! acknowledged) waits in the SMSC's held queue and is offered again when
//! things change. The one exception is the SMSC's own rule: a message to a
//! handset still held when its submit's validity period ends is given up,
//! with a failed status report.

mod modem;
mod port;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::number::{PhoneNumber, redact};
use crate::pdu::{
    self, Address, ConcatReferences, Deliver, EncodedPdu, Encoding, Pdu, StatusReport, Submit,
    Timestamp, Tpdu, UserData,
};
use crate::profile::Profile;
use crate::sim::calls::{CallNetwork, CallTiming};
pub use crate::sim::faults::{Faults, FaultsUpdate, LockState, PUK, Registration, SimLock};
pub use crate::sim::handset::{Handset, HandsetMessage};
use crate::sim::identity::Identity;
use crate::sim::storage::{Stat, StoredMessage};
use crate::sim::textmode;
pub use crate::sim::trace::{Direction, Trace, TraceEntry};
pub use modem::{Cnmi, ModemSettings, ModemSlot, PortCommand};

/// The service centre every SIM of the bank is provisioned with (Ofcom's
/// drama range, so never a real number).
pub const SMSC: &str = "+447700900999";

/// How long a `+CMT` waits for `+CNMA` before the network takes it back and
/// stores it instead (3GPP TS 24.011 TR1M is 35-45 s; shorter here so tests
/// and operators see the fallback quickly).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// TS 23.040 §9.2.3.15 TP-Status: short message received by the SME.
const DELIVERED: u8 = 0x00;
/// TS 23.040 §9.2.3.15 TP-Status: permanent error, SM validity period expired.
const VALIDITY_EXPIRED: u8 = 0x46;

/// Why the network refused something asked through the control API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid number {0:?}: expected E.164 (+ and 1 to 15 digits)")]
    InvalidNumber(String),
    #[error("{0} is a SIM of the bank, not a handset")]
    NotAHandset(String),
    #[error("no handset {0} has used the network")]
    UnknownHandset(String),
    #[error("no modem with index {0}")]
    UnknownModem(usize),
    #[error("cannot encode the message: {0}")]
    Encode(String),
    #[error("invalid fault: {0}")]
    InvalidFault(String),
}

/// Why the network refused a submitted message; each maps to a `+CMS ERROR`
/// code (3GPP TS 27.005 §3.2.5: 0-127 are TS 24.011 Annex E-2 RP-causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitRefused {
    /// TS 24.011 E-2 cause 1: unassigned (unallocated) number.
    #[error("unassigned number")]
    Unassigned,
    /// TS 24.011 E-2 cause 21: short message transfer rejected (the
    /// destination is barred from receiving).
    #[error("short message transfer rejected")]
    Barred,
    /// TS 27.005 §3.2.5 code 331: no network service.
    #[error("no network service")]
    NoService,
    /// TS 27.005 §3.2.5 code 304: invalid PDU mode parameter.
    #[error("invalid PDU")]
    InvalidPdu,
    /// A code injected by the fault API.
    #[error("injected error {0}")]
    Injected(u16),
}

impl SubmitRefused {
    pub fn code(self) -> u16 {
        match self {
            Self::Unassigned => 1,
            Self::Barred => 21,
            Self::NoService => 331,
            Self::InvalidPdu => 304,
            Self::Injected(code) => code,
        }
    }
}

#[derive(Debug)]
struct AwaitingAck {
    delivery: ModemDelivery,
    deadline: Instant,
}

/// A status report owed to the SIM that submitted a message.
#[derive(Debug, Clone)]
struct ReportTo {
    modem: usize,
    mr: u8,
    recipient: Address,
    submitted: Timestamp,
}

/// One DELIVER part on its way to a bank modem.
#[derive(Debug, Clone)]
struct ModemDelivery {
    modem: usize,
    pdu: EncodedPdu,
    report: Option<ReportTo>,
}

/// One part on its way to a handset.
#[derive(Debug, Clone)]
struct HandsetDelivery {
    to: String,
    from: String,
    user_data: UserData,
    report: Option<ReportTo>,
    /// The submit's validity period ends here; a message still held then
    /// is given up (TS 23.040 §9.2.3.12).
    expires: Option<Instant>,
}

#[derive(Debug, Clone)]
enum Held {
    Modem(ModemDelivery),
    Handset(HandsetDelivery),
}

/// The state behind the lock.
#[derive(Debug)]
pub struct NetworkState {
    pub modems: Vec<ModemSlot>,
    pub handsets: BTreeMap<String, Handset>,
    held: VecDeque<Held>,
    concat: ConcatReferences,
    /// The call side; [`crate::sim::call_service`] drives it.
    pub calls: CallNetwork,
}

struct Inner {
    state: Mutex<NetworkState>,
    /// Wakes modem i's port task when it has unsolicited output.
    wakers: Vec<Arc<Notify>>,
    started: Instant,
}

/// The shared network. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("modems", &self.inner.wakers.len())
            .finish_non_exhaustive()
    }
}

fn now_timestamp() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

fn smsc_address() -> Address {
    Address::international(SMSC)
}

/// The number a TP address stands for: `+digits` when international,
/// the digits as given otherwise.
fn number_of(address: &Address) -> String {
    address.to_string()
}

impl Network {
    /// A network with these bank modems (profile and identity each), none
    /// plugged yet.
    pub fn new(modems: Vec<(Profile, Identity)>) -> Self {
        let wakers = modems.iter().map(|_| Arc::new(Notify::new())).collect();
        let mut calls = CallNetwork::new(CallTiming::default());
        for (index, (profile, identity)) in modems.iter().enumerate() {
            calls.add_modem(index, &identity.msisdn, &profile.voice);
        }
        let modems = modems
            .into_iter()
            .map(|(profile, identity)| ModemSlot::new(profile, identity))
            .collect();
        Network {
            inner: Arc::new(Inner {
                state: Mutex::new(NetworkState {
                    modems,
                    handsets: BTreeMap::new(),
                    held: VecDeque::new(),
                    concat: ConcatReferences::new(),
                    calls,
                }),
                wakers,
                started: Instant::now(),
            }),
        }
    }

    /// The lock; a panic elsewhere while holding it does not make the
    /// network unusable (the state is kept consistent per operation).
    pub fn lock(&self) -> MutexGuard<'_, NetworkState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn modem_count(&self) -> usize {
        self.inner.wakers.len()
    }

    /// Runs `f` on modem `index`'s record.
    pub fn with_modem<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut ModemSlot) -> T,
    ) -> Result<T, NetworkError> {
        let mut state = self.lock();
        let slot = state
            .modems
            .get_mut(index)
            .ok_or(NetworkError::UnknownModem(index))?;
        Ok(f(slot))
    }

    /// Applies a fault change; returns the faults now in force.
    pub fn update_faults(
        &self,
        index: usize,
        update: FaultsUpdate,
    ) -> Result<Faults, NetworkError> {
        // 27.007 §8.5: rssi is 0..31, or 99 when not known.
        if let Some(signal) = update.signal
            && signal > 31
            && signal != 99
        {
            return Err(NetworkError::InvalidFault(format!(
                "signal {signal}: +CSQ rssi is 0 to 31, or 99"
            )));
        }
        // A longer delay would only wedge the port (unplug and stop wait
        // for the answer to go out).
        const MAX_DELAY_MS: u64 = 60_000;
        if update.delay_ms.max(update.submit_delay_ms) > Some(MAX_DELAY_MS) {
            return Err(NetworkError::InvalidFault(format!(
                "delays are at most {MAX_DELAY_MS} ms"
            )));
        }
        let bad_pin = matches!(&update.sim_pin, Some(Some(pin))
            if !(4..=8).contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()));
        if bad_pin {
            return Err(NetworkError::InvalidFault(
                "sim_pin: a PIN is 4 to 8 digits (3GPP TS 31.101 §9.5)".into(),
            ));
        }
        let (faults, registration_changed) = self.with_modem(index, |slot| {
            if let Some(signal) = update.signal {
                slot.signal = signal;
            }
            let before = slot.faults.registration;
            let faults = &mut slot.faults;
            if let Some(noise) = update.noise {
                faults.noise = noise;
            }
            if let Some(n) = update.drop_responses {
                faults.drop_responses = n;
            }
            if let Some(ms) = update.delay_ms {
                faults.delay_ms = ms;
            }
            if let Some(ms) = update.submit_delay_ms {
                faults.submit_delay_ms = ms;
            }
            if let Some(code) = update.cms_error_on_submit {
                faults.cms_error_on_submit = code;
            }
            if let Some(registration) = update.registration {
                faults.registration = registration;
            }
            if let Some(flag) = update.urc_mid_response {
                faults.urc_mid_response = flag;
            }
            if let Some(pin) = update.sim_pin {
                slot.lock.pin = pin;
            }
            let faults = &slot.faults;
            (faults.clone(), before != faults.registration)
        })?;
        if registration_changed {
            self.announce_registration(index);
            if faults.registration.registered() {
                self.retry_held();
            }
        }
        Ok(faults)
    }

    /// `+CREG: <stat>` / `+CEREG: <stat>` when the modem asked for them.
    fn announce_registration(&self, index: usize) {
        let Ok((creg, cereg, stat)) = self.with_modem(index, |slot| {
            (
                slot.settings.creg,
                slot.settings.cereg,
                slot.faults.registration.stat(),
            )
        }) else {
            return;
        };
        let mut urc = Vec::new();
        if creg > 0 {
            urc.extend_from_slice(format!("\r\n+CREG: {stat}\r\n").as_bytes());
        }
        if cereg > 0 {
            urc.extend_from_slice(format!("\r\n+CEREG: {stat}\r\n").as_bytes());
        }
        if !urc.is_empty() {
            self.push_urc(index, urc);
        }
    }

    /// The bank SIM with this MSISDN, if any.
    pub fn subscriber(&self, number: &str) -> Option<usize> {
        self.lock()
            .modems
            .iter()
            .position(|slot| slot.identity.msisdn == number)
    }

    /// A handset's number, checked: E.164 and not a bank SIM.
    pub(crate) fn handset_number(&self, number: &str) -> Result<String, NetworkError> {
        let parsed = PhoneNumber::from_e164(number)
            .map_err(|_| NetworkError::InvalidNumber(number.to_string()))?;
        if self.subscriber(parsed.e164()).is_some() {
            return Err(NetworkError::NotAHandset(number.to_string()));
        }
        Ok(parsed.e164().to_string())
    }

    /// A handset sends `text` to `to` (a bank SIM or another handset);
    /// returns the number of parts the SMSC carries.
    pub fn handset_sms(&self, from: &str, to: &str, text: &str) -> Result<usize, NetworkError> {
        let from = self.handset_number(from)?;
        let to = PhoneNumber::from_e164(to)
            .map_err(|_| NetworkError::InvalidNumber(to.to_string()))?
            .e164()
            .to_string();
        self.lock().handsets.entry(from.clone()).or_default();
        let parts = match self.subscriber(&to) {
            Some(modem) => {
                let reference = self.lock().concat.next(&to);
                let pdus = pdu::encode_deliver(
                    &Address::international(&from),
                    text,
                    now_timestamp(),
                    reference,
                    Some(&smsc_address()),
                )
                .map_err(|e| NetworkError::Encode(e.to_string()))?;
                let count = pdus.len();
                tracing::debug!(from = %from, modem, parts = count, "handset sms to bank");
                for pdu in pdus {
                    self.offer(Held::Modem(ModemDelivery {
                        modem,
                        pdu,
                        report: None,
                    }));
                }
                count
            }
            None => {
                self.offer(Held::Handset(HandsetDelivery {
                    to,
                    from,
                    user_data: UserData::text(Encoding::Gsm7, text),
                    report: None,
                    expires: None,
                }));
                1
            }
        };
        Ok(parts)
    }

    /// Switches a handset on or off and bars or unbars it; switching on
    /// delivers what the SMSC held.
    pub fn set_handset_state(
        &self,
        number: &str,
        power_on: Option<bool>,
        barred: Option<bool>,
    ) -> Result<(bool, bool), NetworkError> {
        let number = self.handset_number(number)?;
        let state = {
            let mut state = self.lock();
            let handset = state.handsets.entry(number).or_default();
            if let Some(on) = power_on {
                handset.power_on = on;
            }
            if let Some(barred) = barred {
                handset.barred = barred;
            }
            (handset.power_on, handset.barred)
        };
        self.retry_held();
        Ok(state)
    }

    /// What a handset has received, oldest first.
    pub fn handset_messages(&self, number: &str) -> Result<Vec<HandsetMessage>, NetworkError> {
        let number = self.handset_number(number)?;
        Ok(self
            .lock()
            .handsets
            .get(&number)
            .map(|h| h.messages.clone())
            .unwrap_or_default())
    }

    /// A handset's power and barring, if it has used the network.
    pub fn handset_state(&self, number: &str) -> Result<(bool, bool), NetworkError> {
        let number = self.handset_number(number)?;
        self.lock()
            .handsets
            .get(&number)
            .map(|h| (h.power_on, h.barred))
            .ok_or(NetworkError::UnknownHandset(number))
    }

    /// Modem `index` submits one SMS-SUBMIT part; the answer is its
    /// message reference (`+CMGS: <mr>`).
    pub fn submit(&self, index: usize, submit: &Submit) -> Result<u8, SubmitRefused> {
        let (from, mr) = {
            let mut state = self.lock();
            let Some(slot) = state.modems.get_mut(index) else {
                return Err(SubmitRefused::NoService);
            };
            if let Some(code) = slot.faults.cms_error_on_submit {
                return Err(SubmitRefused::Injected(code));
            }
            if !slot.faults.registration.registered() || !slot.settings.radio_on {
                return Err(SubmitRefused::NoService);
            }
            // TS 23.040 §9.2.3.6: the mobile assigns TP-MR, one more each time.
            slot.next_mr = slot.next_mr.wrapping_add(1);
            (slot.identity.msisdn.clone(), slot.next_mr)
        };
        let to = number_of(&submit.destination);
        let report = submit.status_report_request.then(|| ReportTo {
            modem: index,
            mr,
            recipient: submit.destination.clone(),
            submitted: now_timestamp(),
        });
        if let Some(target) = self.subscriber(&to) {
            let reference = self.lock().concat.next(&to);
            let pdu = deliver_for(&from, &submit.user_data, submit.dcs, reference)
                .map_err(|_| SubmitRefused::InvalidPdu)?;
            tracing::debug!(modem = index, target, mr, "sms between bank SIMs");
            let count = pdu.len();
            for (i, pdu) in pdu.into_iter().enumerate() {
                self.offer(Held::Modem(ModemDelivery {
                    modem: target,
                    pdu,
                    // One report for the submit, on its last part.
                    report: if i + 1 == count { report.clone() } else { None },
                }));
            }
            return Ok(mr);
        }
        let Ok(number) = PhoneNumber::from_e164(&to) else {
            return Err(SubmitRefused::Unassigned);
        };
        let to = number.e164().to_string();
        {
            let mut state = self.lock();
            let handset = state.handsets.entry(to.clone()).or_default();
            if handset.barred {
                return Err(SubmitRefused::Barred);
            }
        }
        tracing::debug!(modem = index, to = %redact(&to), mr, "sms to handset");
        self.offer(Held::Handset(HandsetDelivery {
            to,
            from,
            user_data: submit.user_data.clone(),
            report,
            expires: submit
                .validity
                .and_then(|validity| validity.seconds())
                .map(|seconds| Instant::now() + Duration::from_secs(seconds)),
        }));
        Ok(mr)
    }

    /// `+CNMA`: the host acknowledged the oldest `+CMT`. False when nothing
    /// waited (27.005 §3.2.5 code 340).
    pub fn acknowledge(&self, index: usize) -> bool {
        let acked = {
            let mut state = self.lock();
            state
                .modems
                .get_mut(index)
                .and_then(|slot| slot.awaiting_ack.pop_front())
        };
        match acked {
            Some(waiting) => {
                if let Some(report) = waiting.delivery.report {
                    self.send_report(report, DELIVERED);
                }
                true
            }
            None => false,
        }
    }

    /// Offers every held message again (after a delete, a power-on, a plug).
    pub fn retry_held(&self) {
        let held: Vec<Held> = self.lock().held.drain(..).collect();
        for item in held {
            self.offer(item);
        }
    }

    /// `+CNMA=2`: the host refused the oldest `+CMT`; the network stores
    /// it instead. False when nothing waited.
    pub fn reject(&self, index: usize) -> bool {
        let taken = self
            .lock()
            .modems
            .get_mut(index)
            .and_then(|slot| slot.awaiting_ack.pop_front());
        match taken {
            Some(waiting) => {
                self.take_back(waiting.delivery);
                true
            }
            None => false,
        }
    }

    /// A direct delivery the host did not take: stored this time, whatever
    /// +CNMI says (27.005 §3.4.4: the message must not be lost), or held.
    fn take_back(&self, delivery: ModemDelivery) {
        let stored = store_received(&mut self.lock(), &delivery, true);
        match stored {
            Some(index) => {
                self.wake(index);
                if let Some(report) = delivery.report {
                    self.send_report(report, DELIVERED);
                }
            }
            None => self.lock().held.push_back(Held::Modem(delivery)),
        }
    }

    /// Periodic work: unacknowledged `+CMT`s past their deadline are taken
    /// back; held messages are offered again.
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    /// [`Network::tick`] at a given time: messages to handsets whose
    /// validity period has passed are given up, with a failed status report
    /// when one was asked for.
    pub fn tick_at(&self, now: Instant) {
        let given_up: Vec<HandsetDelivery> = {
            let mut state = self.lock();
            let (expired, kept): (VecDeque<Held>, VecDeque<Held>) = state.held.drain(..).partition(
                |held| matches!(held, Held::Handset(d) if d.expires.is_some_and(|at| at <= now)),
            );
            state.held = kept;
            expired
                .into_iter()
                .filter_map(|held| match held {
                    Held::Handset(delivery) => Some(delivery),
                    Held::Modem(_) => None,
                })
                .collect()
        };
        for delivery in given_up {
            tracing::debug!(to = %redact(&delivery.to), "validity period over; message given up");
            if let Some(report) = delivery.report {
                self.send_report(report, VALIDITY_EXPIRED);
            }
        }
        let mut expired = Vec::new();
        for slot in &mut self.lock().modems {
            while slot
                .awaiting_ack
                .front()
                .is_some_and(|waiting| waiting.deadline <= now)
            {
                if let Some(waiting) = slot.awaiting_ack.pop_front() {
                    expired.push(waiting.delivery);
                }
            }
        }
        for delivery in expired {
            self.take_back(delivery);
        }
        self.retry_held();
        self.call_tick();
    }

    /// Tries to deliver now; holds it if it cannot.
    fn offer(&self, item: Held) {
        let outcome = {
            let mut state = self.lock();
            match &item {
                Held::Modem(delivery) => deliver_to_modem(&mut state, delivery),
                Held::Handset(delivery) => deliver_to_handset(&mut state, delivery),
            }
        };
        match outcome {
            Offer::Delivered { report, wake } => {
                if let Some(index) = wake {
                    self.wake(index);
                }
                if let Some(report) = report {
                    self.send_report(report, DELIVERED);
                }
            }
            Offer::AwaitingAck { wake } => self.wake(wake),
            Offer::Held => self.lock().held.push_back(item),
        }
    }

    /// A status report to the SIM that asked, per its `+CNMI` ds.
    fn send_report(&self, report: ReportTo, status: u8) {
        let status = StatusReport {
            message_reference: report.mr,
            recipient: report.recipient.clone(),
            service_centre_timestamp: report.submitted,
            discharge_time: now_timestamp(),
            status,
            user_data: None,
        };
        let Ok(pdu) = pdu::encode_status_report(&status, Some(&smsc_address())) else {
            return;
        };
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(report.modem) else {
            return;
        };
        if !slot.plugged {
            return;
        }
        let settings = slot.settings.clone();
        match settings.cnmi.ds {
            1 => {
                let urc = if settings.text_mode {
                    let Ok(decoded) = pdu::decode_hex(&pdu.hex, true) else {
                        return;
                    };
                    format!(
                        "\r\n+CDS: {}\r\n",
                        textmode::cds_fields(&decoded, report.mr, settings.charset)
                    )
                } else {
                    format!("\r\n+CDS: {}\r\n{}\r\n", pdu.tpdu_length, pdu.hex)
                };
                slot.queue_urc(urc.into_bytes());
            }
            2 => {
                let storage = slot.storages.receive_storage();
                let name = storage.name.clone();
                if let Some(i) = storage.insert(StoredMessage {
                    stat: Stat::RecUnread,
                    pdu: pdu.hex,
                    tpdu_length: pdu.tpdu_length,
                }) {
                    slot.queue_urc(format!("\r\n+CDSI: \"{name}\",{i}\r\n").into_bytes());
                }
            }
            _ => return,
        }
        drop(state);
        self.wake(report.modem);
    }
}

enum Offer {
    Delivered {
        report: Option<ReportTo>,
        wake: Option<usize>,
    },
    AwaitingAck {
        wake: usize,
    },
    Held,
}

/// DELIVER PDUs carrying a submitted part on to another bank SIM: the same
/// user data (concatenation header included) when it fits one PDU, else
/// re-split under `reference` (a long text-mode submit).
fn deliver_for(
    from: &str,
    user_data: &UserData,
    dcs: u8,
    reference: u16,
) -> Result<Vec<EncodedPdu>, pdu::PduError> {
    let one = pdu::encode(&Pdu {
        smsc: Some(smsc_address()),
        tpdu: Tpdu::Deliver(Deliver {
            originator: Address::international(from),
            pid: 0,
            dcs,
            class: None,
            timestamp: now_timestamp(),
            more_messages_to_send: false,
            status_report_indication: false,
            reply_path: false,
            user_data: user_data.clone(),
        }),
    });
    match one {
        Ok(pdu) => Ok(vec![pdu]),
        Err(_) => pdu::encode_deliver(
            &Address::international(from),
            &user_data.text,
            now_timestamp(),
            reference,
            Some(&smsc_address()),
        ),
    }
}

/// Stores a received DELIVER in `<mem3>`, announcing it with `+CMTI` when
/// `announce` (or when +CNMI asks). Returns the modem index on success.
fn store_received(
    state: &mut NetworkState,
    delivery: &ModemDelivery,
    announce: bool,
) -> Option<usize> {
    let slot = state.modems.get_mut(delivery.modem)?;
    let storage = slot.storages.receive_storage();
    let name = storage.name.clone();
    let index = storage.insert(StoredMessage {
        stat: Stat::RecUnread,
        pdu: delivery.pdu.hex.clone(),
        tpdu_length: delivery.pdu.tpdu_length,
    })?;
    if announce {
        slot.queue_urc(format!("\r\n+CMTI: \"{name}\",{index}\r\n").into_bytes());
    }
    Some(delivery.modem)
}

fn deliver_to_modem(state: &mut NetworkState, delivery: &ModemDelivery) -> Offer {
    let Some(slot) = state.modems.get_mut(delivery.modem) else {
        return Offer::Held;
    };
    // A locked SIM is not attached to the network.
    let attached = slot.plugged
        && slot.settings.radio_on
        && slot.faults.registration.registered()
        && slot.lock.ready();
    if !attached {
        return Offer::Held;
    }
    let settings = slot.settings.clone();
    let cnmi = settings.cnmi;
    // Mode 0 buffers indications in the TA: the message goes to storage
    // and no URC is sent (27.005 §3.4.1).
    if cnmi.mt == 2 && cnmi.mode != 0 {
        let urc = if settings.text_mode {
            let Ok(decoded) = pdu::decode_hex(&delivery.pdu.hex, true) else {
                return Offer::Held;
            };
            format!(
                "\r\n+CMT: {}\r\n{}\r\n",
                textmode::cmt_header(&decoded, settings.charset, settings.csdh).unwrap_or_default(),
                textmode::data(&decoded, settings.charset)
            )
        } else {
            format!(
                "\r\n+CMT: ,{}\r\n{}\r\n",
                delivery.pdu.tpdu_length, delivery.pdu.hex
            )
        };
        slot.queue_urc(urc.into_bytes());
        if settings.csms == 1 {
            slot.awaiting_ack.push_back(AwaitingAck {
                delivery: delivery.clone(),
                deadline: Instant::now() + ACK_TIMEOUT,
            });
            return Offer::AwaitingAck {
                wake: delivery.modem,
            };
        }
        return Offer::Delivered {
            report: delivery.report.clone(),
            wake: Some(delivery.modem),
        };
    }
    let announce = matches!(cnmi.mt, 1 | 3) && cnmi.mode != 0;
    match store_received(state, delivery, announce) {
        Some(index) => Offer::Delivered {
            report: delivery.report.clone(),
            wake: Some(index),
        },
        // Memory capacity exceeded (TS 24.011 E-2 cause 22): the SMSC keeps it.
        None => Offer::Held,
    }
}

fn deliver_to_handset(state: &mut NetworkState, delivery: &HandsetDelivery) -> Offer {
    let handset = state.handsets.entry(delivery.to.clone()).or_default();
    if !handset.power_on {
        return Offer::Held;
    }
    handset.receive(&delivery.from, &delivery.user_data);
    Offer::Delivered {
        report: delivery.report.clone(),
        wake: None,
    }
}

#[cfg(test)]
mod tests;
