//! `/api/v1/blocks`: the block list, numbers whose messages are never
//! relayed (either way). Numbers travel in bodies, never in URLs; viewers
//! see them masked. The list is personal data: `simmask erase` removes a
//! number from it, `[intercept] forget_after_days` ages entries out.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ApiState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::store::BlockRecord;

/// Longest reason accepted, in characters.
const MAX_REASON: usize = 200;

/// One blocked number.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockView {
    /// The number (masked for viewers).
    pub number: String,
    pub reason: String,
    /// Who blocked it.
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl BlockView {
    fn new(record: BlockRecord, caller: &Caller) -> Self {
        Self {
            number: if caller.is_admin() {
                record.number.e164().to_string()
            } else {
                record.number.masked()
            },
            reason: record.reason,
            actor: record.actor,
            at: record.at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// E.164, or national in the default region.
    pub number: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockRequest {
    pub number: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unblocked {
    pub removed: bool,
}

/// The block list, newest first.
#[utoipa::path(get, path = "/api/v1/blocks",
    responses((status = 200, body = Vec<BlockView>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<BlockView>>, ApiError> {
    let records = state.store.blocked_numbers().await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| BlockView::new(r, &caller))
            .collect(),
    ))
}

/// Block a number: no message from or to it is relayed (recorded with
/// `rule: block_list`).
#[utoipa::path(post, path = "/api/v1/blocks", request_body = BlockRequest,
    responses((status = 201, body = BlockView), (status = 422, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn add(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiJson(request): ApiJson<BlockRequest>,
) -> Result<(StatusCode, Json<BlockView>), ApiError> {
    let number = super::sessions::parse_number(&state, &request.number)?;
    let reason = request.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            format!("reason is longer than {MAX_REASON} characters"),
        ));
    }
    let record = state
        .store
        .block_number(
            number,
            reason,
            caller.name.clone(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    tracing::info!(number = ?record.number, by = %caller.name, "number blocked");
    Ok((StatusCode::CREATED, Json(BlockView::new(record, &caller))))
}

/// Take a number off the block list.
#[utoipa::path(post, path = "/api/v1/blocks/remove", request_body = UnblockRequest,
    responses((status = 200, body = Unblocked), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn remove(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiJson(request): ApiJson<UnblockRequest>,
) -> Result<Json<Unblocked>, ApiError> {
    let number = super::sessions::parse_number(&state, &request.number)?;
    let removed = state
        .store
        .unblock_number(number, caller.name.clone(), OffsetDateTime::now_utc())
        .await?;
    if !removed {
        return Err(ApiError::not_found("that number is not on the block list"));
    }
    Ok(Json(Unblocked { removed }))
}
