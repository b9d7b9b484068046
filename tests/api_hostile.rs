//! Hostile clients against the real API server (in process, on port 0):
//! event-stream caps and revocation, paging bounds, the failed-auth limit,
//! trusted proxies, `no-store`, and the connection cap's reserve and
//! header deadline, all over real sockets.

mod api_common;

use std::time::Duration;

use api_common::{BOOTSTRAP, assert_error, start_configured};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use simmask::api::guard::{FailedAuth, StreamCaps};
use simmask::serve::ServeLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends until it closes the connection (or 10 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received));
    assert!(read.await.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

/// A raw HTTP/1.1 GET on a new connection.
async fn raw_get(base: &str, path: &str, token: Option<&str>, close: bool) -> TcpStream {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let connection = if close { "close" } else { "keep-alive" };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads one response's head from a kept-alive connection.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn event_streams_are_capped_per_token_and_overall_and_revocation_frees_them() {
    let api = start_configured(1, |state| state.streams = StreamCaps::new(3, 2)).await;
    let open = |token: String| {
        let request = api
            .client
            .get(format!("{}/api/v1/events", api.base))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let first = open(api.viewer.clone()).await;
    let second = open(api.viewer.clone()).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    // The viewer's third: refused with the reason, and the socket closed.
    let mut refused = raw_get(&api.base, "/api/v1/events", Some(&api.viewer), false).await;
    let answer = read_to_close(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.contains("too_many_streams") && answer.contains("at most 2"),
        "{answer}"
    );

    // The overall cap: one more token's stream fits, the next does not.
    let third = open(api.admin.clone()).await;
    assert_eq!(third.status(), StatusCode::OK);
    let (status, body) = api
        .send(Method::GET, "/api/v1/events", Some(BOOTSTRAP), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("3 event streams"),
        "{body}"
    );

    // Revoking the viewer's token ends both its streams, with the reason...
    let (_, tokens) = api
        .send(Method::GET, "/api/v1/tokens", Some(&api.admin), None)
        .await;
    let id = tokens
        .as_array()
        .and_then(|tokens| tokens.iter().find(|t| t["name"] == "dash"))
        .map(|t| t["id"].clone())
        .expect("the viewer token is listed");
    let (status, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    for stream in [first, second] {
        let body = tokio::time::timeout(Duration::from_secs(10), stream.text())
            .await
            .expect("the stream ends when its token is revoked")
            .unwrap();
        assert!(body.contains("event: unauthorized"), "{body}");
    }
    // ... and gives their places back: two more streams fit overall.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = api.send(Method::GET, "/api/v1/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let again = open(BOOTSTRAP.to_string()).await;
        if again.status() == StatusCode::OK {
            let and_again = open(BOOTSTRAP.to_string()).await;
            assert_eq!(and_again.status(), StatusCode::OK);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the places were not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(third);
}

#[tokio::test]
async fn paging_out_of_bounds_is_422_with_the_bound_never_a_wrap() {
    let api = start_configured(1, |_| {}).await;
    for (query, bound) in [
        ("offset=18446744073709551615&limit=1", "0 to 1000000000"),
        ("offset=9223372036854775808&limit=1", "0 to 1000000000"),
        ("offset=1000000001", "0 to 1000000000"),
        ("limit=0", "1 to 500"),
        ("limit=501", "1 to 500"),
        ("limit=18446744073709551615", "1 to 500"),
    ] {
        let path = format!("/api/v1/sessions?{query}");
        let (status, body) = api.send(Method::GET, &path, Some(&api.admin), None).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_range",
        );
        assert!(
            body["message"].as_str().unwrap().contains(bound),
            "{query}: {body}"
        );
    }
    // The same bounds in a search body.
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/sessions/search",
            Some(&api.admin),
            Some(serde_json::json!({"offset": 9_223_372_036_854_775_808u64, "limit": 500})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "out_of_range",
    );
    // At the bound: an empty page and no next one.
    let (status, body) = api
        .send(
            Method::GET,
            "/api/v1/sessions?offset=1000000000&limit=500",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next_offset"], Value::Null);
    // The document declares the bounds.
    let (_, document) = api
        .send(Method::GET, "/api/v1/openapi.json", Some(&api.admin), None)
        .await;
    let params = document["paths"]["/api/v1/sessions"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let schema = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap()
    };
    assert_eq!(schema("offset")["maximum"], 1_000_000_000);
    assert_eq!(schema("limit")["maximum"], 500);
    assert_eq!(schema("limit")["minimum"], 1);
}

#[tokio::test]
async fn failed_authentications_get_their_own_stricter_limit() {
    let api = start_configured(1, |state| state.failed_auth = FailedAuth::new(3, 1)).await;
    for _ in 0..3 {
        let (status, body) = api
            .send(Method::GET, "/api/v1/me", Some("smk_guess"), None)
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let response = api
        .client
        .get(format!("{}/api/v1/me", api.base))
        .bearer_auth("smk_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_failed_authentications");
    // While blocked, even the right token is not looked at: a guess that
    // hits would not tell.
    let (status, _) = api
        .send(Method::GET, "/api/v1/me", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The general limit is another: unauthenticated routes still answer.
    let (status, _) = api.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_limiter_believes_forwarded_addresses_only_from_a_trusted_proxy() {
    let guess = |api: &api_common::Api, forwarded_for: &'static str| {
        let request = api
            .client
            .get(format!("{}/api/v1/me", api.base))
            .bearer_auth("smk_guess")
            .header("x-forwarded-for", forwarded_for);
        async move { request.send().await.unwrap().status() }
    };
    // Not trusted: the header is ignored, every guess is the peer's.
    let api = start_configured(1, |state| state.failed_auth = FailedAuth::new(2, 1)).await;
    assert_eq!(guess(&api, "192.168.1.10").await, StatusCode::UNAUTHORIZED);
    assert_eq!(guess(&api, "192.168.1.11").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        guess(&api, "192.168.1.12").await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Behind a trusted proxy (this test's loopback), each client its own.
    let api = start_configured(1, |state| {
        state.failed_auth = FailedAuth::new(2, 1);
        state.trusted_proxies = std::sync::Arc::new(vec!["127.0.0.1/32".parse().unwrap()]);
    })
    .await;
    for _ in 0..2 {
        assert_eq!(guess(&api, "192.168.1.10").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        guess(&api, "192.168.1.10").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(guess(&api, "192.168.1.11").await, StatusCode::UNAUTHORIZED);
    // A client cannot pick another bucket by prepending an address.
    assert_eq!(
        guess(&api, "192.168.1.99, 192.168.1.10").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn every_api_answer_is_no_store() {
    let api = start_configured(1, |_| {}).await;
    for (path, token) in [
        ("/api/v1/sessions", Some(api.admin.as_str())),
        ("/api/v1/numbers", Some(api.viewer.as_str())),
        ("/api/v1/status", None),
        ("/api/v1/nothing", Some(api.admin.as_str())),
        ("/healthz", None),
        ("/api/v1/openapi.json", Some(api.admin.as_str())),
    ] {
        let mut request = api.client.get(format!("{}{path}", api.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn a_full_server_keeps_its_reserve_for_healthz_and_admins() {
    let api = start_configured(1, |state| {
        state.serve_limits = ServeLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 2,
            reserve_connections: 2,
        };
    })
    .await;
    // Two clients hold the regular slots, kept alive after a request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = raw_get(&api.base, "/healthz", None, false).await;
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    // A viewer is refused on a reserve connection, which is then closed.
    let mut viewer = raw_get(&api.base, "/api/v1/status", Some(&api.viewer), false).await;
    let answer = read_to_close(&mut viewer).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // /healthz and an admin get in, one request per reserve connection.
    let mut health = raw_get(&api.base, "/healthz", None, false).await;
    assert!(read_to_close(&mut health).await.starts_with("HTTP/1.1 200"));
    let mut admin = raw_get(&api.base, "/api/v1/status", Some(&api.admin), false).await;
    assert!(read_to_close(&mut admin).await.starts_with("HTTP/1.1 200"));

    // Reserve held too (by clients mid-request): the next is refused at once.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(api.base.trim_start_matches("http://"))
            .await
            .unwrap();
        stream
            .write_all(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            .await
            .unwrap();
        stream
            .write_all(
                format!(
                    "{}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                    api.admin
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = raw_get(&api.base, "/healthz", None, false).await;
    let answer = read_to_close(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
}

#[tokio::test]
async fn silent_and_dripping_connections_are_closed_by_the_header_deadline() {
    let api = start_configured(1, |state| {
        state.serve_limits = ServeLimits {
            header_read_timeout: Duration::from_secs(1),
            ..ServeLimits::default()
        };
    })
    .await;
    let address = api.base.trim_start_matches("http://").to_string();
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut dripping = TcpStream::connect(&address).await.unwrap();
    let drip = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if dripping.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut rest = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), dripping.read_to_end(&mut rest)).await;
        rest
    });
    // Kept alive after an answer, then idle: closed too.
    let mut idle = raw_get(&api.base, "/healthz", None, false).await;
    assert!(read_head(&mut idle).await.starts_with("HTTP/1.1 200"));
    let _ = read_to_close(&mut idle).await;
    assert_eq!(read_to_close(&mut silent).await, "");
    let dripped = tokio::time::timeout(Duration::from_secs(15), drip)
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&dripped).contains("200 OK"));
}
