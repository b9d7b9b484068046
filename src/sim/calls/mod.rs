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
//! call (the caller ID presented to it, or the number it dialled). Explicit
//! call transfer replaces the modem's two links by one link between the two
//! remote ends, each keeping what it saw, so masking holds after transfer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::profile::Voice;

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

fn clcc_line(id: u8, direction: u8, state: u8, multiparty: bool, number: &str) -> String {
    format!(
        "+CLCC: {id},{direction},{state},0,{},\"{number}\",{}",
        u8::from(multiparty),
        number_type(number)
    )
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
    /// The number this handset sees for its current call.
    pub caller_id: Option<String>,
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

/// The `+CHLD` operations of 27.007 §7.13 / 22.030 §6.5.5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chld {
    /// 0: release held calls, or reject (UDUB) a waiting call.
    ReleaseHeldOrWaiting,
    /// 1: release active calls and accept the waiting or held call.
    ReleaseActiveAcceptOther,
    /// 1x: release call x.
    Release(u8),
    /// 2: hold active calls and accept the waiting or held call.
    HoldActiveAcceptOther,
    /// 2x: hold all calls but x (private communication with x).
    Private(u8),
    /// 3: add the held call to the conversation.
    Join,
    /// 4: explicit call transfer; the modem leaves.
    Transfer,
}

impl Chld {
    /// Parses the value after `AT+CHLD=` (`AT+CHLD` alone means 0).
    pub fn parse(value: &str) -> Result<Chld, CallError> {
        let invalid = || CallError::InvalidChld(value.to_string());
        let digits = value.trim();
        let call = |rest: &str| -> Result<u8, CallError> {
            let id: u8 = rest.parse().map_err(|_| invalid())?;
            if (1..=MAX_CALLS as u8).contains(&id) {
                Ok(id)
            } else {
                Err(invalid())
            }
        };
        match digits {
            "" | "0" => Ok(Chld::ReleaseHeldOrWaiting),
            "1" => Ok(Chld::ReleaseActiveAcceptOther),
            "2" => Ok(Chld::HoldActiveAcceptOther),
            "3" => Ok(Chld::Join),
            "4" => Ok(Chld::Transfer),
            _ if digits.len() == 2 && digits.starts_with('1') => {
                Ok(Chld::Release(call(&digits[1..])?))
            }
            _ if digits.len() == 2 && digits.starts_with('2') => {
                Ok(Chld::Private(call(&digits[1..])?))
            }
            _ => Err(invalid()),
        }
    }

    /// Checks a service name as `AT+CHLD=?` lists it (`1x`, `3` …).
    pub fn parse_service(name: &str) -> Option<&str> {
        ["0", "1", "1x", "2", "2x", "3", "4"]
            .into_iter()
            .find(|s| *s == name)
    }

    /// The service name as `AT+CHLD=?` and the profiles list it.
    pub fn service(self) -> &'static str {
        match self {
            Chld::ReleaseHeldOrWaiting => "0",
            Chld::ReleaseActiveAcceptOther => "1",
            Chld::Release(_) => "1x",
            Chld::HoldActiveAcceptOther => "2",
            Chld::Private(_) => "2x",
            Chld::Join => "3",
            Chld::Transfer => "4",
        }
    }
}

/// A modem's call settings, as its AT commands set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModemCallSettings {
    /// `+CLIP=1`: `+CLIP` after each `RING`.
    pub clip: bool,
    /// `+CRC=1`: `+CRING: VOICE` instead of `RING`.
    pub crc: bool,
    /// `+CCWA=1`: `+CCWA` for a waiting call.
    pub ccwa: bool,
    /// `+CLCC=1`: a `+CLCC` line for every call that changes (SIMCom).
    pub clcc: bool,
    /// `+CMUT=1`: the uplink is muted; the modem hears but is not heard.
    pub muted: bool,
}

#[derive(Debug, Clone)]
struct ModemLine {
    msisdn: String,
    voice: bool,
    services: Vec<String>,
    clcc_urc: bool,
    settings: ModemCallSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The caller dialled; the callee is not alerted yet.
    Dialing {
        since: Instant,
    },
    Alerting {
        since: Instant,
        last_ring: Instant,
    },
    Connected,
}

#[derive(Debug, Clone)]
struct End {
    party: Party,
    /// 0 until the call is presented to this party.
    call_id: u8,
    direction: Direction,
    /// This end put the call on hold.
    held: bool,
    multiparty: bool,
    /// The other side's number as this party sees it.
    sees: String,
}

#[derive(Debug, Clone)]
struct Link {
    id: u64,
    phase: Phase,
    /// During set-up, `ends[0]` is the caller and `ends[1]` the callee.
    ends: [End; 2],
}

impl Link {
    fn end_of(&self, party: &Party) -> Option<usize> {
        self.ends.iter().position(|e| &e.party == party)
    }

    fn presented_to(&self, side: usize) -> bool {
        self.ends[side].call_id != 0
    }

    fn carries_voice(&self) -> bool {
        self.phase == Phase::Connected && !self.ends[0].held && !self.ends[1].held
    }
}

/// A handle on a call being set up, to alert its callee later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkId(u64);

/// The network's calls.
#[derive(Debug, Clone)]
pub struct CallNetwork {
    timing: CallTiming,
    modems: BTreeMap<usize, ModemLine>,
    links: Vec<Link>,
    next_link: u64,
    last_end: BTreeMap<String, EndReason>,
}

/// Classification of one party's calls, by position in `links`.
#[derive(Debug, Default)]
struct Calls {
    active: Vec<usize>,
    held: Vec<usize>,
    /// A call this party dialled that is not answered yet.
    outgoing: Option<usize>,
    /// A call ringing at this party (incoming or waiting).
    incoming: Option<usize>,
}

impl Calls {
    fn is_empty(&self) -> bool {
        self.active.is_empty()
            && self.held.is_empty()
            && self.outgoing.is_none()
            && self.incoming.is_none()
    }

    fn count(&self) -> usize {
        self.active.len()
            + self.held.len()
            + usize::from(self.outgoing.is_some())
            + usize::from(self.incoming.is_some())
    }
}

impl CallNetwork {
    pub fn new(timing: CallTiming) -> Self {
        CallNetwork {
            timing,
            modems: BTreeMap::new(),
            links: Vec::new(),
            next_link: 1,
            last_end: BTreeMap::new(),
        }
    }

    pub fn timing(&self) -> CallTiming {
        self.timing
    }

    /// New clocks; calls in progress keep their start times.
    pub fn set_timing(&mut self, timing: CallTiming) {
        self.timing = timing;
    }

    /// Adds (or replaces) a bank modem with its SIM's number and the voice
    /// services of its profile.
    pub fn add_modem(&mut self, index: usize, msisdn: &str, voice: &Voice) {
        self.modems.insert(
            index,
            ModemLine {
                msisdn: msisdn.to_string(),
                voice: voice.supported,
                services: voice.chld.clone(),
                clcc_urc: voice.clcc_urc,
                settings: ModemCallSettings::default(),
            },
        );
    }

    /// The number a party presents when it calls.
    pub fn number_of(&self, party: &Party) -> Option<String> {
        match party {
            Party::Modem(index) => self.modems.get(index).map(|m| m.msisdn.clone()),
            Party::Handset(number) => Some(number.clone()),
        }
    }

    /// A modem's call settings.
    pub fn settings(&self, index: usize) -> Result<&ModemCallSettings, CallError> {
        self.modems
            .get(&index)
            .map(|m| &m.settings)
            .ok_or(CallError::UnknownModem(index))
    }

    /// Changes a modem's call settings (`+CLIP`, `+CRC`, `+CCWA`, `+CLCC`,
    /// `+CMUT`). `+CLCC=1` is refused on models that do not report changes.
    pub fn update_settings(
        &mut self,
        index: usize,
        change: impl FnOnce(&mut ModemCallSettings),
    ) -> Result<(), CallError> {
        let modem = self
            .modems
            .get_mut(&index)
            .ok_or(CallError::UnknownModem(index))?;
        let mut settings = modem.settings.clone();
        change(&mut settings);
        if settings.clcc && !modem.clcc_urc {
            return Err(CallError::ClccUrcUnsupported);
        }
        modem.settings = settings;
        Ok(())
    }

    /// Changes the supplementary services (`+CHLD` values) the SIM's
    /// network offers, as a different operator or subscription would.
    pub fn set_services(&mut self, index: usize, services: Vec<String>) -> Result<(), CallError> {
        let modem = self
            .modems
            .get_mut(&index)
            .ok_or(CallError::UnknownModem(index))?;
        if let Some(bad) = services.iter().find(|s| Chld::parse_service(s).is_none()) {
            return Err(CallError::InvalidChld(bad.clone()));
        }
        modem.services = services;
        Ok(())
    }

    /// The services modem `index`'s network offers.
    pub fn services(&self, index: usize) -> Result<Vec<String>, CallError> {
        self.modems
            .get(&index)
            .map(|m| m.services.clone())
            .ok_or(CallError::UnknownModem(index))
    }

    /// Back to power-on settings (after `ATZ`, a reset or a re-plug).
    pub fn reset_settings(&mut self, index: usize) {
        if let Some(modem) = self.modems.get_mut(&index) {
            modem.settings = ModemCallSettings::default();
        }
    }

    /// The answer to `AT+CHLD=?`.
    pub fn chld_test_line(&self, index: usize) -> Result<String, CallError> {
        let modem = self
            .modems
            .get(&index)
            .ok_or(CallError::UnknownModem(index))?;
        Ok(format!("+CHLD: ({})", modem.services.join(",")))
    }

    /// A party's calls, ordered by call id (the lines of `AT+CLCC`).
    pub fn calls_of(&self, party: &Party) -> Vec<CallInfo> {
        let mut calls: Vec<CallInfo> = Vec::new();
        let others = self.presented_count(party);
        for link in &self.links {
            let Some(side) = link.end_of(party) else {
                continue;
            };
            if !link.presented_to(side) {
                continue;
            }
            let end = &link.ends[side];
            let state = match link.phase {
                Phase::Dialing { .. } => CallState::Dialing,
                Phase::Alerting { .. } if end.direction == Direction::MobileOriginated => {
                    CallState::Alerting
                }
                Phase::Alerting { .. } if others > 1 => CallState::Waiting,
                Phase::Alerting { .. } => CallState::Incoming,
                Phase::Connected if end.held => CallState::Held,
                Phase::Connected => CallState::Active,
            };
            calls.push(CallInfo {
                id: end.call_id,
                direction: end.direction,
                state,
                multiparty: end.multiparty,
                number: end.sees.clone(),
                held_by_remote: link.ends[1 - side].held,
            });
        }
        calls.sort_by_key(|c| c.id);
        calls
    }

    fn presented_count(&self, party: &Party) -> usize {
        self.links
            .iter()
            .filter(|l| l.end_of(party).is_some_and(|side| l.presented_to(side)))
            .count()
    }

    /// The `AT+CLCC` answer lines of a modem.
    pub fn clcc_lines(&self, index: usize) -> Vec<String> {
        self.calls_of(&Party::Modem(index))
            .iter()
            .map(CallInfo::clcc_line)
            .collect()
    }

    /// What a handset shows (`GET /handsets/{n}/call`).
    pub fn handset_call(&self, number: &str) -> HandsetCall {
        let party = Party::Handset(number.to_string());
        let last_end = self.last_end.get(number).copied();
        let calls = self.calls_of(&party);
        let Some(call) = calls.first() else {
            return HandsetCall {
                state: "idle",
                caller_id: None,
                connected_to: Vec::new(),
                last_end,
            };
        };
        let state = match call.state {
            CallState::Dialing => "dialing",
            CallState::Alerting => "alerting",
            CallState::Incoming | CallState::Waiting => "ringing",
            CallState::Held => "held",
            CallState::Active if call.held_by_remote => "held",
            CallState::Active => "active",
        };
        HandsetCall {
            state,
            caller_id: Some(call.number.clone()),
            connected_to: self.hears(&party),
            last_end,
        }
    }

    /// Everyone whose voice `listener` hears: the parties on its talking
    /// links, and through a modem hosting a multiparty call everyone in it.
    /// A muted modem is heard by no one.
    pub fn hears(&self, listener: &Party) -> Vec<String> {
        let mut seen: BTreeSet<Party> = BTreeSet::from([listener.clone()]);
        let mut queue = vec![listener.clone()];
        let mut heard = BTreeSet::new();
        while let Some(party) = queue.pop() {
            for link in self.links.iter().filter(|l| l.carries_voice()) {
                let Some(side) = link.end_of(&party) else {
                    continue;
                };
                let other = &link.ends[1 - side].party;
                if !seen.insert(other.clone()) {
                    continue;
                }
                let muted = match other {
                    Party::Modem(index) => self.modems.get(index).is_some_and(|m| m.settings.muted),
                    Party::Handset(_) => false,
                };
                if !muted && let Some(number) = self.number_of(other) {
                    heard.insert(number);
                }
                // A modem mixes its active calls when they form a multiparty.
                if matches!(other, Party::Modem(_)) && self.talking_links(other) > 1 {
                    queue.push(other.clone());
                }
            }
        }
        heard.into_iter().collect()
    }

    fn talking_links(&self, party: &Party) -> usize {
        self.links
            .iter()
            .filter(|l| l.carries_voice() && l.end_of(party).is_some())
            .count()
    }

    fn classify(&self, party: &Party) -> Calls {
        let mut calls = Calls::default();
        for (position, link) in self.links.iter().enumerate() {
            let Some(side) = link.end_of(party) else {
                continue;
            };
            if !link.presented_to(side) {
                continue;
            }
            let end = &link.ends[side];
            match (link.phase, end.direction) {
                (Phase::Connected, _) if end.held => calls.held.push(position),
                (Phase::Connected, _) => calls.active.push(position),
                (_, Direction::MobileOriginated) => calls.outgoing = Some(position),
                (_, Direction::MobileTerminated) => calls.incoming = Some(position),
            }
        }
        calls
    }

    fn modem(&self, party: &Party) -> Result<Option<&ModemLine>, CallError> {
        match party {
            Party::Modem(index) => {
                let modem = self
                    .modems
                    .get(index)
                    .ok_or(CallError::UnknownModem(*index))?;
                if modem.voice {
                    Ok(Some(modem))
                } else {
                    Err(CallError::NoVoice(*index))
                }
            }
            Party::Handset(_) => Ok(None),
        }
    }

    fn offers(&self, party: &Party, service: &str) -> bool {
        match party {
            Party::Modem(index) => self
                .modems
                .get(index)
                .is_some_and(|m| m.services.iter().any(|s| s == service)),
            // Handsets only dial, answer and hang up.
            Party::Handset(_) => false,
        }
    }

    fn free_call_id(&self, party: &Party) -> u8 {
        let used: BTreeSet<u8> = self
            .links
            .iter()
            .filter_map(|l| l.end_of(party).map(|side| l.ends[side].call_id))
            .collect();
        (1..=MAX_CALLS as u8)
            .find(|id| !used.contains(id))
            .unwrap_or(0)
    }

    /// The caller starts a call (`ATD<number>;` or a handset's dial). The
    /// callee is alerted by [`CallNetwork::alert`], which [`CallNetwork::tick`]
    /// calls after the set-up delay; [`CallNetwork::dial`] does both at once.
    ///
    /// A modem with an active call puts it on hold first (22.030 §6.5.5.1,
    /// "entering a number and SEND"), when its network offers hold.
    pub fn originate(
        &mut self,
        caller: &Party,
        callee: &Party,
        dialed: &str,
        now: Instant,
    ) -> Result<(LinkId, Vec<Notice>), CallError> {
        self.modem(caller)?;
        if caller == callee || self.number_of(caller).as_deref() == Some(dialed) {
            return Err(CallError::OwnNumber);
        }
        let calls = self.classify(caller);
        match caller {
            Party::Handset(_) if !calls.is_empty() => return Err(CallError::AlreadyInCall),
            Party::Handset(_) => {}
            Party::Modem(_) => {
                if calls.outgoing.is_some() || calls.incoming.is_some() {
                    return Err(CallError::NotAllowed("a call is already being set up"));
                }
                if !calls.active.is_empty() && !calls.held.is_empty() {
                    return Err(CallError::NotAllowed(
                        "an active and a held call already exist",
                    ));
                }
                if !calls.active.is_empty() && !self.offers(caller, "2") {
                    return Err(CallError::NotOffered("2".into()));
                }
                if calls.count() >= MAX_CALLS {
                    return Err(CallError::NotAllowed("too many calls"));
                }
            }
        }
        let caller_party = caller.clone();
        let callee_party = callee.clone();
        let dialed = dialed.to_string();
        let call_id = self.free_call_id(caller);
        let id = self.next_link;
        Ok((
            LinkId(id),
            self.observe(move |net, _| {
                for position in calls.active {
                    let side = net.links[position]
                        .end_of(&caller_party)
                        .expect("classified link has this party");
                    net.links[position].ends[side].held = true;
                }
                net.next_link += 1;
                let caller_number = net.number_of(&caller_party).unwrap_or_default();
                net.links.push(Link {
                    id,
                    phase: Phase::Dialing { since: now },
                    ends: [
                        End {
                            party: caller_party,
                            call_id,
                            direction: Direction::MobileOriginated,
                            held: false,
                            multiparty: false,
                            sees: dialed,
                        },
                        End {
                            party: callee_party,
                            call_id: 0,
                            direction: Direction::MobileTerminated,
                            held: false,
                            multiparty: false,
                            sees: caller_number,
                        },
                    ],
                });
            }),
        ))
    }

    /// The network reaches the callee of a call being set up: it rings, or
    /// the call fails at once (busy, switched off, barred).
    pub fn alert(&mut self, link: LinkId, reach: Reach, now: Instant) -> Vec<Notice> {
        self.observe(|net, out| {
            let Some(position) = net.links.iter().position(|l| l.id == link.0) else {
                return;
            };
            if !matches!(net.links[position].phase, Phase::Dialing { .. }) {
                return;
            }
            let callee = net.links[position].ends[1].party.clone();
            let failure = match (reach, net.modem(&callee)) {
                (Reach::SwitchedOff | Reach::Barred, _) | (_, Err(_)) => {
                    Some(EndReason::Unreachable)
                }
                (Reach::Reachable, Ok(_)) if net.busy(&callee) => Some(EndReason::Busy),
                (Reach::Reachable, Ok(_)) => None,
            };
            if let Some(reason) = failure {
                let link = net.links.remove(position);
                net.ended(&link.ends[0].party, reason, out);
                return;
            }
            let waiting = !net.classify(&callee).is_empty();
            let call_id = net.free_call_id(&callee);
            let l = &mut net.links[position];
            l.ends[1].call_id = call_id;
            l.phase = Phase::Alerting {
                since: now,
                last_ring: now,
            };
            let presented = l.ends[1].sees.clone();
            if let Party::Modem(index) = callee {
                if waiting {
                    net.waiting_lines(index, &presented, out);
                } else {
                    net.ring_lines(index, &presented, out);
                }
            }
        })
    }

    /// Dials and alerts at once (a network without set-up delay).
    pub fn dial(
        &mut self,
        caller: &Party,
        callee: &Party,
        dialed: &str,
        reach: Reach,
        now: Instant,
    ) -> Result<Vec<Notice>, CallError> {
        let (link, mut notices) = self.originate(caller, callee, dialed, now)?;
        notices.extend(self.alert(link, reach, now));
        Ok(notices)
    }

    /// Whether a new call to `party` gets busy: a handset in a call, or a
    /// modem that already has a call ringing or is full. A modem in a call
    /// gets the new one as a waiting call (22.083).
    fn busy(&self, party: &Party) -> bool {
        let calls = self.classify(party);
        match party {
            Party::Handset(_) => !calls.is_empty(),
            Party::Modem(_) => {
                calls.incoming.is_some()
                    || calls.count() >= MAX_CALLS
                    || (!calls.is_empty() && !self.offers(party, "2"))
            }
        }
    }

    fn ring_lines(&self, index: usize, caller_id: &str, out: &mut Vec<Notice>) {
        let Some(modem) = self.modems.get(&index) else {
            return;
        };
        let ring = if modem.settings.crc {
            "+CRING: VOICE"
        } else {
            "RING"
        };
        push_line(out, index, ring.to_string());
        if modem.settings.clip {
            // 27.007 §7.6: number, type, subaddr, satype, alpha, CLI validity.
            push_line(
                out,
                index,
                format!("+CLIP: \"{caller_id}\",{},,,,0", number_type(caller_id)),
            );
        }
    }

    fn waiting_lines(&self, index: usize, caller_id: &str, out: &mut Vec<Notice>) {
        if self.modems.get(&index).is_some_and(|m| m.settings.ccwa) {
            // 27.007 §7.12: number, type, class (1 voice).
            push_line(
                out,
                index,
                format!("+CCWA: \"{caller_id}\",{},1", number_type(caller_id)),
            );
        }
    }

    /// `ATA` or a handset's answer: the incoming call becomes active.
    pub fn answer(&mut self, party: &Party) -> Result<Vec<Notice>, CallError> {
        self.modem(party)?;
        let calls = self.classify(party);
        let Some(position) = calls.incoming else {
            return Err(CallError::NoIncomingCall);
        };
        if calls.count() > 1 {
            return Err(CallError::NotAllowed(
                "a waiting call is accepted with +CHLD=1 or +CHLD=2",
            ));
        }
        Ok(self.observe(|net, _| net.links[position].phase = Phase::Connected))
    }

    /// `ATH`, `AT+CHUP` or a handset's hang-up: every call of the party ends
    /// (a ringing one is rejected: its caller gets busy).
    pub fn hangup(&mut self, party: &Party) -> Result<Vec<Notice>, CallError> {
        self.modem(party)?;
        let party = party.clone();
        Ok(self.observe(|net, out| {
            let ids: Vec<u64> = net
                .links
                .iter()
                .filter(|l| l.end_of(&party).is_some())
                .map(|l| l.id)
                .collect();
            let any = !ids.is_empty();
            for id in ids {
                net.release(id, &party, out);
            }
            if any && let Party::Handset(number) = &party {
                net.last_end.insert(number.clone(), EndReason::HungUp);
            }
        }))
    }

    /// A modem leaves the network (unplugged, reset, radio off): its calls
    /// end as if it had hung up, and the other parties hear `NO CARRIER`.
    pub fn drop_party(&mut self, party: &Party) -> Vec<Notice> {
        let party = party.clone();
        self.observe(|net, out| {
            let ids: Vec<u64> = net
                .links
                .iter()
                .filter(|l| l.end_of(&party).is_some())
                .map(|l| l.id)
                .collect();
            for id in ids {
                net.release(id, &party, out);
            }
        })
    }

    /// `AT+CHLD=<value>` on a modem.
    pub fn chld(&mut self, index: usize, value: &str) -> Result<Vec<Notice>, CallError> {
        let party = Party::Modem(index);
        self.modem(&party)?;
        let op = Chld::parse(value)?;
        if !self.offers(&party, op.service()) {
            return Err(CallError::NotOffered(op.service().into()));
        }
        let calls = self.classify(&party);
        let not_allowed = CallError::NotAllowed;
        match op {
            Chld::ReleaseHeldOrWaiting => {
                if let Some(ringing) = calls.incoming {
                    let id = self.links[ringing].id;
                    Ok(self.observe(|net, out| net.release(id, &party, out)))
                } else if !calls.held.is_empty() {
                    let ids = self.ids(&calls.held);
                    Ok(self.observe(|net, out| net.release_all(&ids, &party, out)))
                } else {
                    Err(not_allowed("no held or waiting call"))
                }
            }
            Chld::ReleaseActiveAcceptOther => {
                let mut release = calls.active.clone();
                release.extend(calls.outgoing);
                if release.is_empty() && calls.incoming.is_none() && calls.held.is_empty() {
                    return Err(not_allowed("no call"));
                }
                let release = self.ids(&release);
                let accept = calls.incoming.map(|p| self.links[p].id);
                let retrieve = self.ids(&calls.held);
                Ok(self.observe(|net, out| {
                    net.release_all(&release, &party, out);
                    if let Some(id) = accept {
                        net.connect(id);
                    } else {
                        net.set_held(&retrieve, &party, false);
                    }
                }))
            }
            Chld::Release(call) => {
                let id = self.link_of_call(&party, call)?;
                Ok(self.observe(|net, out| net.release(id, &party, out)))
            }
            Chld::HoldActiveAcceptOther => {
                if calls.outgoing.is_some() {
                    return Err(not_allowed("a call is being set up"));
                }
                if calls.is_empty() {
                    return Err(not_allowed("no call"));
                }
                if calls.incoming.is_some() && !calls.active.is_empty() && !calls.held.is_empty() {
                    return Err(not_allowed("an active and a held call already exist"));
                }
                let hold = self.ids(&calls.active);
                let retrieve = self.ids(&calls.held);
                let accept = calls.incoming.map(|p| self.links[p].id);
                Ok(self.observe(|net, _| {
                    net.set_held(&hold, &party, true);
                    if let Some(id) = accept {
                        net.connect(id);
                    } else {
                        net.set_held(&retrieve, &party, false);
                    }
                }))
            }
            Chld::Private(call) => {
                let id = self.link_of_call(&party, call)?;
                let in_conference = calls
                    .active
                    .iter()
                    .any(|&p| self.links[p].id == id && calls.active.len() > 1);
                if !in_conference {
                    return Err(not_allowed("private communication needs a multiparty call"));
                }
                if !calls.held.is_empty() {
                    return Err(not_allowed("a held call already exists"));
                }
                let others: Vec<u64> = self
                    .ids(&calls.active)
                    .into_iter()
                    .filter(|&other| other != id)
                    .collect();
                Ok(self.observe(|net, _| net.set_held(&others, &party, true)))
            }
            Chld::Join => {
                if calls.active.is_empty() || calls.held.is_empty() {
                    return Err(not_allowed("multiparty needs an active and a held call"));
                }
                if calls.active.len() + calls.held.len() > MAX_MULTIPARTY {
                    return Err(not_allowed("a multiparty call has at most five parties"));
                }
                let held = self.ids(&calls.held);
                Ok(self.observe(|net, _| net.set_held(&held, &party, false)))
            }
            Chld::Transfer => {
                if calls.active.len() != 1 || calls.held.len() != 1 || calls.outgoing.is_some() {
                    return Err(not_allowed("transfer needs one active and one held call"));
                }
                let active = self.links[calls.active[0]].id;
                let held = self.links[calls.held[0]].id;
                Ok(self.observe(|net, _| net.transfer(&party, held, active)))
            }
        }
    }

    /// Alerts the callees of calls past their set-up delay (`reach` says
    /// whether each can be reached), releases unanswered calls past the ring
    /// timeout, and repeats `RING` at ringing modems.
    pub fn tick(&mut self, now: Instant, reach: impl Fn(&Party) -> Reach) -> Vec<Notice> {
        let timing = self.timing;
        let due: Vec<(LinkId, Party)> = self
            .links
            .iter()
            .filter(|l| {
                matches!(l.phase, Phase::Dialing { since }
                    if now.saturating_duration_since(since) >= timing.setup_delay)
            })
            .map(|l| (LinkId(l.id), l.ends[1].party.clone()))
            .collect();
        let mut notices = Vec::new();
        for (link, callee) in due {
            notices.extend(self.alert(link, reach(&callee), now));
        }
        notices.extend(self.observe(|net, out| {
            let expired: Vec<u64> = net
                .links
                .iter()
                .filter(|l| {
                    matches!(l.phase, Phase::Alerting { since, .. }
                        if now.saturating_duration_since(since) >= timing.ring_timeout)
                })
                .map(|l| l.id)
                .collect();
            for id in expired {
                if let Some(position) = net.links.iter().position(|l| l.id == id) {
                    let link = net.links.remove(position);
                    net.ended(&link.ends[0].party, EndReason::NoAnswer, out);
                    net.ended(&link.ends[1].party, EndReason::RemoteHungUp, out);
                }
            }
            for position in 0..net.links.len() {
                let Phase::Alerting { since, last_ring } = net.links[position].phase else {
                    continue;
                };
                if now.saturating_duration_since(last_ring) < timing.ring_period {
                    continue;
                }
                net.links[position].phase = Phase::Alerting {
                    since,
                    last_ring: now,
                };
                let callee = net.links[position].ends[1].clone();
                if let Party::Modem(index) = callee.party
                    && net.classify(&callee.party).count() == 1
                {
                    net.ring_lines(index, &callee.sees, out);
                }
            }
        }));
        notices
    }

    fn ids(&self, positions: &[usize]) -> Vec<u64> {
        positions.iter().map(|&p| self.links[p].id).collect()
    }

    fn link_of_call(&self, party: &Party, call: u8) -> Result<u64, CallError> {
        self.links
            .iter()
            .find(|l| {
                l.end_of(party)
                    .is_some_and(|side| l.ends[side].call_id == call)
            })
            .map(|l| l.id)
            .ok_or(CallError::NoSuchCall(call))
    }

    fn connect(&mut self, id: u64) {
        if let Some(link) = self.links.iter_mut().find(|l| l.id == id) {
            link.phase = Phase::Connected;
        }
    }

    fn set_held(&mut self, ids: &[u64], party: &Party, held: bool) {
        for link in self.links.iter_mut().filter(|l| ids.contains(&l.id)) {
            if let Some(side) = link.end_of(party) {
                link.ends[side].held = held;
            }
        }
    }

    fn release_all(&mut self, ids: &[u64], by: &Party, out: &mut Vec<Notice>) {
        for &id in ids {
            self.release(id, by, out);
        }
    }

    /// Ends one link because `by` released it; tells the other side why.
    fn release(&mut self, id: u64, by: &Party, out: &mut Vec<Notice>) {
        let Some(position) = self.links.iter().position(|l| l.id == id) else {
            return;
        };
        let link = self.links.remove(position);
        let Some(side) = link.end_of(by) else {
            return;
        };
        let other = &link.ends[1 - side];
        let reason = match link.phase {
            // The callee rejected the call (22.030 UDUB): the caller hears busy.
            Phase::Alerting { .. } if other.direction == Direction::MobileOriginated => {
                EndReason::Busy
            }
            _ => EndReason::RemoteHungUp,
        };
        // A callee never alerted has nothing to end.
        if link.presented_to(1 - side) {
            self.ended(&other.party.clone(), reason, out);
        }
    }

    /// Tells a party one of its calls ended.
    fn ended(&mut self, party: &Party, reason: EndReason, out: &mut Vec<Notice>) {
        match party {
            Party::Modem(index) => {
                let line = match reason {
                    EndReason::Busy => "BUSY",
                    EndReason::NoAnswer => "NO ANSWER",
                    _ => "NO CARRIER",
                };
                push_line(out, *index, line.into());
            }
            Party::Handset(number) => {
                self.last_end.insert(number.clone(), reason);
            }
        }
    }

    /// 22.091 explicit call transfer: the remote ends of the modem's held
    /// and active calls are joined into one call and the modem leaves it.
    fn transfer(&mut self, modem: &Party, held: u64, active: u64) {
        let take = |net: &mut Self, id: u64| -> Option<End> {
            let position = net.links.iter().position(|l| l.id == id)?;
            let link = net.links.remove(position);
            let side = link.end_of(modem)?;
            let [a, b] = link.ends;
            Some(if side == 0 { b } else { a })
        };
        let (Some(mut first), Some(mut second)) = (take(self, held), take(self, active)) else {
            return;
        };
        first.multiparty = false;
        second.multiparty = false;
        let id = self.next_link;
        self.next_link += 1;
        self.links.push(Link {
            id,
            phase: Phase::Connected,
            ends: [first, second],
        });
    }

    /// After any change: a modem's multiparty flag is set on its calls when
    /// two or more of them are active together, or held together
    /// (22.084: a multiparty call of one remote party is an ordinary call).
    fn normalise_multiparty(&mut self) {
        let modems: Vec<usize> = self.modems.keys().copied().collect();
        for index in modems {
            let party = Party::Modem(index);
            let calls = self.classify(&party);
            for group in [&calls.active, &calls.held] {
                let joined = group.len() > 1;
                for &position in group {
                    if let Some(side) = self.links[position].end_of(&party) {
                        self.links[position].ends[side].multiparty = joined;
                    }
                }
            }
        }
    }

    /// Runs a change and adds the notices every observer derives from it:
    /// `+CLCC` lines for modems with `+CLCC=1`, new states for handsets.
    fn observe(&mut self, change: impl FnOnce(&mut Self, &mut Vec<Notice>)) -> Vec<Notice> {
        let before = self.snapshot();
        let mut out = Vec::new();
        change(self, &mut out);
        self.normalise_multiparty();
        let after = self.snapshot();
        for (index, calls) in &after.modems {
            let old = before.modems.get(index).cloned().unwrap_or_default();
            // Only what a +CLCC line shows counts as a change (not the
            // other side's hold, which the modem does not see).
            let changed = |c: &&CallInfo| old.iter().all(|o| o.clcc_line() != c.clcc_line());
            for call in calls.iter().filter(changed) {
                push_line(&mut out, *index, call.clcc_line());
            }
            for gone in old.iter().filter(|o| calls.iter().all(|c| c.id != o.id)) {
                // SIMCom reports the released call once more with stat 6.
                let line = clcc_line(
                    gone.id,
                    gone.direction as u8,
                    6,
                    gone.multiparty,
                    &gone.number,
                );
                push_line(&mut out, *index, line);
            }
        }
        let numbers: BTreeSet<&String> = before
            .handsets
            .keys()
            .chain(after.handsets.keys())
            .collect();
        for number in numbers {
            if before.handsets.get(number) != after.handsets.get(number)
                && let Some(call) = after.handsets.get(number)
            {
                out.push(Notice::Handset {
                    number: number.clone(),
                    call: call.clone(),
                });
            }
        }
        out
    }

    fn snapshot(&self) -> Snapshot {
        let modems = self
            .modems
            .iter()
            .filter(|(_, m)| m.settings.clcc)
            .map(|(&index, _)| (index, self.calls_of(&Party::Modem(index))))
            .collect();
        let mut numbers: BTreeSet<String> = self.last_end.keys().cloned().collect();
        for link in &self.links {
            for end in &link.ends {
                if let Party::Handset(number) = &end.party {
                    numbers.insert(number.clone());
                }
            }
        }
        let handsets = numbers
            .into_iter()
            .map(|n| {
                let call = self.handset_call(&n);
                (n, call)
            })
            .collect();
        Snapshot { modems, handsets }
    }
}

struct Snapshot {
    modems: BTreeMap<usize, Vec<CallInfo>>,
    handsets: BTreeMap<String, HandsetCall>,
}

fn push_line(out: &mut Vec<Notice>, index: usize, line: String) {
    out.push(Notice::Modem { index, line });
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "+447700900100";
    const Q: &str = "+447700900101";
    const A: &str = "+15550000001";
    const B: &str = "+15550000002";
    const C: &str = "+15550000003";

    fn voice(chld: &[&str], clcc_urc: bool) -> Voice {
        Voice {
            supported: true,
            chld: chld.iter().map(|s| s.to_string()).collect(),
            clcc_urc,
        }
    }

    const ALL: &[&str] = &["0", "1", "1x", "2", "2x", "3", "4"];

    /// Modem 0 is P and modem 1 is Q, both offering every service, with
    /// caller ID presentation on.
    fn network() -> (CallNetwork, Instant) {
        let mut net = CallNetwork::new(CallTiming::default());
        net.add_modem(0, P, &voice(ALL, false));
        net.add_modem(1, Q, &voice(ALL, true));
        for index in [0, 1] {
            net.update_settings(index, |s| s.clip = true).unwrap();
        }
        (net, Instant::now())
    }

    fn m(index: usize) -> Party {
        Party::Modem(index)
    }

    fn h(number: &str) -> Party {
        Party::Handset(number.to_string())
    }

    fn lines(notices: &[Notice], index: usize) -> Vec<String> {
        notices
            .iter()
            .filter_map(|n| match n {
                Notice::Modem { index: i, line } if *i == index => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    fn dial(net: &mut CallNetwork, from: &Party, to: &Party, now: Instant) -> Vec<Notice> {
        let dialed = net.number_of(to).unwrap();
        net.dial(from, to, &dialed, Reach::Reachable, now).unwrap()
    }

    fn tick(net: &mut CallNetwork, now: Instant) -> Vec<Notice> {
        net.tick(now, |_| Reach::Reachable)
    }

    fn states(net: &CallNetwork, index: usize) -> Vec<(u8, CallState, bool, String)> {
        net.calls_of(&m(index))
            .into_iter()
            .map(|c| (c.id, c.state, c.multiparty, c.number))
            .collect()
    }

    /// A calls P and P answers: A active with P.
    fn a_connected_to_p(net: &mut CallNetwork, now: Instant) {
        dial(net, &h(A), &m(0), now);
        net.answer(&m(0)).unwrap();
    }

    /// The bridge's path: A calls P, P answers, holds A, dials B, B answers.
    fn bridge_ready(net: &mut CallNetwork, now: Instant) {
        a_connected_to_p(net, now);
        net.chld(0, "2").unwrap();
        dial(net, &m(0), &h(B), now);
        net.answer(&h(B)).unwrap();
    }

    #[test]
    fn a_handset_calling_a_modem_rings_with_its_own_number() {
        let (mut net, now) = network();
        let notices = dial(&mut net, &h(A), &m(0), now);
        assert_eq!(
            lines(&notices, 0),
            ["RING", "+CLIP: \"+15550000001\",145,,,,0"]
        );
        assert_eq!(net.clcc_lines(0), ["+CLCC: 1,1,4,0,0,\"+15550000001\",145"]);
        let a = net.handset_call(A);
        assert_eq!((a.state, a.caller_id.as_deref()), ("alerting", Some(P)));
        assert!(a.connected_to.is_empty());
    }

    #[test]
    fn ring_style_follows_clip_and_crc() {
        let (mut net, now) = network();
        net.update_settings(0, |s| {
            s.clip = false;
            s.crc = true;
        })
        .unwrap();
        let notices = dial(&mut net, &h(A), &m(0), now);
        assert_eq!(lines(&notices, 0), ["+CRING: VOICE"]);
    }

    #[test]
    fn a_modem_calling_a_handset_presents_its_msisdn() {
        let (mut net, now) = network();
        let (link, _) = net.originate(&m(0), &h(B), "+15550000002", now).unwrap();
        assert_eq!(states(&net, 0), [(1, CallState::Dialing, false, B.into())]);
        assert_eq!(net.handset_call(B).state, "idle");
        net.alert(link, Reach::Reachable, now);
        assert_eq!(states(&net, 0), [(1, CallState::Alerting, false, B.into())]);
        let b = net.handset_call(B);
        assert_eq!((b.state, b.caller_id.as_deref()), ("ringing", Some(P)));
        let notices = net.answer(&h(B)).unwrap();
        assert_eq!(states(&net, 0), [(1, CallState::Active, false, B.into())]);
        assert!(notices.iter().any(|n| matches!(n,
            Notice::Handset { number, call } if number == B && call.state == "active")));
        assert_eq!(net.handset_call(B).connected_to, [P]);
    }

    #[test]
    fn the_tick_alerts_after_the_setup_delay() {
        let timing = CallTiming {
            setup_delay: Duration::from_secs(2),
            ..CallTiming::default()
        };
        let mut net = CallNetwork::new(timing);
        net.add_modem(0, P, &voice(ALL, false));
        let now = Instant::now();
        net.originate(&m(0), &h(B), B, now).unwrap();
        assert!(tick(&mut net, now + Duration::from_secs(1)).is_empty());
        assert_eq!(net.handset_call(B).state, "idle");
        tick(&mut net, now + Duration::from_secs(2));
        assert_eq!(net.handset_call(B).state, "ringing");
        net.hangup(&m(0)).unwrap();
        net.originate(&m(0), &h(C), C, now).unwrap();
        let notices = net.tick(now + Duration::from_secs(3), |_| Reach::SwitchedOff);
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        assert!(net.clcc_lines(0).is_empty());
    }

    #[test]
    fn modem_to_modem_calls_show_each_msisdn() {
        let (mut net, now) = network();
        let notices = dial(&mut net, &m(0), &m(1), now);
        assert!(lines(&notices, 1).contains(&format!("+CLIP: \"{P}\",145,,,,0")));
        net.answer(&m(1)).unwrap();
        assert_eq!(states(&net, 0), [(1, CallState::Active, false, Q.into())]);
        assert_eq!(states(&net, 1), [(1, CallState::Active, false, P.into())]);
    }

    #[test]
    fn ring_repeats_until_the_no_answer_timeout() {
        let (mut net, now) = network();
        dial(&mut net, &h(A), &m(0), now);
        let timing = net.timing();
        assert!(lines(&tick(&mut net, now + Duration::from_secs(1)), 0).is_empty());
        assert_eq!(
            lines(&tick(&mut net, now + timing.ring_period), 0)[0],
            "RING"
        );
        let notices = tick(&mut net, now + timing.ring_timeout);
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        assert!(net.clcc_lines(0).is_empty());
        let a = net.handset_call(A);
        assert_eq!((a.state, a.last_end), ("idle", Some(EndReason::NoAnswer)));
    }

    #[test]
    fn an_unanswered_modem_call_gets_no_answer() {
        let (mut net, now) = network();
        dial(&mut net, &m(0), &h(B), now);
        let timeout = net.timing().ring_timeout;
        let notices = tick(&mut net, now + timeout);
        assert_eq!(lines(&notices, 0), ["NO ANSWER"]);
        assert_eq!(net.handset_call(B).state, "idle");
    }

    #[test]
    fn a_busy_handset_gives_busy() {
        let (mut net, now) = network();
        dial(&mut net, &h(B), &h(C), now);
        let notices = dial(&mut net, &m(0), &h(B), now);
        assert_eq!(lines(&notices, 0), ["BUSY"]);
        assert!(net.clcc_lines(0).is_empty());
        // A handset calling a busy handset hears busy too.
        dial(&mut net, &h(A), &h(C), now);
        assert_eq!(net.handset_call(A).last_end, Some(EndReason::Busy));
    }

    #[test]
    fn switched_off_and_barred_fail_at_once() {
        for reach in [Reach::SwitchedOff, Reach::Barred] {
            let (mut net, now) = network();
            let notices = net.dial(&m(0), &h(B), B, reach, now).unwrap();
            assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
            assert!(net.clcc_lines(0).is_empty());
            assert_eq!(net.handset_call(B).state, "idle");
            net.dial(&h(A), &m(0), P, reach, now).unwrap();
            assert_eq!(net.handset_call(A).last_end, Some(EndReason::Unreachable));
        }
    }

    #[test]
    fn rejecting_gives_busy_and_giving_up_stops_the_ringing() {
        let (mut net, now) = network();
        dial(&mut net, &m(0), &h(B), now);
        let notices = net.hangup(&h(B)).unwrap();
        assert_eq!(lines(&notices, 0), ["BUSY"]);
        assert_eq!(net.handset_call(B).last_end, Some(EndReason::HungUp));

        dial(&mut net, &h(A), &m(0), now);
        let notices = net.hangup(&h(A)).unwrap();
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        assert!(net.clcc_lines(0).is_empty());
        assert!(lines(&tick(&mut net, now + Duration::from_secs(10)), 0).is_empty());
    }

    #[test]
    fn hang_up_reaches_the_other_side() {
        let (mut net, now) = network();
        a_connected_to_p(&mut net, now);
        assert_eq!(net.handset_call(A).connected_to, [P]);
        let notices = net.hangup(&h(A)).unwrap();
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        a_connected_to_p(&mut net, now);
        net.hangup(&m(0)).unwrap();
        let a = net.handset_call(A);
        assert_eq!(
            (a.state, a.last_end),
            ("idle", Some(EndReason::RemoteHungUp))
        );
    }

    #[test]
    fn answering_without_a_ringing_call_fails() {
        let (mut net, _) = network();
        assert_eq!(net.answer(&m(0)), Err(CallError::NoIncomingCall));
        assert_eq!(net.answer(&h(A)), Err(CallError::NoIncomingCall));
    }

    #[test]
    fn own_number_and_second_calls_are_refused() {
        let (mut net, now) = network();
        assert_eq!(
            net.dial(&m(0), &m(0), P, Reach::Reachable, now),
            Err(CallError::OwnNumber)
        );
        dial(&mut net, &h(A), &h(B), now);
        assert_eq!(
            net.dial(&h(A), &m(0), P, Reach::Reachable, now),
            Err(CallError::AlreadyInCall)
        );
        dial(&mut net, &h(C), &m(0), now);
        assert!(matches!(
            net.dial(&m(0), &h(B), B, Reach::Reachable, now),
            Err(CallError::NotAllowed(_))
        ));
    }

    #[test]
    fn a_second_call_waits_and_hold_accepts_it() {
        let (mut net, now) = network();
        net.update_settings(0, |s| s.ccwa = true).unwrap();
        a_connected_to_p(&mut net, now);
        let notices = dial(&mut net, &h(B), &m(0), now);
        assert_eq!(lines(&notices, 0), ["+CCWA: \"+15550000002\",145,1"]);
        assert_eq!(
            states(&net, 0),
            [
                (1, CallState::Active, false, A.into()),
                (2, CallState::Waiting, false, B.into())
            ]
        );
        // A waiting call never RINGs.
        assert!(lines(&tick(&mut net, now + Duration::from_secs(4)), 0).is_empty());
        assert!(matches!(net.answer(&m(0)), Err(CallError::NotAllowed(_))));
        net.chld(0, "2").unwrap();
        assert_eq!(
            states(&net, 0),
            [
                (1, CallState::Held, false, A.into()),
                (2, CallState::Active, false, B.into())
            ]
        );
        let a = net.handset_call(A);
        assert_eq!((a.state, a.connected_to.len()), ("held", 0));
        assert_eq!(net.handset_call(B).connected_to, [P]);
        // Swap.
        net.chld(0, "2").unwrap();
        assert_eq!(net.handset_call(A).connected_to, [P]);
        assert_eq!(net.handset_call(B).state, "held");
    }

    #[test]
    fn chld_0_rejects_a_waiting_call_then_releases_held_ones() {
        let (mut net, now) = network();
        a_connected_to_p(&mut net, now);
        dial(&mut net, &m(0), &m(1), now); // A is held automatically
        net.answer(&m(1)).unwrap();
        dial(&mut net, &h(B), &m(0), now);
        net.chld(0, "0").unwrap();
        assert_eq!(net.handset_call(B).last_end, Some(EndReason::Busy));
        assert_eq!(net.handset_call(A).state, "held");
        let notices = net.chld(0, "0").unwrap();
        assert!(lines(&notices, 0).is_empty());
        assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
        assert_eq!(states(&net, 0), [(2, CallState::Active, false, Q.into())]);
        net.hangup(&m(0)).unwrap();
        assert!(matches!(net.chld(0, "0"), Err(CallError::NotAllowed(_))));
    }

    #[test]
    fn chld_1_releases_the_active_call_and_takes_the_other() {
        let (mut net, now) = network();
        a_connected_to_p(&mut net, now);
        dial(&mut net, &h(B), &m(0), now);
        net.chld(0, "1").unwrap();
        assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
        assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
        // With no waiting call, 1 retrieves the held one.
        net.chld(0, "2").unwrap();
        dial(&mut net, &m(0), &h(C), now);
        net.answer(&h(C)).unwrap();
        net.chld(0, "1").unwrap();
        assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
        assert_eq!(net.handset_call(C).state, "idle");
    }

    #[test]
    fn chld_1x_releases_one_call() {
        let (mut net, now) = network();
        bridge_ready(&mut net, now);
        assert_eq!(net.chld(0, "17"), Err(CallError::NoSuchCall(7)));
        net.chld(0, "11").unwrap();
        assert_eq!(net.handset_call(A).state, "idle");
        assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
    }

    #[test]
    fn multiparty_connects_everyone_and_mute_hides_the_modem() {
        let (mut net, now) = network();
        bridge_ready(&mut net, now);
        assert_eq!(net.handset_call(A).state, "held");
        net.chld(0, "3").unwrap();
        assert_eq!(
            states(&net, 0),
            [
                (1, CallState::Active, true, A.into()),
                (2, CallState::Active, true, B.into())
            ]
        );
        assert_eq!(net.handset_call(A).connected_to, [B, P]);
        net.update_settings(0, |s| s.muted = true).unwrap();
        let (a, b) = (net.handset_call(A), net.handset_call(B));
        assert_eq!(a.connected_to, [B]);
        assert_eq!(b.connected_to, [A]);
        // Neither sees the other's number.
        assert_eq!(a.caller_id.as_deref(), Some(P));
        assert_eq!(b.caller_id.as_deref(), Some(P));
        let notices = net.hangup(&h(A)).unwrap();
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
        assert!(net.handset_call(B).connected_to.is_empty());
    }

    #[test]
    fn private_communication_splits_a_multiparty() {
        let (mut net, now) = network();
        bridge_ready(&mut net, now);
        assert!(matches!(net.chld(0, "21"), Err(CallError::NotAllowed(_))));
        net.chld(0, "3").unwrap();
        net.chld(0, "22").unwrap();
        assert_eq!(
            states(&net, 0),
            [
                (1, CallState::Held, false, A.into()),
                (2, CallState::Active, false, B.into())
            ]
        );
        assert_eq!(net.handset_call(B).connected_to, [P]);
    }

    #[test]
    fn transfer_connects_the_remote_parties_and_frees_the_modem() {
        let (mut net, now) = network();
        bridge_ready(&mut net, now);
        net.chld(0, "4").unwrap();
        assert!(net.clcc_lines(0).is_empty());
        let (a, b) = (net.handset_call(A), net.handset_call(B));
        assert_eq!(
            (a.state, a.connected_to.clone()),
            ("active", vec![B.to_string()])
        );
        assert_eq!(
            (b.state, b.connected_to.clone()),
            ("active", vec![A.to_string()])
        );
        assert_eq!(a.caller_id.as_deref(), Some(P));
        assert_eq!(b.caller_id.as_deref(), Some(P));
        // The modem is free for the next call.
        dial(&mut net, &h(C), &m(0), now);
        assert_eq!(states(&net, 0), [(1, CallState::Incoming, false, C.into())]);
        let notices = net.hangup(&h(B)).unwrap();
        assert!(lines(&notices, 0).is_empty());
        assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
    }

    #[test]
    fn transfer_and_join_need_an_active_and_a_held_call() {
        let (mut net, now) = network();
        a_connected_to_p(&mut net, now);
        for value in ["3", "4"] {
            assert!(matches!(net.chld(0, value), Err(CallError::NotAllowed(_))));
        }
        net.chld(0, "2").unwrap();
        dial(&mut net, &m(0), &h(B), now);
        // B still rings: no transfer of an alerting call here.
        assert!(matches!(net.chld(0, "4"), Err(CallError::NotAllowed(_))));
        assert!(matches!(net.chld(0, "2"), Err(CallError::NotAllowed(_))));
    }

    #[test]
    fn services_the_network_does_not_offer_are_refused() {
        let mut net = CallNetwork::new(CallTiming::default());
        net.add_modem(0, P, &voice(&["0", "1", "1x", "2", "2x"], false));
        assert_eq!(net.chld_test_line(0).unwrap(), "+CHLD: (0,1,1x,2,2x)");
        let now = Instant::now();
        bridge_ready(&mut net, now);
        for value in ["3", "4"] {
            let error = net.chld(0, value).unwrap_err();
            assert_eq!(error, CallError::NotOffered(value.into()));
            assert_eq!(error.cme().map(|c| c.0), Some(3));
        }
        for value in ["5", "x", "18", "1a", "22222"] {
            let error = net.chld(0, value).unwrap_err();
            assert_eq!(error, CallError::InvalidChld(value.into()));
            assert_eq!(error.cme().map(|c| c.0), Some(4));
        }
    }

    #[test]
    fn the_network_may_withdraw_a_service() {
        let (mut net, now) = network();
        net.set_services(0, vec!["1".into(), "2".into(), "3".into()])
            .unwrap();
        assert_eq!(net.chld_test_line(0).unwrap(), "+CHLD: (1,2,3)");
        assert_eq!(
            net.set_services(0, vec!["5".into()]),
            Err(CallError::InvalidChld("5".into()))
        );
        bridge_ready(&mut net, now);
        assert_eq!(net.chld(0, "4"), Err(CallError::NotOffered("4".into())));
        net.chld(0, "3").unwrap();
    }

    #[test]
    fn a_modem_without_hold_is_busy_while_in_a_call() {
        let mut net = CallNetwork::new(CallTiming::default());
        net.add_modem(0, P, &voice(&["0", "1"], false));
        let now = Instant::now();
        a_connected_to_p(&mut net, now);
        assert_eq!(
            net.dial(&m(0), &h(B), B, Reach::Reachable, now),
            Err(CallError::NotOffered("2".into()))
        );
        dial(&mut net, &h(B), &m(0), now);
        assert_eq!(net.handset_call(B).last_end, Some(EndReason::Busy));
    }

    #[test]
    fn unplugging_drops_every_leg() {
        let (mut net, now) = network();
        bridge_ready(&mut net, now);
        net.chld(0, "3").unwrap();
        net.drop_party(&m(0));
        for number in [A, B] {
            let call = net.handset_call(number);
            assert_eq!(
                (call.state, call.last_end),
                ("idle", Some(EndReason::RemoteHungUp))
            );
        }
    }

    #[test]
    fn clcc_reports_are_only_for_models_that_have_them() {
        let (mut net, now) = network();
        assert_eq!(
            net.update_settings(0, |s| s.clcc = true),
            Err(CallError::ClccUrcUnsupported)
        );
        net.update_settings(1, |s| s.clcc = true).unwrap();
        let notices = dial(&mut net, &h(A), &m(1), now);
        assert_eq!(
            lines(&notices, 1),
            [
                "RING",
                "+CLIP: \"+15550000001\",145,,,,0",
                "+CLCC: 1,1,4,0,0,\"+15550000001\",145"
            ]
        );
        let notices = net.answer(&m(1)).unwrap();
        assert_eq!(
            lines(&notices, 1),
            ["+CLCC: 1,1,0,0,0,\"+15550000001\",145"]
        );
        let notices = net.hangup(&h(A)).unwrap();
        assert_eq!(
            lines(&notices, 1),
            ["NO CARRIER", "+CLCC: 1,1,6,0,0,\"+15550000001\",145"]
        );
    }

    /// One random operation on a network of modems 0-1 and handsets A-C.
    fn apply(net: &mut CallNetwork, op: (u8, u8, u8), now: Instant) {
        let parties = [m(0), m(1), h(A), h(B), h(C)];
        let chld = ["0", "1", "11", "12", "2", "21", "22", "3", "4"];
        let party = &parties[usize::from(op.1) % parties.len()];
        let other = &parties[usize::from(op.2) % parties.len()];
        let _ = match op.0 % 7 {
            0 => {
                let dialed = net.number_of(other).unwrap_or_default();
                let reach = if op.2.is_multiple_of(5) {
                    Reach::Barred
                } else {
                    Reach::Reachable
                };
                net.dial(party, other, &dialed, reach, now).map(drop)
            }
            1 => net.answer(party).map(drop),
            2 => net.hangup(party).map(drop),
            3 => net
                .chld(usize::from(op.1 % 2), chld[usize::from(op.2) % chld.len()])
                .map(drop),
            4 => net.update_settings(usize::from(op.1 % 2), |s| s.muted = op.2.is_multiple_of(2)),
            5 => {
                net.tick(now + Duration::from_secs(u64::from(op.2)), |_| {
                    Reach::Reachable
                });
                Ok(())
            }
            _ => {
                net.drop_party(&m(usize::from(op.1 % 2)));
                Ok(())
            }
        };
    }

    proptest::proptest! {
        /// Any sequence of operations keeps the network consistent: call
        /// ids unique per party, at most one call being set up each way,
        /// at most one held group and one active group per modem, and
        /// handsets hear each other symmetrically.
        #[test]
        fn any_sequence_keeps_the_network_consistent(
            ops in proptest::collection::vec((0u8..7, 0u8..5, 0u8..9), 0..60)
        ) {
            let (mut net, now) = network();
            for op in ops {
                apply(&mut net, op, now);
                for party in [m(0), m(1), h(A), h(B), h(C)] {
                    let calls = net.calls_of(&party);
                    let ids: BTreeSet<u8> = calls.iter().map(|c| c.id).collect();
                    proptest::prop_assert_eq!(ids.len(), calls.len());
                    let count = |states: &[CallState]| {
                        calls.iter().filter(|c| states.contains(&c.state)).count()
                    };
                    proptest::prop_assert!(count(&[CallState::Dialing, CallState::Alerting]) <= 1);
                    proptest::prop_assert!(count(&[CallState::Incoming, CallState::Waiting]) <= 1);
                    let active = count(&[CallState::Active]);
                    let multiparty = calls.iter().filter(|c| c.multiparty).count();
                    // Several active calls are one multiparty call.
                    proptest::prop_assert!(active <= 1 || multiparty >= active);
                    if let Party::Handset(number) = &party {
                        proptest::prop_assert!(calls.len() <= 1);
                        for heard in net.handset_call(number).connected_to {
                            if [A, B, C].contains(&heard.as_str()) {
                                proptest::prop_assert!(
                                    net.handset_call(&heard).connected_to.contains(number)
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn national_numbers_have_type_129() {
        assert_eq!(number_type("07700900100"), 129);
        assert_eq!(number_type("+447700900100"), 145);
    }
}
