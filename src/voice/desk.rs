//! The voice desk of one SIM: feeds the pure bridge machine
//! ([`crate::voice`]) with the modem's call events and a one-second tick,
//! carries out the commands it returns (AT commands through the modem
//! handle, session lookups through the masking rules, call records into the
//! store) and feeds their outcomes back.
//!
//! While the SIM holds a call the desk is in control of it: each tick it
//! checks that the call's session is still open (closed through the API or
//! the command line, expired), keeps the session's idle clock from running
//! out mid-call (a call is activity), and the operator's "end call" reaches
//! it through [`CallDesks`]. Each of these ends the call for both sides.

use std::collections::VecDeque;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::desks::{CallDesks, DeskRequest, EndError, Ended, LiveCall};
use super::{
    Bridge, BridgeTiming, CallRecord, Command, CommandKind, EndRequest, HubChoice, Input, Lookup,
    Method, Outcome, Setup, choose_method,
};
use crate::bank::Bank;
use crate::config::LiveConfig;
use crate::events::{Event, EventBus};
use crate::masking::Traffic;
use crate::masking::lifecycle::{self, Route, SessionStatus};
use crate::masking::policy::{self, Action};
use crate::modem::actor::ModemEvent;
use crate::modem::error::AtError;
use crate::number::PhoneNumber;
use crate::profile::DtmfDetection;
use crate::store::{CallInteraction, Store, StoreError};

/// What the router hands to a SIM's voice desk.
pub type VoiceInbox = mpsc::Sender<ModemEvent>;

/// What a desk works with besides its SIM.
#[derive(Clone)]
pub struct DeskContext {
    /// The configuration in force (a reload changes the ring timeout,
    /// the call limit and the out-of-session policy).
    pub config: LiveConfig,
    pub store: Store,
    pub bank: Bank,
    pub events: EventBus,
    /// Where the desk registers, so the API can see and end its calls.
    pub desks: CallDesks,
}

/// Starts the desk of `iccid`; the router sends it the SIM's call events.
pub fn spawn(
    iccid: String,
    home_region: Option<String>,
    context: DeskContext,
    stop: CancellationToken,
) -> VoiceInbox {
    let (inbox, receiver) = mpsc::channel(64);
    let (requests, asked) = mpsc::channel(8);
    context.desks.register(&iccid, requests);
    let desk = Desk {
        iccid,
        home_region,
        config: context.config,
        store: context.store,
        bank: context.bank,
        events: context.events,
        desks: context.desks,
        bridge: None,
        ended: None,
        bridged_announced: false,
    };
    tokio::spawn(desk.run(receiver, asked, stop));
    inbox
}

struct Desk {
    iccid: String,
    home_region: Option<String>,
    config: LiveConfig,
    store: Store,
    bank: Bank,
    events: EventBus,
    desks: CallDesks,
    /// Built on the first call, from the SIM's capabilities then.
    bridge: Option<Bridge>,
    /// The last call recorded, for the answer to an end request.
    ended: Option<Ended>,
    /// `call_bridged` was published for the call in progress.
    bridged_announced: bool,
}

impl Desk {
    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<ModemEvent>,
        mut asked: mpsc::Receiver<DeskRequest>,
        stop: CancellationToken,
    ) {
        // The clock only runs while a call is in progress: an idle desk
        // costs no wake-ups.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let busy = self
                .bridge
                .as_ref()
                .is_some_and(|bridge| bridge.state().name() != "idle");
            let inputs = tokio::select! {
                _ = stop.cancelled() => return,
                event = receiver.recv() => match event {
                    Some(event) => inputs_of(event),
                    None => return,
                },
                Some(request) = asked.recv() => {
                    self.answer(request).await;
                    Vec::new()
                }
                _ = tick.tick(), if busy => {
                    let mut inputs: Vec<Input> =
                        self.watch_session().await.map(Input::End).into_iter().collect();
                    inputs.push(Input::Tick);
                    inputs
                }
            };
            for input in inputs {
                self.feed(input).await;
            }
        }
    }

    /// Ends the call of the session asked for, if this desk carries it.
    async fn answer(&mut self, request: DeskRequest) {
        let DeskRequest::End {
            session,
            request,
            reply,
        } = request;
        let ours = self
            .bridge
            .as_ref()
            .and_then(|b| b.state().call())
            .is_some_and(|call| call.session() == Some(session.as_str()));
        if !ours {
            let _ = reply.send(Err(EndError::NoCall));
            return;
        }
        let expected = match &request {
            EndRequest::Operator(_) => "ended_by_operator",
            EndRequest::SessionEnded(_) => "session_ended",
        };
        self.ended = None;
        self.feed(Input::End(request)).await;
        // The release may still be waiting for the modem: the outcome is
        // known all the same, and the record follows.
        let ended = self.ended.take().unwrap_or(Ended {
            session_id: session,
            outcome: expected.into(),
            duration_seconds: None,
        });
        let _ = reply.send(Ok(ended));
    }

    /// While the SIM holds a call of a session: whether the session ended
    /// under it (closed by the API or the command line, erased, expired).
    /// A session still open has its idle clock kept from running out: the
    /// call is activity.
    async fn watch_session(&self) -> Option<EndRequest> {
        let call = self.bridge.as_ref()?.state().call()?;
        let session = call.session()?.to_string();
        let now = crate::clock::now();
        // By id: a hub's call has its session whichever of its many it is.
        let record = match self.store.session(session).await {
            Ok(record) => Some(record),
            Err(StoreError::NoSuchSession(_)) => None,
            Err(error) => {
                tracing::warn!(iccid = %self.iccid, %error, "cannot check the call's session");
                return None;
            }
        };
        let open = record
            .clone()
            .filter(|s| s.status == SessionStatus::Open && s.proxy_iccid == self.iccid);
        let Some(open) = open else {
            // A call put through to a session's fallback number after it
            // expired is not the session's conversation: its end is not
            // this call's.
            let between_participants = record
                .as_ref()
                .is_none_or(|s| s.participants.iter().flatten().any(|p| p == call.other()));
            if !between_participants {
                return None;
            }
            let expired = record.is_some_and(|s| s.status == SessionStatus::Expired);
            let why = if expired {
                "the session expired"
            } else {
                "the session was closed"
            };
            return Some(EndRequest::SessionEnded(why.into()));
        };
        let rules = open.rules_view()?;
        if rules.expires_at.is_some_and(|at| at <= now) {
            self.expire_due(now).await;
            return Some(EndRequest::SessionEnded("the session expired".into()));
        }
        if let Some(idle) = rules.idle_ttl
            && now - rules.last_activity_at >= idle / 2
            && let Err(error) = self.store.touch_session(open.id.clone(), now).await
        {
            tracing::warn!(iccid = %self.iccid, %error, "cannot keep the call's session active");
        }
        None
    }

    /// Marks the sessions past their deadline expired, as the sweep would.
    async fn expire_due(&self, now: OffsetDateTime) {
        if let Ok(expired) = self.store.expire_due(now).await {
            for session in expired {
                tracing::info!(session = %session.id, "session expired");
                self.events.publish(Event::SessionExpired {
                    session_id: session.id,
                });
            }
        }
    }

    fn setup(&self) -> Setup {
        let seconds = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        let config = self.config.get();
        let voice = &config.voice;
        let timing = BridgeTiming {
            answer_timeout: seconds(voice.ring_timeout_seconds),
            max_duration: (voice.max_duration_seconds > 0)
                .then(|| seconds(voice.max_duration_seconds)),
            key_timeout: seconds(config.hubs.dtmf_timeout_seconds),
            ..BridgeTiming::default()
        };
        let chosen = config.sim(&self.iccid).and_then(|s| s.voice_method);
        let methods = match self.bank.handle(&self.iccid) {
            Some(handle) => {
                let identity = handle.identity();
                let profile = self.bank.profile(&identity.profile);
                let preferred =
                    Method::preferred(chosen, profile.as_ref().and_then(|p| p.voice.method));
                let profile_chld = profile.map(|p| p.voice.chld).unwrap_or_default();
                choose_method(
                    &profile_chld,
                    identity.capabilities.chld.as_deref(),
                    preferred,
                )
            }
            None => choose_method(&[], None, Method::preferred(chosen, None)),
        };
        Setup {
            methods,
            timing,
            detects_keys: self.dtmf_detection().is_some(),
        }
    }

    /// How the SIM's modem reports keys the caller presses, if it can.
    fn dtmf_detection(&self) -> Option<DtmfDetection> {
        let handle = self.bank.handle(&self.iccid)?;
        self.bank.profile(&handle.identity().profile)?.voice.dtmf
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
            let (commands, transition) = bridge.step(input, crate::clock::now());
            if let Some(transition) = transition {
                tracing::info!(iccid = %self.iccid, "call {transition}");
            }
            for command in commands {
                if let Some(reply) = self.carry_out(command).await {
                    if matches!(
                        reply,
                        Input::Done(CommandKind::Join | CommandKind::Transfer)
                    ) {
                        self.announce_bridged();
                    }
                    queue.push_back(reply);
                }
            }
        }
        let live = self.bridge.as_ref().and_then(|b| LiveCall::of(b.state()));
        self.desks.set_call(&self.iccid, live);
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
                    Command::DetectKeys => match self.dtmf_detection() {
                        Some(detection) => handle.detect_dtmf(detection).await,
                        None => Err(AtError::Invalid("the modem detects no keys".into())),
                    },
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
            // The network knows the number: read it as possible, whatever
            // `[numbers] validation` asks of numbers operators type.
            PhoneNumber::parse(reported, self.home_region.as_deref())
        };
        let Ok(caller) = caller else {
            return Lookup::Reject {
                caller: None,
                reason: "the caller's number is withheld or unreadable".into(),
            };
        };
        let now = crate::clock::now();
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
        if session.is_none()
            && let Some(hub) = self.hub_lookup(&caller, now).await
        {
            return hub;
        }
        let sessions: Vec<_> = session.iter().filter_map(|s| s.rules_view()).collect();
        match lifecycle::route(&sessions, &caller, Traffic::Call, now) {
            Route::Relay { session, to } => {
                // The Twilio facade's intercept callback, when a service
                // has one: the caller rings meanwhile.
                if let Some(gate) = self.desks.gate()
                    && let Some(reason) = gate(super::CallAsk {
                        iccid: self.iccid.clone(),
                        session_id: session.id.clone(),
                        caller: caller.clone(),
                        other: to.clone(),
                    })
                    .await
                {
                    tracing::info!(iccid = %self.iccid, session = %session.id, %reason, "call refused");
                    return Lookup::Reject {
                        caller: Some(caller),
                        reason,
                    };
                }
                Lookup::Bridge {
                    session: Some(session.id.clone()),
                    caller: caller.clone(),
                    other: to.clone(),
                }
            }
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
                self.before_policy(caller).await
            }
            Route::OutOfSession => self.before_policy(caller).await,
        }
    }

    /// A hub calling: the sessions it has on this SIM that carry calls, to
    /// key one of; `None` when the caller is no hub or has none here.
    async fn hub_lookup(&self, caller: &PhoneNumber, now: OffsetDateTime) -> Option<Lookup> {
        let (open, last) = match self
            .store
            .hub_conversations(self.iccid.clone(), caller.clone())
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(iccid = %self.iccid, %error, "hub lookup failed");
                return None;
            }
        };
        let choices: Vec<HubChoice> = open
            .into_iter()
            .filter_map(|c| {
                let rules = c.session.rules_view()?;
                if rules.is_expired_at(now) || !Traffic::Call.carried_by(rules.mode) {
                    return None;
                }
                Some(HubChoice {
                    other: rules.other_participant(caller)?.clone(),
                    session: c.session.id,
                    code: c.code,
                })
            })
            .collect();
        if choices.is_empty() {
            return None;
        }
        tracing::info!(iccid = %self.iccid, sessions = choices.len(), "a hub calls: waiting for its code");
        Some(Lookup::Hub {
            caller: caller.clone(),
            choices,
            last,
        })
    }

    /// The rails before the policy (block list, fallback after expiry,
    /// front desk: [`super::front`]), then the policy.
    async fn before_policy(&self, caller: PhoneNumber) -> Lookup {
        match super::front::before_policy(
            &self.store,
            &self.config.get(),
            &self.events,
            &self.iccid,
            &caller,
        )
        .await
        {
            Ok(Some(lookup)) => lookup,
            Ok(None) => self.out_of_session(caller),
            Err(error) => {
                tracing::error!(iccid = %self.iccid, %error, "session lookup failed");
                Lookup::Reject {
                    caller: Some(caller),
                    reason: "the session store failed".into(),
                }
            }
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
        match lifecycle::route(&sessions, caller, Traffic::Call, crate::clock::now()) {
            Route::Relay { session, .. } | Route::WrongMode(session) => Some(session.id.clone()),
            Route::Expired(_) | Route::OutOfSession => None,
        }
    }

    fn out_of_session(&self, caller: PhoneNumber) -> Lookup {
        let action = policy::out_of_session_action(
            &self.config.get().out_of_session,
            Traffic::Call,
            &caller,
            None,
            crate::clock::now(),
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

    /// `call_bridged`, once per call, as soon as the network joined the
    /// legs (the dashboard then shows the call and its "end call").
    fn announce_bridged(&mut self) {
        let Some(bridge) = &self.bridge else {
            return;
        };
        let Some(live) = LiveCall::of(bridge.state()) else {
            return;
        };
        if let (Some(session_id), Some(method)) = (live.session_id, live.method)
            && !self.bridged_announced
        {
            self.bridged_announced = true;
            self.events.publish(Event::CallBridged {
                session_id,
                method: method.into(),
            });
        }
    }

    async fn record(&mut self, mut record: CallRecord) {
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
        if let Some(answered_at) = record.answered_at
            && let Ok(setup) = std::time::Duration::try_from(answered_at - record.started_at)
        {
            crate::metrics::call_setup(setup);
        }
        // A bridge whose confirmation was lost (seen in a snapshot) is
        // announced with its end.
        if let Some(session_id) = &record.session
            && record.answered_at.is_some()
            && !std::mem::take(&mut self.bridged_announced)
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
        if let Some(session_id) = &record.session {
            self.ended = Some(Ended {
                session_id: session_id.clone(),
                outcome: outcome.clone(),
                duration_seconds: duration_ms.map(|ms| ms as f64 / 1000.0),
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
        ModemEvent::Dtmf { key } => vec![Input::Key(key)],
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
        Outcome::MaxDuration => {
            "the call reached its maximum duration ([voice] max_duration_seconds)"
        }
        _ => "",
    }
    .to_string()
}
