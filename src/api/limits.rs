//! Request rate limits: a token bucket per client address (tower_governor),
//! whose refusal is the API's JSON 429.
//!
//! Keyed by client address, not by token: keying by the presented token
//! would give a client spraying random tokens a fresh bucket per guess. The
//! address is the peer's, or the one a trusted proxy forwarded
//! ([`super::guard::ClientAddress`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

use super::error::ApiError;
use super::guard::ClientAddress;

/// How many requests a client may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once before the sustained rate applies.
    pub burst: u32,
}

impl Default for RateLimit {
    /// Enough for the dashboard's first load of a 16-SIM bank with room to spare.
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 200,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PeerAddress;

impl KeyExtractor for PeerAddress {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        // Set by the outermost layer; without it (a router driven
        // in-process) all callers share the peer's bucket.
        Ok(match request.extensions().get::<ClientAddress>() {
            Some(client) => client.0,
            None => request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip()),
        })
    }
}

/// `router` with `limit` enforced on every request.
pub fn apply<S>(router: axum::Router<S>, limit: RateLimit) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let period = Duration::from_nanos(1_000_000_000 / u64::from(limit.per_second.max(1)));
    let Some(config) = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limit.burst.max(1))
        .key_extractor(PeerAddress)
        .finish()
    else {
        // Unreachable: period and burst are at least 1. Unlimited beats refusing all.
        tracing::error!(?limit, "api: invalid rate limit, not limiting");
        return router;
    };
    router.layer(
        tower_governor::GovernorLayer::new(config).error_handler(|error| {
            match error {
                GovernorError::TooManyRequests { wait_time, .. } => ApiError::too_many(
                    "rate_limited",
                    format!("too many requests: retry in {wait_time} s"),
                    wait_time,
                ),
                other => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("rate limit: {other}"),
                ),
            }
            .into_response()
        }),
    )
}
