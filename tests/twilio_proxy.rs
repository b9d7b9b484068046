//! The Twilio Proxy facade driven by the official `twilio` Python library
//! (PyPI, unmodified; `scripts/twilio-client` installs it in a virtual
//! environment under target/), pointed at `simmask run` on a `simmask sim`
//! bank by a custom HTTP client that only rewrites the host. The script,
//! tests/twilio/proxy_client.py, holds the flow and its checks; this test
//! runs the processes, gives it their addresses and checks the appliance's
//! side.

mod common;
mod twilio_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ADMIN_TOKEN, Daemon, client, start_bank};
use serde_json::{Value, json};
use twilio_common::{ACCOUNT, AUTH_TOKEN, facade_post, run_script, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_twilio_library_drives_the_appliance() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        3,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n"),
    )
    .await;
    let admin = token(&daemon, "marketplace", "admin").await;
    let viewer = token(&daemon, "support", "viewer").await;
    let proxies: Vec<String> = (0..3).map(|i| sim.msisdn(i)).collect();

    let seen = run_script("proxy_client.py", &daemon, &sim, &admin, &viewer, &proxies).await;
    assert_eq!(seen["interactions"], 5, "{seen}");
    assert_eq!(seen["sessions"], 3, "one of four deleted: {seen}");

    // The appliance's own API sees the same sessions: the facade's second
    // one was closed by its deletion, the first is open again.
    let sessions = daemon.get("/api/v1/sessions?limit=50").await;
    let sessions = sessions["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    let open = sessions.iter().filter(|s| s["status"] == "open").count();
    assert_eq!(
        open, 2,
        "order-1 reopened and the one on the reserved number: {sessions:?}"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s["label"] == "proxy market: order-1" && s["proxy_number"] == seen["proxy"]),
        "{sessions:?}"
    );
}

/// Intercept and out-of-session callbacks decide held messages: 403
/// blocks, auto-create JSON opens the session and the message goes in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercept_and_out_of_session_callbacks_decide_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        2,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n"),
    )
    .await;
    let admin = token(&daemon, "helpdesk", "admin").await;
    let proxies: Vec<String> = (0..2).map(|i| sim.msisdn(i)).collect();
    let seen = run_script(
        "callbacks_client.py",
        &daemon,
        &sim,
        &admin,
        &admin,
        &proxies,
    )
    .await;
    assert_eq!(seen["blocked"], 1, "{seen}");
    assert_eq!(seen["calls_refused"], 1, "{seen}");
    assert_eq!(seen["intercepts"], 6, "four messages and two calls: {seen}");
}

/// A receiver of intercept callbacks: hangs (never answers) until told to
/// answer, then answers `status`. Counts the requests.
struct Intercept {
    url: String,
    answer: Arc<AtomicU16>,
    asked: Arc<AtomicUsize>,
}

impl Intercept {
    async fn start() -> Intercept {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/intercept", listener.local_addr().unwrap());
        let answer = Arc::new(AtomicU16::new(0));
        let asked = Arc::new(AtomicUsize::new(0));
        let (a, n) = (answer.clone(), asked.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (a, n) = (a.clone(), n.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !String::from_utf8_lossy(&request).contains("\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    let status = a.load(Ordering::SeqCst);
                    if status == 0 {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    let reply = format!("HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\n\r\n");
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Intercept { url, answer, asked }
    }
}

/// A message held for the intercept callback is in the store, not on the
/// SIM and not sent: a daemon killed while the receiver thinks asks again
/// when it comes back, and the answer (403) still blocks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_survives_a_crash_and_is_decided_after_it() {
    let (alice, bob) = ("+447911223344", "+447912334455");
    let receiver = Intercept::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n"),
    )
    .await;
    let admin = token(&daemon, "desk", "admin").await;
    let service = facade_post(
        &daemon,
        &admin,
        "/Services",
        &[
            ("UniqueName", "desk"),
            ("InterceptCallbackUrl", &receiver.url),
        ],
    )
    .await;
    let sid = service["sid"].as_str().unwrap().to_string();
    let proxy = sim.msisdn(0);
    facade_post(
        &daemon,
        &admin,
        &format!("/Services/{sid}/PhoneNumbers"),
        &[("PhoneNumber", &proxy)],
    )
    .await;
    let a = format!("{{\"Identifier\": \"{alice}\"}}");
    let b = format!("{{\"Identifier\": \"{bob}\"}}");
    facade_post(
        &daemon,
        &admin,
        &format!("/Services/{sid}/Sessions"),
        &[
            ("UniqueName", "crash"),
            ("Participants", &a),
            ("Participants", &b),
        ],
    )
    .await;

    sim.handset_sms(alice, &proxy, "held across a crash").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.asked.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the intercept callback was never asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.process.signal(Signal::SIGKILL);
    let _ = daemon.process.child.wait();
    assert!(sim.messages(bob).await.is_empty(), "not sent while held");

    receiver.answer.store(403, Ordering::SeqCst);
    let daemon = Daemon::start(&daemon.config, daemon.port(), 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let blocked = loop {
        let sessions = daemon.get("/api/v1/sessions?limit=10").await;
        let id = sessions["sessions"][0]["id"].as_str().unwrap().to_string();
        let listed = daemon
            .get(&format!("/api/v1/sessions/{id}/interactions"))
            .await;
        let listed = listed.get("interactions").cloned().unwrap_or(listed);
        if let Some(found) = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["status"] == "blocked")
        {
            break found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never decided: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(blocked["rule"], "intercept_callback", "{blocked}");
    assert_eq!(
        receiver.asked.load(Ordering::SeqCst),
        2,
        "asked once more after the restart"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sim.messages(bob).await.is_empty(),
        "a blocked message is never sent"
    );
}

/// A service's reserved number is one model: the native API never hands
/// it out either, as the facade hands it only to a participant that asks
/// for it by `ProxyIdentifier`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_number_is_not_handed_out_by_the_native_api_either() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        2,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n"),
    )
    .await;
    let admin = token(&daemon, "desk", "admin").await;
    let service = facade_post(&daemon, &admin, "/Services", &[("UniqueName", "pool")]).await;
    let sid = service["sid"].as_str().unwrap().to_string();
    let (free, reserved) = (sim.msisdn(0), sim.msisdn(1));
    let numbers = format!("/Services/{sid}/PhoneNumbers");
    facade_post(&daemon, &admin, &numbers, &[("PhoneNumber", &free)]).await;
    facade_post(
        &daemon,
        &admin,
        &numbers,
        &[("PhoneNumber", &reserved), ("IsReserved", "true")],
    )
    .await;

    let alice = "+447911223344";
    let first = daemon.open_session(alice, "+447912334455", json!({})).await;
    assert_eq!(first["proxy_number"], free.as_str(), "{first}");
    // Alice's second session would need the reserved number: refused.
    let refused = client()
        .post(format!("{}/api/v1/sessions", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"participants": [alice, "+447913445566"]}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    // Through the facade, asked for by name, it is used.
    let a = format!("{{\"Identifier\": \"{alice}\", \"ProxyIdentifier\": \"{reserved}\"}}");
    let b = "{\"Identifier\": \"+447913445566\"}".to_string();
    facade_post(
        &daemon,
        &admin,
        &format!("/Services/{sid}/Sessions"),
        &[("Participants", &a), ("Participants", &b)],
    )
    .await;
    let sessions = daemon.get("/api/v1/sessions?status=open&limit=10").await;
    let proxies: Vec<&str> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["proxy_number"].as_str().unwrap())
        .collect();
    assert_eq!(proxies.len(), 2, "{sessions}");
    assert!(proxies.contains(&reserved.as_str()), "{sessions}");
}

/// A session still waiting for its second participant expires as
/// Twilio's: its `Ttl` passed without an interaction, or its
/// `DateExpiry`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_session_expires_as_twilios_do() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\n"),
    )
    .await;
    let admin = token(&daemon, "desk", "admin").await;
    let service = facade_post(&daemon, &admin, "/Services", &[("UniqueName", "pend")]).await;
    let sid = service["sid"].as_str().unwrap().to_string();
    facade_post(
        &daemon,
        &admin,
        &format!("/Services/{sid}/PhoneNumbers"),
        &[("PhoneNumber", &sim.msisdn(0))],
    )
    .await;
    let alice = "{\"Identifier\": \"+447911223344\"}".to_string();
    let sessions = format!("/Services/{sid}/Sessions");
    let waiting = facade_post(
        &daemon,
        &admin,
        &sessions,
        &[("Ttl", "1"), ("Participants", &alice)],
    )
    .await;
    assert_eq!(waiting["status"], "open", "{waiting}");
    let path = format!(
        "{}/twilio/v1{sessions}/{}",
        daemon.url,
        waiting["sid"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let closed = loop {
        let session: Value = client()
            .get(&path)
            .basic_auth(ACCOUNT, Some(&admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if session["status"] == "closed" {
            break session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {session}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(closed["closed_reason"], "idle", "{closed}");
    // Nobody joins it any more.
    let late = client()
        .post(format!("{path}/Participants"))
        .basic_auth(ACCOUNT, Some(&admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Identifier=%2B447912334455")
        .send()
        .await
        .unwrap();
    assert_eq!(late.status().as_u16(), 400);
}

/// The OpenAPI document describes the facade: its paths, form bodies and
/// answers, next to the native API's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_facade() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        &format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\n"),
    )
    .await;
    let document = daemon.get("/api/v1/openapi.json").await;
    let paths = document["paths"].as_object().expect("paths");
    assert!(
        paths.contains_key("/api/v1/sessions"),
        "the native API stays"
    );
    let facade: Vec<&String> = paths
        .keys()
        .filter(|p| p.starts_with("/twilio/v1/"))
        .collect();
    assert_eq!(facade.len(), 12, "{facade:?}");
    let send = &paths["/twilio/v1/Services/{service}/Sessions/{session}/Participants/{participant}/MessageInteractions"]
        ["post"];
    let form = &send["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    assert_eq!(
        form["$ref"], "#/components/schemas/MessageInteractionForm",
        "{send}"
    );
    assert!(send["responses"]["201"].is_object(), "{send}");
    let schemas = &document["components"]["schemas"];
    for key in [
        "InterceptCallbackUrl",
        "OutOfSessionCallbackUrl",
        "CallbackUrl",
    ] {
        assert!(
            schemas["ServiceForm"]["properties"][key].is_object(),
            "{key}"
        );
    }
    assert!(schemas["Session"]["properties"]["closed_reason"].is_object());
    assert!(schemas["Meta"]["properties"]["next_page_url"].is_object());
    assert!(document["components"]["securitySchemes"]["twilio_basic"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_is_off_without_an_account_sid() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;
    let response = client()
        .get(format!("{}/twilio/v1/Services", daemon.url))
        .basic_auth(ACCOUNT, Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 20404, "{body}");
    let document = daemon.get("/api/v1/openapi.json").await;
    let paths = document["paths"].as_object().expect("paths");
    assert!(
        !paths.keys().any(|p| p.starts_with("/twilio/")),
        "the document lists only what is served"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[twilio] account_sid"),
        "{body}"
    );
}
