//! `/api/v1/sessions`: open, list, search, get, close, interactions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::ApiState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::events::Event;
use crate::masking::Mode;
use crate::masking::lifecycle::{CloseReason, SessionStatus};
use crate::number::PhoneNumber;
use crate::store::{
    InteractionRecord, MAX_PAGE_SIZE, NewSession, Role, SessionFilter, SessionRecord,
};
use crate::voice::{CallDesks, EndRequest, LiveCall};

/// Longest label accepted, in characters.
const MAX_LABEL: usize = 200;

/// The largest `offset` of a session listing: far beyond any appliance's
/// history, and well within SQLite's signed 64-bit `OFFSET`.
pub const MAX_OFFSET: usize = 1_000_000_000;
/// What an erased participant shows as.
const ERASED: &str = "[erased]";
/// Longest TTL accepted: a year.
const MAX_TTL_SECONDS: u64 = 366 * 24 * 3600;

/// A session as the API shows it. Participants are real numbers for admin
/// tokens and masked (`+44*******789`) for viewers; `[erased]` once erased
/// on request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    /// The proxy number both participants see.
    pub proxy_number: String,
    pub participants: [String; 2],
    /// `sms`, `voice` or `both`.
    #[schema(value_type = String, example = "both")]
    pub mode: Mode,
    /// `open`, `closed` or `expired`.
    #[schema(value_type = String, example = "open")]
    pub status: SessionStatus,
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub idle_ttl_seconds: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    /// The call in progress that the appliance holds on this session (from
    /// the caller's answer until the call ends, when bridged as a
    /// conference); `null` when there is none.
    pub call: Option<LiveCall>,
    /// Why it ended (null while open): `operator`, `ttl`, `idle`,
    /// `opt_out`, `erased`, `sim_retired` or `loop`.
    #[schema(value_type = Option<String>, example = "ttl")]
    pub close_reason: Option<CloseReason>,
    /// Where a former participant's calls go once it expired (masked for
    /// viewers).
    pub fallback_number: Option<String>,
    /// With a hub: the session's code among the hub's sessions on its
    /// proxy (`K7`); the hub's replies start with it, and counterparts'
    /// messages reach the hub as `[K7] text`. `null` without a hub.
    #[schema(example = "K7")]
    pub hub_code: Option<String>,
    /// With a hub: which participant (0 or 1) is the hub.
    pub hub_participant: Option<u8>,
}

impl SessionView {
    /// The session with its call in progress, if any.
    pub fn with_call(mut self, calls: &CallDesks) -> Self {
        self.call = calls.call_of_session(&self.id);
        self
    }

    pub fn new(record: SessionRecord, caller: &Caller) -> Self {
        let show = |number: &Option<PhoneNumber>| match number {
            Some(number) if caller.is_admin() => number.e164().to_string(),
            Some(number) => number.masked(),
            None => ERASED.to_string(),
        };
        let [a, b] = &record.participants;
        Self {
            participants: [show(a), show(b)],
            id: record.id,
            proxy_number: record.proxy_number.e164().to_string(),
            mode: record.mode,
            status: record.status,
            label: record.label,
            opened_at: record.opened_at,
            expires_at: record.expires_at,
            idle_ttl_seconds: record.idle_ttl_seconds,
            last_activity_at: record.last_activity_at,
            ended_at: record.ended_at,
            call: None,
            close_reason: record.close_reason,
            fallback_number: record
                .fallback_number
                .as_ref()
                .map(|n| show(&Some(n.clone()))),
            hub_code: record.hub.as_ref().map(|side| side.code.clone()),
            hub_participant: record.hub.as_ref().map(|side| side.position),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionRequest {
    /// The two real numbers, E.164 (`+447911123456`) or national in the
    /// appliance's default region.
    pub participants: Vec<String>,
    /// Absolute lifetime in seconds.
    pub ttl_seconds: Option<u64>,
    /// The session ends this long after its last SMS or call.
    pub idle_ttl_seconds: Option<u64>,
    /// `sms`, `voice` or `both` (default).
    #[schema(value_type = Option<String>, example = "both")]
    pub mode: Option<Mode>,
    pub label: Option<String>,
    /// Prefer a proxy a participant used before (default from config).
    pub sticky: Option<bool>,
    /// Where calls from a participant go once the session has expired
    /// (default `[sessions] fallback_number`; without one they follow the
    /// out-of-session policy).
    pub fallback_number: Option<String>,
}

/// Reopening a session (`{}` keeps its lifetimes): its lifetime starts
/// again, the same as before unless given here.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenRequest {
    pub ttl_seconds: Option<u64>,
    pub idle_ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open`, `closed` or `expired`.
    pub status: Option<String>,
    /// Sessions whose label contains this text.
    pub label: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Sessions to skip, at most 1,000,000,000 (default 0).
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<usize>,
}

/// A search that may name a participant: a POST body, so that real numbers
/// never travel in URLs (which end up in logs and browser history).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub participant: Option<String>,
    pub status: Option<String>,
    pub label: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Sessions to skip, at most 1,000,000,000 (default 0).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// The `offset` of the next page, when there may be one.
    pub next_offset: Option<usize>,
}

pub(super) fn parse_number(state: &ApiState, text: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse_as(
        text,
        state.default_region.as_deref(),
        state.number_validation,
    )
    .map_err(|error| ApiError::unprocessable("invalid_number", error.to_string()))
}

fn parse_status(text: Option<&str>) -> Result<Option<SessionStatus>, ApiError> {
    text.map(|s| s.parse().map_err(ApiError::bad_request))
        .transpose()
}

fn seconds(name: &str, value: Option<u64>) -> Result<Option<Duration>, ApiError> {
    match value {
        None => Ok(None),
        Some(0) => Err(ApiError::unprocessable(
            "invalid_ttl",
            format!("{name} must be at least 1 second"),
        )),
        Some(s) if s > MAX_TTL_SECONDS => Err(ApiError::unprocessable(
            "invalid_ttl",
            format!("{name} {s} exceeds the maximum of {MAX_TTL_SECONDS} seconds"),
        )),
        Some(s) => Ok(Some(Duration::seconds(s as i64))),
    }
}

fn page(
    records: Vec<SessionRecord>,
    limit: usize,
    offset: usize,
    caller: &Caller,
    calls: &CallDesks,
) -> SessionPage {
    // `find` bounds both, so this cannot overflow; checked all the same.
    let next_offset = (records.len() == limit)
        .then(|| offset.checked_add(limit))
        .flatten();
    SessionPage {
        sessions: records
            .into_iter()
            .map(|r| SessionView::new(r, caller).with_call(calls))
            .collect(),
        next_offset,
    }
}

/// Open a session between two participants on a free proxy.
#[utoipa::path(post, path = "/api/v1/sessions", request_body = OpenSessionRequest,
    responses(
        (status = 201, body = SessionView),
        (status = 409, description = "no free proxy (`no_free_proxy`, with the reason per SIM), \
            or a participant opted out (`opted_out`)", body = ErrorBody),
        (status = 422, description = "invalid numbers or values", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn open(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiJson(request): ApiJson<OpenSessionRequest>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let [a, b] = request.participants.as_slice() else {
        return Err(ApiError::unprocessable(
            "invalid_participants",
            format!(
                "a session has exactly 2 participants, got {}",
                request.participants.len()
            ),
        ));
    };
    let participants = [parse_number(&state, a)?, parse_number(&state, b)?];
    if let Some(label) = &request.label
        && label.chars().count() > MAX_LABEL
    {
        return Err(ApiError::unprocessable(
            "invalid_label",
            format!("label is longer than {MAX_LABEL} characters"),
        ));
    }
    let ttl = seconds("ttl_seconds", request.ttl_seconds)?.or(state.default_ttl);
    let new = NewSession {
        participants,
        mode: request.mode.unwrap_or_default(),
        ttl,
        idle_ttl: seconds("idle_ttl_seconds", request.idle_ttl_seconds)?,
        label: request.label,
        sticky: request.sticky.unwrap_or(state.sticky),
        actor: caller.name.clone(),
        fallback_number: request
            .fallback_number
            .as_deref()
            .map(|n| parse_number(&state, n))
            .transpose()?,
        proxy: None,
        limits: state.limits(),
    };
    let record = state
        .store
        .open_session(new, state.pool.live_sims(), crate::clock::now())
        .await?;
    tracing::info!(session = %record.id, proxy = ?record.proxy_number, mode = record.mode.as_str(), "session opened");
    state.events.publish(Event::SessionOpened {
        session_id: record.id.clone(),
        proxy_number: record.proxy_number.e164().to_string(),
        mode: record.mode.as_str().to_string(),
    });
    Ok((StatusCode::CREATED, Json(SessionView::new(record, &caller))))
}

/// List sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", params(ListQuery),
    responses((status = 200, body = SessionPage), (status = 400, body = ErrorBody),
        (status = 422, description = "`limit` or `offset` out of its bounds (`out_of_range`)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let search = SearchRequest {
        participant: None,
        status: query.status,
        label: query.label,
        limit: query.limit,
        offset: query.offset,
    };
    find(&state, &caller, search).await.map(Json)
}

/// Search sessions, also by participant (in the body, never in the URL;
/// admin tokens only).
#[utoipa::path(post, path = "/api/v1/sessions/search", request_body = SearchRequest,
    responses((status = 200, body = SessionPage), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(search): ApiJson<SearchRequest>,
) -> Result<Json<SessionPage>, ApiError> {
    find(&state, &caller, search).await.map(Json)
}

async fn find(
    state: &ApiState,
    caller: &Caller,
    search: SearchRequest,
) -> Result<SessionPage, ApiError> {
    let limit = search.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::out_of_range(format!(
            "limit {limit} is out of range: 1 to {MAX_PAGE_SIZE}"
        )));
    }
    let offset = search.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::out_of_range(format!(
            "offset {offset} is out of range: 0 to {MAX_OFFSET}"
        )));
    }
    // Viewers see numbers masked; a search by a whole number would let
    // them confirm who talks through the appliance all the same.
    if search.participant.is_some() {
        caller.require(Role::Admin)?;
    }
    let filter = SessionFilter {
        status: parse_status(search.status.as_deref())?,
        label: search.label,
        participant: search
            .participant
            .as_deref()
            .map(|p| parse_number(state, p))
            .transpose()?,
        limit,
        offset,
    };
    let records = state.store.sessions(filter).await?;
    Ok(page(records, limit, offset, caller, &state.calls))
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let record = state.store.session(id).await?;
    Ok(Json(
        SessionView::new(record, &caller).with_call(&state.calls),
    ))
}

/// Close a session: its proxy stops relaying between the two at once, and
/// a call in progress that the appliance holds on it ends for both sides
/// (its interaction records `session_ended`).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody),
        (status = 409, description = "already closed or expired", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn close(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let record = close_session(&state, &caller, id).await?;
    Ok(Json(SessionView::new(record, &caller)))
}

/// Closes the open session `id` for `caller` (an admin: the API's route
/// and the MQTT command): audited, announced on the bus, its call ended.
pub async fn close_session(
    state: &ApiState,
    caller: &Caller,
    id: String,
) -> Result<SessionRecord, ApiError> {
    caller.require(Role::Admin)?;
    let record = state
        .store
        .close_session(id, caller.name.clone(), crate::clock::now())
        .await?;
    tracing::info!(session = %record.id, by = %caller.name, "session closed");
    state.events.publish(Event::SessionClosed {
        session_id: record.id.clone(),
    });
    // The desk would notice within a second; ending it here means the call
    // is over when the operator gets the answer.
    let closed = EndRequest::SessionEnded("the session was closed".into());
    if let Ok(ended) = state.calls.end_call(&record.id, closed).await {
        tracing::info!(session = %record.id, outcome = %ended.outcome, "its call ended");
    }
    Ok(record)
}

/// Reopen a closed or expired session on the same proxy, when the masking
/// rule still allows it (neither participant has another open session on
/// that proxy) and the proxy takes sessions (not draining, not reserved for
/// someone else, no participant opted out).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/reopen", request_body = ReopenRequest,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody),
        (status = 409, description = "`session_open`, `participant_busy`, `opted_out`, \
            `draining`, `reserved` or `erased`, with the reason", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn reopen(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ReopenRequest>,
) -> Result<Json<SessionView>, ApiError> {
    let record = state
        .store
        .reopen_session(
            id,
            seconds("ttl_seconds", request.ttl_seconds)?,
            seconds("idle_ttl_seconds", request.idle_ttl_seconds)?,
            caller.name.clone(),
            crate::clock::now(),
        )
        .await?;
    tracing::info!(session = %record.id, proxy = ?record.proxy_number, "session reopened");
    state.events.publish(Event::SessionOpened {
        session_id: record.id.clone(),
        proxy_number: record.proxy_number.e164().to_string(),
        mode: record.mode.as_str().to_string(),
    });
    Ok(Json(SessionView::new(record, &caller)))
}

/// One SMS or call of a session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InteractionView {
    pub id: i64,
    /// `sms` or `call`.
    pub kind: String,
    /// Which participant (0 or 1, as listed in the session) sent or called.
    pub from_participant: Option<u8>,
    /// `queued`, `sending`, `sent`, `delivered`, `failed`, `dropped`…
    pub status: String,
    pub reason: String,
    /// The intercept rule that stopped it (`block_list`, `opt_out`,
    /// `session_limit`, `participant_limit`, `keyword`, `recipient_budget`,
    /// `loop`), when one did.
    pub rule: Option<String>,
    /// The text, for admin tokens only, until retention erases it.
    pub body: Option<String>,
    pub parts: u32,
    /// A multipart message relayed without all its parts.
    pub incomplete: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Calls: how the call ended (`completed`, `transferred`, `busy`,
    /// `no_answer`, `unreachable`, `caller_hung_up`, `rejected`,
    /// `ended_by_operator`, `max_duration`, `session_ended`…).
    pub outcome: Option<String>,
    /// Calls: when the other participant answered.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<OffsetDateTime>,
    /// Calls: when the call ended.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    /// Calls: the conversation's length (to the transfer, for transfers).
    pub duration_seconds: Option<f64>,
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl InteractionView {
    fn new(record: InteractionRecord, caller: &Caller) -> Self {
        Self {
            id: record.id,
            kind: record.kind,
            from_participant: record.from_position,
            status: record.status,
            reason: record.reason,
            rule: record.rule,
            body: record.body.filter(|_| caller.is_admin()),
            parts: record.parts,
            incomplete: record.incomplete,
            created_at: from_ms(record.created_ms),
            outcome: record.outcome,
            answered_at: record.answered_ms.map(from_ms),
            ended_at: record.ended_ms.map(from_ms),
            duration_seconds: record.duration_ms.map(|ms| ms as f64 / 1000.0),
        }
    }
}

/// A session's SMS and calls, oldest first.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/interactions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<InteractionView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn interactions(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<InteractionView>>, ApiError> {
    // A 404 for an unknown session rather than an empty list.
    state.store.session(id.clone()).await?;
    let records = state.store.interactions(id).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| InteractionView::new(r, &caller))
            .collect(),
    ))
}
