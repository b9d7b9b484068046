//! The operator's API over real HTTP: tokens revoked and expired (refused
//! at once, open event streams closed), event streams resumed with
//! `Last-Event-ID`, interactions exported as a stream in bounded memory,
//! the status in one answer, and a metrics token that only scrapes.

mod api_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api_common::{assert_error, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use simmask::events::Event;
use simmask::number::PhoneNumber;
use simmask::store::{LiveSim, NewOutbound, NewSession};
use time::OffsetDateTime;

/// Counts the bytes allocated now and at most, to measure an export.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Reads SSE blocks from a response until `count` events (not comments)
/// have arrived or the stream ends; returns (event name, id, data).
async fn read_events(
    mut response: reqwest::Response,
    count: usize,
) -> (Vec<(String, Option<u64>, Value)>, bool) {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((name, id, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            if events.len() >= count {
                return (events, false);
            }
        }
        let next = tokio::time::timeout_at(deadline, response.chunk()).await;
        match next {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => return (events, true),
            Err(_) => panic!("no {count} events within 10 s: {events:?}"),
        }
    }
}

async fn create_token(api: &api_common::Api, body: Value) -> (StatusCode, Value) {
    api.send(Method::POST, "/api/v1/tokens", Some(&api.admin), Some(body))
        .await
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_its_event_stream_closed() {
    let api = start(1).await;
    let (status, created) = create_token(&api, json!({"name": "wall", "role": "viewer"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_i64().unwrap();
    let (status, _) = api
        .send(Method::GET, "/api/v1/numbers", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let stream = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let reader = tokio::spawn(read_events(stream, 10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.events.publish(Event::SessionClosed {
        session_id: "ses_before".into(),
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A viewer cannot revoke; the admin can, by number.
    let path = format!("/api/v1/tokens/{id}");
    let (status, body) = api.send(Method::DELETE, &path, Some(&token), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let revoked_at = tokio::time::Instant::now();
    let (status, body) = api
        .send(Method::DELETE, &path, Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "revoked");

    // The stream ends at once with an `unauthorized` event.
    let (events, ended) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream closes")
        .unwrap();
    assert!(revoked_at.elapsed() < Duration::from_secs(2));
    assert!(ended, "{events:?}");
    assert_eq!(events[0].0, "session_closed");
    assert_eq!(events.last().unwrap().0, "unauthorized");
    // Every route refuses it now.
    for path in [
        "/api/v1/numbers",
        "/api/v1/me",
        "/api/v1/events",
        "/metrics",
    ] {
        let (status, body) = api.send(Method::GET, path, Some(&token), None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (status, body) = api
        .send(Method::DELETE, &path, Some(&api.admin), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (_, listed) = api
        .send(Method::GET, "/api/v1/tokens", Some(&api.admin), None)
        .await;
    let wall = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wall")
        .unwrap();
    assert_eq!(wall["state"], "revoked");
    assert!(!wall["last_used_at"].is_null(), "{wall}");
    assert!(wall.get("token").is_none() && wall.get("hash").is_none());
}

#[tokio::test]
async fn an_expiring_token_stops_working_when_it_expires_even_mid_stream() {
    let api = start(1).await;
    let (status, created) = create_token(
        &api,
        json!({"name": "kiosk", "role": "viewer", "expires_in_seconds": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    let stream = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (events, ended) = tokio::time::timeout(Duration::from_secs(6), read_events(stream, 5))
        .await
        .expect("the stream is closed when the token expires");
    assert!(ended);
    assert_eq!(events.last().unwrap().0, "unauthorized");
    let (status, body) = api
        .send(Method::GET, "/api/v1/numbers", Some(&token), None)
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // Bad requests get precise answers.
    for (body, code) in [
        (json!({"name": "x y"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"name": "a", "expires_in_seconds": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "a", "role": "root"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": "dash"}), StatusCode::CONFLICT),
    ] {
        let (status, answer) = create_token(&api, body.clone()).await;
        assert_eq!(status, code, "{body} → {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = api
        .send(Method::DELETE, "/api/v1/tokens/abc", Some(&api.admin), None)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_has_no_gap() {
    let api = start(1).await;
    let closed = |i: usize| Event::SessionClosed {
        session_id: format!("ses_{i}"),
    };
    let first = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(read_events(first, 3));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..3 {
        api.events.publish(closed(i));
    }
    let (seen, _) = reader.await.unwrap();
    let last = seen.last().unwrap().1.unwrap();
    // The connection dropped (the reader is gone); meanwhile five more happen.
    for i in 3..8 {
        api.events.publish(closed(i));
    }
    let resumed = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.viewer)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(read_events(resumed, 6));
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.events.publish(closed(8));
    let (events, _) = reader.await.unwrap();
    let sessions: Vec<&str> = events
        .iter()
        .map(|(_, _, data)| data["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        sessions,
        ["ses_3", "ses_4", "ses_5", "ses_6", "ses_7", "ses_8"]
    );
    let ids: Vec<u64> = events.iter().map(|(_, id, _)| id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(ids[0], last + 1);
}

/// Seeds `count` interactions in one session with bodies of `body_len` bytes.
async fn seed(api: &api_common::Api, count: usize, body_len: usize) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let live = vec![LiveSim {
        iccid: api_common::iccid(0),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }];
    let session = api
        .store
        .open_session(
            NewSession {
                participants: [
                    PhoneNumber::from_e164("+447911000001").unwrap(),
                    PhoneNumber::from_e164("+447911000002").unwrap(),
                ],
                mode: simmask::masking::Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: Some("export".into()),
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: Default::default(),
            },
            live,
            now,
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let new = NewOutbound {
            session_id: Some(session.id.clone()),
            proxy_iccid: api_common::iccid(0),
            from_position: Some(0),
            to: PhoneNumber::from_e164("+447911000002").unwrap(),
            body: format!("{i:05} {}", "x".repeat(body_len)),
        };
        pending.push(api.store.queue_sms(new, now));
        if pending.len() == 64 {
            futures::future::join_all(pending.drain(..)).await;
        }
    }
    futures::future::join_all(pending).await;
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_interactions_export_as_a_stream_in_bounded_memory() {
    let api = start(1).await;
    let total = 10_000;
    let started = std::time::Instant::now();
    let now = seed(&api, total, 1000).await;
    eprintln!("seeded {total} interactions in {:?}", started.elapsed());
    let from = (now - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let path = format!(
        "/api/v1/interactions?from={}&format=csv",
        from.replace('+', "%2B")
    );

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let mut response = api
        .client
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.content_length().is_none(),
        "streamed, not sized up front"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"simmask-interactions-")
    );
    let (mut bytes, mut lines, mut chunks) = (0usize, 0usize, 0usize);
    let mut first_line = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        if first_line.len() < 200 {
            first_line.extend_from_slice(&chunk[..chunk.len().min(200)]);
        }
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        chunks += 1;
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "exported {lines} lines, {bytes} bytes in {chunks} chunks in {:?}; peak extra heap {peak} bytes",
        started.elapsed()
    );
    assert_eq!(lines, total + 1, "a header and every interaction");
    assert!(String::from_utf8_lossy(&first_line).starts_with("id,session_id,proxy_number,kind"));
    assert!(bytes > 10_000_000);
    // The whole export is over 10 MB; server and client together never held
    // more than a few pages of it.
    assert!(
        peak < 4_000_000,
        "peak extra heap {peak} bytes for {bytes} exported"
    );

    // A viewer's JSON lines: masked numbers, no bodies.
    let (status, text) = api
        .send(
            Method::GET,
            &path.replace("format=csv", "format=jsonl"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["from"], "+44*******001");
    assert_eq!(first["body"], Value::Null);
    assert!(!text.contains("+447911000002"));
    assert_eq!(text.lines().count(), total);

    for (query, code) in [
        ("/api/v1/interactions", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/api/v1/interactions?from=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/interactions?from=2026-03-02&to=2026-03-01",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/interactions?from=2026-03-01&format=xml",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = api.send(Method::GET, query, Some(&api.viewer), None).await;
        assert_eq!(status, code, "{query}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn the_status_shows_sims_sessions_and_the_store_and_metrics_tokens_only_scrape() {
    let api = start(2).await;
    seed(&api, 3, 10).await;
    api.pool.statuses.lock().unwrap()[1].signal_dbm = None;
    let (status, body) = api
        .send(Method::GET, "/api/v1/status", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sims"].as_array().unwrap().len(), 2);
    assert_eq!(body["sims"][0]["sends_last_day"], 0);
    assert_eq!(body["open_sessions"], 1);
    assert_eq!(body["sessions"][0]["participants"][0], "+44*******001");
    assert_eq!(body["recent"].as_array().unwrap().len(), 3);
    assert_eq!(body["recent"][0]["body"], Value::Null);
    assert_eq!(body["store"]["ok"], true);
    assert_eq!(body["store"]["schema"], body["store"]["schema_latest"]);

    let (_, created) = create_token(&api, json!({"name": "prometheus", "role": "metrics"})).await;
    let scraper = created["token"].as_str().unwrap().to_string();
    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&scraper)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("simmask_build_info{version=\""), "{text}");
    let first = api_common::iccid(0);
    let second = api_common::iccid(1);
    assert!(
        text.contains(&format!("simmask_sim_signal_dbm{{iccid=\"{first}\"}} -70")),
        "{text}"
    );
    assert!(
        !text.contains(&format!("simmask_sim_signal_dbm{{iccid=\"{second}\"}}")),
        "{text}"
    );
    assert!(!text.contains("NaN"), "{text}");
    for path in ["/api/v1/numbers", "/api/v1/status", "/api/v1/events"] {
        let (status, body) = api.send(Method::GET, path, Some(&scraper), None).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
}
