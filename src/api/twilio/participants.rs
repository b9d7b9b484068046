//! `…/Sessions/{Sid}/Participants`: the two numbers of a session. The
//! first of a session created without participants waits in the facade;
//! the second opens the appliance's session (and so gets, with the first,
//! its `proxy_identifier`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::services::{number_sid, service};
use super::sessions::{
    Resolved, adopt, close, new_session, one_proxy, opened, participant_from, pool_of, resolve,
    too_many,
};
use super::{Client, Form, Paging, TwilioError, date_ms, ms, new_sid};
use crate::api::ApiState;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;
use crate::store::{Role, TwilioParticipantRow};

/// One participant as Proxy shows it.
pub(super) struct ParticipantView {
    pub sid: String,
    pub position: u8,
    /// The real number, for what the caller may see.
    pub number: Option<PhoneNumber>,
    pub friendly_name: Option<String>,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
}

/// The session's participants, deleted ones included.
pub(super) fn participants(resolved: &Resolved) -> Vec<ParticipantView> {
    let stored = |position: u8| {
        resolved
            .participants
            .iter()
            .find(|p| p.position == position)
    };
    match &resolved.record {
        Some(record) => (0..2u8)
            .map(|position| {
                let row = stored(position);
                ParticipantView {
                    sid: resolved.participant_sid(position),
                    position,
                    number: record.participants[position as usize].clone(),
                    friendly_name: row.and_then(|r| r.friendly_name.clone()),
                    created_ms: row.map_or(ms(record.opened_at), |r| r.created_ms),
                    deleted_ms: row.and_then(|r| r.deleted_ms),
                }
            })
            .collect(),
        None => resolved
            .participants
            .iter()
            .map(|row| ParticipantView {
                sid: row.sid.clone(),
                position: row.position,
                number: row
                    .identifier
                    .as_deref()
                    .and_then(|n| PhoneNumber::from_e164(n).ok()),
                friendly_name: row.friendly_name.clone(),
                created_ms: row.created_ms,
                deleted_ms: row.deleted_ms,
            })
            .collect(),
    }
}

fn participant_view(client: &Client, resolved: &Resolved, participant: &ParticipantView) -> Value {
    let path = format!("{}/Participants/{}", resolved.path(), participant.sid);
    let identifier = match &participant.number {
        Some(number) if client.caller.is_admin() => number.e164().to_string(),
        Some(number) => number.masked(),
        None => "[erased]".to_string(),
    };
    let proxy = resolved.record.as_ref();
    json!({
        "sid": participant.sid,
        "session_sid": resolved.sid,
        "service_sid": resolved.service.sid,
        "account_sid": client.account_sid,
        "friendly_name": participant.friendly_name,
        "identifier": identifier,
        "proxy_identifier": proxy.map(|r| r.proxy_number.e164().to_string()),
        "proxy_identifier_sid": proxy.map(|r| number_sid(&r.proxy_iccid)),
        "date_deleted": participant.deleted_ms.map(date_ms),
        "date_created": date_ms(participant.created_ms),
        "date_updated": date_ms(participant.deleted_ms.unwrap_or(participant.created_ms)),
        "url": client.url(&path),
        "links": {
            "message_interactions": client.url(&format!("{path}/MessageInteractions")),
        },
    })
}

/// The session and one of its (not deleted) participants, or a 404.
pub(super) async fn resolve_participant(
    state: &ApiState,
    service_key: &str,
    session_key: &str,
    participant: &str,
) -> Result<(Resolved, ParticipantView), TwilioError> {
    let service = service(state, service_key).await?;
    let resolved = resolve(state, service, session_key).await?;
    let found = participants(&resolved)
        .into_iter()
        .find(|p| p.sid == participant && p.deleted_ms.is_none())
        .ok_or_else(|| {
            TwilioError::not_found(format!(
                "The requested resource {}/Participants/{participant} was not found",
                resolved.path()
            ))
        })?;
    Ok((resolved, found))
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    request_body(content = super::doc::ParticipantForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Adds a participant (two at most: the masking rule)", body = super::doc::Participant),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn add(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
    form: Form,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    let (service_key, key) = path;
    client.require(Role::Admin)?;
    form.only(&[
        "Identifier",
        "FriendlyName",
        "ProxyIdentifier",
        "ProxyIdentifierSid",
        "FailOnParticipantConflict",
    ])?;
    let service = service(&state, &service_key).await?;
    let resolved = resolve(&state, service, &key).await?;
    if resolved.record.is_some() {
        return Err(too_many());
    }
    if !resolved.is_open() {
        return Err(TwilioError::invalid(
            "The session is closed: participants join open sessions",
        ));
    }
    let row = resolved.row.clone().expect("a waiting session has a row");
    let new = participant_from(&state, &resolved.service, |name| {
        form.get(name).map(str::to_string)
    })
    .await?;
    let waiting: Vec<&TwilioParticipantRow> = resolved
        .participants
        .iter()
        .filter(|p| p.deleted_ms.is_none())
        .collect();
    let now = crate::clock::now();
    let position = u8::from(waiting.iter().any(|p| p.position == 0));
    let participant = TwilioParticipantRow {
        sid: new_sid("KP"),
        session_sid: row.sid.clone(),
        position,
        identifier: Some(new.identifier.e164().to_string()),
        friendly_name: new.friendly_name.clone(),
        proxy_iccid: new.proxy_iccid.clone(),
        created_ms: ms(now),
        deleted_ms: None,
    };
    let open = match waiting.first() {
        Some(first) => {
            let first_number = first
                .identifier
                .as_deref()
                .and_then(|n| PhoneNumber::from_e164(n).ok())
                .ok_or_else(|| TwilioError::invalid("The first participant's number was erased"))?;
            let proxy = one_proxy(first.proxy_iccid.clone(), new.proxy_iccid.clone())?;
            let live = pool_of(&state, &resolved.service, proxy.as_deref()).await?;
            let mut numbers = [first_number, new.identifier.clone()];
            if first.position == 1 {
                numbers.swap(0, 1);
            }
            let mode = row.mode.parse().unwrap_or(Mode::Both);
            Some((
                new_session(
                    &state,
                    &client,
                    &resolved.service,
                    &row,
                    numbers,
                    proxy,
                    mode,
                    now,
                ),
                live,
            ))
        }
        None => None,
    };
    let record = state
        .store
        .twilio_add_participant(participant.clone(), open, now)
        .await?;
    if let Some(record) = &record {
        opened(&state, record);
    }
    let (resolved, view) =
        resolve_participant(&state, &resolved.service.sid, &row.sid, &participant.sid).await?;
    Ok((
        StatusCode::CREATED,
        Json(participant_view(&client, &resolved, &view)),
    ))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    responses(
        (status = 200, description = "The session's participants", body = super::doc::ParticipantList),
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
    let items = participants(&resolved)
        .iter()
        .filter(|p| p.deleted_ms.is_none())
        .skip(paging.offset)
        .take(paging.fetch())
        .map(|p| participant_view(&client, &resolved, p))
        .collect();
    let path = format!("{}/Participants", resolved.path());
    Ok(Json(paging.answer(&client, &path, "participants", items)))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("participant" = String, Path)),
    responses(
        (status = 200, description = "A participant", body = super::doc::Participant),
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
    let (resolved, view) = resolve_participant(&state, &service_key, &key, &sid).await?;
    Ok(Json(participant_view(&client, &resolved, &view)))
}

/// Removes a participant. One of an open appliance session ends it: the
/// masking rule needs both to relay (Proxy stops relaying to a removed
/// participant too).
#[utoipa::path(delete, path = "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path), ("participant" = String, Path)),
    responses(
        (status = 204, description = "Removes a participant (the session closes)"),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn remove(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String, String)>,
) -> Result<StatusCode, TwilioError> {
    let (service_key, key, sid) = path;
    client.require(Role::Admin)?;
    let (mut resolved, view) = resolve_participant(&state, &service_key, &key, &sid).await?;
    let now = crate::clock::now();
    match &resolved.record {
        Some(record) => {
            if record.status == SessionStatus::Open {
                close(&state, &client, &record.id).await?;
            }
            adopt(&state, &mut resolved).await?;
            state
                .store
                .twilio_record_participant(TwilioParticipantRow {
                    sid: view.sid.clone(),
                    session_sid: resolved.sid.clone(),
                    position: view.position,
                    identifier: None,
                    friendly_name: None,
                    proxy_iccid: None,
                    created_ms: view.created_ms,
                    deleted_ms: None,
                })
                .await?;
            state
                .store
                .twilio_delete_participant(view.sid, false, now)
                .await?;
        }
        None => {
            state
                .store
                .twilio_delete_participant(view.sid, true, now)
                .await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
