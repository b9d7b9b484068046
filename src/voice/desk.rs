//! The voice desk of one SIM: feeds the pure bridge machine
//! ([`crate::voice`]) with the modem's call events and a one-second tick,
//! carries out the commands it returns (AT commands through the modem
//! handle, session lookups through the masking rules, call records into the
//! store) and feeds their outcomes back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Bridge, BridgeTiming, CallRecord, Command, CommandKind, Input, Lookup, Outcome, Setup,
    choose_method,
};
use crate::bank::Bank;
use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::masking::Traffic;
use crate::masking::lifecycle::{self, Route};
use crate::masking::policy::{self, Action};
use crate::modem::actor::ModemEvent;
use crate::modem::error::AtError;
use crate::number::PhoneNumber;
use crate::store::{CallInteraction, Store};

/// What the router hands to a SIM's voice desk.
pub type VoiceInbox = mpsc::Sender<ModemEvent>;

/// Starts the desk of `iccid`; the router sends it the SIM's call events.
pub fn spawn(
    iccid: String,
    home_region: Option<String>,
    config: Arc<Config>,
    store: Store,
    bank: Bank,
    events: EventBus,
    stop: CancellationToken,
) -> VoiceInbox {
    let (inbox, receiver) = mpsc::channel(64);
    let desk = Desk {
        iccid,
        home_region,
        config,
        store,
        bank,
        events,
        bridge: None,
    };
    tokio::spawn(desk.run(receiver, stop));
    inbox
}

struct Desk {
    iccid: String,
    home_region: Option<String>,
    config: Arc<Config>,
    store: Store,
    bank: Bank,
    events: EventBus,
    /// Built on the first call, from the SIM's capabilities then.
    bridge: Option<Bridge>,
}

impl Desk {
    async fn run(mut self, mut receiver: mpsc::Receiver<ModemEvent>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let inputs = tokio::select! {
                _ = stop.cancelled() => return,
                event = receiver.recv() => match event {
                    Some(event) => inputs_of(event),
                    None => return,
                },
                _ = tick.tick() => match &self.bridge {
                    Some(bridge) if bridge.state().name() != "idle" => vec![Input::Tick],
                    _ => Vec::new(),
                },
            };
            for input in inputs {
                self.feed(input).await;
            }
        }
    }

    fn setup(&self) -> Setup {
        let timing = BridgeTiming {
            answer_timeout: time::Duration::seconds(
                i64::try_from(self.config.voice.ring_timeout_seconds).unwrap_or(30),
            ),
            ..BridgeTiming::default()
        };
        let methods = match self.bank.handle(&self.iccid) {
            Some(handle) => {
                let identity = handle.identity();
                let profile_chld = self
                    .bank
                    .profile(&identity.profile)
                    .map(|p| p.voice.chld.clone())
                    .unwrap_or_default();
                choose_method(&profile_chld, identity.capabilities.chld.as_deref())
            }
            None => choose_method(&[], None),
        };
        Setup { methods, timing }
    }

    /// Steps the bridge with `first` and everything its commands report.
    async fn feed(&mut self, first: Input) {
        if self.bridge.is_none() {
            self.bridge = Some(Bridge::new(self.setup()));
        }
        let mut queue = VecDeque::from([first]);
        while let Some(input) = queue.pop_front() {
            let Some(bridge) = self.bridge.as_mut() else {
                return;
            };
            let (commands, transition) = bridge.step(input, OffsetDateTime::now_utc());
            if let Some(transition) = transition {
                tracing::info!(iccid = %self.iccid, "call {transition}");
            }
            for command in commands {
                if let Some(reply) = self.carry_out(command).await {
                    queue.push_back(reply);
                }
            }
        }
        // Only once the replies are in: an idle bridge may still have asked
        // for a snapshot (a call it never saw ended).
        if self
            .bridge
            .as_ref()
            .is_some_and(|b| b.state().name() == "idle")
        {
            // The next call sees the SIM's capabilities as they are then.
            self.bridge = None;
        }
    }

    async fn carry_out(&mut self, command: Command) -> Option<Input> {
        match command {
            Command::LookupSession { caller } => Some(Input::Session(self.lookup(&caller.0).await)),
            Command::Record(record) => {
                self.record(record).await;
                None
            }
            Command::ListCalls => {
                let handle = self.bank.handle(&self.iccid)?;
                Some(match handle.list_calls().await {
                    Ok(calls) => Input::Calls(calls),
                    Err(error) => Input::Failed(CommandKind::ListCalls, error.to_string()),
                })
            }
            other => {
                let kind = other.kind()?;
                let Some(handle) = self.bank.handle(&self.iccid) else {
                    return Some(Input::Failed(kind, AtError::Unplugged.to_string()));
                };
                let result = match &other {
                    Command::Answer => handle.answer().await,
                    Command::Hold => handle.hold().await,
                    Command::Dial(number) => handle.dial(number.e164()).await,
                    Command::Transfer => handle.transfer().await,
                    Command::Join => handle.join().await,
                    Command::Mute(on) => handle.mute(*on).await,
                    Command::HangupAll => handle.hangup().await,
                    Command::HangupCall(id) => handle.hangup_call(*id).await,
                    _ => Ok(()),
                };
                Some(match result {
                    Ok(()) => Input::Done(kind),
                    Err(error) => Input::Failed(kind, error.to_string()),
                })
            }
        }
    }

    /// Where a call from `reported` goes: the other participant of its open
    /// voice session on this SIM, or the out-of-session policy.
    async fn lookup(&self, reported: &str) -> Lookup {
        let caller = if reported.starts_with('+') {
            PhoneNumber::from_e164(reported)
        } else {
            PhoneNumber::parse(reported, self.home_region.as_deref())
        };
        let Ok(caller) = caller else {
            return Lookup::Reject {
                caller: None,
                reason: "the caller's number is withheld or unreadable".into(),
            };
        };
        let now = OffsetDateTime::now_utc();
        let session = match self
            .store
            .open_session_of(self.iccid.clone(), caller.clone())
            .await
        {
            Ok(session) => session,
            Err(error) => {
                tracing::error!(iccid = %self.iccid, %error, "session lookup failed");
                return Lookup::Reject {
                    caller: Some(caller),
                    reason: "the session store failed".into(),
                };
            }
        };
        let sessions: Vec<_> = session.iter().filter_map(|s| s.rules_view()).collect();
        match lifecycle::route(&sessions, &caller, Traffic::Call, now) {
            Route::Relay { session, to } => Lookup::Bridge {
                session: Some(session.id.clone()),
                caller: caller.clone(),
                other: to.clone(),
            },
            Route::WrongMode(_) => Lookup::Reject {
                caller: Some(caller),
                reason: "the session does not carry calls".into(),
            },
            Route::Expired(session) => {
                if let Ok(expired) = self.store.expire_due(now).await {
                    for session in expired {
                        self.events.publish(Event::SessionExpired {
                            session_id: session.id,
                        });
                    }
                }
                tracing::info!(session = %session.id, "call on an expired session");
                self.out_of_session(caller)
            }
            Route::OutOfSession => self.out_of_session(caller),
        }
    }

    /// The caller's open session on this SIM, whatever its mode.
    async fn session_of(&self, caller: &PhoneNumber) -> Option<String> {
        let session = self
            .store
            .open_session_of(self.iccid.clone(), caller.clone())
            .await
            .ok()??;
        let sessions: Vec<_> = session.rules_view().into_iter().collect();
        match lifecycle::route(&sessions, caller, Traffic::Call, OffsetDateTime::now_utc()) {
            Route::Relay { session, .. } | Route::WrongMode(session) => Some(session.id.clone()),
            Route::Expired(_) | Route::OutOfSession => None,
        }
    }

    fn out_of_session(&self, caller: PhoneNumber) -> Lookup {
        let action = policy::out_of_session_action(
            &self.config.out_of_session,
            Traffic::Call,
            &caller,
            None,
            OffsetDateTime::now_utc(),
        );
        match action {
            Action::Forward { to } => Lookup::Bridge {
                session: None,
                caller,
                other: to,
            },
            _ => Lookup::Reject {
                caller: Some(caller),
                reason: "no open session for the caller on this number".into(),
            },
        }
    }

    async fn record(&self, mut record: CallRecord) {
        if record.session.is_none()
            && let Some(caller) = &record.caller
        {
            // A refused call (a second caller, a session without calls)
            // belongs to the caller's session on this SIM, if there is one,
            // so that the session's history shows it.
            record.session = self.session_of(caller).await;
        }
        let from_position = match (&record.session, &record.caller) {
            (Some(session), Some(caller)) => self
                .store
                .session(session.clone())
                .await
                .ok()
                .and_then(|s| {
                    s.participants
                        .iter()
                        .position(|p| p.as_ref() == Some(caller))
                })
                .and_then(|p| u8::try_from(p).ok()),
            _ => None,
        };
        let outcome = record.outcome.as_str().to_string();
        let duration_ms = record
            .duration
            .map(|d| i64::try_from(d.whole_milliseconds()).unwrap_or(i64::MAX));
        let call = CallInteraction {
            proxy_iccid: self.iccid.clone(),
            session_id: record.session.clone(),
            from_position,
            caller: record.caller.clone(),
            other: record.other.clone(),
            started_at: record.started_at,
            answered_at: record.answered_at,
            ended_at: record.ended_at,
            duration_ms,
            outcome: outcome.clone(),
            reason: describe(&record.outcome),
        };
        if let Err(error) = self.store.record_call(call).await {
            tracing::error!(iccid = %self.iccid, %error, "cannot record a call");
        }
        if let Some(session_id) = &record.session
            && record.answered_at.is_some()
        {
            let method = if outcome == "transferred" {
                "transfer"
            } else {
                "conference"
            };
            self.events.publish(Event::CallBridged {
                session_id: session_id.clone(),
                method: method.into(),
            });
        }
        self.events.publish(Event::CallEnded {
            session_id: record.session,
            outcome,
            duration_seconds: duration_ms.and_then(|ms| u64::try_from(ms / 1000).ok()),
        });
    }
}

/// The bridge's inputs for one modem event.
fn inputs_of(event: ModemEvent) -> Vec<Input> {
    match event {
        ModemEvent::Ring { caller } => vec![Input::Ring, Input::CallerId(caller)],
        ModemEvent::CallsChanged => vec![Input::NoCarrier],
        ModemEvent::Busy => vec![Input::Busy],
        ModemEvent::Unplugged => vec![Input::ModemLost],
        _ => Vec::new(),
    }
}

/// The interaction's reason line for an outcome.
fn describe(outcome: &Outcome) -> String {
    let detail = outcome.reason();
    if !detail.is_empty() {
        return detail.to_string();
    }
    match outcome {
        Outcome::Transferred => "bridged by explicit call transfer",
        Outcome::Completed => "bridged as a conference until one side hung up",
        Outcome::Busy => "the other participant was busy",
        Outcome::NoAnswer => "the other participant did not answer in time",
        Outcome::Unreachable => "the other participant could not be reached",
        Outcome::CallerHungUp => "the caller hung up before the other participant answered",
        Outcome::Abandoned => "the caller gave up while the proxy rang",
        Outcome::SecondCallRejected => "a call was already being bridged on this number",
        _ => "",
    }
    .to_string()
}
