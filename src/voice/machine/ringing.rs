//! The bridge before the caller is answered: idle, ringing (caller ID,
//! the session lookup, a withheld number) and the extra calls it refuses.

use time::OffsetDateTime;

use super::*;
pub(super) fn idle(input: Input, now: OffsetDateTime) -> Decision {
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
            } else if let Some(adopting) = adopt(&lines, now) {
                // A conference from before a restart: the appliance takes
                // control of it again once its session is known.
                let caller = adopting.caller.clone();
                (
                    State::Adopting(adopting),
                    vec![Command::LookupSession { caller }],
                    "a conference from before a restart".into(),
                )
            } else if lines.is_empty() || is_conference(&lines) {
                // A conference whose caller is not known: the two sides'
                // conversation, cleared once one of them leaves.
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
pub(super) fn is_conference(lines: &[CallLine]) -> bool {
    lines.len() >= 2
        && lines
            .iter()
            .all(|l| l.multiparty && l.state == CallState::Active)
}

/// The conference in `lines` as this bridge makes them: one incoming leg
/// (the caller, whose number is known) and one outgoing leg.
fn adopt(lines: &[CallLine], now: OffsetDateTime) -> Option<Adopting> {
    if lines.len() != 2 || !is_conference(lines) {
        return None;
    }
    let incoming = lines.iter().find(|l| l.incoming)?;
    let outgoing = lines.iter().find(|l| !l.incoming)?;
    Some(Adopting {
        caller: Reported(incoming.number.clone()?),
        caller_call: incoming.id,
        other: outgoing.number.clone().map(Reported),
        other_call: outgoing.id,
        since: now,
    })
}

/// The same number, one written nationally perhaps: the last nine digits
/// agree (enough to tell the two legs of one session apart).
fn same_number(reported: &Reported, number: &PhoneNumber) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(&reported.0), digits(number.e164()));
    let tail = |s: &str| s[s.len().saturating_sub(9)..].to_string();
    a.len() >= 6 && tail(&a) == tail(&b)
}

/// A conference from before a restart: with its session found (the
/// outgoing leg is the session's other participant), the appliance is in
/// control of it again, its length counted from now; with no open session
/// left for the caller it ended while the daemon was down, and the call
/// ends too. Anything else stays the two sides' conversation.
pub(super) fn adopting_step(
    setup: &Setup,
    a: Adopting,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
    match input {
        Input::Session(Lookup::Bridge {
            session,
            caller,
            other,
        }) if a.other.as_ref().is_some_and(|o| same_number(o, &other)) => {
            let call = Call {
                session,
                caller,
                other,
                started_at: now,
                since: now,
                caller_call: Some(a.caller_call),
                other_call: Some(a.other_call),
                dialed_at: None,
                dial_confirmed: true,
                answered_at: Some(now),
                methods: vec![Method::Conference],
                unconfirmed: None,
            };
            (
                State::Bridged(call, Method::Conference),
                // The modem may have been reset since: muted again.
                vec![Command::Mute(true)],
                "a conference from before a restart taken back".into(),
            )
        }
        Input::Session(Lookup::Reject { caller, .. }) => {
            let why = "no open session for this call after a restart";
            let record = CallRecord {
                session: None,
                caller,
                other: None,
                started_at: a.since,
                answered_at: Some(a.since),
                ended_at: now,
                duration: Some(now - a.since),
                outcome: Outcome::SessionEnded(why.into()),
            };
            clear(
                Some(record),
                now,
                "its session ended while the daemon was down",
            )
        }
        Input::Session(_) => (State::Idle, Vec::new(), "not a call of this bridge".into()),
        Input::NoCarrier => (State::Adopting(a), vec![Command::ListCalls], String::new()),
        // A leg left before the lookup came back: as when idle.
        Input::Calls(lines) if !is_conference(&lines) => idle(Input::Calls(lines), now),
        Input::Tick if now - a.since > setup.timing.command_timeout => {
            (State::Idle, Vec::new(), "no session found in time".into())
        }
        _ => stay(State::Adopting(a)),
    }
}

pub(super) fn withheld(started_at: OffsetDateTime, now: OffsetDateTime) -> Decision {
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
pub(super) fn clear(record: Option<CallRecord>, now: OffsetDateTime, reason: &str) -> Decision {
    (
        State::Clearing(Clearing { record, since: now }),
        vec![Command::HangupAll],
        reason.into(),
    )
}

pub(super) fn ringing_step(
    setup: &Setup,
    mut r: Ringing,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
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
        Input::Session(Lookup::Hub {
            caller,
            choices,
            last,
        }) => start_keying(setup, &r, caller, choices, last, now),
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
pub(super) fn reject_extras(
    lines: &[CallLine],
    ours: Option<u8>,
    now: OffsetDateTime,
) -> Vec<Command> {
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
    /// The call the modem is ringing with, once known.
    pub(super) fn call_id(&self) -> Option<u8> {
        self.call_id
    }

    pub(super) fn started_at(&self) -> OffsetDateTime {
        self.started_at
    }

    /// The record of a call that ended before the router decided.
    pub(super) fn record(&self, outcome: Outcome, now: OffsetDateTime) -> CallRecord {
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
