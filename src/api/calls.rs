//! `/api/v1/sessions/{id}/calls/end`: the operator ends the call in
//! progress on a session, for both sides. The call in progress itself is
//! shown as the session's `call` (see [`super::sessions::SessionView`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::ApiState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::voice::{EndError, EndRequest, Ended};

/// End the call in progress on a session, for both participants. The
/// appliance holds a call from the moment it answers the caller until the
/// call ends when bridged as a conference (the default); a call bridged by
/// explicit call transfer is the network's alone and cannot be ended here.
/// The call's interaction records `ended_by_operator`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/calls/end",
    params(("id" = String, Path, description = "session id")),
    responses(
        (status = 200, description = "the call is over", body = Ended),
        (status = 404, body = ErrorBody),
        (status = 409, description = "no call in progress that the appliance holds", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn end(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Ended>, ApiError> {
    // A 404 for an unknown session rather than a 409.
    state.store.session(id.clone()).await?;
    let ended = state
        .calls
        .end_call(&id, EndRequest::Operator(caller.name.clone()))
        .await
        .map_err(|error| match error {
            EndError::NoCall => ApiError::new(StatusCode::CONFLICT, "no_call", error.to_string()),
            EndError::DeskGone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
        })?;
    tracing::info!(session = %id, operator = %caller.name, "call ended by the operator");
    Ok(Json(ended))
}
