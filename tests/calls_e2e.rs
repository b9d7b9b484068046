//! Masked calls end to end, as separate processes: `simmask sim` (the
//! virtual network) and `simmask run` (the daemon) talking AT through ptys:
//! the flows of issue 6 beyond `tests/voice_e2e.rs` (busy, caller gives up,
//! a second caller, an unplug mid-call, a SIM that cannot bridge).

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, client, free_port, write_config};
use serde_json::{Value, json};

const A: &str = "+447911223344";
const B: &str = "+447912334455";
const C: &str = "+447913445566";
const STRANGER: &str = "+447400998877";

async fn call_of(sim: &Sim, number: &str) -> Value {
    client()
        .get(format!("{}/handsets/{number}/call", sim.control))
        .send()
        .await
        .expect("sim control")
        .json()
        .await
        .expect("call JSON")
}

/// Polls a handset until `check` holds for its call (20 s at most).
async fn wait_call(sim: &Sim, number: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let call = call_of(sim, number).await;
        if check(&call) {
            return call;
        }
        assert!(Instant::now() < deadline, "{number} never {what}: {call}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn handset(sim: &Sim, number: &str, action: &str, body: Value) {
    let response = sim
        .post(&format!("/handsets/{number}/{action}"), body)
        .await;
    assert!(
        response.status().is_success(),
        "{action}: {}",
        response.text().await.unwrap_or_default()
    );
}

/// Waits for the session's call interactions to reach `count`.
async fn calls_recorded(daemon: &Daemon, session: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = daemon
            .get(&format!("/api/v1/sessions/{session}/interactions"))
            .await;
        let list = body
            .as_array()
            .or_else(|| body["interactions"].as_array())
            .cloned()
            .unwrap_or_default();
        let calls: Vec<Value> = list.into_iter().filter(|i| i["kind"] == "call").collect();
        if calls.len() >= count {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} call interactions: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_callers_give_ups_and_unplugs_never_cross_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let response = sim
        .put(
            "/modems/0/services",
            json!({"chld": ["0", "1", "1x", "2", "2x", "3"]}),
        )
        .await;
    assert!(response.status().is_success());
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    // C and D have their own session on the same proxy.
    let other = daemon
        .open_session(C, STRANGER, json!({"mode": "voice"}))
        .await;
    assert_eq!(other["proxy_number"], proxy.as_str());

    // B busy (in a call with a handset outside the session): A is released.
    handset(&sim, C, "dial", json!({"to": B})).await;
    wait_call(&sim, B, "rang", |c| c["state"] == "ringing").await;
    handset(&sim, B, "answer", json!({})).await;
    handset(&sim, A, "dial", json!({"to": proxy})).await;
    let released = wait_call(&sim, A, "was released", |c| {
        c["state"] == "idle" && c["last_end"] == "remote_hung_up"
    })
    .await;
    assert_eq!(released["connected_to"], json!([]));
    let calls = calls_recorded(&daemon, &id, 1).await;
    // The modem's `BUSY` reaches the desk as "calls changed": the record
    // says the other side could not be reached.
    let outcome = calls[0]["outcome"].as_str().unwrap_or_default();
    assert_eq!(outcome, "busy", "{calls:?}");
    handset(&sim, B, "hangup", json!({})).await;

    // The caller gives up while B rings: B's phone stops at once.
    handset(&sim, A, "dial", json!({"to": proxy})).await;
    wait_call(&sim, B, "rang", |c| c["state"] == "ringing").await;
    handset(&sim, A, "hangup", json!({})).await;
    wait_call(&sim, B, "stopped ringing", |c| c["state"] == "idle").await;
    let calls = calls_recorded(&daemon, &id, 2).await;
    assert_eq!(calls[1]["outcome"], "caller_hung_up", "{calls:?}");

    // While A and B talk, C's call to the same proxy is refused and never
    // joins them.
    handset(&sim, A, "dial", json!({"to": proxy})).await;
    wait_call(&sim, B, "rang", |c| c["state"] == "ringing").await;
    handset(&sim, B, "answer", json!({})).await;
    wait_call(&sim, A, "heard B", |c| c["connected_to"] == json!([B])).await;
    handset(&sim, C, "dial", json!({"to": proxy})).await;
    let refused = wait_call(&sim, C, "was refused", |c| {
        c["state"] == "idle" && !c["last_end"].is_null()
    })
    .await;
    assert_eq!(refused["connected_to"], json!([]));
    assert_eq!(call_of(&sim, A).await["connected_to"], json!([B]));
    assert_eq!(call_of(&sim, B).await["connected_to"], json!([A]));
    assert_eq!(call_of(&sim, STRANGER).await["state"], "idle");

    // The modem is unplugged mid-call: both legs drop.
    let response = sim.post("/modems/0/unplug", json!({})).await;
    assert!(response.status().is_success());
    for number in [A, B] {
        let call = wait_call(&sim, number, "was dropped", |c| c["state"] == "idle").await;
        assert_eq!(call["last_end"], "remote_hung_up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_that_cannot_bridge_gets_no_voice_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "huawei-e173");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let response = client()
        .post(format!("{}/api/v1/sessions", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"participants": [A, B], "mode": "voice"}))
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot bridge calls"),
        "{body}"
    );
    // SMS sessions still work on it.
    daemon.open_session(A, B, json!({"mode": "sms"})).await;
}
