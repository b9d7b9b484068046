//! Hubs over real HTTP: created, listed (masked for viewers), with many
//! sessions on few SIMs, each with its code; counterparts keep the masking
//! rule, two hubs are never paired, bad input gets a precise 4xx, and
//! removing a hub ends its sessions.

mod api_common;

use std::collections::HashSet;

use api_common::{Api, assert_error, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use simmask::masking::hub;

const HUB: &str = "+447911000100";
const A: &str = "+447911000001";

async fn create(api: &Api, body: Value) -> (StatusCode, Value) {
    api.send(Method::POST, "/api/v1/hubs", Some(&api.admin), Some(body))
        .await
}

async fn open(api: &Api, a: &str, b: &str) -> (StatusCode, Value) {
    api.send(
        Method::POST,
        "/api/v1/sessions",
        Some(&api.admin),
        Some(json!({"participants": [a, b]})),
    )
    .await
}

fn counterpart(i: usize) -> String {
    format!("+4479110002{i:02}")
}

#[tokio::test]
async fn a_hub_converses_with_twenty_people_on_two_sims() {
    let api = start(2).await;
    // An open session before it becomes a hub gets a code too.
    let (status, first) = open(&api, HUB, &counterpart(0)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["hub_code"], Value::Null);
    let (status, created) =
        create(&api, json!({"number": "07911 000100", "label": "dispatch"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["number"], HUB);
    assert_eq!(created["label"], "dispatch");
    assert!(created["id"].as_str().unwrap().starts_with("hub_"));
    assert_eq!(created["sessions"].as_array().unwrap().len(), 1);
    let id = created["id"].as_str().unwrap().to_string();

    let mut sessions = vec![
        api.send(
            Method::GET,
            &format!("/api/v1/sessions/{}", first["id"].as_str().unwrap()),
            Some(&api.admin),
            None,
        )
        .await
        .1,
    ];
    for i in 1..20 {
        let (status, session) = open(&api, &counterpart(i), HUB).await;
        assert_eq!(status, StatusCode::CREATED, "{i}: {session}");
        assert_eq!(session["hub_participant"], 1);
        sessions.push(session);
    }
    // Both SIMs carry them, and on each the codes differ by their keys.
    let mut by_proxy: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for session in &sessions {
        let code = session["hub_code"].as_str().unwrap().to_string();
        assert!(hub::looks_like_code(&code), "{code}");
        let keys = by_proxy
            .entry(session["proxy_number"].as_str().unwrap().into())
            .or_default();
        assert!(keys.insert(hub::keys(&code)), "{code} twice on one SIM");
    }
    assert_eq!(by_proxy.len(), 2, "{by_proxy:?}");
    assert!(by_proxy.values().all(|codes| codes.len() == 10));

    // A counterpart keeps the masking rule: a second session with the hub
    // needs the other SIM, a third has none.
    let (status, _) = open(&api, &counterpart(1), HUB).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = open(&api, &counterpart(1), HUB).await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_free_proxy");

    // Listed with its sessions and codes; viewers see numbers masked.
    let (status, hubs) = api
        .send(Method::GET, "/api/v1/hubs", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hubs[0]["sessions"].as_array().unwrap().len(), 21);
    assert_eq!(
        hubs[0]["sessions"][0]["counterpart"]
            .as_str()
            .unwrap()
            .len(),
        13
    );
    let (_, masked) = api
        .send(Method::GET, "/api/v1/hubs", Some(&api.viewer), None)
        .await;
    let shown = masked.to_string();
    assert!(
        !shown.contains(HUB) && !shown.contains(&counterpart(3)),
        "{shown}"
    );
    assert!(masked[0]["number"].as_str().unwrap().contains('*'));

    // Removed: its sessions end, and the number is an ordinary one again.
    let (status, removed) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/hubs/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["sessions_closed"].as_array().unwrap().len(), 21);
    let (_, session) = api
        .send(
            Method::GET,
            &format!("/api/v1/sessions/{}", sessions[5]["id"].as_str().unwrap()),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(
        (session["status"].as_str(), session["close_reason"].as_str()),
        (Some("closed"), Some("operator"))
    );
    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/hubs/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn bad_hubs_get_precise_errors() {
    let api = start(1).await;
    for (body, status, code) in [
        (
            json!({"number": "12"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
        ),
        (
            json!({"number": "+447009000000"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            json!({"number": HUB, "label": "x".repeat(201)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
        ),
        (
            json!({"number": HUB, "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let (got, answer) = create(&api, body.clone()).await;
        assert_error(got, &answer, status, code);
    }
    let (status, _) = create(&api, json!({"number": HUB})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = create(&api, json!({"number": HUB})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "hub_exists");
    // Two hubs are never paired.
    let (status, _) = create(&api, json!({"number": A})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = open(&api, A, HUB).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_participants",
    );
    // Viewers may look, not change.
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/hubs",
            Some(&api.viewer),
            Some(json!({"number": A})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn the_openapi_document_describes_hubs() {
    let api = start(1).await;
    let (_, document) = api
        .send(Method::GET, "/api/v1/openapi.json", Some(&api.viewer), None)
        .await;
    for path in ["/api/v1/hubs", "/api/v1/hubs/{id}"] {
        assert!(document["paths"][path].is_object(), "{path} undocumented");
    }
    // The feed's start with the recent events, for the dashboard.
    let params = &document["paths"]["/api/v1/events"]["get"]["parameters"];
    assert!(
        params
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "recent" && p["in"] == "query"),
        "{params}"
    );
    let schemas = &document["components"]["schemas"];
    for (schema, fields) in [
        ("SessionView", &["hub_code", "hub_participant"][..]),
        (
            "HubView",
            &["id", "number", "label", "created_at", "sessions"][..],
        ),
        (
            "HubSessionView",
            &["session_id", "hub_code", "proxy_number", "counterpart"][..],
        ),
        ("CreateHubRequest", &["number", "label"][..]),
        ("RemovedHub", &["id", "sessions_closed"][..]),
    ] {
        for field in fields {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field} undocumented: {}",
                schemas[schema]
            );
        }
    }
}

/// Reads the feed until `count` events have come, returning their ids.
async fn feed_ids(feed: &mut reqwest::Response, count: usize) -> Vec<u64> {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ids: Vec<u64> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .filter_map(|id| id.trim().parse().ok())
            .collect();
        if ids.len() >= count {
            return ids;
        }
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .unwrap_or_else(|_| panic!("the feed went quiet: {seen}"))
            .unwrap()
            .expect("the feed ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_feed_starts_with_the_recent_events_when_asked() {
    let api = start(1).await;
    for i in 0..5 {
        api.events.publish(simmask::events::Event::SessionClosed {
            session_id: format!("ses_{i}"),
        });
    }
    let feed = |query: &str| {
        api.client
            .get(format!("{}/api/v1/events{query}", api.base))
            .bearer_auth(&api.viewer)
            .send()
    };
    // The last two, oldest first, then the live ones.
    let mut recent = feed("?recent=2").await.unwrap();
    assert_eq!(recent.status(), StatusCode::OK);
    assert_eq!(feed_ids(&mut recent, 2).await, [4, 5]);
    api.events.publish(simmask::events::Event::SessionClosed {
        session_id: "ses_live".into(),
    });
    assert_eq!(feed_ids(&mut recent, 1).await, [6]);
    // More than there are: all of them; resuming wins over `recent`.
    let mut all = feed("?recent=500").await.unwrap();
    assert_eq!(feed_ids(&mut all, 6).await, [1, 2, 3, 4, 5, 6]);
    let mut resumed = api
        .client
        .get(format!("{}/api/v1/events?recent=50", api.base))
        .bearer_auth(&api.viewer)
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(feed_ids(&mut resumed, 1).await, [6]);
    // Bad input: a precise 4xx, never a stream.
    for query in ["?recent=many", "?recent=-1", "?since=3"] {
        let response = feed(query).await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_client_error(), "{query}: {status} {body}");
        assert!(body["message"].is_string(), "{query}: {body}");
    }
}

/// The feed's `data:` lines until one of `kind` arrives.
async fn feed_until(feed: &mut reqwest::Response, kind: &str) -> (Value, String) {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|event| event["kind"] == kind);
        if let Some(event) = found {
            return (event, seen);
        }
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind}: {seen}"))
            .unwrap()
            .expect("the feed ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn creating_and_removing_a_hub_are_events_with_its_number_masked() {
    let api = start(1).await;
    let mut feed = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    let (status, first) = open(&api, HUB, &counterpart(0)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, created) = create(&api, json!({"number": HUB, "label": "dispatch"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (event, opened) = feed_until(&mut feed, "hub_created").await;
    assert!(!opened.contains("7911000100"), "{opened}");
    assert_eq!(event["hub_id"], created["id"], "{event}");
    assert_eq!(event["number"], "+44*******100", "masked: {event}");
    assert_eq!(event["sessions"], json!([first["id"]]), "{event}");

    let (status, removed) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/hubs/{}", created["id"].as_str().unwrap()),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let (event, mut seen) = feed_until(&mut feed, "hub_removed").await;
    assert_eq!(event["hub_id"], created["id"], "{event}");
    assert_eq!(event["number"], "+44*******100", "masked: {event}");
    assert_eq!(event["sessions_closed"], json!([first["id"]]), "{event}");
    // Its session's end is an event too; the hub's number is never shown.
    let (closed, rest) = feed_until(&mut feed, "session_closed").await;
    assert_eq!(closed["session_id"], first["id"]);
    seen.push_str(&rest);
    assert!(!seen.contains("7911000100"), "{seen}");
}
