//! The call side of the virtual network: a pure model of voice calls between
//! the bank's modems and handsets (3GPP TS 22.030, 22.083 hold and waiting,
//! 22.084 multiparty, 22.091 explicit call transfer; AT side from 3GPP TS
//! 27.007 §7.13 `+CHLD` and §7.18 `+CLCC`).
//!
//! Every operation takes the state, changes it and returns the [`Notice`]s
//! to deliver: unsolicited lines for a modem's port (`RING`, `+CLIP`,
//! `NO CARRIER`, `+CLCC` …) and the new call state of a handset. Time is
//! passed in (`now`), so RING repetition and the no-answer timeout are a
//! [`CallNetwork::tick`] that the network's timer calls; no tokio here.
//!
//! A call is a *link* between two parties. Each side of a link (an *end*)
//! has its own call id (27.007 numbering from 1, per party), direction,
//! hold flag and multiparty flag, and the number that party sees for the
//! call (the caller ID presented to it, or the number it dialled), the
//! connected line it was shown when its call was answered, and the
//! supplementary-service notifications the network sent it. Explicit call
//! transfer replaces the modem's two links by one link between the two
//! remote ends; each keeps the number it saw, but is notified of the
//! transfer with the other's number (3GPP TS 23.091 §3) unless that party
//! restricts its presentation: a transfer can unmask, a conference cannot.
//!
//! By file: `links` (links, ends, and the classification of one party's
//! calls), `settings` (each modem's line: number, voice, offered services,
//! call settings), `setup` (dial, alert, answer), `release` (hang-up, and
//! how the other side learns why), `supplementary` (`+CHLD`: hold and
//! waiting, multiparty, transfer), `timers` (set-up delay, ring repetition,
//! no-answer timeout), `views` (what a party sees and hears), `notices`
//! (what observers learn from each change) and `notifications` (what the
//! network tells a party of what was done to its call: `+CSSI`/`+CSSU`,
//! presentation restriction), and `keys` (DTMF keys pressed during a call,
//! as the modems that hear them report them).

mod keys;
mod links;
mod notices;
mod notifications;
mod release;
mod settings;
mod setup;
mod supplementary;
mod timers;
mod views;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

pub use keys::is_key as is_dtmf_key;
use links::Link;
pub use links::LinkId;
pub use notifications::{SsKind, SsNotification};
pub use settings::ModemCallSettings;
use settings::ModemLine;
pub use supplementary::Chld;

/// 22.084 §1.2: a multiparty call has at most five remote parties.
const MAX_MULTIPARTY: usize = 5;
/// 22.030 §6.5.5: call ids 1 to 7.
const MAX_CALLS: usize = 7;

/// One side of the network's calls.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// A bank modem by index.
    Modem(usize),
    /// A phone outside the bank, by its E.164 number.
    Handset(String),
}

/// 3GPP TS 27.007 §7.18 `<dir>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    MobileOriginated = 0,
    MobileTerminated = 1,
}

/// 3GPP TS 27.007 §7.18 `<stat>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Active = 0,
    Held = 1,
    Dialing = 2,
    Alerting = 3,
    Incoming = 4,
    Waiting = 5,
}

/// One call as its party sees it (a `+CLCC` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub id: u8,
    pub direction: Direction,
    pub state: CallState,
    pub multiparty: bool,
    /// The other side's number as this party sees it.
    pub number: String,
    /// The other end put this call on hold (the party hears nothing).
    pub held_by_remote: bool,
}

impl CallInfo {
    /// The 27.007 §7.18 line, e.g. `+CLCC: 1,1,4,0,0,"+447700900001",145`.
    pub fn clcc_line(&self) -> String {
        clcc_line(
            self.id,
            self.direction as u8,
            self.state as u8,
            self.multiparty,
            &self.number,
        )
    }
}

/// A `+CLCC` line; a withheld number leaves the number fields out.
fn clcc_line(id: u8, direction: u8, state: u8, multiparty: bool, number: &str) -> String {
    let head = format!("+CLCC: {id},{direction},{state},0,{}", u8::from(multiparty));
    if number.is_empty() {
        head
    } else {
        format!("{head},\"{number}\",{}", number_type(number))
    }
}

/// 3GPP TS 24.008 §10.5.4.7 type of number: 145 international, 129 unknown.
pub fn number_type(number: &str) -> u8 {
    if number.starts_with('+') { 145 } else { 129 }
}

/// Whether a dialled party can be reached, as the rest of the network knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Reachable,
    /// Switched off, unplugged or unregistered.
    SwitchedOff,
    /// Incoming calls barred.
    Barred,
}

/// Why a call ended, as the handset API and the caller see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// This party hung up.
    HungUp,
    /// The other party hung up (or gave up while ringing).
    RemoteHungUp,
    /// The callee was busy or rejected the call.
    Busy,
    /// The callee did not answer within the ring timeout.
    NoAnswer,
    /// The callee is switched off or barred.
    Unreachable,
    /// The call was handed over to another party by explicit call transfer.
    Transferred,
}

/// What a handset's owner sees on its screen (`GET /handsets/{n}/call`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandsetCall {
    /// `idle`, `dialing`, `alerting`, `ringing`, `active` or `held`.
    pub state: &'static str,
    /// The number this handset sees for its current call: the caller ID
    /// presented to it, or the number it dialled (`None` when withheld).
    pub caller_id: Option<String>,
    /// The connected line presented to it when its call was answered
    /// (COLP), for a call it placed.
    pub connected_line: Option<String>,
    /// The supplementary-service notifications the network sent it during
    /// this call (hold, multiparty, transfer), with any number they carried.
    pub notifications: Vec<SsNotification>,
    /// Everyone whose voice this handset hears.
    pub connected_to: Vec<String>,
    /// Why its last call ended, once one has.
    pub last_end: Option<EndReason>,
}

/// Something the network must deliver after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An unsolicited line for a modem's port.
    Modem { index: usize, line: String },
    /// A handset's call changed.
    Handset { number: String, call: HandsetCall },
}

/// A refused call operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("call: unknown modem {0}")]
    UnknownModem(usize),
    #[error("call: modem {0} has no voice service")]
    NoVoice(usize),
    #[error("call: a party cannot call its own number")]
    OwnNumber,
    #[error("call: {0}")]
    NotAllowed(&'static str),
    #[error("call: +CHLD={0} is not offered by this SIM's network (3GPP TS 27.007 §7.13)")]
    NotOffered(String),
    #[error("call: invalid +CHLD value {0:?} (3GPP TS 27.007 §7.13)")]
    InvalidChld(String),
    #[error("call: no call {0} (3GPP TS 22.030 §6.5.5)")]
    NoSuchCall(u8),
    #[error("call: no incoming call to answer")]
    NoIncomingCall,
    #[error("call: this party is already in a call")]
    AlreadyInCall,
    #[error("call: the modem does not report call changes (+CLCC=1)")]
    ClccUrcUnsupported,
    #[error("call: {0:?} is not a number the network can route")]
    Unroutable(String),
    #[error("call: the modem is not registered (3GPP TS 27.007 §9.2.1 code 30)")]
    NoService,
    #[error("call: no call in progress to press keys in")]
    NotInCall,
    #[error("call: {0:?} is not a DTMF key (0-9, *, #, A-D)")]
    NotAKey(char),
}

impl CallError {
    /// The 27.007 §9.2 `+CME ERROR` code and text a modem answers with;
    /// `None` for a plain `NO CARRIER` (V.250 §6.3.1: nobody to connect to).
    pub fn cme(&self) -> Option<(u16, &'static str)> {
        match self {
            CallError::NoIncomingCall | CallError::Unroutable(_) => None,
            CallError::NoService => Some((30, "no network service")),
            CallError::InvalidChld(_) | CallError::ClccUrcUnsupported | CallError::NoVoice(_) => {
                Some((4, "operation not supported"))
            }
            _ => Some((3, "operation not allowed")),
        }
    }
}

/// The ringing rhythm of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTiming {
    /// Time between two `RING`s at a ringing modem.
    pub ring_period: Duration,
    /// An unanswered call is released after this long (`[voice] ring timeout`).
    pub ring_timeout: Duration,
    /// The network's call set-up time: [`CallNetwork::tick`] alerts the
    /// callee of a call dialled at least this long ago.
    pub setup_delay: Duration,
}

impl Default for CallTiming {
    fn default() -> Self {
        CallTiming {
            ring_period: Duration::from_secs(3),
            ring_timeout: Duration::from_secs(30),
            setup_delay: Duration::ZERO,
        }
    }
}

/// The network's calls.
#[derive(Debug, Clone)]
pub struct CallNetwork {
    timing: CallTiming,
    modems: BTreeMap<usize, ModemLine>,
    links: Vec<Link>,
    next_link: u64,
    last_end: BTreeMap<String, EndReason>,
    /// Handsets that restrict the presentation of their number (CLIR).
    restricted: BTreeSet<String>,
}

impl CallNetwork {
    pub fn new(timing: CallTiming) -> Self {
        CallNetwork {
            timing,
            modems: BTreeMap::new(),
            links: Vec::new(),
            next_link: 1,
            last_end: BTreeMap::new(),
            restricted: BTreeSet::new(),
        }
    }

    pub fn timing(&self) -> CallTiming {
        self.timing
    }

    /// New clocks; calls in progress keep their start times.
    pub fn set_timing(&mut self, timing: CallTiming) {
        self.timing = timing;
    }
}

#[cfg(test)]
mod tests;
