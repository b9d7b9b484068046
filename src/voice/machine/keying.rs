//! A hub calling its own proxy. The hub has many sessions there, so the
//! call cannot go to "the other participant": the SIM answers it, turns
//! on key detection, and the hub keys a session's code on its keypad (`K7`
//! is `5 7`; see [`crate::masking::hub`]). No audio passes through the
//! appliance, so the hub hears no prompt: it calls, waits for the answer,
//! keys the code, and may end with `#`.
//!
//! ```text
//! Ringing ─Lookup::Hub─► Keying ─ATA done─► (AT+DDET=1 / AT+QTONEDET=1)
//!   keys name one code ─────────────────┐
//!   # after the keys of a code ─────────┼─► HoldingCaller ─► … as any call
//!   no key (or #) in time: the last ────┘
//!   # (or the time to key running out) after keys naming no code: hang up
//!   * starts the keys again: a wrong or stray key (talk-off) is no hang-up
//! ```
//!
//! A SIM whose modem cannot detect keys puts the hub through to the
//! counterpart it last heard from at once.

use time::OffsetDateTime;

use super::*;
use crate::masking::hub::{KeyMatch, exact_keys, match_keys};

/// One session a hub calling its proxy can key.
#[derive(Debug, Clone, PartialEq)]
pub struct HubChoice {
    pub session: String,
    /// The session's code (`K7`), keyed by its keys (`57`).
    pub code: String,
    /// The counterpart, whom the call then goes to.
    pub other: PhoneNumber,
}

/// A hub's call, answered, waiting for a code.
#[derive(Debug, Clone, PartialEq)]
pub struct Keying {
    caller: PhoneNumber,
    choices: Vec<HubChoice>,
    last: Option<String>,
    /// The digits keyed so far.
    keys: String,
    started_at: OffsetDateTime,
    /// The SIM confirmed its answer.
    answered: bool,
    /// The answer or the last key: the time to key runs from it.
    since: OffsetDateTime,
    caller_call: Option<u8>,
    methods: Vec<Method>,
}

impl Keying {
    pub(super) fn record(&self, outcome: Outcome, now: OffsetDateTime) -> CallRecord {
        CallRecord {
            session: None,
            caller: Some(self.caller.clone()),
            other: None,
            started_at: self.started_at,
            answered_at: None,
            ended_at: now,
            duration: None,
            outcome,
        }
    }

    fn codes(&self) -> Vec<&str> {
        self.choices.iter().map(|c| c.code.as_str()).collect()
    }
}

/// The router found a hub calling: answer it so it can key a code.
pub(super) fn start_keying(
    setup: &Setup,
    ringing: &Ringing,
    caller: PhoneNumber,
    choices: Vec<HubChoice>,
    last: Option<String>,
    now: OffsetDateTime,
) -> Decision {
    let keying = Keying {
        caller,
        choices,
        last,
        keys: String::new(),
        started_at: ringing.started_at(),
        answered: false,
        since: now,
        caller_call: ringing.call_id(),
        methods: Vec::new(),
    };
    match &setup.methods {
        Err(no_method) => {
            let record = keying.record(Outcome::NoMethod(no_method.to_string()), now);
            clear(Some(record), now, "this SIM cannot bridge calls")
        }
        Ok(methods) => {
            let keying = Keying {
                methods: methods.clone(),
                ..keying
            };
            (
                State::Keying(keying),
                vec![Command::Answer],
                "a hub calls: answered for a code".into(),
            )
        }
    }
}

/// Puts the hub through to the session keyed, or the last one when it
/// keyed nothing; hangs up when the keys name no session.
fn resolve(k: Keying, now: OffsetDateTime) -> Decision {
    let chosen = if k.keys.is_empty() {
        k.last
            .as_ref()
            .and_then(|last| k.choices.iter().position(|c| &c.session == last))
            .or_else(|| (k.choices.len() == 1).then_some(0))
    } else {
        exact_keys(&k.keys, &k.codes())
    };
    match chosen {
        Some(index) => put_through(k, index, now),
        None if k.keys.is_empty() => {
            let why = "the hub keyed no code and has no last counterpart here";
            clear(Some(k.record(Outcome::Rejected(why.into()), now)), now, why)
        }
        None => reject_keys(k, now),
    }
}

fn reject_keys(k: Keying, now: OffsetDateTime) -> Decision {
    let why = format!(
        "the hub keyed {}: no conversation of its has those keys",
        k.keys
    );
    let reason = "the keys name no conversation";
    clear(Some(k.record(Outcome::Rejected(why), now)), now, reason)
}

fn put_through(k: Keying, index: usize, now: OffsetDateTime) -> Decision {
    let Some(choice) = k.choices.get(index).cloned() else {
        return reject_keys(k, now);
    };
    let how = if k.keys.is_empty() {
        "no code keyed: the last counterpart"
    } else {
        "code keyed"
    };
    let call = Call {
        session: Some(choice.session),
        caller: k.caller,
        other: choice.other,
        started_at: k.started_at,
        since: now,
        caller_call: k.caller_call,
        other_call: None,
        dialed_at: None,
        dial_confirmed: false,
        answered_at: None,
        methods: k.methods,
        unconfirmed: None,
    };
    (
        State::HoldingCaller(call),
        vec![Command::Hold],
        format!("{how} ({}); holding the hub", choice.code),
    )
}

pub(super) fn keying_step(
    setup: &Setup,
    mut k: Keying,
    input: Input,
    now: OffsetDateTime,
) -> Decision {
    match input {
        Input::Done(CommandKind::Answer) => {
            k.answered = true;
            k.since = now;
            if setup.detects_keys {
                (State::Keying(k), vec![Command::DetectKeys], String::new())
            } else {
                // Nothing to key with: the last counterpart at once.
                resolve(k, now)
            }
        }
        Input::Failed(CommandKind::Answer, error) => {
            let record = k.record(Outcome::Failed(format!("answer: {error}")), now);
            clear(Some(record), now, "answer failed")
        }
        // The modem would not report keys: none will come.
        Input::Failed(CommandKind::DetectKeys, _) => resolve(k, now),
        Input::Key(key) if k.answered => {
            k.since = now;
            match key {
                '*' => {
                    k.keys.clear();
                    stay(State::Keying(k))
                }
                '#' => resolve(k, now),
                digit if digit.is_ascii_digit() => {
                    k.keys.push(digit);
                    match match_keys(&k.keys, &k.codes()) {
                        KeyMatch::Complete(index) => put_through(k, index, now),
                        // Keys no code starts with wait for `*` (start
                        // again), `#` or the time to key: then hung up.
                        KeyMatch::Waiting | KeyMatch::NoMatch => stay(State::Keying(k)),
                    }
                }
                _ => stay(State::Keying(k)),
            }
        }
        Input::Tick if k.answered && now - k.since >= setup.timing.key_timeout => resolve(k, now),
        Input::Tick if !k.answered && now - k.since > setup.timing.command_timeout => {
            let record = k.record(Outcome::Failed("the answer was not confirmed".into()), now);
            clear(Some(record), now, "answer timed out")
        }
        Input::NoCarrier | Input::Ring | Input::CallWaiting(_) => {
            (State::Keying(k), vec![Command::ListCalls], String::new())
        }
        Input::Calls(lines) => {
            let ours = lines
                .iter()
                .find(|l| l.incoming && k.caller_call.is_none_or(|id| id == l.id))
                .map(|l| l.id);
            let Some(id) = ours else {
                let record = k.record(Outcome::CallerHungUp, now);
                let reason = "the hub hung up before keying a code";
                return (State::Idle, vec![Command::Record(record)], reason.into());
            };
            k.caller_call = Some(id);
            let commands = reject_extras(&lines, k.caller_call, now);
            (State::Keying(k), commands, String::new())
        }
        _ => stay(State::Keying(k)),
    }
}
