//! Drives one SIM's [`Bridge`] with its modem, the store and the masking
//! rules: the only part of `voice` that does I/O. One task per SIM; the
//! router hands it the SIM's call events.

use std::collections::VecDeque;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::machine::{Bridge, CallRecord, Command, CommandKind, Input, Lookup, Setup, State};
use crate::events::{Event, EventBus};
use crate::masking::Traffic;
use crate::masking::lifecycle::{Route, route};
use crate::masking::policy::{Action, OutOfSessionPolicy, out_of_session_action};
use crate::modem::actor::{ModemEvent, ModemHandle};
use crate::modem::error::AtError;
use crate::number::PhoneNumber;
use crate::store::{CallInteraction, Store};

/// How often the bridge's clock ticks (ringing timeouts, polls).
const TICK: Duration = Duration::from_secs(1);

/// What every SIM's bridge shares.
#[derive(Clone)]
pub struct VoiceContext {
    pub store: Store,
    pub policy: OutOfSessionPolicy,
    pub events: EventBus,
}

/// One SIM's bridge task.
struct Driver {
    iccid: String,
    /// The SIM's home region, to read national caller numbers.
    region: Option<String>,
    handle: ModemHandle,
    context: VoiceContext,
    bridge: Bridge,
}

/// Starts the bridge of SIM `iccid`; feed it the SIM's call events
/// (`Ring`, `CallsChanged`) through the returned sender.
pub fn spawn(
    iccid: String,
    region: Option<String>,
    handle: ModemHandle,
    setup: Setup,
    context: VoiceContext,
    stop: CancellationToken,
) -> (mpsc::Sender<ModemEvent>, JoinHandle<()>) {
    let (sender, events) = mpsc::channel(32);
    let driver = Driver {
        iccid,
        region,
        handle,
        context,
        bridge: Bridge::new(setup),
    };
    let task = tokio::spawn(driver.run(events, stop));
    (sender, task)
}

fn done(kind: CommandKind, result: Result<(), AtError>) -> Input {
    match result {
        Ok(()) => Input::Done(kind),
        Err(error) => Input::Failed(kind, error.to_string()),
    }
}

impl Driver {
    async fn run(mut self, mut events: mpsc::Receiver<ModemEvent>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = events.recv() => match event {
                    Some(ModemEvent::Ring { caller }) => {
                        self.drive(Input::Ring).await;
                        if caller.is_some() {
                            self.drive(Input::CallerId(caller)).await;
                        }
                    }
                    // NO CARRIER, BUSY or a +CLCC report: the snapshot tells.
                    Some(ModemEvent::CallsChanged) => self.drive(Input::NoCarrier).await,
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => self.drive(Input::Tick).await,
            }
        }
    }

    /// Feeds one input and everything its commands report back.
    async fn drive(&mut self, first: Input) {
        let mut inputs = VecDeque::from([first]);
        while let Some(input) = inputs.pop_front() {
            let (commands, transition) = self.bridge.step(input, OffsetDateTime::now_utc());
            if let Some(transition) = transition {
                tracing::info!(sim = %tail(&self.iccid), "call {transition}");
                if let State::Bridged(call, method) = self.bridge.state()
                    && transition.from != transition.to
                    && !transition.from.starts_with("bridged")
                    && let Some(session) = call.session()
                {
                    self.context.events.publish(Event::CallBridged {
                        session_id: session.to_string(),
                        method: format!("{method:?}").to_lowercase(),
                    });
                }
            }
            for command in commands {
                inputs.extend(self.execute(command).await);
            }
        }
    }

    async fn execute(&mut self, command: Command) -> Option<Input> {
        let handle = &self.handle;
        Some(match command {
            Command::LookupSession { caller } => Input::Session(self.lookup(&caller.0).await),
            Command::Answer => done(CommandKind::Answer, handle.answer().await),
            Command::Hold => done(CommandKind::Hold, handle.hold().await),
            Command::Dial(number) => done(CommandKind::Dial, handle.dial(number.e164()).await),
            Command::Transfer => done(CommandKind::Transfer, handle.transfer().await),
            Command::Join => done(CommandKind::Join, handle.join().await),
            Command::Mute(on) => done(CommandKind::Mute, handle.mute(on).await),
            Command::HangupAll => done(CommandKind::HangupAll, handle.hangup().await),
            Command::HangupCall(id) => done(CommandKind::HangupCall, handle.hangup_call(id).await),
            Command::ListCalls => match handle.list_calls().await {
                Ok(calls) => Input::Calls(calls),
                Err(error) => Input::Failed(CommandKind::ListCalls, error.to_string()),
            },
            Command::Record(record) => {
                self.record(record).await;
                return None;
            }
        })
    }

    /// Where a call from `caller` (as the modem reported it) goes.
    async fn lookup(&self, caller: &str) -> Lookup {
        let Ok(from) = PhoneNumber::parse(caller, self.region.as_deref()) else {
            return Lookup::Reject {
                caller: None,
                reason: "unreadable caller number".into(),
            };
        };
        let now = OffsetDateTime::now_utc();
        let session = match self
            .context
            .store
            .open_session_of(self.iccid.clone(), from.clone())
            .await
        {
            Ok(session) => session,
            Err(error) => {
                tracing::error!(sim = %tail(&self.iccid), %error, "cannot look up the caller's session");
                return Lookup::Reject {
                    caller: Some(from),
                    reason: "session lookup failed".into(),
                };
            }
        };
        let sessions: Vec<_> = session.iter().map(|s| s.rules_view()).collect();
        if let Route::Relay { session, to } = route(&sessions, &from, Traffic::Call, now) {
            return Lookup::Bridge {
                session: Some(session.id.clone()),
                caller: from,
                other: to.clone(),
            };
        }
        match out_of_session_action(&self.context.policy, Traffic::Call, &from, None, now) {
            Action::Forward { to } => Lookup::Bridge {
                session: None,
                caller: from,
                other: to,
            },
            _ => Lookup::Reject {
                caller: Some(from),
                reason: "out of session".into(),
            },
        }
    }

    async fn record(&self, record: CallRecord) {
        let outcome = record.outcome.as_str().to_string();
        let duration_seconds = record
            .duration
            .map(|d| u64::try_from(d.whole_seconds()).unwrap_or(0));
        let call = CallInteraction {
            proxy_iccid: self.iccid.clone(),
            session_id: record.session.clone(),
            from: record.caller,
            to: record.other,
            started_at: record.started_at,
            answered_at: record.answered_at,
            ended_at: record.ended_at,
            duration: record.duration,
            reason: record.outcome.reason().to_string(),
            outcome: outcome.clone(),
        };
        if let Err(error) = self.context.store.record_call(call).await {
            tracing::error!(sim = %tail(&self.iccid), %error, "cannot record a call");
        }
        self.context.events.publish(Event::CallEnded {
            session_id: record.session,
            outcome,
            duration_seconds,
        });
    }
}

/// The last four digits of an ICCID, for log lines.
fn tail(iccid: &str) -> &str {
    &iccid[iccid.len().saturating_sub(4)..]
}
