//! What keeps one client on the LAN from taking the API from the others:
//! the client's address as the limits see it (a trusted proxy's forwarded
//! address, else the peer's), a stricter limit on failed authentications,
//! the caps on event streams, and what a connection admitted to the
//! reserve (see [`crate::serve`]) may ask.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::ApiState;
use super::auth;
use super::error::ApiError;
use crate::serve::Slot;

/// The client a request comes from, as the limits key it: a request
/// extension set before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// The client of a request from `peer`: the peer itself, unless it is one
/// of the `trusted` proxies, in which case the nearest address in the
/// forwarding chain (`Forwarded`, else `X-Forwarded-For`) that is not
/// itself a trusted proxy. A client cannot choose its own bucket by
/// writing those headers: they are read only from a trusted peer, and
/// from the right, where the proxies appended what they saw.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        let Some(address) = hop else {
            // An obfuscated or unparsable hop: the chain cannot be trusted
            // beyond it, so the last trusted hop is the client.
            return client;
        };
        client = *address;
        if !is_trusted(address) {
            return client;
        }
    }
    client
}

/// The addresses of the forwarding chain, leftmost (the original client)
/// first; `None` for a hop that names no address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(axum::http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value.trim().trim_matches('"')))
                        .flatten()
                })
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(inside, _)| inside.parse().ok())
}

/// Sets [`ClientAddress`] on every request (the outermost layer).
pub async fn set_client_address(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Without connection info (a router driven in-process) all callers are one.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let client = client_address(peer, request.headers(), &trusted);
    request.extensions_mut().insert(ClientAddress(client));
    next.run(request).await
}

/// Failed authentications per client: a token bucket (governor) apart from
/// the general rate limit, and stricter. A client over it is refused 429
/// *before* its token is looked at, so that guessing stops paying off
/// instead of only being answered differently.
#[derive(Clone)]
pub struct FailedAuth {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Until when each client over the limit is refused.
    blocked: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// Clients remembered as blocked before the expired ones are dropped.
const BLOCKED_KEPT: usize = 4096;

impl FailedAuth {
    /// `burst` failures at once, then `per_minute` regained each minute.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            )),
            blocked: Arc::default(),
        }
    }

    fn refusal(wait: Duration) -> ApiError {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::too_many(
            "too_many_failed_authentications",
            format!("too many failed authentications from this address: retry in {seconds} s"),
            seconds,
        )
    }

    /// Refuses a client still blocked.
    pub fn check(&self, client: IpAddr) -> Result<(), ApiError> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&client) {
            Some(until) if *until > Instant::now() => Err(Self::refusal(
                until.saturating_duration_since(Instant::now()),
            )),
            _ => Ok(()),
        }
    }

    /// Counts a failure; the refusal when it was one too many.
    pub fn failed(&self, client: IpAddr) -> Result<(), ApiError> {
        let Err(not_until) = self.limiter.check_key(&client) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.len() >= BLOCKED_KEPT {
            blocked.retain(|_, until| *until > now);
            self.limiter.retain_recent();
        }
        blocked.insert(client, now + wait);
        tracing::warn!(client = %client, "api: too many failed authentications, refusing for {} s", wait.as_secs());
        Err(Self::refusal(wait))
    }
}

impl Default for FailedAuth {
    fn default() -> Self {
        Self::new(10, 6)
    }
}

/// How many event streams may be open.
#[derive(Clone)]
pub struct StreamCaps {
    pub overall: usize,
    pub per_token: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Default for StreamCaps {
    fn default() -> Self {
        Self::new(32, 4)
    }
}

/// One open event stream's place, given back when dropped.
pub struct StreamPermit {
    open: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl StreamCaps {
    pub fn new(overall: usize, per_token: usize) -> Self {
        Self {
            overall,
            per_token,
            open: Arc::default(),
        }
    }

    /// A place for a new stream of the token whose hash is `key`, or the
    /// refusal (429, the connection closed after it): the newest stream is
    /// the one refused, so a dashboard that is watching keeps its feed.
    pub fn open(&self, key: &str) -> Result<StreamPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(key).copied().unwrap_or(0);
        if mine >= self.per_token {
            return Err(ApiError::too_many(
                "too_many_streams",
                format!(
                    "this token already has {mine} event streams open (at most {}): close one first",
                    self.per_token
                ),
                5,
            )
            .closing());
        }
        if total >= self.overall {
            return Err(ApiError::too_many(
                "too_many_streams",
                format!(
                    "{total} event streams are open, the most the appliance serves: try again later"
                ),
                5,
            )
            .closing());
        }
        *open.entry(key.to_string()).or_insert(0) += 1;
        Ok(StreamPermit {
            open: self.open.clone(),
            key: key.to_string(),
        })
    }

    /// Streams open now.
    pub fn open_now(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

/// On a connection admitted to the reserve, only `/healthz` and requests
/// with an admin token get through; others are answered 503 and the
/// connection closed.
pub async fn reserve_gate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if request.extensions().get::<Slot>() != Some(&Slot::Reserve) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path == "/healthz" || path == "/api/v1/healthz" {
        return next.run(request).await;
    }
    let admin = match auth::bearer(request.headers()) {
        Ok(token) => matches!(
            auth::authenticate(&state, token).await,
            Ok(Some(caller)) if caller.is_admin()
        ),
        Err(_) => false,
    };
    if admin {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "every connection is busy; the few held in reserve serve /healthz and admin tokens only",
    )
    .closing()
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let proxies = vec![IpNet::from(ip("10.0.0.1")), "10.1.0.0/16".parse().unwrap()];
        let spoofed = headers(&[("x-forwarded-for", "198.51.100.7")]);
        // Any other peer is itself the client, whatever it writes.
        assert_eq!(
            client_address(ip("192.168.1.9"), &spoofed, &proxies),
            ip("192.168.1.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &spoofed, &[]),
            ip("10.0.0.1")
        );
        // Through the proxy: the address it appended.
        assert_eq!(
            client_address(ip("10.0.0.1"), &spoofed, &proxies),
            ip("198.51.100.7")
        );
        // A client's own header is to the left of what the proxies add.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 192.168.1.9, 10.1.2.3")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &chain, &proxies),
            ip("192.168.1.9")
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https, for=10.1.9.9",
        )]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &forwarded, &proxies),
            ip("2001:db8::7")
        );
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.1.9.9")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &hidden, &proxies),
            ip("10.1.9.9")
        );
        // No header: the proxy is all there is.
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &proxies),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn failed_authentications_block_after_the_burst() {
        let limit = FailedAuth::new(3, 1);
        let client = ip("192.168.1.50");
        for _ in 0..3 {
            assert!(limit.check(client).is_ok());
            assert!(limit.failed(client).is_ok());
        }
        let refusal = limit.failed(client).unwrap_err();
        assert_eq!(refusal.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refusal.retry_after.is_some_and(|s| s >= 1));
        assert!(limit.check(client).is_err());
        // Another client is not affected.
        assert!(limit.check(ip("192.168.1.51")).is_ok());
    }

    #[test]
    fn streams_are_capped_per_token_and_overall() {
        let caps = StreamCaps::new(3, 2);
        let a1 = caps.open("a").unwrap();
        let _a2 = caps.open("a").unwrap();
        let refused = caps.open("a").err().unwrap();
        assert!(refused.close && refused.message.contains("at most 2"));
        let _b1 = caps.open("b").unwrap();
        assert!(
            caps.open("c")
                .err()
                .unwrap()
                .message
                .contains("3 event streams")
        );
        drop(a1);
        assert_eq!(caps.open_now(), 2);
        assert!(caps.open("c").is_ok());
    }
}
