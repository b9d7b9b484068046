//! The API's one error type: it knows its status code, says what is wrong in
//! a JSON body `{error, message}`, and is logged at the level its cause
//! deserves (a client's mistake at debug, our fault at error).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::masking::allocation::AllocationError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code (`not_found`, `invalid_number`…).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Close the connection after this answer (`Connection: close`): for a
    /// refusal whose socket should not be kept.
    pub close: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code such as `not_found`, `invalid_number`, `no_free_proxy`.
    pub error: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// 429 `code`, to be retried after `seconds` (at least 1).
    pub fn too_many(code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// The same, and the connection closed after it.
    pub fn closing(self) -> Self {
        Self {
            close: true,
            ..self
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A number outside its documented bounds (422 `out_of_range`); the
    /// message states the bounds.
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "api: {}", self.message);
        } else {
            tracing::debug!(status = %self.status, code = self.code, "api: {}", self.message);
        }
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if self.close {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            // Well-formed JSON of the wrong shape: wrong types, unknown or missing fields.
            JsonRejection::JsonDataError(e) => {
                Self::unprocessable("invalid_body", format!("request body: {}", e.body_text()))
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::bad_request(format!("request body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            other => {
                let status = other.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "body_too_large"
                } else {
                    "bad_request"
                };
                Self::new(status, code, format!("request body: {}", other.body_text()))
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(format!("path: {}", rejection.body_text()))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSuchSession(_) | StoreError::NoSuchSim(_) | StoreError::NoSuchHub(_) => {
                Self::not_found(error.to_string())
            }
            StoreError::SessionNotOpen { .. } => {
                Self::new(StatusCode::CONFLICT, "session_not_open", error.to_string())
            }
            StoreError::Conflict { code, .. } => {
                Self::new(StatusCode::CONFLICT, code, error.to_string())
            }
            StoreError::Allocation(AllocationError::OptedOut(_)) => {
                Self::new(StatusCode::CONFLICT, "opted_out", error.to_string())
            }
            StoreError::Allocation(AllocationError::NoFreeProxy(_)) => {
                Self::new(StatusCode::CONFLICT, "no_free_proxy", error.to_string())
            }
            StoreError::Allocation(
                AllocationError::SameParticipants
                | AllocationError::ParticipantIsProxy(_)
                | AllocationError::TwoHubs,
            ) => Self::unprocessable("invalid_participants", error.to_string()),
            // A call the configured backend does not have yet: say which.
            StoreError::Unsupported { .. } => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                error.to_string(),
            ),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{error}; received messages stay on the SIMs until the database is back"),
            ),
            // The disk, not the request: say so, and that nothing is lost.
            full if full.is_disk_full() => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                format!(
                    "the appliance's disk is full, so nothing can be stored ({full}); \
                     received messages stay on the SIMs until space is freed"
                ),
            ),
            failing if failing.is_write_failure() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the appliance cannot write to its store: {failing}"),
            ),
            other => Self::internal(other.to_string()),
        }
    }
}
