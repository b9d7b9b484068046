//! Every route of the OpenAPI document, walked over real HTTP: each refuses
//! a missing or wrong token (401) and a too-small role (403), answers its
//! callers, and turns every class of bad body into a JSON 4xx. The route
//! list comes from the document, and a unit test in `api` holds the
//! document to the router, so a new route cannot escape these tests.

mod api_common;

use api_common::{BOOTSTRAP, assert_error, iccid, start, start_configured, start_with};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use simmask::api::limits::RateLimit;

/// One operation of the document.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    /// The path with its parameters filled in.
    path: String,
    /// Needs no token.
    public: bool,
    /// Needs an admin token.
    admin: bool,
    /// Takes a JSON body.
    body: bool,
}

async fn operations(api: &api_common::Api) -> (Value, Vec<Operation>) {
    let (status, document) = api
        .send(Method::GET, "/api/v1/openapi.json", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let security = operation["security"].as_array();
            let scopes: Vec<&str> = security
                .into_iter()
                .flatten()
                .filter_map(|s| s["bearer"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            operations.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path
                    .replace("{id}", "ses_missing")
                    .replace("{iccid}", &iccid(0)),
                public: security.is_none_or(|s| s.is_empty()),
                admin: scopes.contains(&"admin"),
                body: operation.get("requestBody").is_some(),
            });
        }
    }
    (document, operations)
}

/// The status and, when JSON, the body; event streams are not read.
async fn call(
    api: &api_common::Api,
    operation: &Operation,
    token: Option<&str>,
    body: Option<(&'static str, &str)>,
) -> (StatusCode, Value) {
    let mut request = api.client.request(
        operation.method.clone(),
        format!("{}{}", api.base, operation.path),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = if is_json {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, body)
}

#[tokio::test]
async fn every_documented_route_checks_tokens_and_roles() {
    // Wrong tokens on every route, many times over: the failed-auth
    // limit (tested in api_hostile) would answer 429 before long.
    let api = start_configured(1, |state| {
        state.failed_auth = simmask::api::guard::FailedAuth::new(10_000, 10_000);
    })
    .await;
    let (_, operations) = operations(&api).await;
    assert!(operations.len() >= 17, "{operations:?}");
    assert!(operations.iter().any(|o| o.admin));
    for operation in &operations {
        let json_body = operation.body.then_some(("application/json", "{}"));
        if operation.public {
            let (status, _) = call(&api, operation, None, None).await;
            assert_eq!(status, StatusCode::OK, "{operation:?}");
            continue;
        }
        for token in [None, Some("smk_wrong"), Some("")] {
            let (status, body) = call(&api, operation, token, json_body).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        }
        let (status, body) = call(&api, operation, Some(&api.viewer), json_body).await;
        if operation.admin {
            assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
        } else {
            assert_answered(operation, status, &body);
        }
        for admin in [api.admin.as_str(), BOOTSTRAP] {
            let (status, body) = call(&api, operation, Some(admin), json_body).await;
            assert_answered(operation, status, &body);
        }
    }
}

/// Forged, revoked and expired tokens, admin ones included, on every route
/// that wants a token (`/metrics` and the event stream among them): each is
/// a 401 like no token at all.
#[tokio::test]
async fn every_route_refuses_forged_revoked_and_expired_tokens() {
    // Hundreds of refusals: neither the rate limit nor the failed-auth
    // limit (tested in api_hostile) is what is under test.
    let api = start_configured(1, |state| {
        state.rate_limit = RateLimit {
            per_second: 10_000,
            burst: 10_000,
        };
        state.failed_auth = simmask::api::guard::FailedAuth::new(10_000, 10_000);
    })
    .await;
    let (_, operations) = operations(&api).await;
    let guarded: Vec<&Operation> = operations.iter().filter(|o| !o.public).collect();
    assert!(
        guarded.iter().any(|o| o.path == "/metrics")
            && guarded.iter().any(|o| o.path == "/api/v1/events"),
        "{guarded:?}"
    );

    let mut created = Vec::new();
    for (name, expires) in [("revoked-admin", None), ("expiring-admin", Some(1))] {
        let mut body = serde_json::json!({"name": name, "role": "admin"});
        if let Some(seconds) = expires {
            body["expires_in_seconds"] = seconds.into();
        }
        let (status, token) = api
            .send(Method::POST, "/api/v1/tokens", Some(&api.admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        created.push(token);
    }
    let revoked = created[0]["token"].as_str().unwrap().to_string();
    let expired = created[1]["token"].as_str().unwrap().to_string();
    // Both work before.
    for token in [&revoked, &expired] {
        let (status, _) = api
            .send(Method::GET, "/api/v1/numbers", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", created[0]["id"]),
            Some(&api.admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    // Forgeries: a real token with one character changed, one cut short,
    // one lengthened, one in the right shape never issued, the bootstrap
    // token changed likewise, and a case-changed one.
    let flip_last = |token: &str| {
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.last_mut().unwrap();
        *last = if *last == '0' { '1' } else { '0' };
        chars.into_iter().collect::<String>()
    };
    let forged = [
        flip_last(&api.admin),
        api.admin[..api.admin.len() - 1].to_string(),
        format!("{}0", api.admin),
        simmask::api::auth::generate_token(),
        flip_last(BOOTSTRAP),
        BOOTSTRAP[..BOOTSTRAP.len() - 1].to_string(),
        format!("{BOOTSTRAP}x"),
        api.admin.to_uppercase(),
        format!("{} ", api.viewer.replace("smk_", "smk-")),
    ];
    for operation in &guarded {
        let json_body = operation.body.then_some(("application/json", "{}"));
        for token in forged.iter().chain([&revoked, &expired]) {
            let (status, body) = call(&api, operation, Some(token), json_body).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
}

/// Routed, authorised, and no server error: a 2xx, or a JSON 4xx about the
/// request itself (an unknown session, a missing field).
fn assert_answered(operation: &Operation, status: StatusCode, body: &Value) {
    assert!(
        !matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED
        ) && !status.is_server_error(),
        "{operation:?}: {status} {body}"
    );
    if status.is_client_error() {
        assert!(body["error"].is_string(), "{operation:?}: {body}");
        assert!(
            !body["message"].as_str().unwrap().starts_with("no route"),
            "{operation:?} is documented but not routed"
        );
    }
}

#[tokio::test]
async fn every_body_route_refuses_bad_bodies_with_json() {
    let api = start(1).await;
    let (_, operations) = operations(&api).await;
    let with_body: Vec<_> = operations.iter().filter(|o| o.body).collect();
    assert!(with_body.len() >= 4, "{with_body:?}");
    let huge = format!(
        "{{\"label\": \"{}\"}}",
        "x".repeat(simmask::api::MAX_BODY_BYTES)
    );
    for operation in with_body {
        for (content_type, body, status, code) in [
            (
                "application/json",
                "{,}",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                "application/json",
                "not json",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                "application/json",
                "",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                "application/json",
                "{\"zzz\": 1}",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "application/json",
                "[true]",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "application/json",
                "\"text\"",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "text/plain",
                "{}",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "application/json",
                huge.as_str(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
        ] {
            let (got, answer) = call(
                &api,
                operation,
                Some(&api.admin),
                Some((content_type, body)),
            )
            .await;
            assert_eq!(got, status, "{operation:?} with {:.40}: {answer}", body);
            assert_eq!(
                answer["error"], code,
                "{operation:?} with {:.40}: {answer}",
                body
            );
        }
    }
}

#[tokio::test]
async fn the_document_is_consistent() {
    let api = start(1).await;
    let (document, operations) = operations(&api).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    // Every $ref names a schema the document defines.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(
            schemas.contains_key(name),
            "$ref {reference} is not defined"
        );
    }
    for operation in &operations {
        let item = &document["paths"];
        assert!(item.is_object());
        assert!(
            !operation.path.contains('{'),
            "unfilled parameter in {operation:?}"
        );
    }
    // Only /healthz is open.
    let public: Vec<_> = operations
        .iter()
        .filter(|o| o.public)
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(public, ["/api/v1/healthz", "/healthz"]);
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn a_client_over_its_rate_gets_a_json_429() {
    let api = start_with(
        1,
        RateLimit {
            per_second: 1,
            burst: 5,
        },
    )
    .await;
    let mut refused = None;
    for _ in 0..20 {
        let (status, body) = api
            .send(Method::GET, "/api/v1/sessions", Some(&api.viewer), None)
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(body);
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let body = refused.expect("20 requests at once exceed a burst of 5");
    assert_error(
        StatusCode::TOO_MANY_REQUESTS,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let api = start(1).await;
    for (method, path, status, code) in [
        (
            Method::GET,
            "/api/v1/nothing",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v2/sessions",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::PATCH,
            "/api/v1/sessions",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/api/v1/numbers",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ] {
        let (got, body) = api.send(method, path, Some(&api.admin), None).await;
        assert_error(got, &body, status, code);
    }
}

/// Log lines written by the code under test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts `serve` on `address` and answers what it logged as it started.
async fn start_up_log(address: &str) -> String {
    use tracing::instrument::WithSubscriber;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let store = simmask::store::Store::open(&dir.path().join("a.db")).unwrap();
    let state = simmask::api::ApiState::new(
        store,
        std::sync::Arc::new(api_common::MemoryPool::default()),
        simmask::events::EventBus::new(),
    );
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();
    simmask::api::serve(listener, state, shutdown)
        .with_subscriber(subscriber)
        .await
        .unwrap();
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
}

#[tokio::test]
async fn binding_beyond_loopback_warns_at_start_up() {
    let log = start_up_log("0.0.0.0:0").await;
    assert!(log.contains("WARN") && log.contains("TLS"), "{log}");
    let log = start_up_log("127.0.0.1:0").await;
    assert!(
        log.contains("api listening") && !log.contains("WARN"),
        "{log}"
    );
}
