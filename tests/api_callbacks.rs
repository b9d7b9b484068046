//! Callbacks over real HTTP and HTTPS: a receiver on port 0 checks the
//! signature over the timestamp and the body, answers errors (with or
//! without `Retry-After`), and gets the event again; an `https://` receiver
//! with a self-signed certificate generated here is reached only when its
//! fingerprint is pinned; a delivery pending at shutdown is made by the
//! next start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use simmask::api::callbacks::{
    CallbacksConfig, SIGNATURE_HEADER, TIMESTAMP_HEADER, spawn_callbacks, verify,
};
use simmask::config::CallbackTarget;
use simmask::events::{Event, EventBus};
use simmask::store::Store;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "a-shared-secret-for-tests";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    /// The signature over the timestamp and body is valid and fresh.
    valid: bool,
    kind: String,
    delivery: String,
    body: serde_json::Value,
    at: Instant,
}

type Seen = Arc<Mutex<Vec<Request>>>;
/// Answers to give, in order (status, Retry-After); then 200.
type Answers = Arc<Mutex<Vec<(StatusCode, Option<&'static str>)>>>;

struct Receiver {
    url: String,
    seen: Seen,
    answers: Answers,
    /// The SHA-256 of the certificate, for an https receiver.
    fingerprint: Option<String>,
}

fn app(seen: Seen, answers: Answers) -> axum::Router {
    axum::Router::new()
        .route(
            "/hook",
            post(
                |State((seen, answers)): State<(Seen, Answers)>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let valid = verify(
                        SECRET,
                        &header(TIMESTAMP_HEADER),
                        &body,
                        &header(SIGNATURE_HEADER),
                        now,
                    );
                    seen.lock().unwrap().push(Request {
                        valid,
                        kind: header("x-simmask-event"),
                        delivery: header("x-simmask-delivery"),
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                        at: Instant::now(),
                    });
                    let mut answers = answers.lock().unwrap();
                    let (status, retry_after) = if answers.is_empty() {
                        (StatusCode::OK, None)
                    } else {
                        answers.remove(0)
                    };
                    let mut response = status.into_response();
                    if let Some(after) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", after.parse().unwrap());
                    }
                    response
                },
            ),
        )
        .with_state((seen, answers))
}

async fn receiver(answers: Vec<(StatusCode, Option<&'static str>)>) -> Receiver {
    let seen: Seen = Arc::default();
    let answers = Arc::new(Mutex::new(answers));
    let app = app(seen.clone(), answers.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        seen,
        answers,
        fingerprint: None,
    }
}

/// TLS over a TCP listener, for `axum::serve`.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends the handshake: next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An https receiver with a self-signed certificate made now.
async fn tls_receiver(answers: Vec<(StatusCode, Option<&'static str>)>) -> Receiver {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = certified.cert.der().clone();
    let fingerprint = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(der.as_ref());
        let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        format!("sha256:{}", pairs.join(":"))
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/hook",
        tcp.local_addr().unwrap().port()
    );
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let seen: Seen = Arc::default();
    let answers = Arc::new(Mutex::new(answers));
    let app = app(seen.clone(), answers.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        seen,
        answers,
        fingerprint: Some(fingerprint),
    }
}

fn config(target: CallbackTarget, kinds: &[&str]) -> CallbacksConfig {
    let mut config = CallbacksConfig {
        secret: Some(SECRET.into()),
        max_attempts: 3,
        retry_after_ms: 20,
        timeout_seconds: 5,
        allowed_networks: vec!["127.0.0.1".into()],
        ..CallbacksConfig::default()
    };
    for kind in kinds {
        config.urls.insert(kind.to_string(), target.clone());
    }
    config.validate().unwrap();
    config
}

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("callbacks.db")).unwrap()
}

/// Waits until the receiver has seen `count` requests.
async fn wait_for(seen: &Seen, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the receiver saw {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn relayed() -> Event {
    Event::MessageRelayed {
        session_id: Some("ses_1".into()),
        interaction_id: 42,
        parts: 2,
    }
}

#[tokio::test]
async fn a_signed_event_is_retried_after_a_500() {
    let receiver = receiver(vec![(StatusCode::INTERNAL_SERVER_ERROR, None)]).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let task = spawn_callbacks(
        config(receiver.url.as_str().into(), &["message_relayed"]),
        &bus,
        store(&dir),
        shutdown.clone(),
    );

    // Not configured: never posted.
    bus.publish(Event::SessionClosed {
        session_id: "ses_1".into(),
    });
    bus.publish(relayed());
    wait_for(&receiver.seen, 2).await;
    let seen = receiver.seen.lock().unwrap().clone();
    for request in &seen {
        assert!(request.valid, "the HMAC over timestamp.body matches");
        assert_eq!(request.kind, "message_relayed");
        assert_eq!(request.body["kind"], "message_relayed");
        assert_eq!(request.body["interaction_id"], 42);
        assert_eq!(request.body["session_id"], "ses_1");
    }
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry carries the same event"
    );
    assert_eq!(
        seen[0].delivery, seen[1].delivery,
        "under the same delivery id"
    );
    assert!(receiver.answers.lock().unwrap().is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the dispatcher stops on shutdown")
        .unwrap();
    assert_eq!(
        receiver.seen.lock().unwrap().len(),
        2,
        "nothing else was posted"
    );
}

#[tokio::test]
async fn a_4xx_is_final_and_attempts_are_bounded() {
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, None);
    let receiver = receiver(vec![
        (StatusCode::BAD_REQUEST, None),
        unavailable,
        unavailable,
        unavailable,
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let _task = spawn_callbacks(
        config(receiver.url.as_str().into(), &["modem_down", "modem_up"]),
        &bus,
        store(&dir),
        shutdown.clone(),
    );
    bus.publish(Event::ModemDown {
        imei: "350000000000001".into(),
        reason: "unplugged".into(),
    });
    wait_for(&receiver.seen, 1).await;
    // The 400 was final: the next request is the next event's.
    bus.publish(Event::ModemUp {
        imei: "350000000000001".into(),
        port: "/dev/ttyUSB0".into(),
    });
    wait_for(&receiver.seen, 4).await;
    // Three 503s use up the three attempts; a fourth would get a 200.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds: Vec<String> = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    assert_eq!(kinds, ["modem_down", "modem_up", "modem_up", "modem_up"]);
    shutdown.cancel();
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = receiver(vec![(StatusCode::TOO_MANY_REQUESTS, Some("2"))]).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let _task = spawn_callbacks(
        config(receiver.url.as_str().into(), &["message_relayed"]),
        &bus,
        store(&dir),
        shutdown.clone(),
    );
    bus.publish(relayed());
    wait_for(&receiver.seen, 2).await;
    let seen = receiver.seen.lock().unwrap().clone();
    let waited = seen[1].at - seen[0].at;
    // Without Retry-After the wait would be 10 to 20 ms.
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn an_https_receiver_with_a_self_signed_certificate_is_reached_once_pinned() {
    let receiver = tls_receiver(vec![]).await;
    let fingerprint = receiver.fingerprint.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();

    // Not pinned: the system's CAs do not know it, nothing is delivered
    // (and the delivery waits to be retried).
    let mut patient = config(receiver.url.as_str().into(), &["session_closed"]);
    patient.max_attempts = 1000;
    let unpinned = spawn_callbacks(patient, &bus, store(&dir), shutdown.clone());
    // Pinned to another certificate: refused too.
    let other = "sha256:".to_string() + &["00"; 32].join(":");
    let wrong = spawn_callbacks(
        config(
            CallbackTarget {
                url: receiver.url.clone(),
                fingerprint: Some(other),
            },
            &["session_expired"],
        ),
        &bus,
        Store::open(&dir.path().join("wrong.db")).unwrap(),
        shutdown.clone(),
    );
    let pinned = spawn_callbacks(
        config(
            CallbackTarget {
                url: receiver.url.clone(),
                fingerprint: Some(fingerprint),
            },
            &["message_relayed"],
        ),
        &bus,
        Store::open(&dir.path().join("pinned.db")).unwrap(),
        shutdown.clone(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(Event::SessionClosed {
        session_id: "ses_1".into(),
    });
    bus.publish(Event::SessionExpired {
        session_id: "ses_2".into(),
    });
    bus.publish(relayed());
    wait_for(&receiver.seen, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "only the pinned client got through: {seen:?}"
    );
    assert_eq!(seen[0].kind, "message_relayed");
    assert!(seen[0].valid);
    // The refused ones are still pending, to be retried.
    let pending = Store::open(&dir.path().join("callbacks.db"))
        .unwrap()
        .pending_deliveries()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "session_closed");
    shutdown.cancel();
    for task in [unpinned, wrong, pinned] {
        let _ = task.await;
    }
}

#[tokio::test]
async fn a_delivery_pending_at_shutdown_is_made_by_the_next_start() {
    let receiver = receiver(vec![(StatusCode::SERVICE_UNAVAILABLE, Some("3600"))]).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let first = CancellationToken::new();
    let task = spawn_callbacks(
        config(receiver.url.as_str().into(), &["message_relayed"]),
        &bus,
        store(&dir),
        first.clone(),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.publish(relayed());
    wait_for(&receiver.seen, 1).await;
    // The receiver asked for an hour; the daemon stops meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.cancel();
    task.await.unwrap();
    let pending = store(&dir).pending_deliveries().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);

    // The next start, after the hour (the row is made due), delivers it.
    let conn = rusqlite::Connection::open(dir.path().join("callbacks.db")).unwrap();
    conn.execute("UPDATE callback_deliveries SET next_attempt_ms = 0", [])
        .unwrap();
    let second = CancellationToken::new();
    let task = spawn_callbacks(
        config(receiver.url.as_str().into(), &["message_relayed"]),
        &EventBus::new(),
        store(&dir),
        second.clone(),
    );
    wait_for(&receiver.seen, 2).await;
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen[0].delivery, seen[1].delivery);
    assert_eq!(seen[1].body, seen[0].body);
    assert!(seen[1].valid, "signed afresh at the new attempt's time");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store(&dir).pending_deliveries().await.unwrap().is_empty());
    second.cancel();
    task.await.unwrap();
}

/// Waits until the store holds no delivery still to be made.
async fn wait_settled(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.pending_deliveries().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the delivery never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_307_from_the_receiver_is_not_followed() {
    // The elsewhere a redirect would send the signed body to.
    let elsewhere = receiver(Vec::new()).await;
    let redirects = Arc::new(Mutex::new(0usize));
    let counted = redirects.clone();
    let location = elsewhere.url.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let counted = counted.clone();
            let location = location.clone();
            async move {
                *counted.lock().unwrap() += 1;
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, location)],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let _task = spawn_callbacks(
        config(url.as_str().into(), &["message_relayed"]),
        &bus,
        store.clone(),
        shutdown.clone(),
    );
    bus.publish(relayed());
    let deadline = Instant::now() + Duration::from_secs(10);
    while *redirects.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "the receiver was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Final at once: not retried, not followed.
    wait_settled(&store).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*redirects.lock().unwrap(), 1);
    assert!(elsewhere.seen.lock().unwrap().is_empty());
    shutdown.cancel();
}

#[tokio::test]
async fn a_host_name_is_checked_when_it_is_resolved() {
    let receiver = receiver(Vec::new()).await;
    // `localhost` resolves to loopback, which this configuration does not list.
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let mut refused = config(receiver.url.as_str().into(), &["message_relayed"]);
    refused.allowed_networks = vec!["10.0.0.0/8".into()];
    refused
        .urls
        .insert("message_relayed".into(), by_name.as_str().into());
    refused.validate().expect("a host name is checked later");
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let _task = spawn_callbacks(refused, &bus, store.clone(), shutdown.clone());
    bus.publish(relayed());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Three attempts, none reaching the receiver.
    wait_settled(&store).await;
    assert!(receiver.seen.lock().unwrap().is_empty());
    shutdown.cancel();

    // Listed, the same name is reached.
    let mut allowed = config(by_name.as_str().into(), &["message_relayed"]);
    allowed.allowed_networks = vec!["127.0.0.0/8".into(), "::1".into()];
    let dir = tempfile::tempdir().unwrap();
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let fresh = Store::open(&dir.path().join("callbacks.db")).unwrap();
    let _task = spawn_callbacks(allowed, &bus, fresh, shutdown.clone());
    bus.publish(relayed());
    wait_for(&receiver.seen, 1).await;
    shutdown.cancel();
}
