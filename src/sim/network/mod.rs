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

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
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
use crate::sim::storage::{Stat, Storages, StoredMessage};
use crate::sim::textmode::{self, Charset};
pub use crate::sim::trace::{Direction, Trace, TraceEntry};

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

/// 3GPP TS 27.005 §3.4.1 `+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cnmi {
    pub mode: u8,
    pub mt: u8,
    pub bm: u8,
    pub ds: u8,
    pub bfr: u8,
}

impl Cnmi {
    /// Parses `mode[,mt[,bm[,ds[,bfr]]]]`; omitted values are 0.
    pub fn parse(text: &str) -> Option<Self> {
        let mut values = [0u8; 5];
        let fields: Vec<&str> = text.split(',').collect();
        if fields.is_empty() || fields.len() > 5 {
            return None;
        }
        for (slot, field) in values.iter_mut().zip(&fields) {
            let field = field.trim();
            if !field.is_empty() {
                *slot = field.parse().ok()?;
            }
        }
        let [mode, mt, bm, ds, bfr] = values;
        Some(Self {
            mode,
            mt,
            bm,
            ds,
            bfr,
        })
    }

    pub fn render(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.mode, self.mt, self.bm, self.ds, self.bfr
        )
    }
}

/// The settings of one modem that decide how the network reaches it.
/// The interpreter changes them; they return to the profile's defaults on
/// every boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemSettings {
    pub cnmi: Cnmi,
    /// 27.005 §3.2.1 `+CSMS`: 1 makes `+CMT` need `+CNMA`.
    pub csms: u8,
    /// 27.005 §3.2.3 `+CMGF`: text mode.
    pub text_mode: bool,
    /// 27.005 §3.3.3 `+CSDH`: text-mode header details.
    pub csdh: bool,
    pub charset: Charset,
    /// 27.007 §7.2 `+CREG` and §10.1.22 `+CEREG` unsolicited modes.
    pub creg: u8,
    pub cereg: u8,
    /// 27.007 §8.2 `+CFUN=1`: the radio is on (off at levels 0 and 4, when
    /// the modem neither sends nor receives).
    pub radio_on: bool,
}

impl ModemSettings {
    pub fn from_profile(profile: &Profile) -> Self {
        ModemSettings {
            cnmi: Cnmi::parse(&profile.sms.cnmi).unwrap_or(Cnmi {
                mode: 0,
                mt: 0,
                bm: 0,
                ds: 0,
                bfr: 0,
            }),
            csms: 0,
            text_mode: false,
            csdh: false,
            charset: Charset::Ira,
            creg: 0,
            cereg: 0,
            radio_on: true,
        }
    }
}

/// What the port task of a modem is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortCommand {
    /// Close the pty: the client sees EOF/EIO and the link disappears.
    Unplug,
    /// Open a fresh pty and boot again, under `link` if given.
    Plug { link: Option<String> },
}

/// A bank modem as the network knows it.
#[derive(Debug)]
pub struct ModemSlot {
    pub profile: Profile,
    pub identity: Identity,
    /// The SIM's storages and the modem's own; both keep their messages
    /// across unplug and reset, as a SIM card and flash memory do.
    pub storages: Storages,
    pub settings: ModemSettings,
    pub faults: Faults,
    /// The SIM's PIN lock (27.007 §8.3 `+CPIN`).
    pub lock: SimLock,
    /// `+CSQ` rssi.
    pub signal: u8,
    pub plugged: bool,
    /// Power-ons so far (start, plug, `AT+CFUN=1,1`): tells a client that
    /// the modem has booted again.
    pub boots: u64,
    /// The pty slave path and the link to it, while plugged.
    pub path: Option<PathBuf>,
    pub link: Option<PathBuf>,
    next_mr: u8,
    urcs: VecDeque<Vec<u8>>,
    /// How many URCs were ever queued: a mark to tell later ones apart.
    urcs_queued: u64,
    awaiting_ack: VecDeque<AwaitingAck>,
    trace: Trace,
    port: Option<tokio::sync::mpsc::UnboundedSender<PortCommand>>,
}

impl ModemSlot {
    fn queue_urc(&mut self, bytes: Vec<u8>) {
        self.urcs.push_back(bytes);
        self.urcs_queued += 1;
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
            .map(|(profile, identity)| ModemSlot {
                storages: Storages::from_profile(&profile),
                settings: ModemSettings::from_profile(&profile),
                faults: Faults::default(),
                lock: SimLock::default(),
                signal: 20,
                plugged: false,
                boots: 0,
                path: None,
                link: None,
                next_mr: 0,
                urcs: VecDeque::new(),
                urcs_queued: 0,
                awaiting_ack: VecDeque::new(),
                trace: Trace::default(),
                port: None,
                profile,
                identity,
            })
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

    /// The notifier the port task of modem `index` waits on.
    pub fn waker(&self, index: usize) -> Option<Arc<Notify>> {
        self.inner.wakers.get(index).cloned()
    }

    /// Queues unsolicited output for modem `index` and wakes its port task.
    pub fn push_urc(&self, index: usize, bytes: Vec<u8>) {
        if let Some(slot) = self.lock().modems.get_mut(index) {
            slot.queue_urc(bytes);
        }
        self.wake(index);
    }

    fn wake(&self, index: usize) {
        if let Some(waker) = self.inner.wakers.get(index) {
            waker.notify_one();
        }
    }

    /// A mark for [`Network::take_urcs_since`]: how many URCs modem
    /// `index` has had queued so far.
    pub fn urc_mark(&self, index: usize) -> u64 {
        self.with_modem(index, |slot| slot.urcs_queued).unwrap_or(0)
    }

    /// Takes the pending URCs of modem `index` queued after `mark`, leaving
    /// older ones for the port's idle writer.
    pub fn take_urcs_since(&self, index: usize, mark: u64) -> Vec<u8> {
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(index) else {
            return Vec::new();
        };
        let newer = usize::try_from(slot.urcs_queued.saturating_sub(mark)).unwrap_or(usize::MAX);
        let keep = slot.urcs.len().saturating_sub(newer);
        slot.urcs.split_off(keep).into_iter().flatten().collect()
    }

    /// Takes modem `index`'s pending unsolicited output.
    pub fn take_urcs(&self, index: usize) -> Vec<u8> {
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(index) else {
            return Vec::new();
        };
        slot.urcs.drain(..).flatten().collect()
    }

    /// A modem came up (boot or re-plug): its settings return to the
    /// profile's defaults, and held messages are offered again.
    pub fn boot(&self, index: usize) {
        self.reboot_calls(index);
        {
            let mut state = self.lock();
            if let Some(slot) = state.modems.get_mut(index) {
                slot.settings = ModemSettings::from_profile(&slot.profile);
                slot.storages.select_default(&slot.profile);
                slot.lock.power_on();
                slot.boots += 1;
                slot.urcs.clear();
                // Whatever waited for an acknowledgement is re-offered.
                let pending: Vec<_> = slot.awaiting_ack.drain(..).collect();
                for waiting in pending {
                    state.held.push_back(Held::Modem(waiting.delivery));
                }
            }
        }
        self.retry_held();
    }

    /// Records the port of modem `index` as plugged at `path`/`link` (or not).
    pub fn set_plugged(&self, index: usize, path: Option<PathBuf>, link: Option<PathBuf>) {
        if path.is_none() {
            self.drop_modem_calls(index);
        }
        let _ = self.with_modem(index, |slot| {
            slot.plugged = path.is_some();
            slot.path = path;
            slot.link = link;
        });
    }

    /// Attaches the channel to modem `index`'s port task.
    pub fn attach_port(&self, index: usize, port: tokio::sync::mpsc::UnboundedSender<PortCommand>) {
        let _ = self.with_modem(index, |slot| slot.port = Some(port));
    }

    /// Asks modem `index`'s port task to unplug or plug.
    pub fn port_command(&self, index: usize, command: PortCommand) -> Result<(), NetworkError> {
        let port = self.with_modem(index, |slot| slot.port.clone())?;
        match port {
            Some(port) if port.send(command).is_ok() => Ok(()),
            _ => Err(NetworkError::UnknownModem(index)),
        }
    }

    /// Records bytes seen on modem `index`'s port (see [`Trace::record`]).
    pub fn trace(&self, index: usize, dir: Direction, bytes: &[u8]) {
        let t_us = self.inner.started.elapsed().as_micros() as u64;
        if let Some(slot) = self.lock().modems.get_mut(index) {
            slot.trace.record(t_us, dir, bytes);
        }
    }

    pub fn trace_of(&self, index: usize) -> Result<Vec<TraceEntry>, NetworkError> {
        self.with_modem(index, |slot| slot.trace.entries())
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
mod tests {
    use super::*;
    use crate::profile::Profiles;

    pub(crate) fn network(profiles: &[&str]) -> Network {
        let builtin = Profiles::builtin();
        Network::new(
            profiles
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    (
                        builtin.get(name).expect("profile").clone(),
                        Identity::generate(5, i),
                    )
                })
                .collect(),
        )
    }

    fn plug(network: &Network, index: usize) {
        network.set_plugged(index, Some(PathBuf::from("/dev/null")), None);
        network.boot(index);
    }

    fn urcs(network: &Network, index: usize) -> String {
        String::from_utf8_lossy(&network.take_urcs(index)).into_owned()
    }

    #[test]
    fn handset_sms_is_stored_and_announced_with_cmti() {
        let net = network(&["generic"]);
        plug(&net, 0);
        net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse("2,1,0,0,0").unwrap())
            .unwrap();
        let sim = net.lock().modems[0].identity.msisdn.clone();
        assert_eq!(net.handset_sms("+447700900500", &sim, "hello").unwrap(), 1);
        assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
        let used = net
            .with_modem(0, |m| m.storages.receive_storage().used())
            .unwrap();
        assert_eq!(used, 1);
    }

    #[test]
    fn unplugged_modem_gets_its_messages_on_boot() {
        let net = network(&["generic"]);
        let sim = net.lock().modems[0].identity.msisdn.clone();
        net.handset_sms("+447700900500", &sim, "queued").unwrap();
        assert_eq!(urcs(&net, 0), "");
        plug(&net, 0);
        let cnmi = net.with_modem(0, |m| m.settings.cnmi).unwrap();
        assert_eq!(cnmi.mt, 1, "generic profile routes to storage");
        assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
    }

    #[test]
    fn switched_off_handset_gets_held_messages_on_power_on() {
        let net = network(&["generic"]);
        plug(&net, 0);
        let handset = "+447700900600";
        net.set_handset_state(handset, Some(false), None).unwrap();
        let submit = Submit {
            message_reference: 0,
            destination: Address::international(handset),
            pid: 0,
            dcs: 0,
            class: None,
            validity: None,
            status_report_request: true,
            reject_duplicates: false,
            reply_path: false,
            user_data: UserData::text(Encoding::Gsm7, "are you there"),
        };
        net.with_modem(0, |m| m.settings.cnmi.ds = 1).unwrap();
        assert_eq!(net.submit(0, &submit), Ok(1));
        assert!(net.handset_messages(handset).unwrap().is_empty());
        assert_eq!(urcs(&net, 0), "");
        net.set_handset_state(handset, Some(true), None).unwrap();
        let messages = net.handset_messages(handset).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].text, "are you there");
        let report = urcs(&net, 0);
        assert!(report.starts_with("\r\n+CDS: "), "{report:?}");
        let pdu_line = report.lines().nth(2).unwrap_or_default();
        let decoded = pdu::decode_hex(pdu_line, true).unwrap();
        let Tpdu::StatusReport(status) = decoded.pdu.tpdu else {
            panic!("not a status report: {decoded:?}");
        };
        assert_eq!(status.message_reference, 1);
        assert!(status.delivered());
    }

    #[test]
    fn a_message_held_past_its_validity_is_given_up_with_a_failed_report() {
        let net = network(&["generic"]);
        plug(&net, 0);
        net.with_modem(0, |m| m.settings.cnmi.ds = 1).unwrap();
        let handset = "+447700900602";
        net.set_handset_state(handset, Some(false), None).unwrap();
        let submit = Submit {
            message_reference: 0,
            destination: Address::international(handset),
            pid: 0,
            dcs: 0,
            class: None,
            // TS 23.040 §9.2.3.12.1: relative 0 is five minutes.
            validity: Some(pdu::ValidityPeriod::Relative(0)),
            status_report_request: true,
            reject_duplicates: false,
            reply_path: false,
            user_data: UserData::text(Encoding::Gsm7, "too late"),
        };
        assert_eq!(net.submit(0, &submit), Ok(1));
        net.tick_at(Instant::now() + Duration::from_secs(4 * 60));
        assert_eq!(urcs(&net, 0), "", "still within its validity");
        net.tick_at(Instant::now() + Duration::from_secs(6 * 60));
        let report = urcs(&net, 0);
        let pdu_line = report.lines().nth(2).unwrap_or_default();
        let Tpdu::StatusReport(status) = pdu::decode_hex(pdu_line, true).unwrap().pdu.tpdu else {
            panic!("not a status report: {report:?}");
        };
        assert_eq!(status.message_reference, 1);
        assert_eq!(status.status, VALIDITY_EXPIRED);
        assert!(status.failed());
        net.set_handset_state(handset, Some(true), None).unwrap();
        assert!(net.handset_messages(handset).unwrap().is_empty());
    }

    #[test]
    fn a_long_text_mode_submit_to_another_sim_arrives_in_parts() {
        let net = network(&["generic", "simcom-sim800"]);
        plug(&net, 0);
        plug(&net, 1);
        let target = net.lock().modems[1].identity.msisdn.clone();
        let text = "x".repeat(200);
        let submit = Submit {
            message_reference: 0,
            destination: Address::international(&target),
            pid: 0,
            dcs: 0,
            class: None,
            validity: None,
            status_report_request: false,
            reject_duplicates: false,
            reply_path: false,
            user_data: UserData::text(Encoding::Gsm7, &text),
        };
        assert_eq!(net.submit(0, &submit), Ok(1));
        assert_eq!(
            urcs(&net, 1),
            "\r\n+CMTI: \"SM\",1\r\n\r\n+CMTI: \"SM\",2\r\n"
        );
        let parts: Vec<UserData> = net
            .with_modem(1, |m| {
                m.storages
                    .read_storage()
                    .list(crate::sim::storage::StatFilter::All)
            })
            .unwrap()
            .into_iter()
            .map(
                |(_, stored)| match pdu::decode_hex(&stored.pdu, true).unwrap().pdu.tpdu {
                    Tpdu::Deliver(deliver) => deliver.user_data,
                    other => panic!("not a deliver: {other:?}"),
                },
            )
            .collect();
        let concat: Vec<_> = parts.iter().map(|p| p.concat.unwrap()).collect();
        assert_eq!(concat[0].reference, concat[1].reference);
        assert_eq!((concat[0].sequence, concat[1].sequence), (1, 2));
        let joined: String = parts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn barred_handset_refuses_and_bad_numbers_are_errors() {
        let net = network(&["generic"]);
        plug(&net, 0);
        net.set_handset_state("+447700900601", None, Some(true))
            .unwrap();
        let mut submit = Submit {
            message_reference: 0,
            destination: Address::international("+447700900601"),
            pid: 0,
            dcs: 0,
            class: None,
            validity: None,
            status_report_request: false,
            reject_duplicates: false,
            reply_path: false,
            user_data: UserData::text(Encoding::Gsm7, "x"),
        };
        assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Barred));
        submit.destination = Address::from_number("0123").unwrap();
        assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Unassigned));
        assert_eq!(
            net.handset_sms("447700900500", "+447700900000", "x"),
            Err(NetworkError::InvalidNumber("447700900500".into()))
        );
        let sim = net.lock().modems[0].identity.msisdn.clone();
        assert_eq!(
            net.handset_messages(&sim),
            Err(NetworkError::NotAHandset(sim.clone()))
        );
    }

    #[test]
    fn full_storage_holds_until_space_is_freed() {
        let net = network(&["generic"]);
        plug(&net, 0);
        let sim = net.lock().modems[0].identity.msisdn.clone();
        let capacity = net
            .with_modem(0, |m| m.storages.receive_storage().capacity)
            .unwrap();
        for i in 0..=capacity {
            net.handset_sms("+447700900500", &sim, &format!("m{i}"))
                .unwrap();
        }
        let announced = urcs(&net, 0).matches("+CMTI").count();
        assert_eq!(announced, usize::from(capacity));
        net.with_modem(0, |m| m.storages.read_storage().delete(3))
            .unwrap();
        net.retry_held();
        assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",3\r\n");
    }

    #[test]
    fn direct_delivery_needs_cnma_under_csms_1() {
        let net = network(&["generic"]);
        plug(&net, 0);
        net.with_modem(0, |m| {
            m.settings.cnmi = Cnmi::parse("2,2,0,0,0").unwrap();
            m.settings.csms = 1;
        })
        .unwrap();
        let sim = net.lock().modems[0].identity.msisdn.clone();
        net.handset_sms("+447700900500", &sim, "direct").unwrap();
        let urc = urcs(&net, 0);
        assert!(urc.starts_with("\r\n+CMT: ,"), "{urc:?}");
        assert!(net.acknowledge(0));
        assert!(!net.acknowledge(0));

        // Unacknowledged past the timeout: the network stores it instead.
        net.handset_sms("+447700900500", &sim, "not acked").unwrap();
        assert!(urcs(&net, 0).starts_with("\r\n+CMT: ,"));
        net.tick_at(Instant::now() + ACK_TIMEOUT / 2);
        assert_eq!(urcs(&net, 0), "");
        net.tick_at(Instant::now() + ACK_TIMEOUT + Duration::from_secs(1));
        assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
        assert!(!net.acknowledge(0), "nothing waits any more");
    }

    /// Operations on one SIM that may make the network hold, retry, store
    /// or hand over a message.
    #[derive(Debug, Clone)]
    enum Step {
        HandsetSends,
        Delete(u16),
        DeleteAll,
        Cnmi(u8),
        Csms(u8),
        Ack,
        Reject,
        Replug,
        Unplug,
        Timeout,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => Just(Step::HandsetSends),
            1 => (1u16..4).prop_map(Step::Delete),
            1 => Just(Step::DeleteAll),
            1 => (0u8..3).prop_map(Step::Cnmi),
            1 => (0u8..2).prop_map(Step::Csms),
            1 => Just(Step::Ack),
            1 => Just(Step::Reject),
            1 => Just(Step::Replug),
            1 => Just(Step::Unplug),
            1 => Just(Step::Timeout),
        ]
    }

    /// The texts of the DELIVER PDUs in `+CMT` URCs (PDU mode).
    fn direct_texts(urcs: &str) -> Vec<String> {
        let mut texts = Vec::new();
        let mut lines = urcs.split("\r\n");
        while let Some(line) = lines.next() {
            if line.starts_with("+CMT: ")
                && let Some(Ok(decoded)) = lines.next().map(|hex| pdu::decode_hex(hex, true))
                && let Tpdu::Deliver(deliver) = decoded.pdu.tpdu
            {
                texts.push(deliver.user_data.text);
            }
        }
        texts
    }

    fn stored_texts(net: &Network) -> Vec<String> {
        net.with_modem(0, |m| {
            m.storages
                .receive_storage()
                .list(crate::sim::storage::StatFilter::All)
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(
            |(_, stored)| match pdu::decode_hex(&stored.pdu, true).ok()?.pdu.tpdu {
                Tpdu::Deliver(deliver) => Some(deliver.user_data.text),
                _ => None,
            },
        )
        .collect()
    }

    /// What the host has been handed: texts it has for sure, and direct
    /// deliveries still waiting for its `+CNMA` (under `+CSMS=1`).
    #[derive(Default)]
    struct Host {
        csms: u8,
        seen: std::collections::BTreeSet<String>,
        unacked: VecDeque<String>,
    }

    impl Host {
        fn observe(&mut self, net: &Network) {
            for text in direct_texts(&urcs(net, 0)) {
                if self.csms == 1 {
                    self.unacked.push_back(text);
                } else {
                    self.seen.insert(text);
                }
            }
            self.seen.extend(stored_texts(net));
        }
    }

    proptest::proptest! {
        /// Whatever the SIM does (a small storage filling up, deletes,
        /// unacknowledged or rejected direct deliveries, unplugging), every
        /// message a handset sends reaches the host in the end: never dropped.
        #[test]
        fn no_message_to_a_sim_is_ever_lost(steps in proptest::collection::vec(step(), 1..60)) {
            let net = network(&["generic"]);
            // A SIM of two slots is full most of the time.
            net.with_modem(0, |m| m.storages.receive_storage().capacity = 2).unwrap();
            plug(&net, 0);
            let sim = net.lock().modems[0].identity.msisdn.clone();
            let mut sent = Vec::new();
            let mut model = Host::default();
            let mut later = Instant::now();
            for step in steps {
                // What the modem printed so far reaches the host first.
                model.observe(&net);
                match step {
                    Step::HandsetSends => {
                        let text = format!("message {}", sent.len());
                        net.handset_sms("+447700900500", &sim, &text).unwrap();
                        sent.push(text);
                    }
                    Step::Delete(index) => {
                        net.with_modem(0, |m| m.storages.read_storage().delete(index)).unwrap();
                        net.retry_held();
                    }
                    Step::DeleteAll => {
                        net.with_modem(0, |m| m.storages.read_storage().delete_by_flag(4)).unwrap();
                        net.retry_held();
                    }
                    Step::Cnmi(mt) => {
                        net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse(&format!("2,{mt},0,0,0")).unwrap()).unwrap();
                    }
                    Step::Csms(service) => {
                        net.with_modem(0, |m| m.settings.csms = service).unwrap();
                        model.csms = service;
                    }
                    Step::Ack => {
                        if net.acknowledge(0) {
                            let acked = model.unacked.pop_front();
                            model.seen.extend(acked);
                        }
                    }
                    Step::Reject => {
                        if net.reject(0) {
                            model.unacked.pop_front();
                        }
                    }
                    Step::Replug => {
                        model.unacked.clear();
                        plug(&net, 0);
                        model.csms = 0;
                    }
                    Step::Unplug => net.set_plugged(0, None, None),
                    Step::Timeout => {
                        later += ACK_TIMEOUT + Duration::from_secs(1);
                        net.tick_at(later);
                        model.unacked.clear();
                    }
                }
            }
            // Drain: back on, storage routing, read and empty until nothing is left.
            model.observe(&net);
            plug(&net, 0);
            net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse("2,1,0,0,0").unwrap()).unwrap();
            net.retry_held();
            for _ in 0..=sent.len() {
                model.observe(&net);
                net.with_modem(0, |m| m.storages.read_storage().delete_by_flag(4)).unwrap();
                net.retry_held();
            }
            model.observe(&net);
            let seen = model.seen;
            for text in &sent {
                proptest::prop_assert!(seen.contains(text), "{text} was lost");
            }
        }
    }
}
