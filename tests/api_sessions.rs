//! The sessions API over real HTTP: every route, both roles, and every class
//! of bad input a client can send.

mod api_common;

use api_common::{BOOTSTRAP, assert_error, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use simmask::api;

#[tokio::test]
async fn healthz_needs_no_token_and_everything_else_does() {
    let api = start(1).await;
    let (status, body) = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");

    for (method, path) in [
        (Method::GET, "/api/v1/sessions"),
        (Method::POST, "/api/v1/sessions"),
        (Method::POST, "/api/v1/sessions/search"),
        (Method::GET, "/api/v1/sessions/ses_x"),
        (Method::DELETE, "/api/v1/sessions/ses_x"),
        (Method::GET, "/api/v1/openapi.json"),
    ] {
        let (status, body) = api.send(method.clone(), path, None, None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, body) = api.send(method, path, Some("smk_wrong"), None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn viewers_read_admins_change() {
    let api = start(2).await;
    let open = json!({"participants": ["+447911000001", "07911 000002"], "label": "ride 7"});
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.viewer),
            Some(open.clone()),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    let (status, session) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(open.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(
        session["participants"],
        json!(["+447911000001", "+447911000002"])
    );
    assert_eq!(session["status"], "open");
    assert_eq!(session["mode"], "both");
    assert!(
        session["proxy_number"]
            .as_str()
            .unwrap()
            .starts_with("+44700900000")
    );
    let id = session["id"].as_str().unwrap().to_string();

    let (status, seen) = api
        .send(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen["participants"],
        json!(["+44*******001", "+44*******002"])
    );

    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, closed) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(BOOTSTRAP),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(closed["status"], "closed");
    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "session_not_open");
}

#[tokio::test]
async fn listing_filters_pages_and_searches_by_participant_in_the_body() {
    let api = start(3).await;
    for (a, b, label) in [
        ("+447911000001", "+447911000002", "ride 1"),
        ("+447911000001", "+447911000003", "ride 2"),
        ("+447911000004", "+447911000005", "parcel"),
    ] {
        let (status, body) = api
            .send(
                Method::POST,
                "/api/v1/sessions",
                Some(&api.admin),
                Some(json!({"participants": [a, b], "label": label, "mode": "sms"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, page) = api
        .send(
            Method::GET,
            "/api/v1/sessions?label=ride&limit=1",
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_offset"], 1);
    let (_, page) = api
        .send(
            Method::GET,
            "/api/v1/sessions?label=ride&limit=1&offset=1",
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(page["sessions"][0]["label"], "ride 1");
    let (_, open) = api
        .send(
            Method::GET,
            "/api/v1/sessions?status=open",
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(open["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(open["next_offset"], Value::Null);

    let (status, found) = api
        .send(
            Method::POST,
            "/api/v1/sessions/search",
            Some(&api.admin),
            Some(json!({"participant": "+447911000001"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["sessions"].as_array().unwrap().len(), 2);
    // A viewer, who sees numbers masked, cannot look one up whole.
    let (status, refused) = api
        .send(
            Method::POST,
            "/api/v1/sessions/search",
            Some(&api.viewer),
            Some(json!({"participant": "+447911000001"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
}

#[tokio::test]
async fn bad_input_gets_a_precise_4xx_never_a_500() {
    let api = start(1).await;
    let admin = Some(api.admin.as_str());
    let cases = [
        (
            json!({"participants": ["+447911000001"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_participants",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000001"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_participants",
        ),
        (
            json!({"participants": ["+447911000001", "hello"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
        ),
        (
            json!({"participants": ["+447911000001", "+999"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
        ),
        (
            json!({"participants": ["+447911000001", "+447009000000"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_participants",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000002"], "ttl_seconds": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ttl",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000002"], "ttl_seconds": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000002"], "mode": "fax"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000002"], "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"participants": ["+447911000001", "+447911000002"], "label": "x".repeat(201)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
        ),
        (
            json!([1, 2]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = api
            .send(Method::POST, "/api/v1/sessions", admin, Some(body.clone()))
            .await;
        assert_error(got, &answer, status, code);
        assert!(
            !answer["message"].as_str().unwrap().contains("7911000001"),
            "numbers stay out of errors: {answer}"
        );
    }

    let (status, body) = api
        .raw(
            Method::POST,
            "/api/v1/sessions",
            "{\"participants\": [",
            true,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = api.raw(Method::POST, "/api/v1/sessions", "{}", false).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = format!(
        "{{\"participants\": [\"{}\"]}}",
        "1".repeat(api::MAX_BODY_BYTES)
    );
    let response = api
        .client
        .post(format!("{}/api/v1/sessions", api.base))
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");

    for (path, status, code) in [
        (
            "/api/v1/sessions/ses_missing",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/sessions?status=maybe",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/sessions?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
        ),
        (
            "/api/v1/sessions?limit=lots",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/sessions?shoe=1",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("/api/v1/nothing", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, answer) = api.send(Method::GET, path, admin, None).await;
        assert_error(got, &answer, status, code);
    }
    let (status, body) = api.send(Method::PUT, "/api/v1/sessions", admin, None).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn no_free_proxy_is_a_409_with_the_reason() {
    let api = start(1).await;
    let admin = Some(api.admin.as_str());
    let first = json!({"participants": ["+447911000001", "+447911000002"]});
    let (status, _) = api
        .send(Method::POST, "/api/v1/sessions", admin, Some(first))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let second = json!({"participants": ["+447911000001", "+447911000003"]});
    let (status, body) = api
        .send(Method::POST, "/api/v1/sessions", admin, Some(second))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_free_proxy");
    assert!(
        body["message"].as_str().unwrap().contains("already carry"),
        "{body}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let api = start(1).await;
    let (status, doc) = api
        .send(Method::GET, "/api/v1/openapi.json", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/api/v1/sessions", &["get", "post"][..]),
        ("/api/v1/sessions/search", &["post"][..]),
        ("/api/v1/sessions/{id}", &["get", "delete"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path].get(*method).is_some(),
                "{method} {path} missing from the document"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_live_feed_and_metrics_see_sessions_open_and_close() {
    let api = start(1).await;
    let mut feed = api
        .client
        .get(format!("{}/api/v1/events", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    assert!(
        feed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let open = json!({"participants": ["+447911000001", "+447911000002"]});
    let (_, session) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(open),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    api.send(
        Method::DELETE,
        &format!("/api/v1/sessions/{id}"),
        Some(&api.admin),
        None,
    )
    .await;

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("event: session_closed") {
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .expect("the feed went quiet")
            .unwrap()
            .expect("the feed ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: session_opened"), "{seen}");
    assert!(seen.contains(&format!("\"session_id\":\"{id}\"")), "{seen}");
    assert!(
        !seen.contains("7911000001"),
        "no real number in the feed: {seen}"
    );

    let (status, body) = api.send(Method::GET, "/metrics", None, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("simmask_sessions_opened_total"), "{text}");
    assert!(
        text.contains("simmask_sessions_ended_total{how=\"closed\"}"),
        "{text}"
    );
}
