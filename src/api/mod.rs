//! The local web API (`/api/v1`, bearer tokens) and the dashboard.
//!
//! A thin layer: this file lists every route; handlers mirror the URLs in
//! their own files; [`error::ApiError`] is the one error type and knows its
//! status code, so nothing a client sends can produce a 500.

pub mod auth;
pub mod blocks;
pub mod callbacks;
pub mod calls;
mod dashboard;
pub mod error;
mod events;
pub mod export;
mod extract;
mod fleet;
pub mod guard;
pub mod health;
pub mod history;
pub mod hubs;
pub mod limits;
pub mod metrics;
pub mod pool;
pub mod sessions;
pub mod status;
pub mod tokens;
pub mod twilio;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::events::EventBus;
use crate::masking::allocation::PoolLimits;
use crate::number::NumberValidation;
use crate::store::{LiveSim, SimStatusRecord, Store};
use crate::voice::CallDesks;
use auth::Caller;
use error::ApiError;
use history::SignalHistory;
use limits::RateLimit;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The live state of the pool that the API needs from the bank.
pub trait PoolView: Send + Sync {
    /// The live state of every SIM the bank sees now.
    fn sim_statuses(&self) -> Vec<SimStatusRecord>;

    /// Sends the USSD `code` from the SIM `iccid` and answers the network's
    /// reply, or why there is none (no such SIM in the bank, modem error…).
    fn ussd(&self, iccid: String, code: String) -> BoxFuture<'static, Result<String, String>>;

    /// What allocation needs of every SIM the bank sees now.
    fn live_sims(&self) -> Vec<LiveSim> {
        let now = crate::clock::now();
        self.sim_statuses()
            .iter()
            .map(|status| status.live(now, Duration::MAX))
            .collect()
    }
}

/// Tells the relay that a SIM's outbox has a new message (by SIM id).
pub type OutboxWaker = Arc<dyn Fn(&str) + Send + Sync>;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub pool: Arc<dyn PoolView>,
    pub events: EventBus,
    /// `SIMMASK_ADMIN_TOKEN`, accepted as an admin token.
    pub admin_token: Option<String>,
    /// Region for numbers written without a country code.
    pub default_region: Option<String>,
    /// Lifetime of a session whose request gives none.
    pub default_ttl: Option<Duration>,
    /// Prefer the proxy a participant used before.
    pub sticky: bool,
    /// Each SIM's signal over the last day, sampled while [`serve`] runs.
    pub signal_history: SignalHistory,
    /// Requests per client address.
    pub rate_limit: RateLimit,
    /// The calls the appliance holds, to show and end them.
    pub calls: CallDesks,
    /// Notified when a token is revoked, so open event streams check theirs.
    pub token_revoked: Arc<tokio::sync::Notify>,
    /// Each SIM's send limits, shown beside its use.
    pub send_limits: Option<status::SendLimits>,
    /// When the daemon started.
    pub started_at: OffsetDateTime,
    /// How much of the numbering plan a number typed by an operator must
    /// match (`[numbers] validation`).
    pub number_validation: NumberValidation,
    /// The SIMs' budgets (`[sms]` and `[[sims]]`), when no live
    /// configuration is given (see [`ApiState::limits`]).
    pub limits: PoolLimits,
    /// How long a request may take to be answered (`[api]
    /// request_timeout_seconds`).
    pub request_timeout: std::time::Duration,
    /// The connection limits (`[api]`).
    pub serve_limits: crate::serve::ServeLimits,
    /// Event streams open at once, overall and per token.
    pub streams: guard::StreamCaps,
    /// Failed authentications per client.
    pub failed_auth: guard::FailedAuth,
    /// Proxies whose forwarded client address the limits believe.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// The store's integrity check at start, which the daemon runs.
    pub integrity: health::IntegritySlot,
    /// The daemon's configuration, which a reload changes: where the send
    /// limits and budgets come from when set.
    pub live: Option<crate::config::LiveConfig>,
    /// `[twilio]`: the Twilio Proxy facade is on with an account SID.
    pub twilio: Option<twilio::Settings>,
    /// Wakes a SIM's outbox worker when the API has queued a message for
    /// it (the daemon sets it; an idle worker otherwise looks again only
    /// when its next retry is due).
    pub outbox_waker: Option<OutboxWaker>,
}

impl ApiState {
    /// The SIMs' budgets in force: the live configuration's (a reload
    /// changes them), else [`ApiState::limits`].
    pub fn limits(&self) -> PoolLimits {
        match &self.live {
            Some(live) => live.get().pool_limits(),
            None => self.limits.clone(),
        }
    }

    /// The per-SIM send limits in force, likewise.
    pub fn send_limits(&self) -> Option<status::SendLimits> {
        match &self.live {
            Some(live) => {
                let sms = &live.get().sms;
                Some(status::SendLimits {
                    per_minute: sms.per_minute,
                    per_day: sms.per_day,
                })
            }
            None => self.send_limits,
        }
    }
}

impl ApiState {
    /// A state with the documented defaults: no bootstrap token, no default
    /// region or TTL, sticky proxies, the default rate limit.
    pub fn new(store: Store, pool: Arc<dyn PoolView>, events: EventBus) -> Self {
        // The API serves /metrics, so what is published on its bus is counted.
        crate::metrics::observe(&events);
        Self {
            store,
            pool,
            events,
            admin_token: None,
            default_region: None,
            default_ttl: None,
            sticky: true,
            signal_history: SignalHistory::default(),
            rate_limit: RateLimit::default(),
            calls: CallDesks::default(),
            token_revoked: Arc::default(),
            send_limits: None,
            started_at: OffsetDateTime::now_utc(),
            number_validation: NumberValidation::default(),
            limits: PoolLimits::default(),
            request_timeout: REQUEST_TIMEOUT,
            serve_limits: crate::serve::ServeLimits::default(),
            streams: guard::StreamCaps::default(),
            failed_auth: guard::FailedAuth::default(),
            trusted_proxies: Arc::default(),
            integrity: health::IntegritySlot::default(),
            live: None,
            twilio: None,
            outbox_waker: None,
        }
    }
}

/// Every route of the API, by full path. The OpenAPI document must list
/// exactly these paths (a unit test holds it to that), and the route tests
/// walk the document: a route cannot escape them.
fn routes() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        ("/healthz", get(health::healthz)),
        ("/metrics", get(metrics::render)),
        ("/api/v1/healthz", get(health::healthz_v1)),
        ("/api/v1/metrics", get(metrics::render_v1)),
        ("/api/v1/openapi.json", get(openapi_json)),
        ("/api/v1/me", get(me)),
        ("/api/v1/status", get(status::status)),
        ("/api/v1/events", get(events::stream)),
        ("/api/v1/interactions", get(export::interactions)),
        ("/api/v1/tokens", get(tokens::list).post(tokens::create)),
        ("/api/v1/tokens/{id}", delete(tokens::revoke)),
        ("/api/v1/sessions", get(sessions::list).post(sessions::open)),
        ("/api/v1/sessions/search", post(sessions::search)),
        (
            "/api/v1/sessions/{id}",
            get(sessions::get).delete(sessions::close),
        ),
        (
            "/api/v1/sessions/{id}/interactions",
            get(sessions::interactions),
        ),
        ("/api/v1/sessions/{id}/calls/end", post(calls::end)),
        ("/api/v1/sessions/{id}/reopen", post(sessions::reopen)),
        ("/api/v1/modems", get(pool::modems)),
        ("/api/v1/numbers", get(pool::numbers)),
        ("/api/v1/fleet", get(fleet::fleet)),
        ("/api/v1/numbers/{iccid}", put(pool::update_number)),
        ("/api/v1/numbers/{iccid}/retire", post(pool::retire)),
        ("/api/v1/blocks", get(blocks::list).post(blocks::add)),
        ("/api/v1/blocks/remove", post(blocks::remove)),
        ("/api/v1/numbers/{iccid}/ussd", post(pool::ussd)),
        ("/api/v1/numbers/{iccid}/history", get(pool::history)),
        ("/api/v1/hubs", get(hubs::list).post(hubs::create)),
        ("/api/v1/hubs/{id}", delete(hubs::remove)),
    ]
}

/// How long a handler may take to start answering, by default. Streams
/// (events, exports) answer at once and are not cut: the limit is on the
/// headers.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The API and the dashboard.
///
/// tower-http does what it is good at around the routes: a span per
/// request (method, path, status, latency; paths never hold numbers), a
/// timeout so that a request stuck behind a busy store or a client
/// dripping its body gets a 408 instead of hanging, and `Cache-Control:
/// no-store` on every API answer (they carry numbers and message bodies;
/// the dashboard's files set their own). The body limit stays axum's
/// `DefaultBodyLimit`, whose refusal reaches our JSON error
/// (`body_too_large`) through the extractors. Outermost, the client's
/// address is settled (see [`guard`]) before the rate limit keys on it.
pub fn router(state: ApiState) -> Router {
    let rate_limit = state.rate_limit;
    let trusted = state.trusted_proxies.clone();
    let api = routes()
        .into_iter()
        .fold(Router::new(), |app, (path, route)| app.route(path, route))
        .merge(twilio::routes())
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ));
    let app = dashboard::routes()
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                .layer(
                    tower_http::trace::TraceLayer::new_for_http()
                        .make_span_with(|request: &axum::http::Request<_>| {
                            tracing::debug_span!("http", method = %request.method(), path = %request.uri().path())
                        }),
                )
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    state.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::reserve_gate,
        ))
        .with_state(state);
    limits::apply(app, rate_limit).layer(axum::middleware::from_fn_with_state(
        trusted,
        guard::set_client_address,
    ))
}

/// Serves the API on `listen` until `shutdown` is cancelled, within the
/// state's connection limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "the API listens beyond loopback without TLS: put a TLS proxy in front of it"
        );
    }
    tracing::info!(
        %address,
        max_connections = state.serve_limits.max_connections,
        reserve_connections = state.serve_limits.reserve_connections,
        "api listening"
    );
    twilio::spawn_callbacks(&state, shutdown.clone());
    tokio::spawn(
        state
            .signal_history
            .clone()
            .sample(state.pool.clone(), shutdown.clone()),
    );
    let limits = state.serve_limits;
    crate::serve::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}

/// Who the token belongs to and what it may do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub name: String,
    /// `admin` or `viewer`.
    pub role: &'static str,
}

/// The caller's token name and role (the dashboard's sign-in check).
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = Me)),
    security(("bearer" = [])))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        role: caller.role.as_str(),
        name: caller.name,
    })
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(title = "simmask", description = "Local API of the simmask number-masking appliance. The paths under /twilio/v1 (tag twilio), listed when [twilio] account_sid is set, are the Twilio Proxy v1 facade: form-encoded requests with CamelCase keys, JSON answers with snake_case keys, HTTP Basic auth with the account SID and an API token; the README lists what it maps to and what it does not do (media, chat channels)."),
    paths(
        health::healthz,
        health::healthz_v1,
        metrics::render,
        metrics::render_v1,
        openapi_json,
        me,
        status::status,
        events::stream,
        export::interactions,
        tokens::list,
        tokens::create,
        tokens::revoke,
        sessions::open,
        sessions::list,
        sessions::search,
        sessions::get,
        sessions::close,
        sessions::interactions,
        calls::end,
        sessions::reopen,
        pool::modems,
        pool::numbers,
        fleet::fleet,
        pool::update_number,
        pool::retire,
        blocks::list,
        blocks::add,
        blocks::remove,
        pool::ussd,
        pool::history,
        hubs::list,
        hubs::create,
        hubs::remove
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
/// Operations whose `bearer` security lists `admin` need an admin token.
#[utoipa::path(get, path = "/api/v1/openapi.json",
    responses((status = 200, description = "this document", content_type = "application/json")),
    security(("bearer" = [])))]
pub async fn openapi_json(
    axum::extract::State(state): axum::extract::State<ApiState>,
    _caller: Caller,
) -> Json<utoipa::openapi::OpenApi> {
    let mut document = ApiDoc::openapi();
    // The facade's paths are served only with `[twilio] account_sid`: the
    // document says what this server answers.
    if state.twilio.is_some() {
        document.merge(twilio::TwilioDoc::openapi());
    }
    Json(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let document = ApiDoc::openapi();
        let documented: std::collections::BTreeSet<&str> =
            document.paths.paths.keys().map(String::as_str).collect();
        let routed: std::collections::BTreeSet<&str> =
            routes().into_iter().map(|(path, _)| path).collect();
        assert_eq!(documented, routed);
    }
}
