//! The bridge's states and its pure transition function.

use std::fmt;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::voice::method::{Method, NoMethod};

mod call;
mod keying;
mod ringing;

use crate::modem::parse::{Call as CallLine, CallState};
use crate::number::{PhoneNumber, redact};
use call::*;
use keying::*;
pub use keying::{HubChoice, Keying};
use ringing::*;

/// The clocks of the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeTiming {
    /// The network's time between two `RING`s; a ringing call with no `RING`
    /// for two periods is over (the caller gave up).
    pub ring_period: Duration,
    /// How long the other participant's phone may ring (`[voice]
    /// ring_timeout_seconds`).
    pub answer_timeout: Duration,
    /// How long a step waits for the modem to confirm a command.
    pub command_timeout: Duration,
    /// The longest a call the appliance stays in may last from the other
    /// participant's answer (`[voice] max_duration_seconds`); `None`: no
    /// limit.
    pub max_duration: Option<Duration>,
    /// How long a hub calling its proxy has to key a code, from the answer
    /// or its last key (`[hubs] dtmf_timeout_seconds`).
    pub key_timeout: Duration,
}

impl Default for BridgeTiming {
    fn default() -> Self {
        BridgeTiming {
            ring_period: Duration::seconds(3),
            answer_timeout: Duration::seconds(30),
            command_timeout: Duration::seconds(15),
            max_duration: None,
            key_timeout: Duration::seconds(10),
        }
    }
}

/// What the bridge of one SIM knows before any call: how it can bridge
/// (from [`super::choose_method`]) and its clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub methods: Result<Vec<Method>, NoMethod>,
    pub timing: BridgeTiming,
    /// The modem reports keys the other side presses (DTMF detection):
    /// a hub calling its proxy can key a code.
    pub detects_keys: bool,
}

/// What the modem and the router tell the bridge.
#[derive(Clone, PartialEq)]
pub enum Input {
    /// `RING` or `+CRING: VOICE` (3GPP TS 27.007 §6.11).
    Ring,
    /// `+CLIP` (27.007 §7.6); `None` when the number is withheld.
    CallerId(Option<String>),
    /// `+CCWA` (27.007 §7.12): a second call is waiting.
    CallWaiting(Option<String>),
    /// `NO CARRIER`: some call ended (which one, `+CLCC` tells).
    NoCarrier,
    /// `BUSY`: the call the SIM placed met a busy party.
    Busy,
    /// `NO ANSWER`: the call the SIM placed was not answered.
    NoAnswer,
    /// The lines of an `AT+CLCC` answer (or a `+CLCC` report list): the
    /// calls as the modem has them now.
    Calls(Vec<CallLine>),
    /// The router's answer to [`Command::LookupSession`].
    Session(Lookup),
    /// A command the bridge asked for got `OK`.
    Done(CommandKind),
    /// A command the bridge asked for failed (error text for the record).
    Failed(CommandKind, String),
    /// About once a second.
    Tick,
    /// The modem went away (unplugged, reset): its calls went with it, the
    /// network dropped every leg, and no AT command will reach it.
    ModemLost,
    /// The appliance ends the call it holds, for both sides.
    End(EndRequest),
    /// A key the caller pressed (`+DTMF`, `+QTONEDET`).
    Key(char),
}

/// Why the appliance ends a call it holds (before or after the bridge, as
/// long as the modem is in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndRequest {
    /// The operator's "end call", naming who asked.
    Operator(String),
    /// The call's session was closed or expired (the reason says which).
    SessionEnded(String),
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |n: &Option<String>| n.as_deref().map(redact);
        match self {
            Input::CallerId(n) => write!(f, "CallerId({:?})", redacted(n)),
            Input::CallWaiting(n) => write!(f, "CallWaiting({:?})", redacted(n)),
            Input::Ring => f.write_str("Ring"),
            Input::NoCarrier => f.write_str("NoCarrier"),
            Input::Busy => f.write_str("Busy"),
            Input::NoAnswer => f.write_str("NoAnswer"),
            Input::Calls(lines) => write!(f, "Calls({} lines)", lines.len()),
            Input::Session(lookup) => write!(f, "Session({lookup:?})"),
            Input::Done(kind) => write!(f, "Done({kind:?})"),
            Input::Failed(kind, error) => write!(f, "Failed({kind:?}, {error:?})"),
            Input::Tick => f.write_str("Tick"),
            Input::ModemLost => f.write_str("ModemLost"),
            Input::End(request) => write!(f, "End({request:?})"),
            Input::Key(key) => write!(f, "Key({key:?})"),
        }
    }
}

/// Where a call from a caller goes, as the masking rules decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Bridge the caller to `other`: the other participant of `session`, or
    /// the operator number of a `forward` policy (no session).
    Bridge {
        session: Option<String>,
        caller: PhoneNumber,
        other: PhoneNumber,
    },
    /// Hang up on the caller (out of session, `reject` policy).
    Reject {
        caller: Option<PhoneNumber>,
        reason: String,
    },
    /// The caller is a hub with open sessions on this SIM that carry calls:
    /// answer it and let it key which one (`last`: the session whose
    /// counterpart it last heard from, when it keys none).
    Hub {
        caller: PhoneNumber,
        choices: Vec<HubChoice>,
        last: Option<String>,
    },
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Ask the router where a call from this number (as the modem reported
    /// it) goes; the answer comes back as [`Input::Session`].
    LookupSession { caller: Reported },
    /// `ATA`.
    Answer,
    /// `AT+CHLD=2`: hold the caller.
    Hold,
    /// `ATD<number>;`.
    Dial(PhoneNumber),
    /// `AT+CHLD=4`: explicit call transfer.
    Transfer,
    /// `AT+CHLD=3`: multiparty.
    Join,
    /// `AT+CMUT=<0|1>`.
    Mute(bool),
    /// `ATH`: release every call of the SIM.
    HangupAll,
    /// `AT+CHLD=1<id>`: release one call (a second caller gets busy).
    HangupCall(u8),
    /// `AT+CLCC`: report the calls as [`Input::Calls`].
    ListCalls,
    /// Turn on the modem's detection of the keys the caller presses
    /// (`AT+DDET=1`, `AT+QTONEDET=1`): they come as [`Input::Key`].
    DetectKeys,
    /// A call is over: store its interaction.
    Record(CallRecord),
}

/// The AT commands of [`Command`], as [`Input::Done`] / [`Input::Failed`]
/// name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Answer,
    Hold,
    Dial,
    Transfer,
    Join,
    Mute,
    HangupAll,
    HangupCall,
    ListCalls,
    DetectKeys,
}

impl Command {
    /// The AT command kind, `None` for the router's and the store's work.
    pub fn kind(&self) -> Option<CommandKind> {
        Some(match self {
            Command::Answer => CommandKind::Answer,
            Command::Hold => CommandKind::Hold,
            Command::Dial(_) => CommandKind::Dial,
            Command::Transfer => CommandKind::Transfer,
            Command::Join => CommandKind::Join,
            Command::Mute(_) => CommandKind::Mute,
            Command::HangupAll => CommandKind::HangupAll,
            Command::HangupCall(_) => CommandKind::HangupCall,
            Command::ListCalls => CommandKind::ListCalls,
            Command::DetectKeys => CommandKind::DetectKeys,
            Command::LookupSession { .. } | Command::Record(_) => return None,
        })
    }
}

/// A number as the modem reported it (maybe national), redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Reported(pub String);

impl fmt::Debug for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", redact(&self.0))
    }
}

/// How a call through the SIM ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// Bridged by explicit call transfer; the modem left.
    Transferred,
    /// Bridged as a conference until one side hung up.
    Completed,
    /// The other participant was busy.
    Busy,
    /// The other participant did not answer in time.
    NoAnswer,
    /// The other participant could not be reached.
    Unreachable,
    /// The caller hung up before the bridge was made.
    CallerHungUp,
    /// The RINGs stopped before the call was answered.
    Abandoned,
    /// The caller was refused (out of session, withheld number).
    Rejected(String),
    /// The SIM cannot bridge calls.
    NoMethod(String),
    /// A second caller while this SIM was bridging: refused as busy.
    SecondCallRejected,
    /// The modem refused a step.
    Failed(String),
    /// The operator ended the call (the reason names who).
    EndedByOperator(String),
    /// The call reached `[voice] max_duration_seconds`.
    MaxDuration,
    /// The call's session was closed or expired (the reason says which).
    SessionEnded(String),
}

impl Outcome {
    /// The short name stored with the interaction.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Transferred => "transferred",
            Outcome::Completed => "completed",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Unreachable => "unreachable",
            Outcome::CallerHungUp => "caller_hung_up",
            Outcome::Abandoned => "abandoned",
            Outcome::Rejected(_) => "rejected",
            Outcome::NoMethod(_) => "no_method",
            Outcome::SecondCallRejected => "second_call_rejected",
            Outcome::Failed(_) => "failed",
            Outcome::EndedByOperator(_) => "ended_by_operator",
            Outcome::MaxDuration => "max_duration",
            Outcome::SessionEnded(_) => "session_ended",
        }
    }

    /// The detail beside the name, if any.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Rejected(r)
            | Outcome::NoMethod(r)
            | Outcome::Failed(r)
            | Outcome::EndedByOperator(r)
            | Outcome::SessionEnded(r) => r,
            _ => "",
        }
    }
}

/// One call through the SIM, for the interaction record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub session: Option<String>,
    /// The calling side.
    pub caller: Option<PhoneNumber>,
    /// The side the SIM dialled.
    pub other: Option<PhoneNumber>,
    /// The first `RING`.
    pub started_at: OffsetDateTime,
    /// The other side answered: the conversation began.
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: OffsetDateTime,
    /// From answer to end (conference) or to the transfer (transfer).
    pub duration: Option<Duration>,
    pub outcome: Outcome,
}

/// A call ringing at the SIM, before the router decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Ringing {
    caller: Option<Reported>,
    call_id: Option<u8>,
    started_at: OffsetDateTime,
    last_ring: OffsetDateTime,
    rings: u32,
}

/// A call being bridged.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    session: Option<String>,
    caller: PhoneNumber,
    other: PhoneNumber,
    started_at: OffsetDateTime,
    /// When the current state was entered.
    since: OffsetDateTime,
    caller_call: Option<u8>,
    other_call: Option<u8>,
    dialed_at: Option<OffsetDateTime>,
    dial_confirmed: bool,
    answered_at: Option<OffsetDateTime>,
    /// Methods still to try, best first.
    methods: Vec<Method>,
    /// A step the modem did not confirm (its `OK` lost, or an error after
    /// the fact): the next `+CLCC` snapshot says whether it took effect.
    unconfirmed: Option<String>,
}

/// A conference found on the modem that this bridge did not make (the
/// daemon restarted mid-call), while its session is looked up so that the
/// appliance takes control of it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopting {
    /// The incoming leg: the caller, as the modem reports it.
    caller: Reported,
    caller_call: u8,
    /// The outgoing leg: the other participant, as the modem reports it.
    other: Option<Reported>,
    other_call: u8,
    since: OffsetDateTime,
}

/// Releasing every call; the record waits for the modem to be idle.
#[derive(Debug, Clone, PartialEq)]
pub struct Clearing {
    record: Option<CallRecord>,
    since: OffsetDateTime,
}

/// The state of one SIM's bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Idle,
    Ringing(Ringing),
    Answered(Call),
    HoldingCaller(Call),
    DialingOther(Call),
    AlertingOther(Call),
    Bridged(Call, Method),
    Clearing(Clearing),
    Adopting(Adopting),
    /// A hub called its proxy: answered, it keys a session's code.
    Keying(Keying),
}

impl State {
    /// The call being bridged, in the states that have one (the caller
    /// answered, up to the clearing).
    pub fn call(&self) -> Option<&Call> {
        match self {
            State::Answered(call)
            | State::HoldingCaller(call)
            | State::DialingOther(call)
            | State::AlertingOther(call)
            | State::Bridged(call, _) => Some(call),
            State::Idle
            | State::Ringing(_)
            | State::Clearing(_)
            | State::Adopting(_)
            | State::Keying(_) => None,
        }
    }

    /// The state's name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Ringing(_) => "ringing",
            State::Answered(_) => "answered",
            State::HoldingCaller(_) => "holding-caller",
            State::DialingOther(_) => "dialing-other",
            State::AlertingOther(_) => "alerting-other",
            State::Bridged(_, Method::Transfer) => "bridged(transfer)",
            State::Bridged(_, Method::Conference) => "bridged(conference)",
            State::Clearing(_) => "clearing",
            State::Adopting(_) => "adopting",
            State::Keying(_) => "keying-code",
        }
    }
}

/// A change of state, logged as `old -> new (reason)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.from, self.to, self.reason)
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub state: State,
    pub commands: Vec<Command>,
    /// Set when the state changed.
    pub transition: Option<Transition>,
}

/// One SIM's bridge: its setup and current state.
#[derive(Debug, Clone)]
pub struct Bridge {
    setup: Setup,
    state: State,
}

impl Bridge {
    pub fn new(setup: Setup) -> Self {
        Bridge {
            setup,
            state: State::Idle,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Feeds one input; returns the commands to carry out and the
    /// transition to log, if the state changed.
    pub fn step(
        &mut self,
        input: Input,
        now: OffsetDateTime,
    ) -> (Vec<Command>, Option<Transition>) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let step = step(&self.setup, state, input, now);
        self.state = step.state;
        (step.commands, step.transition)
    }
}

/// What a handler decided: the next state, the commands, and why.
type Decision = (State, Vec<Command>, String);

fn stay(state: State) -> Decision {
    (state, Vec::new(), String::new())
}

/// The transition function: the next state and the commands for `input`.
pub fn step(setup: &Setup, state: State, input: Input, now: OffsetDateTime) -> Step {
    let from = state.name();
    let (next, commands, reason) = match input {
        // Whatever the state: the modem is gone, or the appliance ends it.
        Input::ModemLost => modem_lost(state, now),
        Input::End(request) => end_requested(state, request, now),
        input => match state {
            State::Idle => idle(input, now),
            State::Ringing(ringing) => ringing_step(setup, ringing, input, now),
            State::Answered(call) => answered(setup, call, input, now),
            State::HoldingCaller(call) => holding(setup, call, input, now),
            State::DialingOther(call) | State::AlertingOther(call) => {
                connecting(setup, from, call, input, now)
            }
            State::Bridged(call, method) => bridged(setup, call, method, input, now),
            State::Clearing(clearing) => clearing_step(setup, clearing, input, now),
            State::Adopting(adopting) => adopting_step(setup, adopting, input, now),
            State::Keying(keying) => keying_step(setup, keying, input, now),
        },
    };
    let transition = (next.name() != from).then(|| Transition {
        from,
        to: next.name(),
        reason,
    });
    Step {
        state: next,
        commands,
        transition,
    }
}

/// The appliance ends the call it holds: every call of the SIM is
/// released, so both sides hear the end, and the call is recorded with why.
/// A call still ringing at the SIM has no session yet (the lookup decides),
/// and one being cleared is ending already: both are left as they are.
fn end_requested(state: State, request: EndRequest, now: OffsetDateTime) -> Decision {
    let Some(call) = state.call() else {
        return stay(state);
    };
    let (outcome, reason) = match request {
        EndRequest::Operator(who) => (
            Outcome::EndedByOperator(format!("ended by the operator ({who})")),
            "ended by the operator",
        ),
        EndRequest::SessionEnded(why) => (Outcome::SessionEnded(why), "the session ended"),
    };
    clear(Some(call.record(outcome, now)), now, reason)
}

/// Any state, once the modem is gone: nothing is left to release, so the
/// call is over now and recorded as cut off.
fn modem_lost(state: State, now: OffsetDateTime) -> Decision {
    const WHY: &str = "the modem went away mid-call";
    let record = match state {
        State::Idle | State::Adopting(_) => return stay(State::Idle),
        State::Ringing(r) => Some(r.record(Outcome::Failed(WHY.into()), now)),
        State::Keying(k) => Some(k.record(Outcome::Failed(WHY.into()), now)),
        State::Answered(call)
        | State::HoldingCaller(call)
        | State::DialingOther(call)
        | State::AlertingOther(call)
        | State::Bridged(call, _) => Some(call.record(Outcome::Failed(WHY.into()), now)),
        // It was ending anyway: keep the outcome it was ending with.
        State::Clearing(c) => c.record,
    };
    (
        State::Idle,
        record.into_iter().map(Command::Record).collect(),
        WHY.into(),
    )
}
