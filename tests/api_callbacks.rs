//! Local callbacks over real HTTP: a receiver on port 0 checks the HMAC
//! signature, answers 500 once, and gets the event again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use simmask::api::callbacks::{CallbacksConfig, SIGNATURE_HEADER, sign, spawn_callbacks};
use simmask::events::{Event, EventBus};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "a-shared-secret-for-tests";

/// What the receiver saw: (signature valid, event kind header, body JSON).
type Seen = Arc<Mutex<Vec<(bool, String, serde_json::Value)>>>;

struct Receiver {
    url: String,
    seen: Seen,
    /// Answers to give, in order; then 200.
    answers: Arc<Mutex<Vec<StatusCode>>>,
}

async fn receiver(answers: Vec<StatusCode>) -> Receiver {
    let seen: Seen = Arc::default();
    let answers = Arc::new(Mutex::new(answers));
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State((seen, answers)): State<(Seen, Arc<Mutex<Vec<StatusCode>>>)>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let signature = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let valid = signature == sign(SECRET, &body);
                    let kind = headers
                        .get("x-simmask-event")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let json = serde_json::from_slice(&body).unwrap_or_default();
                    seen.lock().unwrap().push((valid, kind, json));
                    let mut answers = answers.lock().unwrap();
                    if answers.is_empty() {
                        StatusCode::OK
                    } else {
                        answers.remove(0)
                    }
                },
            ),
        )
        .with_state((seen.clone(), answers.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, seen, answers }
}

fn config(url: &str, kinds: &[&str]) -> CallbacksConfig {
    let mut config = CallbacksConfig {
        secret: Some(SECRET.into()),
        max_attempts: 3,
        retry_after_ms: 20,
        timeout_seconds: 5,
        ..CallbacksConfig::default()
    };
    for kind in kinds {
        config.urls.insert(kind.to_string(), url.to_string());
    }
    config.validate().unwrap();
    config
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

#[tokio::test]
async fn a_signed_event_is_retried_after_a_500() {
    let receiver = receiver(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let task = spawn_callbacks(
        config(&receiver.url, &["message_relayed"]),
        &bus,
        shutdown.clone(),
    );

    // Not configured: never posted.
    bus.publish(Event::SessionClosed {
        session_id: "ses_1".into(),
    });
    bus.publish(Event::MessageRelayed {
        session_id: Some("ses_1".into()),
        interaction_id: 42,
        parts: 2,
    });
    wait_for(&receiver.seen, 2).await;
    let seen = receiver.seen.lock().unwrap().clone();
    for (valid, kind, body) in &seen {
        assert!(valid, "the HMAC matches the body");
        assert_eq!(kind, "message_relayed");
        assert_eq!(body["kind"], "message_relayed");
        assert_eq!(body["interaction_id"], 42);
        assert_eq!(body["session_id"], "ses_1");
    }
    assert_eq!(seen[0].2, seen[1].2, "the retry carries the same event");
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
    let receiver = receiver(vec![
        StatusCode::BAD_REQUEST,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
    ])
    .await;
    let bus = EventBus::new();
    let shutdown = CancellationToken::new();
    let _task = spawn_callbacks(
        config(&receiver.url, &["modem_down", "modem_up"]),
        &bus,
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
        .map(|(_, kind, _)| kind.clone())
        .collect();
    assert_eq!(kinds, ["modem_down", "modem_up", "modem_up", "modem_up"]);
    shutdown.cancel();
}
