//! The bridge's states and its pure transition function.

use std::fmt;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::method::{Method, NoMethod};
use crate::modem::parse::{Call as CallLine, CallState};
use crate::number::{PhoneNumber, redact};

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
}

impl Default for BridgeTiming {
    fn default() -> Self {
        BridgeTiming {
            ring_period: Duration::seconds(3),
            answer_timeout: Duration::seconds(30),
            command_timeout: Duration::seconds(15),
        }
    }
}

/// What the bridge of one SIM knows before any call: how it can bridge
/// (from [`super::choose_method`]) and its clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub methods: Result<Vec<Method>, NoMethod>,
    pub timing: BridgeTiming,
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
        }
    }

    /// The detail beside the name, if any.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Rejected(r) | Outcome::NoMethod(r) | Outcome::Failed(r) => r,
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
}

impl State {
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
    if input == Input::ModemLost {
        let (next, commands, reason) = modem_lost(state, now);
        let transition = (next.name() != from).then(|| Transition {
            from,
            to: next.name(),
            reason,
        });
        return Step {
            state: next,
            commands,
            transition,
        };
    }
    let (next, commands, reason) = match state {
        State::Idle => idle(input, now),
        State::Ringing(ringing) => ringing_step(setup, ringing, input, now),
        State::Answered(call) => answered(setup, call, input, now),
        State::HoldingCaller(call) => holding(setup, call, input, now),
        State::DialingOther(call) | State::AlertingOther(call) => {
            connecting(setup, from, call, input, now)
        }
        State::Bridged(call, method) => bridged(setup, call, method, input, now),
        State::Clearing(clearing) => clearing_step(setup, clearing, input, now),
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

/// Any state, once the modem is gone: nothing is left to release, so the
/// call is over now and recorded as cut off.
fn modem_lost(state: State, now: OffsetDateTime) -> Decision {
    const WHY: &str = "the modem went away mid-call";
    let record = match state {
        State::Idle => return stay(State::Idle),
        State::Ringing(r) => Some(r.record(Outcome::Failed(WHY.into()), now)),
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

fn idle(input: Input, now: OffsetDateTime) -> Decision {
    let ringing = Ringing {
        caller: None,
        call_id: None,
        started_at: now,
        last_ring: now,
        rings: 0,
    };
    match input {
        Input::Ring => (
            State::Ringing(Ringing {
                rings: 1,
                ..ringing
            }),
            Vec::new(),
            "RING".into(),
        ),
        Input::CallerId(Some(number)) => {
            let caller = Reported(number);
            let commands = vec![Command::LookupSession {
                caller: caller.clone(),
            }];
            let ringing = Ringing {
                caller: Some(caller),
                ..ringing
            };
            (State::Ringing(ringing), commands, "+CLIP".into())
        }
        Input::CallerId(None) => withheld(now, now),
        // A call ended that this bridge never saw begin (the daemon
        // restarted mid-call): the snapshot shows what is left to clear, such
        // as the other side of a conference, alone with the modem.
        Input::NoCarrier => (State::Idle, vec![Command::ListCalls], String::new()),
        Input::Calls(lines) => {
            if let Some(line) = lines
                .iter()
                .find(|l| l.incoming && l.state == CallState::Incoming)
            {
                let caller = line.number.clone().map(Reported);
                let commands = caller
                    .iter()
                    .map(|c| Command::LookupSession { caller: c.clone() })
                    .collect();
                let ringing = Ringing {
                    caller,
                    call_id: Some(line.id),
                    ..ringing
                };
                (
                    State::Ringing(ringing),
                    commands,
                    "+CLCC shows an incoming call".into(),
                )
            } else if lines.is_empty() || is_conference(&lines) {
                // A conference from before a restart is the two sides'
                // conversation: it is cleared once one of them leaves.
                stay(State::Idle)
            } else {
                clear(None, now, "calls found while idle")
            }
        }
        _ => stay(State::Idle),
    }
}

/// Two or more parties talking in one multiparty call (27.007 §7.18
/// `<mpty>` 1), nobody ringing or on hold.
fn is_conference(lines: &[CallLine]) -> bool {
    lines.len() >= 2
        && lines
            .iter()
            .all(|l| l.multiparty && l.state == CallState::Active)
}

fn withheld(started_at: OffsetDateTime, now: OffsetDateTime) -> Decision {
    let record = CallRecord {
        session: None,
        caller: None,
        other: None,
        started_at,
        answered_at: None,
        ended_at: now,
        duration: None,
        outcome: Outcome::Rejected("caller ID withheld".into()),
    };
    clear(Some(record), now, "caller ID withheld")
}

/// Release every call; the record is written once the modem is idle.
fn clear(record: Option<CallRecord>, now: OffsetDateTime, reason: &str) -> Decision {
    (
        State::Clearing(Clearing { record, since: now }),
        vec![Command::HangupAll],
        reason.into(),
    )
}

fn ringing_step(setup: &Setup, mut r: Ringing, input: Input, now: OffsetDateTime) -> Decision {
    let over = |r: &Ringing, outcome: Outcome, reason: &str| -> Decision {
        let record = r.record(outcome, now);
        (State::Idle, vec![Command::Record(record)], reason.into())
    };
    match input {
        Input::Ring => {
            r.last_ring = now;
            r.rings += 1;
            // No +CLIP after two RINGs: ask the modem who is calling.
            let commands = if r.caller.is_none() && r.rings >= 2 {
                vec![Command::ListCalls]
            } else {
                Vec::new()
            };
            (State::Ringing(r), commands, String::new())
        }
        Input::CallerId(Some(number)) if r.caller.is_none() => {
            let caller = Reported(number);
            r.caller = Some(caller.clone());
            (
                State::Ringing(r),
                vec![Command::LookupSession { caller }],
                String::new(),
            )
        }
        Input::CallerId(None) if r.caller.is_none() => withheld(r.started_at, now),
        Input::NoCarrier => (State::Ringing(r), vec![Command::ListCalls], String::new()),
        Input::Calls(lines) => {
            let ours = lines
                .iter()
                .find(|l| l.incoming && r.call_id.is_none_or(|id| id == l.id));
            let Some(line) = ours else {
                return over(
                    &r,
                    Outcome::CallerHungUp,
                    "the caller hung up while ringing",
                );
            };
            r.call_id = Some(line.id);
            if r.caller.is_none() && line.number.is_none() {
                return withheld(r.started_at, now);
            }
            let mut commands = Vec::new();
            if r.caller.is_none()
                && let Some(number) = &line.number
            {
                let caller = Reported(number.clone());
                r.caller = Some(caller.clone());
                commands.push(Command::LookupSession { caller });
            }
            commands.extend(reject_extras(&lines, Some(line.id), now));
            (State::Ringing(r), commands, String::new())
        }
        Input::Session(Lookup::Reject { caller, reason }) => {
            let record = CallRecord {
                session: None,
                caller,
                other: None,
                started_at: r.started_at,
                answered_at: None,
                ended_at: now,
                duration: None,
                outcome: Outcome::Rejected(reason.clone()),
            };
            clear(Some(record), now, &format!("rejected: {reason}"))
        }
        Input::Session(Lookup::Bridge {
            session,
            caller,
            other,
        }) => match &setup.methods {
            Err(no_method) => {
                let record = CallRecord {
                    session,
                    caller: Some(caller),
                    other: Some(other),
                    started_at: r.started_at,
                    answered_at: None,
                    ended_at: now,
                    duration: None,
                    outcome: Outcome::NoMethod(no_method.to_string()),
                };
                clear(Some(record), now, "this SIM cannot bridge calls")
            }
            Ok(methods) => {
                let call = Call {
                    session,
                    caller,
                    other,
                    started_at: r.started_at,
                    since: now,
                    caller_call: r.call_id,
                    other_call: None,
                    dialed_at: None,
                    dial_confirmed: false,
                    answered_at: None,
                    unconfirmed: None,
                    methods: methods.clone(),
                };
                let reason = if call.session.is_some() {
                    "session found"
                } else {
                    "forwarded by policy"
                };
                (State::Answered(call), vec![Command::Answer], reason.into())
            }
        },
        Input::Tick if now - r.last_ring > setup.timing.ring_period * 2 => {
            over(&r, Outcome::Abandoned, "no RING for two ring periods")
        }
        _ => stay(State::Ringing(r)),
    }
}

/// Second callers (incoming or waiting calls other than `ours`) are
/// released one by one: they hear busy and never join this conversation.
fn reject_extras(lines: &[CallLine], ours: Option<u8>, now: OffsetDateTime) -> Vec<Command> {
    let mut commands = Vec::new();
    for line in lines.iter().filter(|l| {
        l.incoming
            && matches!(l.state, CallState::Incoming | CallState::Waiting)
            && ours.is_some_and(|id| id != l.id)
    }) {
        commands.push(Command::HangupCall(line.id));
        commands.push(Command::Record(CallRecord {
            session: None,
            caller: line
                .number
                .as_deref()
                .and_then(|n| PhoneNumber::from_e164(n).ok()),
            other: None,
            started_at: now,
            answered_at: None,
            ended_at: now,
            duration: None,
            outcome: Outcome::SecondCallRejected,
        }));
    }
    commands
}

impl Ringing {
    /// The record of a call that ended before the router decided.
    fn record(&self, outcome: Outcome, now: OffsetDateTime) -> CallRecord {
        CallRecord {
            session: None,
            caller: self
                .caller
                .as_ref()
                .and_then(|c| PhoneNumber::from_e164(&c.0).ok()),
            other: None,
            started_at: self.started_at,
            answered_at: None,
            ended_at: now,
            duration: None,
            outcome,
        }
    }
}

impl Call {
    /// The session this call belongs to (`None` when forwarded by policy).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    fn record(&self, outcome: Outcome, now: OffsetDateTime) -> CallRecord {
        CallRecord {
            session: self.session.clone(),
            caller: Some(self.caller.clone()),
            other: Some(self.other.clone()),
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: now,
            duration: self.answered_at.map(|at| now - at),
            outcome,
        }
    }

    /// The caller's leg in a snapshot: by id once known, else the first
    /// mobile-terminated call (the only one before the SIM dials).
    fn caller_leg<'a>(&mut self, lines: &'a [CallLine]) -> Option<&'a CallLine> {
        let leg = lines
            .iter()
            .find(|l| l.incoming && self.caller_call.is_none_or(|id| id == l.id))?;
        self.caller_call = Some(leg.id);
        Some(leg)
    }

    fn entered(mut self, now: OffsetDateTime) -> Self {
        self.since = now;
        self
    }

    fn timed_out(&self, setup: &Setup, now: OffsetDateTime) -> bool {
        now - self.since > setup.timing.command_timeout
    }
}

/// Whether [`common`] decided, or passes the input on to the state's own
/// handler.
enum Handled {
    Decided(Decision),
    Pass(Call, Input),
}

/// Inputs every state with a call handles alike.
fn common(
    setup: &Setup,
    wrap: fn(Call) -> State,
    mut call: Call,
    input: Input,
    now: OffsetDateTime,
) -> Handled {
    match input {
        // A hint: the snapshot tells which call ended, or who is ringing.
        Input::NoCarrier | Input::CallWaiting(_) | Input::Ring => {
            Handled::Decided((wrap(call), vec![Command::ListCalls], String::new()))
        }
        Input::Calls(lines) if call.caller_leg(&lines).is_none() => {
            let reason = "the caller hung up";
            let record = call.record(Outcome::CallerHungUp, now);
            // Whatever else is up (the other leg ringing) is cancelled at once.
            if lines.iter().any(|l| !l.incoming) {
                Handled::Decided(clear(Some(record), now, reason))
            } else {
                Handled::Decided((State::Idle, vec![Command::Record(record)], reason.into()))
            }
        }
        Input::Tick if call.timed_out(setup, now) => {
            let record = call.record(
                Outcome::Failed("the modem did not confirm in time".into()),
                now,
            );
            Handled::Decided(clear(Some(record), now, "command timed out"))
        }
        other => Handled::Pass(call, other),
    }
}

fn answered(setup: &Setup, call: Call, input: Input, now: OffsetDateTime) -> Decision {
    let (mut call, input) = match common(setup, State::Answered, call, input, now) {
        Handled::Decided(decision) => return decision,
        Handled::Pass(call, input) => (call, input),
    };
    let holding = |call: Call| -> Decision {
        (
            State::HoldingCaller(call.entered(now)),
            vec![Command::Hold],
            "caller answered".into(),
        )
    };
    match input {
        Input::Done(CommandKind::Answer) => holding(call),
        Input::Calls(lines) => {
            let active = call
                .caller_leg(&lines)
                .is_some_and(|l| l.state == CallState::Active);
            let mut commands = reject_extras(&lines, call.caller_call, now);
            if active {
                call.unconfirmed = None;
                let (state, hold, reason) = holding(call);
                commands.extend(hold);
                (state, commands, reason)
            } else if let Some(why) = call.unconfirmed.take() {
                unconfirmed(&call, why, now)
            } else {
                (State::Answered(call), commands, String::new())
            }
        }
        Input::Failed(CommandKind::Answer, error) => {
            call.unconfirmed = Some(format!("answer: {error}"));
            (
                State::Answered(call),
                vec![Command::ListCalls],
                String::new(),
            )
        }
        Input::Failed(CommandKind::ListCalls, _) if call.unconfirmed.is_some() => {
            let why = call.unconfirmed.take().unwrap_or_default();
            unconfirmed(&call, why, now)
        }
        _ => stay(State::Answered(call)),
    }
}

/// A step failed and the snapshot shows it did not take effect either:
/// release the caller, recording the modem's error.
fn unconfirmed(call: &Call, why: String, now: OffsetDateTime) -> Decision {
    let reason = format!("{} failed", why.split(':').next().unwrap_or("a step"));
    clear(Some(call.record(Outcome::Failed(why), now)), now, &reason)
}

fn holding(setup: &Setup, call: Call, input: Input, now: OffsetDateTime) -> Decision {
    let (mut call, input) = match common(setup, State::HoldingCaller, call, input, now) {
        Handled::Decided(decision) => return decision,
        Handled::Pass(call, input) => (call, input),
    };
    let dial = |mut call: Call| -> Decision {
        call.dialed_at = Some(now);
        let other = call.other.clone();
        (
            State::DialingOther(call.entered(now)),
            vec![Command::Dial(other)],
            "caller on hold".into(),
        )
    };
    match input {
        Input::Done(CommandKind::Hold) => dial(call),
        Input::Calls(lines) => {
            let held = call
                .caller_leg(&lines)
                .is_some_and(|l| l.state == CallState::Held);
            let mut commands = reject_extras(&lines, call.caller_call, now);
            if held {
                call.unconfirmed = None;
                let (state, dial, reason) = dial(call);
                commands.extend(dial);
                (state, commands, reason)
            } else if let Some(why) = call.unconfirmed.take() {
                unconfirmed(&call, why, now)
            } else {
                (State::HoldingCaller(call), commands, String::new())
            }
        }
        Input::Failed(CommandKind::Hold, error) => {
            call.unconfirmed = Some(format!("hold: {error}"));
            (
                State::HoldingCaller(call),
                vec![Command::ListCalls],
                String::new(),
            )
        }
        Input::Failed(CommandKind::ListCalls, _) if call.unconfirmed.is_some() => {
            let why = call.unconfirmed.take().unwrap_or_default();
            unconfirmed(&call, why, now)
        }
        _ => stay(State::HoldingCaller(call)),
    }
}

/// `DialingOther` and `AlertingOther`: the SIM's call to the other side is
/// being set up.
fn connecting(
    setup: &Setup,
    from: &'static str,
    call: Call,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
    let wrap: fn(Call) -> State = if from == "alerting-other" {
        State::AlertingOther
    } else {
        State::DialingOther
    };
    // The other side's ring time runs from the dial, not from each state.
    let (mut call, input) = match input {
        Input::Tick => (call, Input::Tick),
        other => match common(setup, wrap, call, other, now) {
            Handled::Decided(decision) => return decision,
            Handled::Pass(call, input) => (call, input),
        },
    };
    let released = |call: &Call, outcome: Outcome, reason: &str| -> Decision {
        clear(Some(call.record(outcome, now)), now, reason)
    };
    match input {
        Input::Done(CommandKind::Dial) => {
            call.dial_confirmed = true;
            stay(wrap(call))
        }
        Input::Failed(CommandKind::Dial, error) => released(
            &call,
            Outcome::Failed(format!("dial: {error}")),
            "dial failed",
        ),
        Input::Busy => released(&call, Outcome::Busy, "the other side is busy"),
        Input::NoAnswer => released(&call, Outcome::NoAnswer, "the other side did not answer"),
        Input::Tick => {
            let rang = call.dialed_at.map_or(Duration::ZERO, |at| now - at);
            if rang >= setup.timing.answer_timeout {
                released(
                    &call,
                    Outcome::NoAnswer,
                    "the other side did not answer in time",
                )
            } else {
                // Poll: not every model reports the other side's answer.
                (wrap(call), vec![Command::ListCalls], String::new())
            }
        }
        Input::Calls(lines) => {
            let mut commands = reject_extras(&lines, call.caller_call, now);
            let outgoing = lines
                .iter()
                .find(|l| !l.incoming && call.other_call.is_none_or(|id| id == l.id));
            let Some(outgoing) = outgoing else {
                if call.dial_confirmed || call.other_call.is_some() {
                    return released(&call, Outcome::Unreachable, "the other side is unreachable");
                }
                return (wrap(call), commands, String::new());
            };
            call.other_call = Some(outgoing.id);
            match outgoing.state {
                CallState::Dialing => (State::DialingOther(call), commands, "dialing".into()),
                CallState::Alerting => (
                    State::AlertingOther(call),
                    commands,
                    "the other side rings".into(),
                ),
                CallState::Active => {
                    call.answered_at = Some(now);
                    let (state, bridge, reason) = bridge(call, now);
                    commands.extend(bridge);
                    (state, commands, reason)
                }
                _ => (wrap(call), commands, String::new()),
            }
        }
        _ => stay(wrap(call)),
    }
}

/// The other side answered: join the legs with the best method left.
fn bridge(call: Call, now: OffsetDateTime) -> Decision {
    match call.methods.first().copied() {
        Some(Method::Transfer) => (
            State::Bridged(call.entered(now), Method::Transfer),
            vec![Command::Transfer],
            "the other side answered; transferring".into(),
        ),
        Some(Method::Conference) => (
            State::Bridged(call.entered(now), Method::Conference),
            // Muted before joining, so neither side ever hears the modem.
            vec![Command::Mute(true), Command::Join],
            "the other side answered; joining".into(),
        ),
        None => {
            let record = call.record(Outcome::Failed("no bridging method left".into()), now);
            clear(Some(record), now, "no bridging method left")
        }
    }
}

fn bridged(
    setup: &Setup,
    call: Call,
    method: Method,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
    let wrap: fn(Call) -> State = match method {
        Method::Transfer => |c| State::Bridged(c, Method::Transfer),
        Method::Conference => |c| State::Bridged(c, Method::Conference),
    };
    match (method, input) {
        (Method::Transfer, Input::Done(CommandKind::Transfer)) => {
            let record = call.record(Outcome::Transferred, now);
            (
                State::Idle,
                vec![Command::Record(record)],
                "transferred; the modem is free".into(),
            )
        }
        (Method::Transfer, Input::Failed(CommandKind::Transfer, error)) => {
            let mut call = call;
            call.methods.retain(|m| *m != Method::Transfer);
            let (state, commands, reason) = bridge(call, now);
            (
                state,
                commands,
                format!("transfer refused ({error}); {reason}"),
            )
        }
        (Method::Conference, Input::Failed(CommandKind::Join, error)) => {
            let record = call.record(Outcome::Failed(format!("join: {error}")), now);
            clear(Some(record), now, "join failed")
        }
        (Method::Conference, Input::Calls(lines)) => {
            let mut call = call;
            let mut commands = reject_extras(&lines, call.caller_call, now);
            let legs = lines
                .iter()
                .filter(|l| Some(l.id) == call.caller_call || Some(l.id) == call.other_call)
                .count();
            if legs < 2 {
                let record = call.record(Outcome::Completed, now);
                let (state, clear, reason) = clear(Some(record), now, "one side hung up");
                commands.extend(clear);
                return (state, commands, reason);
            }
            call.caller_leg(&lines);
            (wrap(call), commands, String::new())
        }
        // A hint, or the clock: not every model reports a second caller, so
        // the conference is polled.
        (
            Method::Conference,
            Input::NoCarrier | Input::CallWaiting(_) | Input::Ring | Input::Tick,
        ) => (wrap(call), vec![Command::ListCalls], String::new()),
        (_, Input::Tick) if method == Method::Transfer && call.timed_out(setup, now) => {
            let record = call.record(Outcome::Failed("transfer not confirmed".into()), now);
            clear(Some(record), now, "transfer timed out")
        }
        (Method::Transfer, Input::Calls(lines))
            if !lines
                .iter()
                .any(|l| Some(l.id) == call.caller_call || Some(l.id) == call.other_call) =>
        {
            // Both legs left the modem: the transfer happened (its OK lost).
            let record = call.record(Outcome::Transferred, now);
            (
                State::Idle,
                vec![Command::Record(record)],
                "both legs gone from the modem".into(),
            )
        }
        (_, Input::Calls(lines)) => {
            // During a transfer only second callers matter here.
            let commands = reject_extras(&lines, call.caller_call, now);
            (wrap(call), commands, String::new())
        }
        _ => stay(wrap(call)),
    }
}

fn clearing_step(setup: &Setup, c: Clearing, input: Input, now: OffsetDateTime) -> Decision {
    let done = |c: Clearing, reason: &str| -> Decision {
        let commands = c.record.into_iter().map(Command::Record).collect();
        (State::Idle, commands, reason.into())
    };
    match input {
        Input::Done(CommandKind::HangupAll) => done(c, "all calls released"),
        Input::Calls(lines) if lines.is_empty() => done(c, "no call left"),
        Input::Failed(CommandKind::HangupAll, _) => {
            (State::Clearing(c), vec![Command::ListCalls], String::new())
        }
        Input::Tick if now - c.since > setup.timing.command_timeout => {
            done(c, "release not confirmed in time")
        }
        _ => stay(State::Clearing(c)),
    }
}
