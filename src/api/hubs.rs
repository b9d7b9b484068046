//! `/api/v1/hubs`: numbers that may be in many open sessions on one proxy
//! (an aid worker, a dispatcher), each session told apart by a short code
//! (`K7`). Numbers travel in bodies, never in URLs; viewers see them
//! masked. Removing a hub ends its open sessions: without the hub's
//! exception they would break the masking rule.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ApiState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use crate::events::Event;
use crate::number::PhoneNumber;
use crate::store::{HubRecord, SessionRecord};
use crate::voice::EndRequest;

/// Longest label accepted, in characters.
const MAX_LABEL: usize = 200;

/// One open session of a hub.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HubSessionView {
    pub session_id: String,
    /// The session's code among the hub's sessions on its proxy: the hub
    /// starts a reply with it (`K7 text`), or keys it when it calls (`5 7`).
    pub hub_code: String,
    pub proxy_number: String,
    /// The other participant (masked for viewers).
    pub counterpart: String,
    pub label: Option<String>,
}

/// A hub with its open sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HubView {
    /// `hub_…`: what `DELETE /api/v1/hubs/{id}` takes.
    pub id: String,
    /// The hub's number (masked for viewers).
    pub number: String,
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Its open sessions with their codes, by proxy and code.
    pub sessions: Vec<HubSessionView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHubRequest {
    /// E.164, or national in the default region.
    pub number: String,
    pub label: Option<String>,
}

/// A hub removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemovedHub {
    pub id: String,
    /// The hub's number (masked for viewers).
    pub number: String,
    pub label: Option<String>,
    /// Its open sessions, ended (`close_reason: operator`).
    pub sessions_closed: Vec<String>,
}

fn show(number: &PhoneNumber, caller: &Caller) -> String {
    if caller.is_admin() {
        number.e164().to_string()
    } else {
        number.masked()
    }
}

/// `hub` as the API shows it to `caller`, with its sessions among `sessions`.
pub fn view(hub: HubRecord, sessions: &[(String, SessionRecord)], caller: &Caller) -> HubView {
    let sessions = sessions
        .iter()
        .filter(|(id, _)| id == &hub.id)
        .filter_map(|(_, session)| {
            let side = session.hub.as_ref()?;
            let other = usize::from(1 - side.position.min(1));
            Some(HubSessionView {
                session_id: session.id.clone(),
                hub_code: side.code.clone(),
                proxy_number: session.proxy_number.e164().to_string(),
                counterpart: session.participants[other]
                    .as_ref()
                    .map_or_else(|| "[erased]".to_string(), |n| show(n, caller)),
                label: session.label.clone(),
            })
        })
        .collect();
    HubView {
        number: show(&hub.number, caller),
        id: hub.id,
        label: hub.label,
        created_at: hub.created_at,
        sessions,
    }
}

/// The hubs, oldest first, each with its open sessions and their codes.
#[utoipa::path(get, path = "/api/v1/hubs",
    responses((status = 200, body = Vec<HubView>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<HubView>>, ApiError> {
    let hubs = state.store.hubs().await?;
    let sessions = state.store.hub_sessions().await?;
    Ok(Json(
        hubs.into_iter()
            .map(|hub| view(hub, &sessions, &caller))
            .collect(),
    ))
}

/// Make a number a hub: it may then be in any number of open sessions on
/// one proxy, each with a code (its counterparts keep the masking rule).
/// Its open sessions get codes at once.
#[utoipa::path(post, path = "/api/v1/hubs", request_body = CreateHubRequest,
    responses((status = 201, body = HubView),
        (status = 409, description = "`hub_exists`, or `two_hubs`: the number is in an open \
            session with a hub", body = ErrorBody),
        (status = 422, description = "invalid number, a proxy number, or a label over 200 \
            characters", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn create(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiJson(request): ApiJson<CreateHubRequest>,
) -> Result<(StatusCode, Json<HubView>), ApiError> {
    let number = super::sessions::parse_number(&state, &request.number)?;
    if let Some(label) = &request.label
        && label.chars().count() > MAX_LABEL
    {
        return Err(ApiError::unprocessable(
            "invalid_label",
            format!("label is longer than {MAX_LABEL} characters"),
        ));
    }
    if state
        .store
        .sims()
        .await?
        .iter()
        .any(|sim| sim.msisdn == number)
    {
        return Err(ApiError::unprocessable(
            "invalid_number",
            "that is a proxy number of this appliance, not a person's",
        ));
    }
    let (hub, converted) = state
        .store
        .create_hub(
            number,
            request.label,
            caller.name.clone(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    tracing::info!(hub = %hub.id, number = ?hub.number, sessions = converted.len(), "hub created");
    state.events.publish(Event::HubCreated {
        hub_id: hub.id.clone(),
        number: hub.number.masked(),
        sessions: converted.iter().map(|s| s.id.clone()).collect(),
    });
    let sessions: Vec<(String, SessionRecord)> = converted
        .into_iter()
        .map(|session| (hub.id.clone(), session))
        .collect();
    Ok((StatusCode::CREATED, Json(view(hub, &sessions, &caller))))
}

/// Remove a hub. Its open sessions end (`close_reason: operator`) and
/// their calls in progress with them.
#[utoipa::path(delete, path = "/api/v1/hubs/{id}",
    params(("id" = String, Path, description = "hub id (`hub_…`)")),
    responses((status = 200, body = RemovedHub), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn remove(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RemovedHub>, ApiError> {
    let (hub, ended) = state
        .store
        .remove_hub(id, caller.name.clone(), OffsetDateTime::now_utc())
        .await?;
    tracing::info!(hub = %hub.id, sessions = ended.len(), "hub removed");
    state.events.publish(Event::HubRemoved {
        hub_id: hub.id.clone(),
        number: hub.number.masked(),
        sessions_closed: ended.iter().map(|s| s.id.clone()).collect(),
    });
    for session in &ended {
        state.events.publish(Event::SessionClosed {
            session_id: session.id.clone(),
        });
        let closed = EndRequest::SessionEnded("the session was closed".into());
        if let Ok(call) = state.calls.end_call(&session.id, closed).await {
            tracing::info!(session = %session.id, outcome = %call.outcome, "its call ended");
        }
    }
    Ok(Json(RemovedHub {
        number: show(&hub.number, &caller),
        id: hub.id,
        label: hub.label,
        sessions_closed: ended.into_iter().map(|s| s.id).collect(),
    }))
}
