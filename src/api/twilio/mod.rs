//! `/twilio/v1`: the Twilio Proxy v1 API, as the official client libraries
//! call it, over the appliance's one model (a Service is a pool of SIMs, a
//! Proxy Session is an appliance session). On only with `[twilio]
//! account_sid`.
//!
//! What a Twilio client expects, kept here: HTTP Basic auth (the account
//! SID, and an appliance API token as the password: its role decides),
//! form-encoded requests with CamelCase keys, JSON answers with snake_case
//! keys, absolute `url`/`links`, lists in the `meta` envelope, errors as
//! `{code, message, more_info, status}` with Twilio's numeric codes.

mod callbacks;
mod doc;
mod hooks;
mod interactions;
mod opening;
mod participants;
mod services;
mod sessions;

use std::collections::HashSet;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use super::ApiState;
use super::auth::{Caller, authenticate};
use super::error::ApiError;
use crate::masking::allocation::AllocationError;
use crate::store::{Role, StoreError};

/// The prefix every facade path starts with.
pub const PREFIX: &str = "/twilio/v1";
/// Twilio's largest page.
const MAX_PAGE_SIZE: usize = 1000;
/// Twilio's page size when none is asked for.
const DEFAULT_PAGE_SIZE: usize = 50;

/// The facade's settings (`[twilio]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The account SID clients authenticate with.
    pub account_sid: String,
    /// The key of `X-Twilio-Signature` on callbacks.
    pub auth_token: Option<String>,
    /// `http(s)://host:port/twilio/v1` as callbacks' `url` fields show it.
    pub base_url: String,
}

pub use doc::TwilioDoc;

/// Starts the services' status callbacks and the intercept and
/// out-of-session callbacks that decide held messages (while the API
/// serves).
pub fn spawn_callbacks(state: &ApiState, shutdown: CancellationToken) {
    if let Some(settings) = state.twilio.clone() {
        callbacks::spawn(state.clone(), settings.clone(), shutdown.clone());
        hooks::spawn(state.clone(), settings, shutdown);
    }
}

/// The facade's routes (they answer 404 while it is off).
pub fn routes() -> Router<ApiState> {
    use axum::routing::any;
    Router::new()
        .route(
            "/twilio/v1/Services",
            get(services::list).post(services::create),
        )
        .route(
            "/twilio/v1/Services/{service}",
            get(services::fetch)
                .post(services::update)
                .delete(services::delete),
        )
        .route(
            "/twilio/v1/Services/{service}/PhoneNumbers",
            get(services::list_numbers).post(services::add_number),
        )
        .route(
            "/twilio/v1/Services/{service}/PhoneNumbers/{sid}",
            get(services::fetch_number)
                .post(services::update_number)
                .delete(services::remove_number),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions",
            get(sessions::list).post(sessions::create),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}",
            get(sessions::fetch)
                .post(sessions::update)
                .delete(sessions::delete),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Participants",
            get(participants::list).post(participants::add),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}",
            get(participants::fetch).delete(participants::remove),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Interactions",
            get(interactions::list),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Interactions/{interaction}",
            get(interactions::fetch).delete(interactions::delete),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions",
            get(interactions::list_messages).post(interactions::send_message),
        )
        .route(
            "/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions/{interaction}",
            get(interactions::fetch_message),
        )
        .route("/twilio/v1", any(not_found))
        .route("/twilio/v1/{*rest}", any(not_found))
        .route_layer(axum::middleware::from_fn(method_not_allowed))
}

/// Twilio's answer to a method a resource does not have.
async fn method_not_allowed(request: Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return TwilioError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            20004,
            format!("Method {method} not allowed on {path}"),
        )
        .into_response();
    }
    response
}

async fn not_found(uri: axum::http::Uri) -> TwilioError {
    TwilioError::not_found(format!(
        "The requested resource {} was not found",
        uri.path()
    ))
}

/// An error as Twilio answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioError {
    pub status: StatusCode,
    /// Twilio's error code (`20404`, `80609`…).
    pub code: u32,
    pub message: String,
}

impl TwilioError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, 20404, message)
    }

    /// A parameter with a value that cannot be used.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 20001, message)
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "twilio api: {}", self.message);
        } else {
            tracing::debug!(status = %self.status, code = self.code, "twilio api: {}", self.message);
        }
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

impl From<ApiError> for TwilioError {
    fn from(error: ApiError) -> Self {
        let code = match error.status {
            StatusCode::NOT_FOUND => 20404,
            StatusCode::UNAUTHORIZED => 20003,
            StatusCode::FORBIDDEN => 20403,
            StatusCode::TOO_MANY_REQUESTS => 20429,
            status if status.is_server_error() => 20500,
            _ => match error.code {
                "invalid_number" => 21211,
                "opted_out" => 21610,
                "no_free_proxy" | "participant_busy" => 80402,
                "invalid_participants" => 80402,
                _ => 20001,
            },
        };
        let status = if error.status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            error.status
        };
        Self::new(status, code, error.message)
    }
}

impl From<StoreError> for TwilioError {
    fn from(error: StoreError) -> Self {
        match &error {
            // Proxy's own answer when no number of the pool can carry the
            // pair: the masking rule is the same as Proxy's.
            StoreError::Allocation(AllocationError::NoFreeProxy(_)) => Self::new(
                StatusCode::BAD_REQUEST,
                80402,
                format!(
                    "Identifier/ProxyIdentifier pair invalid: no number of the service can carry \
                     this pair ({error})"
                ),
            ),
            StoreError::Conflict { code, .. }
                if matches!(
                    *code,
                    "unique_name_taken" | "number_in_use" | "participant_exists"
                ) =>
            {
                Self::new(StatusCode::CONFLICT, 80604, error.to_string())
            }
            _ => ApiError::from(error).into(),
        }
    }
}

/// A caller of the facade, with the base of the URLs it is answered with.
#[derive(Debug, Clone)]
pub struct Client {
    pub caller: Caller,
    /// The account SID it authenticated with.
    pub account_sid: String,
    /// `http://host:port/twilio/v1`, as the client reached the appliance.
    pub base: String,
}

impl Client {
    /// Refuses (403, Twilio's 20403) a caller below `role`.
    pub fn require(&self, role: Role) -> Result<(), TwilioError> {
        self.caller
            .require(role)
            .map_err(|error| TwilioError::new(StatusCode::FORBIDDEN, 20403, error.message))
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn unauthorized(message: &str) -> TwilioError {
    TwilioError::new(
        StatusCode::UNAUTHORIZED,
        20003,
        format!("Authenticate: {message}"),
    )
}

/// The user and password of a Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Result<(String, String), TwilioError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send the account SID and an API token as Basic auth"))?
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let encoded = value
        .strip_prefix("Basic ")
        .ok_or_else(|| unauthorized("the Authorization header must be Basic"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| unauthorized("the Basic credentials are not base64 text"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("the Basic credentials have no password"))?;
    Ok((user.to_string(), password.to_string()))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{PREFIX}")
}

impl FromRequestParts<ApiState> for Client {
    type Rejection = TwilioError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, TwilioError> {
        let Some(Settings {
            account_sid: account,
            ..
        }) = &state.twilio
        else {
            return Err(TwilioError::not_found(
                "The Twilio Proxy API is off: set [twilio] account_sid in the configuration",
            ));
        };
        let (user, password) = basic(&parts.headers)?;
        let same_account: bool =
            subtle::ConstantTimeEq::ct_eq(user.as_bytes(), account.as_bytes()).into();
        if !same_account {
            return Err(unauthorized("unknown account SID"));
        }
        let caller = authenticate(state, &password)
            .await
            .map_err(TwilioError::from)?
            .ok_or_else(|| unauthorized("unknown, revoked or expired token"))?;
        let client = Client {
            caller,
            account_sid: account.clone(),
            base: base_url(&parts.headers),
        };
        client.require(Role::Viewer)?;
        Ok(client)
    }
}

/// A form-encoded request body: CamelCase keys, some repeated.
#[derive(Debug, Default)]
pub struct Form(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = TwilioError;

    async fn from_request(request: Request, state: &S) -> Result<Self, TwilioError> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                TwilioError::new(rejection.status(), 20001, rejection.body_text())
            })?;
        if bytes.is_empty() {
            return Ok(Form::default());
        }
        if !form {
            return Err(TwilioError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                20001,
                "send parameters form-encoded (application/x-www-form-urlencoded)",
            ));
        }
        Ok(Form(
            form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl Form {
    /// Refuses a parameter not in `known`, naming it.
    pub fn only(&self, known: &[&str]) -> Result<(), TwilioError> {
        let known: HashSet<&str> = known.iter().copied().collect();
        match self.0.iter().find(|(k, _)| !known.contains(k.as_str())) {
            Some((key, _)) => Err(TwilioError::invalid(format!(
                "Invalid parameter {key}: not one of {}",
                {
                    let mut names: Vec<_> = known.into_iter().collect();
                    names.sort_unstable();
                    names.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `key` as a whole number of at least 0.
    pub fn seconds(&self, key: &str) -> Result<Option<i64>, TwilioError> {
        self.get(key)
            .map(|v| {
                v.parse::<u32>().map(i64::from).map_err(|_| {
                    TwilioError::invalid(format!(
                        "Invalid parameter {key}: {v:?} is not a whole number of seconds"
                    ))
                })
            })
            .transpose()
    }

    /// `key` as a Twilio boolean (`true`/`false`).
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, TwilioError> {
        self.get(key)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(TwilioError::invalid(format!(
                    "Invalid parameter {key}: {v:?} is not true or false"
                ))),
            })
            .transpose()
    }

    /// `key` as an ISO 8601 date and time.
    pub fn datetime(&self, key: &str) -> Result<Option<OffsetDateTime>, TwilioError> {
        self.get(key)
            .map(|v| {
                OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                    TwilioError::invalid(format!(
                        "Invalid parameter {key}: {v:?} is not an ISO 8601 date and time"
                    ))
                })
            })
            .transpose()
    }
}

/// A page asked for by `Page`, `PageSize` and `PageToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: usize,
    pub page_size: usize,
    pub offset: usize,
}

impl Paging {
    /// The page a list request asks for (its query string).
    pub fn from_query(query: Option<&str>) -> Result<Self, TwilioError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let number = |key: &str| -> Result<Option<usize>, TwilioError> {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| {
                    v.parse::<usize>().map_err(|_| {
                        TwilioError::invalid(format!(
                            "Invalid parameter {key}: {v:?} is not a whole number"
                        ))
                    })
                })
                .transpose()
        };
        if let Some((key, _)) = pairs
            .iter()
            .find(|(k, _)| !matches!(k.as_str(), "Page" | "PageSize" | "PageToken"))
        {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter {key}: lists take Page, PageSize and PageToken"
            )));
        }
        let page_size = number("PageSize")?.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter PageSize: must be 1 to {MAX_PAGE_SIZE}"
            )));
        }
        let page = number("Page")?.unwrap_or(0);
        // The token says where the page starts; without one, the page number.
        let offset = match pairs.iter().rev().find(|(k, _)| k == "PageToken") {
            Some((_, token)) => token
                .strip_prefix("PA")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    TwilioError::invalid(format!("Invalid parameter PageToken: {token:?}"))
                })?,
            None => page.checked_mul(page_size).ok_or_else(|| {
                TwilioError::invalid("Invalid parameter Page: too large".to_string())
            })?,
        };
        Ok(Self {
            page,
            page_size,
            offset,
        })
    }

    /// How many rows to ask the store for: one more than a page shows
    /// whether there is a next one.
    pub fn fetch(&self) -> usize {
        self.page_size + 1
    }

    /// The list answer: `items` (one more than a page when there is a
    /// next) under `key`, with Twilio's `meta`.
    pub fn answer(&self, client: &Client, path: &str, key: &str, mut items: Vec<Value>) -> Value {
        let more = items.len() > self.page_size;
        items.truncate(self.page_size);
        let url = |page: usize, offset: Option<usize>| {
            let mut url = format!(
                "{}?PageSize={}&Page={page}",
                client.url(path),
                self.page_size
            );
            if let Some(offset) = offset {
                url.push_str(&format!("&PageToken=PA{offset}"));
            }
            url
        };
        let previous = (self.offset > 0).then(|| {
            url(
                self.page.saturating_sub(1),
                Some(self.offset.saturating_sub(self.page_size)),
            )
        });
        let next = more.then(|| url(self.page + 1, Some(self.offset + self.page_size)));
        json!({
            key: items,
            "meta": {
                "page": self.page,
                "page_size": self.page_size,
                "first_page_url": url(0, None),
                "previous_page_url": previous,
                "url": url(self.page, (self.offset > 0).then_some(self.offset)),
                "next_page_url": next,
                "key": key,
            }
        })
    }
}

/// A new random SID: `prefix` and 32 hex digits.
pub fn new_sid(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// A SID derived from an appliance id: `prefix` and the first 32 hex
/// digits of a keyed hash, stable for the life of the object.
pub fn derived_sid(prefix: &str, id: &str) -> String {
    let hash = blake3::hash(format!("simmask-twilio:{prefix}:{id}").as_bytes());
    format!("{prefix}{}", &hash.to_hex()[..32])
}

/// An interaction's SID: its appliance id in 32 hex digits.
pub fn interaction_sid(id: i64) -> String {
    format!("KI{id:032x}")
}

/// The appliance id of an interaction SID.
pub fn interaction_id(sid: &str) -> Option<i64> {
    let hex = sid.strip_prefix("KI").filter(|h| h.len() == 32)?;
    i64::from_str_radix(hex, 16).ok()
}

/// A date as Twilio writes it (`2026-12-06T20:00:00Z`).
pub fn date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// A date stored in milliseconds since the epoch.
pub fn date_ms(ms: i64) -> String {
    date(
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

/// Milliseconds since the epoch.
pub fn ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_twilio_shape_and_interactions_round_trip() {
        let sid = new_sid("KS");
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("KS"));
        assert_eq!(derived_sid("PN", "8944"), derived_sid("PN", "8944"));
        assert_ne!(derived_sid("PN", "8944"), derived_sid("PN", "8945"));
        assert_eq!(derived_sid("KC", "ses_1").len(), 34);
        let ki = interaction_sid(1234);
        assert_eq!(ki.len(), 34);
        assert_eq!(interaction_id(&ki), Some(1234));
        assert_eq!(interaction_id("KI12"), None);
        assert_eq!(interaction_id(&new_sid("KC")), None);
    }

    #[test]
    fn paging_reads_tokens_and_refuses_nonsense() {
        let first = Paging::from_query(None).unwrap();
        assert_eq!((first.page, first.page_size, first.offset), (0, 50, 0));
        let third = Paging::from_query(Some("PageSize=2&Page=2&PageToken=PA4")).unwrap();
        assert_eq!((third.page, third.page_size, third.offset), (2, 2, 4));
        let by_page = Paging::from_query(Some("PageSize=10&Page=3")).unwrap();
        assert_eq!(by_page.offset, 30);
        for bad in [
            "PageSize=0",
            "PageSize=1001",
            "PageToken=xyz",
            "Page=-1",
            "Foo=1",
        ] {
            let error = Paging::from_query(Some(bad)).unwrap_err();
            assert_eq!(error.code, 20001, "{bad}");
        }
    }

    #[test]
    fn dates_are_whole_seconds_in_utc() {
        assert_eq!(date_ms(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
