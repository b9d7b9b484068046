//! Local callbacks: events POSTed as JSON to a URL per event kind (a service
//! on the LAN), signed with a shared secret and retried with backoff.
//!
//! ```toml
//! [callbacks]
//! secret = "a long random string"
//! [callbacks.urls]
//! message_relayed = "http://10.0.0.5:8000/simmask"
//! session_expired = "http://10.0.0.5:8000/simmask"
//! ```
//!
//! Each POST carries the event's JSON (as on `/api/v1/events`) and
//! `X-Simmask-Signature: sha256=<hex HMAC-SHA256 of the body with the
//! secret>`, `X-Simmask-Event: <kind>`, `X-Simmask-Delivery: <event id>`.
//! A 2xx answer is a delivery; a transport error, 408, 429 or 5xx is
//! retried after 1 s, 2 s, 4 s… (at most a minute apart) up to
//! `max_attempts`; any other answer is final. The dispatcher reads the bus
//! like any subscriber: a slow receiver never holds up the daemon.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::config::CallbacksConfig;
use crate::events::{Envelope, EventBus};

/// Every event kind a callback may be set for.
pub use crate::events::KINDS as EVENT_KINDS;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-simmask-signature";
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deliveries in flight at once; more wait their turn.
const MAX_IN_FLIGHT: usize = 32;

/// The signature header's value for `body`: `sha256=<hex HMAC-SHA256>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // Cannot fail: HMAC (RFC 2104) hashes keys longer than a block and pads
    // shorter ones, so every length is accepted.
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait before attempt `attempt + 1` (attempt counts from 1).
fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Starts delivering the bus's events to the configured URLs until
/// `shutdown`; with no URL configured the task ends at once.
pub fn spawn_callbacks(
    config: CallbacksConfig,
    bus: &EventBus,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut events = bus.subscribe();
    tokio::spawn(async move {
        if config.urls.is_empty() {
            return;
        }
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "callbacks: cannot build the HTTP client; callbacks are off");
                return;
            }
        };
        let config = Arc::new(config);
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let deliveries = tokio_util::task::TaskTracker::new();
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
            let Some(url) = config.urls.get(envelope.event.kind()).cloned() else {
                continue;
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (client, config, shutdown) = (client.clone(), config.clone(), shutdown.clone());
            deliveries.spawn(async move {
                tokio::select! {
                    () = deliver(&client, &config, &url, &envelope) => {}
                    _ = shutdown.cancelled() => {}
                }
                drop(permit);
            });
        }
        deliveries.close();
        deliveries.wait().await;
    })
}

/// Posts one event, retrying as the module docs say.
async fn deliver(
    client: &reqwest::Client,
    config: &CallbacksConfig,
    url: &str,
    envelope: &Envelope,
) {
    let kind = envelope.event.kind();
    let body = match serde_json::to_vec(envelope) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, kind, "callbacks: cannot encode the event");
            return;
        }
    };
    let signature = sign(config.secret.as_deref().unwrap_or_default(), &body);
    let first_wait = Duration::from_millis(config.retry_after_ms);
    for attempt in 1..=config.max_attempts {
        let result = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .header("x-simmask-event", kind)
            .header("x-simmask-delivery", envelope.id.to_string())
            .body(body.clone())
            .send()
            .await;
        let retry = match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(kind, id = envelope.id, attempt, "callback delivered");
                return;
            }
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                tracing::warn!(kind, id = envelope.id, attempt, %status, url, "callback refused");
                retry
            }
            Err(error) => {
                tracing::warn!(kind, id = envelope.id, attempt, %error, url, "callback failed");
                true
            }
        };
        if !retry {
            return;
        }
        if attempt < config.max_attempts {
            tokio::time::sleep(backoff(first_wait, attempt)).await;
        }
    }
    tracing::warn!(
        kind,
        id = envelope.id,
        url,
        attempts = config.max_attempts,
        "callback given up"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 §4.3, test case 2 (HMAC-SHA-256).
    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let first = Duration::from_secs(1);
        assert_eq!(backoff(first, 1), Duration::from_secs(1));
        assert_eq!(backoff(first, 2), Duration::from_secs(2));
        assert_eq!(backoff(first, 4), Duration::from_secs(8));
        assert_eq!(backoff(first, 40), MAX_BACKOFF);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let mut config = CallbacksConfig::default();
        assert!(config.validate().is_ok());
        config
            .urls
            .insert("message_relayed".into(), "http://10.0.0.5/hook".into());
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
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
