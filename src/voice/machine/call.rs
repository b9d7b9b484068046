//! The bridge once the caller is answered: holding them, dialling and
//! alerting the other participant, bridged by transfer or conference, and
//! clearing what is left.

use time::OffsetDateTime;

use super::*;
impl Call {
    /// The session this call belongs to (`None` when forwarded by policy).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    pub(super) fn record(&self, outcome: Outcome, now: OffsetDateTime) -> CallRecord {
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
    pub(super) fn caller_leg<'a>(&mut self, lines: &'a [CallLine]) -> Option<&'a CallLine> {
        let leg = lines
            .iter()
            .find(|l| l.incoming && self.caller_call.is_none_or(|id| id == l.id))?;
        self.caller_call = Some(leg.id);
        Some(leg)
    }

    pub(super) fn entered(mut self, now: OffsetDateTime) -> Self {
        self.since = now;
        self
    }

    pub(super) fn timed_out(&self, setup: &Setup, now: OffsetDateTime) -> bool {
        now - self.since > setup.timing.command_timeout
    }

    /// The conversation has lasted as long as it may.
    fn over_max_duration(&self, setup: &Setup, now: OffsetDateTime) -> bool {
        match (self.answered_at, setup.timing.max_duration) {
            (Some(answered), Some(max)) => now - answered >= max,
            _ => false,
        }
    }

    /// The caller, as the session knows them.
    /// Who the caller was put through to: the other participant, a
    /// session's fallback number, or the operator.
    pub fn other(&self) -> &PhoneNumber {
        &self.other
    }

    pub fn caller(&self) -> &PhoneNumber {
        &self.caller
    }

    /// The first `RING`.
    pub fn started_at(&self) -> OffsetDateTime {
        self.started_at
    }

    /// When the other side answered.
    pub fn answered_at(&self) -> Option<OffsetDateTime> {
        self.answered_at
    }
}

/// Whether [`common`] decided, or passes the input on to the state's own
/// handler.
pub(super) enum Handled {
    Decided(Decision),
    Pass(Call, Input),
}

/// Inputs every state with a call handles alike.
pub(super) fn common(
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

pub(super) fn answered(setup: &Setup, call: Call, input: Input, now: OffsetDateTime) -> Decision {
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
pub(super) fn unconfirmed(call: &Call, why: String, now: OffsetDateTime) -> Decision {
    let reason = format!("{} failed", why.split(':').next().unwrap_or("a step"));
    clear(Some(call.record(Outcome::Failed(why), now)), now, &reason)
}

pub(super) fn holding(setup: &Setup, call: Call, input: Input, now: OffsetDateTime) -> Decision {
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
pub(super) fn connecting(
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
pub(super) fn bridge(call: Call, now: OffsetDateTime) -> Decision {
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

pub(super) fn bridged(
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
        (Method::Conference, Input::Tick) if call.over_max_duration(setup, now) => {
            let record = call.record(Outcome::MaxDuration, now);
            clear(Some(record), now, "the call reached its maximum duration")
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

pub(super) fn clearing_step(
    setup: &Setup,
    c: Clearing,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
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
