//! `/api/v1/tokens`: API tokens listed, created and revoked (admin). A
//! revoked token is refused on its next request, and an event stream open
//! with it is closed at once ([`super::events`] listens for revocations).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ApiState;
use super::auth::{self, Admin};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use crate::store::{NewToken, Role, TokenError, TokenRecord, TokenRef};

/// The longest lifetime a token may be given: ten years.
const MAX_LIFETIME_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    /// `admin`, `viewer` or `metrics`.
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
    /// `live`, `expired` or `revoked`.
    pub state: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenView {
    pub fn new(record: TokenRecord, now: OffsetDateTime) -> Self {
        Self {
            state: record.state(now),
            id: record.id,
            name: record.name,
            role: record.role,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who or what uses it: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// `admin`, `viewer` (default) or `metrics`.
    #[schema(value_type = Option<String>, example = "viewer")]
    pub role: Option<RoleName>,
    /// The token stops working this many seconds from now; never if absent.
    pub expires_in_seconds: Option<u64>,
}

/// A role as a request names it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Viewer,
    Metrics,
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::Admin => Role::Admin,
            RoleName::Viewer => Role::Viewer,
            RoleName::Metrics => Role::Metrics,
        }
    }
}

/// A new token: shown in this answer only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: TokenView,
    /// The token itself: store it now, only its hash is kept.
    pub token: String,
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::NameTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, "token_exists", error.to_string())
            }
            TokenError::BadName(_) | TokenError::ExpiryPast => {
                ApiError::unprocessable("invalid_token", error.to_string())
            }
            TokenError::NotFound(_) => ApiError::not_found(error.to_string()),
            TokenError::Store(error) => error.into(),
        }
    }
}

/// Every token, revoked and expired ones too, with its last use.
#[utoipa::path(get, path = "/api/v1/tokens",
    responses((status = 200, body = Vec<TokenView>)),
    security(("bearer" = ["admin"])))]
pub async fn list(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let tokens = state.store.all_tokens().await?;
    Ok(Json(
        tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// Create a token; the answer is the only place the token is ever shown.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken),
        (status = 409, description = "a live token has that name", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn create(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let now = OffsetDateTime::now_utc();
    let expires_at = match request.expires_in_seconds {
        None => None,
        Some(seconds) if (1..=MAX_LIFETIME_SECONDS).contains(&seconds) => {
            Some(now + time::Duration::seconds(seconds as i64))
        }
        Some(seconds) => {
            return Err(ApiError::unprocessable(
                "invalid_token",
                format!("expires_in_seconds {seconds}: must be 1 to {MAX_LIFETIME_SECONDS}"),
            ));
        }
    };
    let token = auth::generate_token();
    let new = NewToken {
        name: request.name,
        role: request.role.map_or(Role::Viewer, Role::from),
        hash: auth::hash_token(&token),
        expires_at,
        actor: caller.name.clone(),
    };
    let record = state.store.add_token(new, now).await?;
    tracing::info!(token = %record.name, role = record.role.as_str(), by = %caller.name, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            record: TokenView::new(record, now),
            token,
        }),
    ))
}

/// Revoke a token: refused from now on, everywhere, and its open event
/// streams are closed.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}",
    params(("id" = i64, Path, description = "the token's number")),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn revoke(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenView>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let record = state
        .store
        .revoke_token(TokenRef::Id(id), caller.name.clone(), now)
        .await?;
    state.token_revoked.notify_waiters();
    tracing::info!(token = %record.name, by = %caller.name, "token revoked");
    Ok(Json(TokenView::new(record, now)))
}
