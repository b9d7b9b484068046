//! API callbacks' delivery queue on a real PostgreSQL (started by the
//! test): each appliance queues, resumes, reschedules and caps only its own
//! deliveries (callbacks act where the event happened), the rows survive a
//! restart and ids are never reused; the dispatcher on a fleet's store
//! makes a delivery left pending at shutdown at the next start.

mod pg_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use pg_common::Postgres;
use simmask::api::callbacks::{CallbacksConfig, spawn_callbacks};
use simmask::events::{Event, EventBus};
use simmask::store::{Location, MAX_PENDING_DELIVERIES, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn appliance(url: &str, name: &str) -> Store {
    Store::connect(&Location::Postgres(url.into()), name, TIMEOUT)
        .await
        .unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_appliance_keeps_and_caps_its_own_deliveries() {
    let pg = Postgres::start();
    let url = pg.database("callbacks").await;
    let (site1, site2) = (
        appliance(&url, "site-1").await,
        appliance(&url, "site-2").await,
    );

    let first = site1
        .queue_delivery("session_closed".into(), "{}".into(), now())
        .await
        .unwrap();
    let theirs = site2
        .queue_delivery("modem_up".into(), "{\"b\":2}".into(), now())
        .await
        .unwrap();
    let second = site1
        .queue_delivery("modem_up".into(), "{\"a\":1}".into(), now())
        .await
        .unwrap();
    assert!(first.id < theirs.id && theirs.id < second.id);
    site1
        .reschedule_delivery(
            second.id,
            2,
            "503".into(),
            now() + time::Duration::minutes(1),
        )
        .await
        .unwrap();
    // Another appliance's row is not this one's to touch.
    site1.finish_delivery(theirs.id).await.unwrap();
    site1
        .reschedule_delivery(theirs.id, 9, "x".into(), now())
        .await
        .unwrap();
    let mine = site2.pending_deliveries().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].id, mine[0].attempts), (theirs.id, 0));

    // A restart of site-1 resumes its two, not site-2's.
    drop(site1);
    let site1 = appliance(&url, "site-1").await;
    let pending = site1.pending_deliveries().await.unwrap();
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    assert_eq!(
        (pending[1].attempts, pending[1].body.as_str()),
        (2, "{\"a\":1}")
    );
    assert!(pending[1].next_attempt_ms > pending[0].next_attempt_ms);
    site1.finish_delivery(first.id).await.unwrap();
    site1.finish_delivery(second.id).await.unwrap();
    let third = site1
        .queue_delivery("modem_up".into(), "{}".into(), now())
        .await
        .unwrap();
    assert!(third.id > second.id, "ids are never reused");
    site1.finish_delivery(third.id).await.unwrap();

    // A receiver down for long: site-1's table is full already.
    let client = Postgres::client(&url).await;
    client
        .execute(
            "INSERT INTO callback_deliveries (appliance_id, kind, body, next_attempt_ms, created_ms) \
             SELECT (SELECT id FROM appliances WHERE name = 'site-1'), 'message_relayed', \
                    '{\"n\":' || n || '}', 0, 0 \
             FROM generate_series(0::BIGINT, $1::BIGINT - 1) AS n",
            &[&MAX_PENDING_DELIVERIES],
        )
        .await
        .unwrap();
    let mut last = None;
    for n in MAX_PENDING_DELIVERIES..MAX_PENDING_DELIVERIES + 25 {
        last = Some(
            site1
                .queue_delivery("message_relayed".into(), format!("{{\"n\":{n}}}"), now())
                .await
                .unwrap(),
        );
    }
    let pending = site1.pending_deliveries().await.unwrap();
    assert_eq!(pending.len() as i64, MAX_PENDING_DELIVERIES);
    assert_eq!(
        pending.last().unwrap().id,
        last.unwrap().id,
        "the newest are kept"
    );
    assert_eq!(pending[0].body, "{\"n\":25}", "the oldest went");
    // The cap is per appliance: site-2's delivery is still there.
    assert_eq!(site2.pending_deliveries().await.unwrap().len(), 1);
}

/// What the receiver saw: (delivery id, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that answers 503 with an hour's `Retry-After` first, then
/// 200.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let delivery = headers
                    .get("x-simmask-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut seen = record.lock().unwrap();
                seen.push((delivery, body));
                if seen.len() == 1 {
                    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
                    response
                        .headers_mut()
                        .insert("retry-after", "3600".parse().unwrap());
                    response
                } else {
                    StatusCode::OK.into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn config(url: &str) -> CallbacksConfig {
    let mut config = CallbacksConfig {
        secret: Some("a-shared-secret-for-tests".into()),
        max_attempts: 3,
        retry_after_ms: 20,
        timeout_seconds: 5,
        allowed_networks: vec!["127.0.0.1".into()],
        ..CallbacksConfig::default()
    };
    config.urls.insert("message_relayed".into(), url.into());
    config.validate().unwrap();
    config
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_at_shutdown_is_made_by_the_next_start_on_a_fleet() {
    let pg = Postgres::start();
    let url = pg.database("dispatch").await;
    let (hook, seen) = receiver().await;
    // Another appliance's pending delivery: never posted from here.
    let site2 = appliance(&url, "site-2").await;
    site2
        .queue_delivery("message_relayed".into(), "{\"theirs\":1}".into(), now())
        .await
        .unwrap();

    let bus = EventBus::new();
    let first = CancellationToken::new();
    let task = spawn_callbacks(
        config(&hook),
        &bus,
        appliance(&url, "site-1").await,
        first.clone(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(Event::MessageRelayed {
        session_id: Some("ses_1".into()),
        interaction_id: 42,
        parts: 1,
    });
    wait_for(&seen, 1).await;
    // The receiver asked for an hour; the daemon stops meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.cancel();
    task.await.unwrap();
    let site1 = appliance(&url, "site-1").await;
    let pending = site1.pending_deliveries().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].id.to_string(), seen.lock().unwrap()[0].0);

    // The next start, after the hour (the row is made due), delivers it.
    Postgres::client(&url)
        .await
        .execute("UPDATE callback_deliveries SET next_attempt_ms = 0", &[])
        .await
        .unwrap();
    let second = CancellationToken::new();
    let task = spawn_callbacks(
        config(&hook),
        &EventBus::new(),
        site1.clone(),
        second.clone(),
    );
    wait_for(&seen, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !site1.pending_deliveries().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.cancel();
    task.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], seen[1], "the same delivery, the same event");
    assert!(seen[0].1.contains("\"interaction_id\":42"), "{seen:?}");
    // site-2's stays for site-2.
    assert_eq!(site2.pending_deliveries().await.unwrap().len(), 1);
}
