//! A service's intercept and out-of-session callbacks, which decide what
//! happens to a message before it is relayed.
//!
//! The relay stores the message and holds it (`twilio_holds`) in the
//! transaction that takes it from the SIM, so nothing waits on the network
//! while the SIM holds the message and nothing is lost while the receiver
//! thinks: a restart asks again. This task asks the receivers:
//!
//! - **Intercept** (`intercept_callback_url`): Proxy's status-callback
//!   parameters of the interaction, signed. `403` blocks it (recorded
//!   `blocked` with the rule `intercept_callback`, never sent, a
//!   `message_blocked` event); any other answer lets it go, and so does a
//!   receiver that does not answer within [`TIMEOUT`] or cannot be reached
//!   after [`ATTEMPTS`] tries: Twilio's documented behaviour ("any other
//!   status or timeout, the interaction continues"). Failing open keeps the
//!   conversation going when the receiver is down, which is what code
//!   written for Proxy expects; a receiver that must stop messages answers
//!   403.
//! - **Out of session** (`out_of_session_callback_url`): the inbound
//!   message as Twilio forwards it (`From`, `To`, `Body`, `MessageSid`…),
//!   signed. An answer with Proxy's auto-create session JSON
//!   (`participantIdentifier`, optional `participantProxyIdentifier`,
//!   `participantFriendlyName`, `uniqueName`, `mode`, `ttl`, `dateExpiry`)
//!   opens that session between the sender and the participant on the
//!   number the sender wrote to, and the message is relayed in it as if it
//!   had been open. Any other answer (TwiML included: the appliance runs no
//!   TwiML), a session that cannot open, or no answer leaves the message to
//!   the appliance's `[out_of_session]` policy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::callbacks::{interaction_parameters, post};
use super::sessions::{
    NewParticipant, SessionSpec, native_sid, open_session, parse_mode, parse_number, resolve,
};
use super::{Client, Settings, derived_sid};
use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::events::Event;
use crate::masking::Mode;
use crate::sms::accept::InboundOutcome;
use crate::sms::held::route_held;
use crate::sms::rails::Rules;
use crate::store::{Hold, HoldKind, Role};
use crate::voice::{CallAsk, CallGate};

/// How long a receiver has to answer one callback.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries to reach a receiver that cannot be reached (refused, reset).
pub const ATTEMPTS: u32 = 3;
/// How often the held messages are looked at.
const POLL: Duration = Duration::from_millis(200);
/// Pending sessions are looked at every this many rounds (about 1 s).
const EXPIRY_ROUNDS: u32 = 5;
/// A hold taken for a callback is asked again after this if its task died.
const LEASE_MS: i64 = 60_000;

/// Runs until `shutdown`: asks the receivers about held messages, and
/// about calls before they are bridged.
pub fn spawn(state: ApiState, settings: Settings, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "twilio hooks: no HTTP client");
            return;
        }
    };
    {
        let (gated, settings, http) = (state.clone(), settings.clone(), http.clone());
        let gate: CallGate = Arc::new(move |ask: CallAsk| {
            let (state, settings, http) = (gated.clone(), settings.clone(), http.clone());
            Box::pin(async move {
                match intercept_call(&state, &settings, &http, &ask).await {
                    Ok(refused) => refused,
                    Err(error) => {
                        tracing::warn!(%error, "intercept callback for a call not asked; the call goes on");
                        None
                    }
                }
            })
        });
        state.calls.set_gate(gate);
    }
    tokio::spawn(async move {
        match state.store.twilio_holds_resume(crate::clock::now()).await {
            Ok(0) => {}
            Ok(held) => tracing::info!(
                held,
                "twilio hooks: asking again about messages held before the restart"
            ),
            Err(error) => tracing::warn!(%error, "twilio hooks: cannot resume the held messages"),
        }
        let mut rounds: u32 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => break,
            }
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(EXPIRY_ROUNDS) {
                match state.store.twilio_expire_pending(crate::clock::now()).await {
                    Ok(expired) if !expired.is_empty() => {
                        tracing::info!(
                            sessions = expired.len(),
                            "twilio: pending sessions expired"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "twilio: cannot expire pending sessions"),
                }
            }
            let holds = match state
                .store
                .twilio_due_holds(crate::clock::now(), LEASE_MS, 32)
                .await
            {
                Ok(holds) => holds,
                Err(error) => {
                    tracing::warn!(%error, "twilio hooks: cannot read the held messages");
                    continue;
                }
            };
            match state
                .store
                .twilio_due_callbacks(crate::clock::now(), LEASE_MS, 32)
                .await
            {
                Ok(due) => {
                    for queued in due {
                        let (state, settings, http) =
                            (state.clone(), settings.clone(), http.clone());
                        tokio::spawn(async move {
                            if let Err(error) =
                                super::callbacks::deliver(&state, &http, &settings, queued).await
                            {
                                tracing::warn!(%error, "twilio callbacks: cannot record a delivery");
                            }
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "twilio callbacks: cannot read the queue"),
            }
            for hold in holds {
                let (state, settings, http) = (state.clone(), settings.clone(), http.clone());
                tokio::spawn(async move {
                    let id = hold.interaction_id;
                    if let Err(error) = decide(&state, &settings, &http, hold).await {
                        tracing::warn!(interaction = id, %error, "twilio hooks: undecided; asked again later");
                    }
                });
            }
        }
    });
}

/// What a receiver said.
enum Answer {
    /// The HTTP status and, for JSON, the body.
    Status(u16, Option<Value>),
    /// No answer in time.
    Timeout,
    /// Not reached: try again (unless it was the last attempt).
    Unreachable(String),
}

async fn ask_receiver(
    http: &reqwest::Client,
    settings: &Settings,
    url: &str,
    params: &[(String, String)],
) -> Answer {
    match post(http, settings, url, params).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let json = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let body = if json {
                response.json::<Value>().await.ok()
            } else {
                None
            };
            Answer::Status(status, body)
        }
        Err(error) if error.is_timeout() => Answer::Timeout,
        Err(error) => Answer::Unreachable(error.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{}", .0.message)]
    Twilio(super::TwilioError),
}

impl From<super::TwilioError> for HookError {
    fn from(error: super::TwilioError) -> Self {
        HookError::Twilio(error)
    }
}

async fn decide(
    state: &ApiState,
    settings: &Settings,
    http: &reqwest::Client,
    hold: Hold,
) -> Result<(), HookError> {
    let service = state.store.twilio_service(hold.service_sid.clone()).await?;
    let url = service.as_ref().and_then(|s| match hold.kind {
        HoldKind::Intercept => s.intercept_callback_url.clone(),
        HoldKind::OutOfSession => s.out_of_session_callback_url.clone(),
    });
    let (Some(service), Some(url)) = (service, url) else {
        // The service or its callback went away meanwhile: nobody to ask.
        return match hold.kind {
            HoldKind::Intercept => release(state, &hold).await,
            HoldKind::OutOfSession => route(state, &hold, "no callback any more").await,
        };
    };
    let params = match hold.kind {
        HoldKind::Intercept => {
            let Some(session_id) = hold.session_id.clone() else {
                return release(state, &hold).await;
            };
            match interaction_parameters(
                state,
                settings,
                service.clone(),
                &session_id,
                Some(hold.interaction_id),
            )
            .await?
            {
                Some(params) => params,
                None => return release(state, &hold).await,
            }
        }
        HoldKind::OutOfSession => inbound_parameters(state, settings, &hold).await?,
    };
    let answer = ask_receiver(http, settings, &url, &params).await;
    match (hold.kind, answer) {
        (_, Answer::Unreachable(error)) if hold.attempts + 1 < ATTEMPTS => {
            tracing::debug!(interaction = hold.interaction_id, %error, "twilio hook unreachable; trying again");
            let wait = time::Duration::seconds(1 << hold.attempts.min(4));
            state
                .store
                .twilio_hold_retry(hold.interaction_id, crate::clock::now() + wait)
                .await?;
            Ok(())
        }
        (HoldKind::Intercept, Answer::Status(403, _)) => block(state, &hold).await,
        (HoldKind::Intercept, answer) => {
            if !matches!(answer, Answer::Status(..)) {
                tracing::warn!(
                    interaction = hold.interaction_id,
                    "intercept callback did not answer; the message goes on (as Twilio's does)"
                );
            }
            release(state, &hold).await
        }
        (HoldKind::OutOfSession, Answer::Status(status, Some(body)))
            if (200..300).contains(&status) =>
        {
            match auto_create(state, &service, &hold, &body).await {
                Ok(()) => route(state, &hold, "the auto-create session opened").await,
                Err(error) => {
                    tracing::warn!(
                        interaction = hold.interaction_id,
                        error = %error.message,
                        "out-of-session callback's session cannot open; the policy applies"
                    );
                    route(state, &hold, "auto-create refused").await
                }
            }
        }
        (HoldKind::OutOfSession, _) => route(state, &hold, "no auto-create answer").await,
    }
}

/// A call in a session on a number of a service with an intercept
/// callback: the callback is asked once while the caller rings (a call
/// cannot wait for retries); `Some(reason)` when it answered 403.
async fn intercept_call(
    state: &ApiState,
    settings: &Settings,
    http: &reqwest::Client,
    ask: &CallAsk,
) -> Result<Option<String>, HookError> {
    let Some(number) = state.store.twilio_number(ask.iccid.clone()).await? else {
        return Ok(None);
    };
    let Some(service) = state.store.twilio_service(number.service_sid).await? else {
        return Ok(None);
    };
    let Some(url) = service.intercept_callback_url.clone() else {
        return Ok(None);
    };
    let key = match state
        .store
        .twilio_session_row(service.sid.clone(), ask.session_id.clone())
        .await?
    {
        Some(row) => row.sid,
        None => native_sid(&ask.session_id),
    };
    let service_sid = service.sid.clone();
    let resolved = resolve(state, service, &key).await?;
    let position = |number: &crate::number::PhoneNumber| {
        resolved.record.as_ref().and_then(|record| {
            record
                .participants
                .iter()
                .position(|p| p.as_ref() == Some(number))
                .and_then(|p| u8::try_from(p).ok())
        })
    };
    let mut params = vec![
        ("interactionType".to_string(), "voice".to_string()),
        ("interactionData".to_string(), "{}".to_string()),
        ("interactionSessionSid".to_string(), resolved.sid.clone()),
        ("interactionServiceSid".to_string(), service_sid),
        (
            "interactionAccountSid".to_string(),
            settings.account_sid.clone(),
        ),
        ("inboundResourceType".to_string(), "call".to_string()),
        ("inboundResourceStatus".to_string(), "ringing".to_string()),
        ("outboundResourceType".to_string(), "call".to_string()),
    ];
    if let Some(caller) = position(&ask.caller) {
        params.push((
            "inboundParticipantSid".into(),
            resolved.participant_sid(caller),
        ));
    }
    if let Some(other) = position(&ask.other) {
        params.push((
            "outboundParticipantSid".into(),
            resolved.participant_sid(other),
        ));
    }
    Ok(match ask_receiver(http, settings, &url, &params).await {
        Answer::Status(403, _) => {
            Some("intercept_callback: the service's intercept callback answered 403".into())
        }
        _ => None,
    })
}

/// The inbound message as Twilio forwards it to an out-of-session
/// callback.
async fn inbound_parameters(
    state: &ApiState,
    settings: &Settings,
    hold: &Hold,
) -> Result<Vec<(String, String)>, HookError> {
    let to = state
        .store
        .twilio_number(hold.proxy_iccid.clone())
        .await?
        .map(|n| n.msisdn)
        .unwrap_or_default();
    let message_sid = derived_sid("SM", &format!("interaction:{}", hold.interaction_id));
    let params = vec![
        ("AccountSid".to_string(), settings.account_sid.clone()),
        ("MessageSid".to_string(), message_sid.clone()),
        ("SmsSid".to_string(), message_sid),
        (
            "From".to_string(),
            hold.from_number.clone().unwrap_or_default(),
        ),
        ("To".to_string(), to),
        ("Body".to_string(), hold.body.clone().unwrap_or_default()),
        ("NumMedia".to_string(), "0".to_string()),
        ("inboundResourceType".to_string(), "message".to_string()),
        (
            "interactionServiceSid".to_string(),
            hold.service_sid.clone(),
        ),
    ];
    Ok(params)
}

/// Opens the session an auto-create answer names: the sender and
/// `participantIdentifier`, on the number the sender wrote to.
async fn auto_create(
    state: &ApiState,
    service: &crate::store::TwilioService,
    hold: &Hold,
    body: &Value,
) -> Result<(), super::TwilioError> {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let invalid = |what: &str| super::TwilioError::invalid(format!("auto-create JSON: {what}"));
    let other = text("participantIdentifier").ok_or_else(|| invalid("no participantIdentifier"))?;
    let other = parse_number(state, "participantIdentifier", &other)?;
    if let Some(proxy) = text("participantProxyIdentifier") {
        let wanted = parse_number(state, "participantProxyIdentifier", &proxy)?;
        let here = state
            .store
            .twilio_number(hold.proxy_iccid.clone())
            .await?
            .map(|n| n.msisdn);
        if here.as_deref() != Some(wanted.e164()) {
            return Err(invalid(
                "participantProxyIdentifier is not the number the sender wrote to",
            ));
        }
    }
    let sender = hold
        .from_number
        .as_deref()
        .ok_or_else(|| invalid("the held message has no sender"))?;
    let sender = parse_number(state, "From", sender)?;
    let mode = match text("mode") {
        Some(mode) => parse_mode(&mode)?,
        None => Mode::Both,
    };
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .filter(|t| *t >= 0)
                .ok_or_else(|| invalid("ttl is not a number of seconds"))?,
        ),
    };
    let now = crate::clock::now();
    let expiry_ms = match text("dateExpiry") {
        None => None,
        Some(text) => {
            let at =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| invalid("dateExpiry is not an ISO 8601 date"))?;
            if at <= now {
                return Err(invalid("dateExpiry is in the past"));
            }
            Some(super::ms(at))
        }
    };
    let client = Client {
        caller: Caller {
            name: "twilio-out-of-session".into(),
            role: Role::Admin,
        },
        account_sid: String::new(),
        base: String::new(),
    };
    let spec = SessionSpec {
        unique_name: text("uniqueName"),
        ttl,
        expiry_ms,
        mode,
        participants: vec![
            NewParticipant {
                identifier: sender,
                friendly_name: None,
                proxy_iccid: Some(hold.proxy_iccid.clone()),
            },
            NewParticipant {
                identifier: other,
                friendly_name: text("participantFriendlyName"),
                proxy_iccid: Some(hold.proxy_iccid.clone()),
            },
        ],
    };
    open_session(state, &client, service, spec, now).await?;
    Ok(())
}

async fn release(state: &ApiState, hold: &Hold) -> Result<(), HookError> {
    if state
        .store
        .twilio_release_intercept(hold.interaction_id, crate::clock::now())
        .await?
    {
        state.events.publish(Event::MessageRelayed {
            session_id: hold.session_id.clone(),
            interaction_id: hold.interaction_id,
            parts: 1,
        });
        wake(state, &hold.proxy_iccid);
    }
    Ok(())
}

async fn block(state: &ApiState, hold: &Hold) -> Result<(), HookError> {
    let reason = "the service's intercept callback answered 403".to_string();
    if state
        .store
        .twilio_block_intercept(hold.interaction_id, reason, crate::clock::now())
        .await?
    {
        tracing::info!(
            interaction = hold.interaction_id,
            "message blocked by an intercept callback"
        );
        state.events.publish(Event::MessageBlocked {
            session_id: hold.session_id.clone(),
            interaction_id: hold.interaction_id,
            rule: "intercept_callback".into(),
        });
    } else {
        tracing::warn!(
            interaction = hold.interaction_id,
            "intercept callback answered 403 after the message had gone"
        );
    }
    Ok(())
}

/// Routes a stranger's held message now that the callback has answered.
async fn route(state: &ApiState, hold: &Hold, why: &str) -> Result<(), HookError> {
    let rules = Arc::new(match &state.live {
        Some(live) => Rules::from_config(&live.get()),
        None => Rules {
            limits: state.limits(),
            ..Rules::default()
        },
    });
    let outcome = route_held(
        &state.store,
        hold.interaction_id,
        rules,
        crate::clock::now(),
    )
    .await?;
    tracing::debug!(
        interaction = hold.interaction_id,
        why,
        ?outcome,
        "out-of-session message routed"
    );
    match outcome {
        Some(InboundOutcome::Relayed { interaction_id }) => {
            let session_id = state.store.interaction_session(interaction_id).await?;
            state.events.publish(Event::MessageRelayed {
                session_id,
                interaction_id,
                parts: 1,
            });
            wake(state, &hold.proxy_iccid);
        }
        Some(InboundOutcome::FrontDesk {
            interaction_id,
            session_id,
        }) => {
            state.events.publish(Event::MessageRelayed {
                session_id: Some(session_id),
                interaction_id,
                parts: 1,
            });
            wake(state, &hold.proxy_iccid);
        }
        Some(InboundOutcome::Blocked {
            interaction_id,
            rule,
            ..
        }) => {
            let session_id = state.store.interaction_session(interaction_id).await?;
            state.events.publish(Event::MessageBlocked {
                session_id,
                interaction_id,
                rule: rule.to_string(),
            });
        }
        // Held again (for the intercept callback): decided in its turn.
        Some(InboundOutcome::Held { .. }) | None => {}
        Some(_) => wake(state, &hold.proxy_iccid),
    }
    Ok(())
}

fn wake(state: &ApiState, iccid: &str) {
    if let Some(wake) = &state.outbox_waker {
        wake(iccid);
    }
}
