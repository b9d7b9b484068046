//! `…/Sessions` and their `Participants`. A Proxy Session is an appliance
//! session: it opens (a proxy SIM of the service is chosen by the masking
//! rule) when its second participant is known; until then the facade holds
//! it and its first participant, whose `proxy_identifier` is still null.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::services::{service, service_path};
use super::{Client, Form, Paging, TwilioError, date, date_ms, derived_sid, ms};
use crate::api::ApiState;
use crate::events::Event;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;
use crate::store::{Role, SessionRecord, TwilioParticipantRow, TwilioService, TwilioSessionRow};
use crate::voice::EndRequest;

pub(super) use super::opening::{
    NewParticipant, SessionSpec, new_session, one_proxy, open_session, opened, participant_from,
    pool_of, too_many,
};

/// Longest TTL accepted: a year, as the native API.
const MAX_TTL: i64 = 366 * 24 * 3600;

/// A session as the facade resolves it.
pub(super) struct Resolved {
    pub service: TwilioService,
    pub sid: String,
    pub row: Option<TwilioSessionRow>,
    /// The appliance's session, once both participants are known.
    pub record: Option<SessionRecord>,
    pub participants: Vec<TwilioParticipantRow>,
}

impl Resolved {
    pub fn path(&self) -> String {
        format!("{}/Sessions/{}", service_path(&self.service.sid), self.sid)
    }

    /// The SID of the participant at `position`.
    pub fn participant_sid(&self, position: u8) -> String {
        self.participants
            .iter()
            .find(|p| p.position == position)
            .map(|p| p.sid.clone())
            .unwrap_or_else(|| {
                let id = self.record.as_ref().map_or("", |r| r.id.as_str());
                derived_sid("KP", &format!("{id}:{position}"))
            })
    }

    /// Whether the session is open in Proxy's sense (open or in progress).
    pub fn is_open(&self) -> bool {
        match &self.record {
            Some(record) => record.status == SessionStatus::Open,
            None => self.row.as_ref().is_some_and(|r| r.closed_ms.is_none()),
        }
    }
}

/// The SID an appliance session shows under when the facade did not
/// create it: reversible for the appliance's own ids (`ses_` and 16 hex).
pub(super) fn native_sid(id: &str) -> String {
    match id.strip_prefix("ses_") {
        Some(hex) if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("KC0000000000000000{}", hex.to_ascii_lowercase())
        }
        _ => derived_sid("KC", id),
    }
}

fn native_id(sid: &str) -> Option<String> {
    let hex = sid.strip_prefix("KC0000000000000000")?;
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("ses_{hex}"))
}

fn not_found(service: &TwilioService, key: &str) -> TwilioError {
    TwilioError::not_found(format!(
        "The requested resource /Services/{}/Sessions/{key} was not found",
        service.sid
    ))
}

/// Whether the appliance session runs on a number of `service`.
async fn in_service(
    state: &ApiState,
    service: &TwilioService,
    record: &SessionRecord,
) -> Result<bool, TwilioError> {
    Ok(state
        .store
        .twilio_number(record.proxy_iccid.clone())
        .await?
        .is_some_and(|n| n.service_sid == service.sid))
}

/// The session `key` (SID or unique name) of `service`, or Twilio's 404.
pub(super) async fn resolve(
    state: &ApiState,
    service: TwilioService,
    key: &str,
) -> Result<Resolved, TwilioError> {
    if let Some(row) = state
        .store
        .twilio_session_row(service.sid.clone(), key.to_string())
        .await?
    {
        if row.deleted_ms.is_some() {
            return Err(not_found(&service, key));
        }
        let record = match &row.session_id {
            Some(id) => Some(state.store.session(id.clone()).await?),
            None => None,
        };
        let participants = state.store.twilio_participants(row.sid.clone()).await?;
        return Ok(Resolved {
            sid: row.sid.clone(),
            service,
            row: Some(row),
            record,
            participants,
        });
    }
    if let Some(id) = native_id(key)
        && let Ok(record) = state.store.session(id).await
        && in_service(state, &service, &record).await?
    {
        return Ok(Resolved {
            sid: key.to_string(),
            service,
            row: None,
            record: Some(record),
            participants: Vec::new(),
        });
    }
    Err(not_found(&service, key))
}

/// The facade row of a session, made for an appliance session on first
/// need (to mark it deleted, or one of its participants).
pub(super) async fn adopt(state: &ApiState, resolved: &mut Resolved) -> Result<(), TwilioError> {
    if resolved.row.is_some() {
        return Ok(());
    }
    let Some(record) = &resolved.record else {
        return Ok(());
    };
    let now = ms(crate::clock::now());
    let row = TwilioSessionRow {
        sid: resolved.sid.clone(),
        service_sid: resolved.service.sid.clone(),
        session_id: Some(record.id.clone()),
        unique_name: None,
        ttl: None,
        expiry_ms: None,
        mode: record.mode.as_str().to_string(),
        closed_ms: None,
        deleted_ms: None,
        created_ms: ms(record.opened_at),
        updated_ms: now,
    };
    resolved.row = Some(state.store.twilio_adopt_session(row).await?);
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Sms => "message-only",
        Mode::Voice => "voice-only",
        Mode::Both => "voice-and-message",
    }
}

pub(super) fn parse_mode(text: &str) -> Result<Mode, TwilioError> {
    match text {
        "message-only" => Ok(Mode::Sms),
        "voice-only" => Ok(Mode::Voice),
        "voice-and-message" => Ok(Mode::Both),
        other => Err(TwilioError::invalid(format!(
            "Invalid parameter Mode: {other:?} is not message-only, voice-only or \
             voice-and-message"
        ))),
    }
}

pub(super) fn session_view(client: &Client, resolved: &Resolved) -> Value {
    let path = resolved.path();
    let row = resolved.row.as_ref();
    let (status, closed_reason, started, ended, last, expiry, ttl, mode) = match &resolved.record {
        Some(record) => {
            let active = record.last_activity_at > record.opened_at;
            let status = match record.status {
                SessionStatus::Open if active => "in-progress",
                SessionStatus::Open => "open",
                _ => "closed",
            };
            (
                status,
                record.close_reason.map(|r| r.as_str().to_string()),
                Some(date(record.opened_at)),
                record.ended_at.map(date),
                active.then(|| date(record.last_activity_at)),
                record.expires_at.map(date),
                record.idle_ttl_seconds.unwrap_or(0),
                mode_name(record.mode),
            )
        }
        None => {
            let row = row.expect("a facade session without an appliance one has a row");
            let closed = row.closed_ms.is_some();
            let mode = row
                .mode
                .parse()
                .map(mode_name)
                .unwrap_or("voice-and-message");
            // Expired as Twilio's pending sessions do (`date_expiry`, or
            // `ttl` without an interaction), else closed by a request.
            let reason = row.closed_ms.map(|at| {
                if row.expiry_ms.is_some_and(|expiry| at >= expiry) {
                    "ttl"
                } else if row
                    .ttl
                    .is_some_and(|t| t > 0 && at >= row.created_ms + t * 1000)
                {
                    "idle"
                } else {
                    "operator"
                }
            });
            (
                if closed { "closed" } else { "open" },
                reason.map(str::to_string),
                None,
                row.closed_ms.map(date_ms),
                None,
                row.expiry_ms.map(date_ms),
                row.ttl.unwrap_or(0),
                mode,
            )
        }
    };
    let created = row.map_or_else(
        || resolved.record.as_ref().map(|r| date(r.opened_at)),
        |r| Some(date_ms(r.created_ms)),
    );
    let updated = {
        let record_ms = resolved
            .record
            .as_ref()
            .map(|r| ms(r.ended_at.unwrap_or(r.last_activity_at)));
        let row_ms = row.map(|r| r.updated_ms);
        record_ms.max(row_ms).map(date_ms)
    };
    json!({
        "sid": resolved.sid,
        "service_sid": resolved.service.sid,
        "account_sid": client.account_sid,
        "date_started": started,
        "date_ended": ended,
        "date_last_interaction": last,
        "date_expiry": expiry,
        "unique_name": row.and_then(|r| r.unique_name.clone()),
        "status": status,
        "closed_reason": closed_reason,
        "ttl": ttl,
        "mode": mode,
        "date_created": created,
        "date_updated": updated,
        "url": client.url(&path),
        "links": {
            "interactions": client.url(&format!("{path}/Interactions")),
            "participants": client.url(&format!("{path}/Participants")),
        },
    })
}

pub(super) fn parse_number(
    state: &ApiState,
    key: &str,
    text: &str,
) -> Result<PhoneNumber, TwilioError> {
    PhoneNumber::parse_as(
        text,
        state.default_region.as_deref(),
        state.number_validation,
    )
    .map_err(|error| {
        TwilioError::new(
            StatusCode::BAD_REQUEST,
            21211,
            format!("Invalid parameter {key}: {error}"),
        )
    })
}

fn lifetime(form: &Form, now: OffsetDateTime) -> Result<(Option<i64>, Option<i64>), TwilioError> {
    let ttl = form.seconds("Ttl")?;
    if ttl.is_some_and(|t| t > MAX_TTL) {
        return Err(TwilioError::invalid(format!(
            "Invalid parameter Ttl: at most {MAX_TTL} seconds"
        )));
    }
    let expiry = form.datetime("DateExpiry")?;
    if let Some(expiry) = expiry
        && expiry <= now
    {
        return Err(TwilioError::invalid(
            "Invalid parameter DateExpiry: it is in the past",
        ));
    }
    Ok((ttl, expiry.map(ms)))
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}/Sessions", tag = "twilio",
    params(("service" = String, Path)),
    request_body(content = super::doc::SessionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Creates a session (an appliance session once it has two participants)", body = super::doc::Session),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
    form: Form,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    client.require(Role::Admin)?;
    form.only(&[
        "UniqueName",
        "DateExpiry",
        "Ttl",
        "Mode",
        "Status",
        "Participants",
        "FailOnParticipantConflict",
    ])?;
    let service = service(&state, &key).await?;
    let now = crate::clock::now();
    let mode = form
        .get("Mode")
        .map(parse_mode)
        .transpose()?
        .unwrap_or(Mode::Both);
    if let Some(status) = form.get("Status")
        && !matches!(status, "open" | "in-progress")
    {
        return Err(TwilioError::invalid(format!(
            "Invalid parameter Status: a new session is open or in-progress, not {status:?}"
        )));
    }
    let (ttl, expiry_ms) = lifetime(&form, now)?;
    let unique_name = form.get("UniqueName").map(str::to_string);
    if unique_name
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.chars().count() > 191)
    {
        return Err(TwilioError::invalid(
            "Invalid parameter UniqueName: 1 to 191 characters",
        ));
    }
    let given = form.all("Participants");
    if given.len() > 2 {
        return Err(too_many());
    }
    let mut participants = Vec::new();
    for text in given {
        let object: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|_| {
            TwilioError::invalid(format!(
                "Invalid parameter Participants: {text:?} is not a JSON object"
            ))
        })?;
        let get = |name: &str| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str().map(str::to_string))
        };
        participants.push(participant_from(&state, &service, get).await?);
    }
    let spec = SessionSpec {
        unique_name,
        ttl,
        expiry_ms,
        mode,
        participants,
    };
    let row = open_session(&state, &client, &service, spec, now).await?;
    let resolved = resolve(&state, service, &row.sid).await?;
    Ok((StatusCode::CREATED, Json(session_view(&client, &resolved))))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions", tag = "twilio",
    params(("service" = String, Path)),
    responses(
        (status = 200, description = "The service's sessions: the facade's and the appliance's own on its numbers", body = super::doc::SessionList),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let paging = Paging::from_query(uri.query())?;
    let service = service(&state, &key).await?;
    let refs = state
        .store
        .twilio_service_sessions(service.sid.clone(), paging.fetch(), paging.offset)
        .await?;
    let mut items = Vec::with_capacity(refs.len());
    for entry in refs {
        let record = match &entry.session_id {
            Some(id) => Some(state.store.session(id.clone()).await?),
            None => None,
        };
        let mut resolved = Resolved {
            sid: entry.row.as_ref().map_or_else(
                || native_sid(entry.session_id.as_deref().unwrap_or("")),
                |r| r.sid.clone(),
            ),
            service: service.clone(),
            participants: match &entry.row {
                Some(row) => state.store.twilio_participants(row.sid.clone()).await?,
                None => Vec::new(),
            },
            row: entry.row,
            record,
        };
        // An appliance session whose id the SID cannot carry gets a row,
        // so that its SID leads back to it.
        if resolved.row.is_none() && native_id(&resolved.sid).is_none() {
            adopt(&state, &mut resolved).await?;
        }
        items.push(session_view(&client, &resolved));
    }
    let path = format!("{}/Sessions", service_path(&service.sid));
    Ok(Json(paging.answer(&client, &path, "sessions", items)))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/Sessions/{session}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    responses(
        (status = 200, description = "A session by SID or unique name", body = super::doc::Session),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn fetch(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key) = path;
    let service = service(&state, &service_key).await?;
    let resolved = resolve(&state, service, &key).await?;
    Ok(Json(session_view(&client, &resolved)))
}

/// Closes the appliance session `id` as the native API does: relaying
/// stops at once and a call in progress ends.
pub(super) async fn close(state: &ApiState, client: &Client, id: &str) -> Result<(), TwilioError> {
    let record = state
        .store
        .close_session(
            id.to_string(),
            client.caller.name.clone(),
            crate::clock::now(),
        )
        .await?;
    tracing::info!(session = %record.id, "session closed (twilio)");
    state.events.publish(Event::SessionClosed {
        session_id: record.id.clone(),
    });
    let closed = EndRequest::SessionEnded("the session was closed".into());
    if let Ok(ended) = state.calls.end_call(&record.id, closed).await {
        tracing::info!(session = %record.id, outcome = %ended.outcome, "its call ended");
    }
    Ok(())
}

/// Closes (`Status=closed`), reopens (`Status=in-progress` or `open` on a
/// closed session) or changes the lifetime (`Ttl`, `DateExpiry`).
#[utoipa::path(post, path = "/twilio/v1/Services/{service}/Sessions/{session}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    request_body(content = super::doc::SessionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Closes (Status=closed), reopens or changes the lifetime", body = super::doc::Session),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn update(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
    form: Form,
) -> Result<Json<Value>, TwilioError> {
    let (service_key, key) = path;
    client.require(Role::Admin)?;
    form.only(&["DateExpiry", "Ttl", "Status", "FailOnParticipantConflict"])?;
    let service = service(&state, &service_key).await?;
    let mut resolved = resolve(&state, service, &key).await?;
    let now = crate::clock::now();
    let (ttl, expiry) = lifetime(&form, now)?;
    let status = form.get("Status");
    if let Some(status) = status
        && !matches!(status, "open" | "in-progress" | "closed")
    {
        return Err(TwilioError::invalid(format!(
            "Invalid parameter Status: {status:?} is not open, in-progress or closed"
        )));
    }
    let ttl_change = ttl.map(|t| (t > 0).then_some(t));
    let expiry_change = expiry.map(Some);
    match (&resolved.record, status) {
        (Some(record), Some("closed")) if record.status == SessionStatus::Open => {
            close(&state, &client, &record.id).await?;
        }
        (Some(record), Some("open" | "in-progress")) if record.status != SessionStatus::Open => {
            let record = state
                .store
                .reopen_session(
                    record.id.clone(),
                    expiry.map(|e| Duration::milliseconds(e - ms(now))),
                    ttl_change.flatten().map(Duration::seconds),
                    client.caller.name.clone(),
                    now,
                )
                .await?;
            opened(&state, &record);
        }
        (None, Some("closed")) => {
            state
                .store
                .twilio_mark_session(resolved.sid.clone(), true, false, now)
                .await?;
        }
        (None, Some("open" | "in-progress")) if !resolved.is_open() => {
            return Err(TwilioError::invalid(
                "A session closed before it had two participants cannot be reopened: create another",
            ));
        }
        _ => {}
    }
    if ttl_change.is_some() || expiry_change.is_some() {
        if let Some(record) = &resolved.record
            && status != Some("closed")
        {
            state
                .store
                .twilio_set_lifetime(record.id.clone(), expiry_change, ttl_change)
                .await?;
        }
        adopt(&state, &mut resolved).await?;
        state
            .store
            .twilio_set_row_lifetime(resolved.sid.clone(), ttl_change, expiry_change, now)
            .await?;
    }
    let resolved = resolve(&state, resolved.service, &resolved.sid).await?;
    Ok(Json(session_view(&client, &resolved)))
}

/// Deletes a session: it is closed first; the appliance keeps its record
/// (the native API and exports still show it), the facade no longer does.
#[utoipa::path(delete, path = "/twilio/v1/Services/{service}/Sessions/{session}", tag = "twilio",
    params(("service" = String, Path), ("session" = String, Path)),
    responses(
        (status = 204, description = "Closes and forgets a session"),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
) -> Result<StatusCode, TwilioError> {
    let (service_key, key) = path;
    client.require(Role::Admin)?;
    let service = service(&state, &service_key).await?;
    let mut resolved = resolve(&state, service, &key).await?;
    if let Some(record) = &resolved.record
        && record.status == SessionStatus::Open
    {
        close(&state, &client, &record.id).await?;
    }
    adopt(&state, &mut resolved).await?;
    state
        .store
        .twilio_mark_session(resolved.sid.clone(), true, true, crate::clock::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
