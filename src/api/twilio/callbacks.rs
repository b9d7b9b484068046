//! A service's `callback_url`, as Proxy calls it: each change of an
//! interaction's status (relayed, delivered, failed; a call bridged or
//! ended) is POSTed form-encoded with Proxy's camelCase names
//! (`interactionSid`, `interactionType`, `interactionData`,
//! `inboundParticipantSid`, …) and signed with `X-Twilio-Signature`
//! (base64 HMAC-SHA1, keyed by `[twilio] auth_token`, over the full URL and
//! the parameters sorted by name), so the receiver's `RequestValidator`
//! accepts it.
//!
//! Each callback is queued in the store (`twilio_callbacks`) and delivered
//! from there, so a restart resumes what was not delivered, as the native
//! `[callbacks]` deliveries are: a transport error or a 5xx is tried again
//! with a growing wait, up to ten attempts; a 4xx is final. The queue is
//! bounded (the oldest go past 10 000 undelivered).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::interactions::interaction_view_of;
use super::sessions::{Resolved, native_sid, resolve};
use super::{Client, Settings};
use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::events::Event;
use crate::store::{Role, TwilioCallback, TwilioService};

/// Attempts per callback (waits of 2, 4, … 256, 300 s between them).
const ATTEMPTS: u32 = 10;

/// The `X-Twilio-Signature` of a POST of `params` to `url`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1>>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Proxy's callback parameters from an interaction's JSON view.
pub fn parameters(view: &Value) -> Vec<(String, String)> {
    const NAMES: &[(&str, &str)] = &[
        ("sid", "interactionSid"),
        ("type", "interactionType"),
        ("data", "interactionData"),
        ("session_sid", "interactionSessionSid"),
        ("service_sid", "interactionServiceSid"),
        ("account_sid", "interactionAccountSid"),
        ("date_created", "interactionDateCreated"),
        ("date_updated", "interactionDateUpdated"),
        ("inbound_participant_sid", "inboundParticipantSid"),
        ("inbound_resource_sid", "inboundResourceSid"),
        ("inbound_resource_status", "inboundResourceStatus"),
        ("inbound_resource_type", "inboundResourceType"),
        ("inbound_resource_url", "inboundResourceUrl"),
        ("outbound_participant_sid", "outboundParticipantSid"),
        ("outbound_resource_sid", "outboundResourceSid"),
        ("outbound_resource_status", "outboundResourceStatus"),
        ("outbound_resource_type", "outboundResourceType"),
        ("outbound_resource_url", "outboundResourceUrl"),
    ];
    NAMES
        .iter()
        .filter_map(|(field, name)| {
            view[*field]
                .as_str()
                .map(|value| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// Runs until `shutdown`: reads the bus and queues the services' status
/// callbacks (the hooks task delivers them).
pub fn spawn(state: ApiState, settings: Settings, shutdown: CancellationToken) {
    let mut events = state.events.subscribe_local();
    tokio::spawn(async move {
        loop {
            let envelope = tokio::select! {
                received = events.recv() => match received {
                    Ok(envelope) => envelope,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "twilio callbacks: fell behind the event bus");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let (session_id, interaction) = match &envelope.event {
                Event::MessageRelayed {
                    session_id: Some(session),
                    interaction_id,
                    ..
                }
                | Event::MessageDelivered {
                    session_id: Some(session),
                    interaction_id,
                }
                | Event::MessageFailed {
                    session_id: Some(session),
                    interaction_id,
                    ..
                }
                | Event::MessageBlocked {
                    session_id: Some(session),
                    interaction_id,
                    ..
                } => (session.clone(), Some(*interaction_id)),
                Event::CallBridged { session_id, .. }
                | Event::CallEnded {
                    session_id: Some(session_id),
                    ..
                } => (session_id.clone(), None),
                _ => continue,
            };
            match callback(&state, &settings, &session_id, interaction).await {
                Ok(Some((url, params))) => {
                    let body: String = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(params.iter())
                        .finish();
                    if let Err(error) = state
                        .store
                        .twilio_queue_callback(url, body, crate::clock::now())
                        .await
                    {
                        tracing::warn!(%error, "twilio callbacks: cannot queue a status callback");
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(session = %session_id, "twilio callbacks: {}", error.message);
                }
            }
        }
    });
}

/// The URL and parameters of the callback an event calls for, if its
/// session is on a service with a callback URL.
async fn callback(
    state: &ApiState,
    settings: &Settings,
    session_id: &str,
    interaction: Option<i64>,
) -> Result<Option<(String, Vec<(String, String)>)>, super::TwilioError> {
    let record = state.store.session(session_id.to_string()).await?;
    let Some(number) = state
        .store
        .twilio_number(record.proxy_iccid.clone())
        .await?
    else {
        return Ok(None);
    };
    let Some(service) = state.store.twilio_service(number.service_sid).await? else {
        return Ok(None);
    };
    let Some(url) = service.callback_url.clone() else {
        return Ok(None);
    };
    Ok(
        interaction_parameters(state, settings, service, session_id, interaction)
            .await?
            .map(|params| (url, params)),
    )
}

/// Proxy's parameters of an interaction (the latest of the session when
/// `interaction` is `None`) of a session on `service`.
pub(super) async fn interaction_parameters(
    state: &ApiState,
    settings: &Settings,
    service: TwilioService,
    session_id: &str,
    interaction: Option<i64>,
) -> Result<Option<Vec<(String, String)>>, super::TwilioError> {
    let key = match state
        .store
        .twilio_session_row(service.sid.clone(), session_id.to_string())
        .await?
    {
        Some(row) => row.sid,
        None => native_sid(session_id),
    };
    let resolved: Resolved = resolve(state, service, &key).await?;
    let client = Client {
        caller: Caller {
            name: "twilio-callbacks".into(),
            role: Role::Admin,
        },
        account_sid: settings.account_sid.clone(),
        base: settings.base_url.clone(),
    };
    let Some(view) = interaction_view_of(state, &client, &resolved, interaction).await? else {
        return Ok(None);
    };
    Ok(Some(parameters(&view)))
}

/// One signed, form-encoded POST of `params` to `url`.
pub(super) async fn post(
    http: &reqwest::Client,
    settings: &Settings,
    url: &str,
    params: &[(String, String)],
) -> Result<reqwest::Response, reqwest::Error> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "simmask-twilio-proxy")
        .body(body);
    if let Some(token) = settings.auth_token.as_deref() {
        request = request.header("x-twilio-signature", signature(token, url, params));
    }
    request.send().await
}

/// Delivers one queued status callback: delivered, or refused (a 4xx:
/// final, as Twilio treats it), the row goes; a 5xx or no answer is tried
/// again later, up to [`ATTEMPTS`] times over about twenty minutes.
pub(super) async fn deliver(
    state: &ApiState,
    http: &reqwest::Client,
    settings: &Settings,
    queued: TwilioCallback,
) -> Result<(), crate::store::StoreError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(queued.body.as_bytes())
        .into_owned()
        .collect();
    let problem = match post(http, settings, &queued.url, &params).await {
        Ok(response) if response.status().is_success() => None,
        Ok(response) if !response.status().is_server_error() => {
            tracing::warn!(status = %response.status(), "twilio callback refused");
            None
        }
        Ok(response) => Some(response.status().to_string()),
        Err(error) => Some(error.to_string()),
    };
    let Some(problem) = problem else {
        return state.store.twilio_callback_done(queued.id).await;
    };
    let attempt = queued.attempts + 1;
    if attempt >= ATTEMPTS {
        tracing::warn!(attempts = attempt, %problem, "twilio callback undelivered; given up");
        return state.store.twilio_callback_done(queued.id).await;
    }
    tracing::debug!(attempt, %problem, "twilio callback failed; tried again later");
    let wait = time::Duration::seconds((1i64 << attempt.min(8)).min(300));
    state
        .store
        .twilio_callback_retry(queued.id, crate::clock::now() + wait)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Twilio's security documentation, as the twilio
    /// library's `RequestValidator` computes it.
    #[test]
    fn the_signature_is_twilios() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
