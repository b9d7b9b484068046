//! `…/Interactions` (a session's SMS and calls, newest first) and
//! `…/Participants/{Sid}/MessageInteractions` (an SMS from the proxy to one
//! participant). An interaction's SID carries its appliance id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::participants::{ParticipantView, resolve_participant};
use super::services::service;
use super::sessions::{Resolved, resolve};
use super::{Client, Form, Paging, TwilioError, date_ms, interaction_id, interaction_sid};
use crate::api::ApiState;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::store::{InteractionPick, InteractionRecord, NewOutbound, Role};

/// Longest body Proxy accepts.
const MAX_BODY: usize = 1600;

/// Where an interaction went: the participant a proxy-originated SMS was
/// sent to, by interaction id.
type Targets = Vec<(i64, String)>;

fn message_status(status: &str) -> &'static str {
    match status {
        "queued" => "queued",
        "sending" => "sending",
        "sent" => "sent",
        "delivered" => "delivered",
        "failed" => "failed",
        _ => "undelivered",
    }
}

fn call_status(record: &InteractionRecord) -> &'static str {
    if record.ended_ms.is_none() {
        return if record.answered_ms.is_some() {
            "in-progress"
        } else {
            "ringing"
        };
    }
    match record.outcome.as_deref() {
        Some("completed" | "transferred") => "completed",
        Some("busy") => "busy",
        Some("no_answer") => "no-answer",
        Some("caller_hung_up") => "canceled",
        _ => "failed",
    }
}

/// The position of the participant a proxy-originated SMS went to.
fn target_position(resolved: &Resolved, targets: &Targets, id: i64) -> Option<u8> {
    let number = &targets.iter().find(|(i, _)| *i == id)?.1;
    let record = resolved.record.as_ref()?;
    record
        .participants
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p.e164() == number))
        .map(|p| p as u8)
}

fn interaction_view(
    client: &Client,
    resolved: &Resolved,
    targets: &Targets,
    record: &InteractionRecord,
    url: String,
) -> Value {
    let message = record.kind == "sms";
    let (kind, resource) = match record.kind.as_str() {
        "sms" => ("message", "Message"),
        "call" => ("voice", "Call"),
        _ => ("unknown", "Unknown"),
    };
    let data = if message {
        match &record.body {
            Some(body) if client.caller.is_admin() => json!({ "body": body }),
            _ => json!({}),
        }
    } else {
        match record.duration_ms {
            Some(ms) => json!({ "duration": (ms / 1000).to_string() }),
            None => json!({}),
        }
    };
    let inbound = record.from_position;
    let outbound = match inbound {
        Some(position) => Some(1 - position.min(1)),
        None => target_position(resolved, targets, record.id),
    };
    let prefix = if message { "SM" } else { "CA" };
    let status = if message {
        message_status(&record.status)
    } else {
        call_status(record)
    };
    let inbound_status = inbound.map(|_| {
        if message {
            "received"
        } else if status == "in-progress" || status == "ringing" {
            "in-progress"
        } else {
            "completed"
        }
    });
    let updated = record.ended_ms.unwrap_or(record.created_ms);
    json!({
        "sid": interaction_sid(record.id),
        "session_sid": resolved.sid,
        "service_sid": resolved.service.sid,
        "account_sid": client.account_sid,
        "data": data.to_string(),
        "type": kind,
        "inbound_participant_sid": inbound.map(|p| resolved.participant_sid(p)),
        "inbound_resource_sid": inbound.map(|_| format!("{prefix}{:031x}0", record.id)),
        "inbound_resource_status": inbound_status,
        "inbound_resource_type": inbound.map(|_| resource),
        "inbound_resource_url": null,
        "outbound_participant_sid": outbound.map(|p| resolved.participant_sid(p)),
        "outbound_resource_sid": outbound.map(|_| format!("{prefix}{:031x}1", record.id)),
        "outbound_resource_status": outbound.map(|_| status),
        "outbound_resource_type": outbound.map(|_| resource),
        "outbound_resource_url": null,
        "date_created": date_ms(record.created_ms),
        "date_updated": date_ms(updated),
        "url": url,
    })
}

/// The session's interactions that `pick` selects, newest first (`limit`
/// from `offset`, in SQL), and where its proxy's own SMS went.
async fn interactions_of(
    state: &ApiState,
    resolved: &Resolved,
    pick: InteractionPick,
    limit: usize,
    offset: usize,
) -> Result<(Vec<InteractionRecord>, Targets), TwilioError> {
    let Some(record) = &resolved.record else {
        return Ok((Vec::new(), Vec::new()));
    };
    let records = state
        .store
        .twilio_interactions(record.id.clone(), pick, limit, offset)
        .await?;
    let targets = state
        .store
        .twilio_message_targets(record.id.clone())
        .await?;
    Ok((records, targets))
}

/// The view of interaction `id` of the session (its latest call when
/// `None`), as a callback reports it.
pub(super) async fn interaction_view_of(
    state: &ApiState,
    client: &Client,
    resolved: &Resolved,
    id: Option<i64>,
) -> Result<Option<Value>, TwilioError> {
    let pick = id.map_or(InteractionPick::Calls, InteractionPick::Id);
    let (records, targets) = interactions_of(state, resolved, pick, 1, 0).await?;
    Ok(records.first().map(|record| {
        let url = client.url(&format!(
            "{}/Interactions/{}",
            resolved.path(),
            interaction_sid(record.id)
        ));
        interaction_view(client, resolved, &targets, record, url)
    }))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Interactions", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    responses(
        (status = 200, description = "The session's messages and calls, newest first, paged in SQL", body = super::doc::InteractionList),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key) = path;
    let paging = Paging::from_query(uri.query())?;
    let service = service(&state, &service_key).await?;
    let resolved = resolve(&state, service, &key).await?;
    let (records, targets) = interactions_of(
        &state,
        &resolved,
        InteractionPick::All,
        paging.fetch(),
        paging.offset,
    )
    .await?;
    let path = format!("{}/Interactions", resolved.path());
    let items = records
        .iter()
        .map(|r| {
            let url = client.url(&format!("{path}/{}", interaction_sid(r.id)));
            interaction_view(&client, &resolved, &targets, r, url)
        })
        .collect();
    Ok(Json(paging.answer(&client, &path, "interactions", items)))
}

fn interaction_not_found(path: &str, sid: &str) -> TwilioError {
    TwilioError::not_found(format!("The requested resource {path}/{sid} was not found"))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Interactions/{interaction}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("interaction" = String, Path)),
    responses(
        (status = 200, description = "An interaction", body = super::doc::Interaction),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn fetch(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key, sid) = path;
    let service = service(&state, &service_key).await?;
    let resolved = resolve(&state, service, &key).await?;
    let path = format!("{}/Interactions", resolved.path());
    let id = interaction_id(&sid).ok_or_else(|| interaction_not_found(&path, &sid))?;
    let (records, targets) =
        interactions_of(&state, &resolved, InteractionPick::Id(id), 1, 0).await?;
    let record = records
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| interaction_not_found(&path, &sid))?;
    let url = client.url(&format!("{path}/{sid}"));
    Ok(Json(interaction_view(
        &client, &resolved, &targets, record, url,
    )))
}

/// Interactions are the appliance's record of what it relayed: retention
/// (`[store] retention_days`) and `simmask erase` remove them, not the API.
#[utoipa::path(delete, path = "/twilio/v1/Services/{service}/Sessions/{session}/Interactions/{interaction}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("interaction" = String, Path)),
    responses(
        (status = 204, description = "Erases an interaction's body (its record stays)"),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn delete(
    client: Client,
    Path(path): Path<(String, String, String)>,
) -> Result<StatusCode, TwilioError> {
    let (_, _, sid) = path;
    client.require(Role::Admin)?;
    Err(TwilioError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        20004,
        format!(
            "Interaction {sid} is kept as the appliance's record: retention and \
             `simmask erase` remove interactions"
        ),
    ))
}

/// The real number of `participant` in the appliance's session (empty
/// while it has none: nothing matches).
fn number_of(resolved: &Resolved, participant: &ParticipantView) -> String {
    resolved
        .record
        .as_ref()
        .and_then(|r| {
            r.participants
                .get(usize::from(participant.position))
                .cloned()
        })
        .flatten()
        .map(|n| n.e164().to_string())
        .unwrap_or_default()
}

/// The SMS the proxy sent to `participant`, newest first.
fn messages_to(
    resolved: &Resolved,
    targets: &Targets,
    records: Vec<InteractionRecord>,
    participant: &ParticipantView,
) -> Vec<InteractionRecord> {
    records
        .into_iter()
        .filter(|r| {
            r.kind == "sms"
                && r.from_position.is_none()
                && target_position(resolved, targets, r.id) == Some(participant.position)
        })
        .collect()
}

fn message_view(
    client: &Client,
    resolved: &Resolved,
    targets: &Targets,
    participant: &ParticipantView,
    record: &InteractionRecord,
) -> Value {
    let path = format!(
        "{}/Participants/{}/MessageInteractions/{}",
        resolved.path(),
        participant.sid,
        interaction_sid(record.id)
    );
    let mut view = interaction_view(client, resolved, targets, record, client.url(&path));
    view["participant_sid"] = json!(participant.sid);
    view
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("participant" = String, Path)),
    request_body(content = super::doc::MessageInteractionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "The proxy texts the participant", body = super::doc::Interaction),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn send_message(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String, String)>,
    form: Form,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    let (service_key, key, sid) = path;
    client.require(Role::Admin)?;
    form.only(&["Body", "MediaUrl"])?;
    if form.all("MediaUrl").iter().any(|m| !m.is_empty()) {
        return Err(TwilioError::invalid(
            "Invalid parameter MediaUrl: the appliance sends SMS only (no MMS)",
        ));
    }
    let body = form
        .get("Body")
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| TwilioError::invalid("Missing required parameter Body"))?;
    if body.chars().count() > MAX_BODY {
        return Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            21617,
            format!("The Body exceeds {MAX_BODY} characters"),
        ));
    }
    let (resolved, participant) = resolve_participant(&state, &service_key, &key, &sid).await?;
    let record = match &resolved.record {
        Some(record) if record.status == SessionStatus::Open => record,
        _ => {
            return Err(TwilioError::new(
                StatusCode::BAD_REQUEST,
                80603,
                "The session is not open with two participants: nothing can be sent through it",
            ));
        }
    };
    if record.mode == Mode::Voice {
        return Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            80603,
            "The session is voice-only",
        ));
    }
    let to = participant
        .number
        .clone()
        .ok_or_else(|| TwilioError::invalid("The participant's number was erased"))?;
    let id = state
        .store
        .twilio_queue_message(
            NewOutbound {
                session_id: Some(record.id.clone()),
                proxy_iccid: record.proxy_iccid.clone(),
                from_position: None,
                to,
                body: body.to_string(),
            },
            crate::clock::now(),
        )
        .await?;
    if let Some(wake) = &state.outbox_waker {
        wake(&record.proxy_iccid);
    }
    tracing::info!(session = %record.id, interaction = id, "message interaction queued (twilio)");
    let (records, targets) =
        interactions_of(&state, &resolved, InteractionPick::Id(id), 1, 0).await?;
    let record = records
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| TwilioError::not_found("the queued message is gone"))?;
    Ok((
        StatusCode::CREATED,
        Json(message_view(
            &client,
            &resolved,
            &targets,
            &participant,
            record,
        )),
    ))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("participant" = String, Path)),
    responses(
        (status = 200, description = "Messages the proxy sent to the participant", body = super::doc::MessageInteractionList),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn list_messages(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key, sid) = path;
    let paging = Paging::from_query(uri.query())?;
    let (resolved, participant) = resolve_participant(&state, &service_key, &key, &sid).await?;
    let (records, targets) = interactions_of(
        &state,
        &resolved,
        InteractionPick::ProxyMessagesTo(number_of(&resolved, &participant)),
        paging.fetch(),
        paging.offset,
    )
    .await?;
    let items = records
        .iter()
        .map(|r| message_view(&client, &resolved, &targets, &participant, r))
        .collect();
    let path = format!(
        "{}/Participants/{}/MessageInteractions",
        resolved.path(),
        participant.sid
    );
    Ok(Json(paging.answer(&client, &path, "interactions", items)))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions/{interaction}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("participant" = String, Path), ("interaction" = String, Path)),
    responses(
        (status = 200, description = "A message the proxy sent", body = super::doc::Interaction),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn fetch_message(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key, sid, interaction) = path;
    let (resolved, participant) = resolve_participant(&state, &service_key, &key, &sid).await?;
    let path = format!(
        "{}/Participants/{}/MessageInteractions",
        resolved.path(),
        participant.sid
    );
    let id =
        interaction_id(&interaction).ok_or_else(|| interaction_not_found(&path, &interaction))?;
    let (records, targets) =
        interactions_of(&state, &resolved, InteractionPick::Id(id), 1, 0).await?;
    let record = messages_to(&resolved, &targets, records, &participant)
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| interaction_not_found(&path, &interaction))?;
    Ok(Json(message_view(
        &client,
        &resolved,
        &targets,
        &participant,
        &record,
    )))
}
