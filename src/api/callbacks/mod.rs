//! Callbacks: events POSTed as JSON to a URL per event kind (a service on
//! the LAN, or a home server over `https://`), signed with a shared secret,
//! retried with backoff, and kept in the store until delivered, so that a
//! restart resumes them.
//!
//! ```toml
//! [callbacks]
//! secret = "a long random string"
//! [callbacks.urls]
//! message_relayed = "https://home.example:8443/simmask"
//! session_expired = { url = "https://10.0.0.5:8443/hook", fingerprint = "sha256:4f:…" }
//! ```
//!
//! Each POST carries the event's JSON (as on `/api/v1/events`) and:
//! - `X-Simmask-Timestamp: <unix seconds>`, the time of this attempt;
//! - `X-Simmask-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`,
//!   so a captured request cannot be replayed later: the receiver
//!   recomputes it over the raw body, compares in constant time, and
//!   refuses a timestamp more than five minutes from its clock ([`verify`]);
//! - `X-Simmask-Event: <kind>`, `X-Simmask-Delivery: <delivery id>` (unique
//!   for ever, the same on every attempt: deduplicate by it).
//!
//! A 2xx answer is a delivery; a transport error, 408, 429 or 5xx is
//! retried, after the receiver's `Retry-After` when it gives one, else after
//! 1 s, 2 s, 4 s… (at most a minute) with jitter (each wait between half
//! and all of that, so receivers coming back are not hit by every
//! appliance at once), up to `max_attempts`; any other answer is final.
//! The dispatcher reads the bus like any subscriber: a slow receiver never
//! holds up the daemon.

mod network;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::CallbacksConfig;
use crate::events::EventBus;
use crate::store::{PendingDelivery, Store};

/// Every event kind a callback may be set for.
pub use crate::events::KINDS as EVENT_KINDS;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-simmask-signature";
/// The header carrying the attempt's time, covered by the signature.
pub const TIMESTAMP_HEADER: &str = "x-simmask-timestamp";
/// How far from its clock a receiver should accept a timestamp.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;
/// The longest wait between two attempts (a receiver's `Retry-After` too).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Attempts in flight at once; more wait their turn.
const MAX_IN_FLIGHT: usize = 32;

/// The signature header's value for `body` sent at `timestamp` (unix
/// seconds): `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // Cannot fail: HMAC (RFC 2104) hashes keys longer than a block and pads
    // shorter ones, so every length is accepted.
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What a receiver does with a request: true when `signature` signs `body`
/// at `timestamp` (the headers' values) and the timestamp is within the
/// tolerance of `now` (unix seconds).
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(at) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - at).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return false;
    }
    bool::from(
        sign(secret, at, body)
            .as_bytes()
            .ct_eq(signature.trim().as_bytes()),
    )
}

/// The wait before attempt `attempt + 1` (attempt counts from 1), before jitter.
fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// `wait` with equal jitter: somewhere between half of it and all of it.
fn jitter(wait: Duration, random: f64) -> Duration {
    let half = wait / 2;
    half + half.mul_f64(random.clamp(0.0, 1.0))
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110 §10.2.3).
fn retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
                .ok()?;
            Duration::try_from(at - now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Where one kind of event goes, and the client that reaches it.
struct Target {
    url: String,
    client: reqwest::Client,
}

/// Everything a delivery needs.
struct Dispatcher {
    config: CallbacksConfig,
    targets: BTreeMap<String, Target>,
    store: Store,
    in_flight: Semaphore,
}

/// Starts delivering the bus's events to the configured URLs until
/// `shutdown`, first resuming the deliveries a previous run left in
/// `store`; with no URL configured the task ends at once.
pub fn spawn_callbacks(
    config: CallbacksConfig,
    bus: &EventBus,
    store: Store,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut events = bus.subscribe_local();
    tokio::spawn(async move {
        if config.urls.is_empty() {
            return;
        }
        let Some(dispatcher) = Dispatcher::new(config, store) else {
            return;
        };
        let dispatcher = Arc::new(dispatcher);
        let deliveries = TaskTracker::new();
        match dispatcher.store.pending_deliveries().await {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::info!(
                        pending = pending.len(),
                        "callbacks: resuming deliveries from before the restart"
                    );
                }
                for delivery in pending {
                    deliveries.spawn(dispatcher.clone().deliver(delivery, shutdown.clone()));
                }
            }
            Err(error) => tracing::error!(%error, "callbacks: cannot read pending deliveries"),
        }
        loop {
            let envelope = tokio::select! {
                received = events.recv() => match received {
                    Ok(envelope) => envelope,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "callbacks: fell behind the event bus; events skipped");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let kind = envelope.event.kind();
            if !dispatcher.targets.contains_key(kind) {
                continue;
            }
            let body = match serde_json::to_string(&envelope) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%error, kind, "callbacks: cannot encode the event");
                    continue;
                }
            };
            let now = OffsetDateTime::now_utc();
            match dispatcher
                .store
                .queue_delivery(kind.into(), body, now)
                .await
            {
                Ok(delivery) => {
                    deliveries.spawn(dispatcher.clone().deliver(delivery, shutdown.clone()));
                }
                Err(error) => tracing::error!(%error, kind, "callbacks: cannot record a delivery"),
            }
        }
        deliveries.close();
        deliveries.wait().await;
    })
}

impl Dispatcher {
    /// The clients, one per pinned certificate and one for the rest; `None`
    /// (and an error logged) when TLS cannot be set up.
    fn new(config: CallbacksConfig, store: Store) -> Option<Self> {
        let standard = match tls::standard_client(&config) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "callbacks: cannot build the HTTP client; callbacks are off");
                return None;
            }
        };
        let mut targets = BTreeMap::new();
        for (kind, target) in &config.urls {
            let client = match &target.fingerprint {
                None => standard.clone(),
                Some(fingerprint) => match tls::pinned_client(&config, fingerprint) {
                    Ok(client) => client,
                    Err(error) => {
                        tracing::error!(%error, kind, "callbacks: cannot pin the receiver's certificate; this callback is off");
                        continue;
                    }
                },
            };
            targets.insert(
                kind.clone(),
                Target {
                    url: target.url.clone(),
                    client,
                },
            );
        }
        Some(Self {
            config,
            targets,
            store,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// Makes one delivery, as the module docs say. Stopped by `shutdown`,
    /// it stays in the store for the next start.
    async fn deliver(self: Arc<Self>, mut delivery: PendingDelivery, shutdown: CancellationToken) {
        let Some(target) = self.targets.get(&delivery.kind) else {
            tracing::warn!(kind = %delivery.kind, id = delivery.id, "callbacks: no URL for this kind any more; delivery dropped");
            self.finish(delivery.id).await;
            return;
        };
        loop {
            let wait = delivery.next_attempt_ms - now_ms();
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            let attempt = delivery.attempts + 1;
            let outcome = tokio::select! {
                outcome = self.attempt(target, &delivery) => outcome,
                _ = shutdown.cancelled() => return,
            };
            let (kind, id) = (delivery.kind.as_str(), delivery.id);
            let wait = match outcome {
                Attempt::Delivered => {
                    tracing::debug!(kind, id, attempt, "callback delivered");
                    self.finish(id).await;
                    return;
                }
                Attempt::Final(problem) => {
                    tracing::warn!(kind, id, attempt, url = %target.url, %problem, "callback refused for good");
                    self.finish(id).await;
                    return;
                }
                Attempt::Retry { problem, after } => {
                    tracing::warn!(kind, id, attempt, url = %target.url, %problem, "callback failed");
                    if attempt >= self.config.max_attempts {
                        tracing::warn!(kind, id, url = %target.url, attempts = attempt, "callback given up");
                        self.finish(id).await;
                        return;
                    }
                    let first = Duration::from_millis(self.config.retry_after_ms);
                    let wait = after
                        .unwrap_or_else(|| jitter(backoff(first, attempt), rand::random::<f64>()));
                    (problem, wait)
                }
            };
            let (problem, wait) = wait;
            delivery.attempts = attempt;
            delivery.next_attempt_ms = now_ms() + wait.as_millis() as i64;
            let next = OffsetDateTime::now_utc() + wait;
            if let Err(error) = self
                .store
                .reschedule_delivery(delivery.id, attempt, problem, next)
                .await
            {
                tracing::error!(%error, "callbacks: cannot record a retry");
            }
        }
    }

    /// One POST.
    async fn attempt(&self, target: &Target, delivery: &PendingDelivery) -> Attempt {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Attempt::Final("shutting down".into());
        };
        if let Err(problem) = network::check_url(&self.config, &target.url) {
            return Attempt::Final(problem);
        }
        let now = OffsetDateTime::now_utc();
        let timestamp = now.unix_timestamp();
        let secret = self.config.secret.as_deref().unwrap_or_default();
        let signature = sign(secret, timestamp, delivery.body.as_bytes());
        let result = target
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header("x-simmask-event", &delivery.kind)
            .header("x-simmask-delivery", delivery.id.to_string())
            .body(delivery.body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) if response.status().is_redirection() => Attempt::Final(format!(
                "answered {}: redirects are not followed (configure the final URL)",
                response.status()
            )),
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                let problem = format!("answered {status}");
                if retry {
                    let after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, now));
                    Attempt::Retry { problem, after }
                } else {
                    Attempt::Final(problem)
                }
            }
            Err(error) => Attempt::Retry {
                // The chain names a TLS refusal (an unpinned certificate).
                problem: error_chain(&error),
                after: None,
            },
        }
    }

    async fn finish(&self, id: i64) {
        if let Err(error) = self.store.finish_delivery(id).await {
            tracing::error!(%error, "callbacks: cannot close a delivery");
        }
    }
}

/// How an attempt went.
enum Attempt {
    Delivered,
    /// Worth trying again; `after` is the receiver's `Retry-After`.
    Retry {
        problem: String,
        after: Option<Duration>,
    },
    Final(String),
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp() {
        let signature = sign("Jefe", 1_700_000_000, b"what do ya want for nothing?");
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert_ne!(
            signature,
            sign("Jefe", 1_700_000_001, b"what do ya want for nothing?")
        );
        assert!(verify(
            "Jefe",
            "1700000000",
            b"what do ya want for nothing?",
            &signature,
            1_700_000_100
        ));
        // Replayed ten minutes later, or with another body: refused.
        assert!(!verify(
            "Jefe",
            "1700000000",
            b"what do ya want for nothing?",
            &signature,
            1_700_000_600
        ));
        assert!(!verify(
            "Jefe",
            "1700000000",
            b"other",
            &signature,
            1_700_000_000
        ));
        assert!(!verify("Jefe", "soon", b"", &signature, 1_700_000_000));
    }

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231 §4.3 with the key and message split as sign() feeds them.
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute_with_jitter() {
        let first = Duration::from_secs(1);
        assert_eq!(backoff(first, 1), Duration::from_secs(1));
        assert_eq!(backoff(first, 2), Duration::from_secs(2));
        assert_eq!(backoff(first, 4), Duration::from_secs(8));
        assert_eq!(backoff(first, 40), MAX_BACKOFF);
        let wait = Duration::from_secs(8);
        assert_eq!(jitter(wait, 0.0), Duration::from_secs(4));
        assert_eq!(jitter(wait, 1.0), wait);
        for _ in 0..100 {
            let jittered = jitter(wait, rand::random::<f64>());
            assert!(jittered >= wait / 2 && jittered <= wait);
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = time::macros::datetime!(2026-11-25 12:00 UTC);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let mut config = CallbacksConfig::default();
        assert!(config.validate().is_ok());
        config
            .urls
            .insert("message_relayed".into(), "http://10.0.0.5/hook".into());
        // Only to the addresses listed.
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("10.0.0.5 is not in callbacks.allowed_networks")
        );
        config.allowed_networks = vec!["10.0.0.0/24".into()];
        assert!(config.validate().unwrap_err().starts_with("secret:"));
        config.secret = Some("0123456789abcdef".into());
        assert!(config.validate().is_ok());
        config
            .urls
            .insert("message_sent".into(), "http://10.0.0.5/hook".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("urls.message_sent")
        );
        config.urls.remove("message_sent");
        config
            .urls
            .insert("modem_down".into(), "ftp://10.0.0.5/hook".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("urls.modem_down")
        );
        config.urls.insert(
            "modem_down".into(),
            crate::config::CallbackTarget {
                url: "https://10.0.0.5/hook".into(),
                fingerprint: Some("sha256:12:34".into()),
            },
        );
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("urls.modem_down.fingerprint")
        );
        config.urls.insert(
            "modem_down".into(),
            crate::config::CallbackTarget {
                url: "https://10.0.0.5/hook".into(),
                fingerprint: Some(format!("sha256:{}", ["ab"; 32].join(":"))),
            },
        );
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn link_local_and_metadata_addresses_are_never_targets() {
        let mut config = CallbacksConfig {
            secret: Some("0123456789abcdef".into()),
            allowed_networks: vec!["0.0.0.0/0".into(), "::/0".into()],
            ..CallbacksConfig::default()
        };
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[fe80::1]/hook",
            "http://[::ffff:169.254.169.254]/hook",
            "http://100.100.100.200/hook",
            "http://0.0.0.0/hook",
        ] {
            config.urls.insert("message_relayed".into(), url.into());
            let error = config.validate().unwrap_err();
            assert!(error.contains("never a callback target"), "{url}: {error}");
        }
        config
            .urls
            .insert("message_relayed".into(), "http://192.168.1.20/hook".into());
        assert!(config.validate().is_ok());
        // Listing a forbidden range is itself an error.
        for listed in [
            "169.254.169.254",
            "169.254.0.0/16",
            "fd00:ec2::254",
            "fe80::/64",
        ] {
            config.allowed_networks = vec![listed.into()];
            let error = config.validate().unwrap_err();
            assert!(
                error.starts_with("allowed_networks:") && error.contains("never"),
                "{listed}: {error}"
            );
        }
        // A host name needs the list, and is checked when resolved.
        config.allowed_networks = Vec::new();
        config
            .urls
            .insert("message_relayed".into(), "https://home.example/hook".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("list its addresses")
        );
    }
}
