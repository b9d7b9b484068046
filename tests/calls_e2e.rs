//! Masked calls end to end, as separate processes: `simmask sim` (the
//! virtual network) and `simmask run` (the daemon) talking AT through ptys:
//! the flows of issue 6 beyond `tests/voice_e2e.rs` (busy, caller gives up,
//! a second caller, an unplug mid-call, a SIM that cannot bridge), and the
//! appliance in control of the conferences it holds (issue 16): the
//! operator's "end call", a session closed or expired mid-call, and the
//! maximum call duration each end the call for both sides.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, client, free_port, start_bank, write_config};
use serde_json::{Value, json};

const A: &str = "+447911223344";
const B: &str = "+447912334455";
const C: &str = "+447913445566";
const STRANGER: &str = "+447400998877";

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
    let daemon = Daemon::start_on(dir.path(), &sim, "").await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    // C and D have their own session on the same proxy.
    let other = daemon
        .open_session(C, STRANGER, json!({"mode": "voice"}))
        .await;
    assert_eq!(other["proxy_number"], proxy.as_str());

    // B busy (in a call with a handset outside the session): A is released.
    sim.act(C, "dial", json!({"to": B})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    sim.act(B, "answer", json!({})).await;
    sim.act(A, "dial", json!({"to": proxy})).await;
    let released = sim
        .wait_call(A, "was released", |c| {
            c["state"] == "idle" && c["last_end"] == "remote_hung_up"
        })
        .await;
    assert_eq!(released["connected_to"], json!([]));
    let calls = daemon.wait_calls(&id, 1).await;
    // The modem's `BUSY` reaches the desk as "calls changed": the record
    // says the other side could not be reached.
    let outcome = calls[0]["outcome"].as_str().unwrap_or_default();
    assert_eq!(outcome, "busy", "{calls:?}");
    sim.act(B, "hangup", json!({})).await;

    // The caller gives up while B rings: B's phone stops at once.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "stopped ringing", |c| c["state"] == "idle")
        .await;
    let calls = daemon.wait_calls(&id, 2).await;
    assert_eq!(calls[1]["outcome"], "caller_hung_up", "{calls:?}");

    // While A and B talk, C's call to the same proxy is refused and never
    // joins them.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    sim.act(B, "answer", json!({})).await;
    sim.wait_call(A, "heard B", |c| c["connected_to"] == json!([B]))
        .await;
    sim.act(C, "dial", json!({"to": proxy})).await;
    let refused = sim
        .wait_call(C, "was refused", |c| {
            c["state"] == "idle" && !c["last_end"].is_null()
        })
        .await;
    assert_eq!(refused["connected_to"], json!([]));
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));
    assert_eq!(sim.call_state(B).await["connected_to"], json!([A]));
    assert_eq!(sim.call_state(STRANGER).await["state"], "idle");

    // The modem is unplugged mid-call: both legs drop.
    let response = sim.post("/modems/0/unplug", json!({})).await;
    assert!(response.status().is_success());
    for number in [A, B] {
        let call = sim
            .wait_call(number, "was dropped", |c| c["state"] == "idle")
            .await;
        assert_eq!(call["last_end"], "remote_hung_up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_that_cannot_bridge_gets_no_voice_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, daemon) = start_bank(dir.path(), 1, "huawei-e173", "").await;
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

/// The modem's calls as the network has them (`[]`: the modem is idle).
async fn modem_calls(sim: &Sim, index: usize) -> Value {
    client()
        .get(format!("{}/modems/{index}/calls", sim.control))
        .send()
        .await
        .expect("sim control")
        .json()
        .await
        .expect("calls JSON")
}

/// `caller` dials the proxy and `callee` answers: they talk in the muted
/// conference the appliance holds, which the session shows as its call.
async fn conference(sim: &Sim, daemon: &Daemon, session: &str, caller: &str, callee: &str) {
    let proxy = daemon.get(&format!("/api/v1/sessions/{session}")).await["proxy_number"]
        .as_str()
        .expect("proxy")
        .to_string();
    sim.bridge(&proxy, caller, callee).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = daemon.get(&format!("/api/v1/sessions/{session}")).await;
        if view["call"]["state"] == "bridged" {
            assert_eq!(view["call"]["method"], "conference", "{view}");
            assert!(!view["call"]["answered_at"].is_null(), "{view}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session shows no call: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both participants' phones are hung up on, the modem holds no call, and
/// the call's interaction says why it ended.
async fn ended_for_both(
    sim: &Sim,
    daemon: &Daemon,
    session: &str,
    parties: [&str; 2],
    count: usize,
    outcome: &str,
    reason: &str,
) {
    for number in parties {
        let call = sim
            .wait_call(number, "was hung up on", |c| c["state"] == "idle")
            .await;
        assert_eq!(call["last_end"], "remote_hung_up", "{number}: {call}");
    }
    assert_eq!(modem_calls(sim, 0).await, json!([]), "the modem is idle");
    let calls = daemon.wait_calls(session, count).await;
    let call = &calls[count - 1];
    assert_eq!(call["outcome"], outcome, "{calls:?}");
    assert_eq!(call["reason"], reason, "{calls:?}");
    assert_eq!(call["status"], "bridged", "they had talked: {calls:?}");
    assert!(call["duration_seconds"].as_f64().is_some(), "{calls:?}");
    let view = daemon.get(&format!("/api/v1/sessions/{session}")).await;
    assert_eq!(view["call"], Value::Null, "{view}");
}

async fn end_call(daemon: &Daemon, session: &str, token: &str) -> (u16, Value) {
    let response = client()
        .post(format!(
            "{}/api/v1/sessions/{session}/calls/end",
            daemon.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("api");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn simmask_cli(config: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("simmask runs");
    assert!(
        output.status.success(),
        "simmask {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_ends_a_call_for_both_sides_from_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(session["call"], Value::Null, "{session}");
    // No call yet: nothing to end.
    let (status, body) = end_call(&daemon, &id, common::ADMIN_TOKEN).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("no_call")),
        "{body}"
    );

    conference(&sim, &daemon, &id, A, B).await;
    // The session list shows the call too, also to viewers, who may not end it.
    let list = daemon.get("/api/v1/sessions?status=open").await;
    assert_eq!(list["sessions"][0]["call"]["state"], "bridged", "{list}");
    let created = simmask_cli(&config, &["token", "create", "watcher", "--role", "viewer"]);
    let created: Value = serde_json::from_str(&created).expect("token JSON");
    let viewer = created["token"].as_str().expect("token").to_string();
    let (status, body) = end_call(&daemon, &id, &viewer).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));

    let (status, ended) = end_call(&daemon, &id, common::ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["outcome"], "ended_by_operator", "{ended}");
    assert_eq!(ended["session_id"], id.as_str(), "{ended}");
    ended_for_both(
        &sim,
        &daemon,
        &id,
        [A, B],
        1,
        "ended_by_operator",
        "ended by the operator (bootstrap)",
    )
    .await;
    let (status, _) = end_call(&daemon, &id, common::ADMIN_TOKEN).await;
    assert_eq!(status, 409, "nothing left to end");
    let (status, body) = end_call(&daemon, "ses_nosuchsession", common::ADMIN_TOKEN).await;
    assert_eq!(status, 404, "{body}");

    // The session stays open: they may call again.
    conference(&sim, &daemon, &id, B, A).await;
    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "was released", |c| c["state"] == "idle")
        .await;
    let calls = daemon.wait_calls(&id, 2).await;
    assert_eq!(calls[1]["outcome"], "completed", "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_or_expiring_the_session_ends_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "quectel-ec25");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;

    // Closed through the API: the call is over when the answer comes.
    let first = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let first = first["id"].as_str().unwrap().to_string();
    conference(&sim, &daemon, &first, A, B).await;
    let response = client()
        .delete(format!("{}/api/v1/sessions/{first}", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("close");
    assert!(response.status().is_success(), "{}", response.status());
    let reason = "the session was closed";
    ended_for_both(&sim, &daemon, &first, [A, B], 1, "session_ended", reason).await;

    // Closed from the shell, beside the daemon: its desk notices.
    let second = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let second = second["id"].as_str().unwrap().to_string();
    conference(&sim, &daemon, &second, B, A).await;
    simmask_cli(&config, &["session", "close", &second]);
    ended_for_both(&sim, &daemon, &second, [A, B], 1, "session_ended", reason).await;

    // Expired mid-call: the call ends with the session, at its deadline.
    let third = daemon
        .open_session(A, B, json!({"mode": "voice", "ttl_seconds": 8}))
        .await;
    let third = third["id"].as_str().unwrap().to_string();
    conference(&sim, &daemon, &third, A, B).await;
    let reason = "the session expired";
    ended_for_both(&sim, &daemon, &third, [A, B], 1, "session_ended", reason).await;
    let session = daemon.get(&format!("/api/v1/sessions/{third}")).await;
    assert_eq!(session["status"], "expired", "{session}");

    // An idle timeout shorter than the call does not cut it: a call is
    // activity.
    let fourth = daemon
        .open_session(A, B, json!({"mode": "voice", "idle_ttl_seconds": 4}))
        .await;
    let fourth = fourth["id"].as_str().unwrap().to_string();
    conference(&sim, &daemon, &fourth, A, B).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));
    let session = daemon.get(&format!("/api/v1/sessions/{fourth}")).await;
    assert_eq!(session["status"], "open", "{session}");
    sim.act(B, "hangup", json!({})).await;
    let calls = daemon.wait_calls(&fourth, 1).await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ends_for_both_at_its_maximum_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "simcom-sim800",
        "[voice]\nmax_duration_seconds = 3\n",
    )
    .await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let id = session["id"].as_str().unwrap().to_string();
    conference(&sim, &daemon, &id, A, B).await;
    let reason = "the call reached its maximum duration ([voice] max_duration_seconds)";
    ended_for_both(&sim, &daemon, &id, [A, B], 1, "max_duration", reason).await;
    let calls = daemon.wait_calls(&id, 1).await;
    let talked = calls[0]["duration_seconds"].as_f64().unwrap_or_default();
    assert!((3.0..6.0).contains(&talked), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transferred_call_is_the_network_and_cannot_be_ended() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let daemon = Daemon::start_on(dir.path(), &sim, &sim.transfer_opt_in()).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    sim.act(B, "answer", json!({})).await;
    let calls = daemon.wait_calls(&id, 1).await;
    assert_eq!(calls[0]["outcome"], "transferred", "{calls:?}");
    assert_eq!(modem_calls(&sim, 0).await, json!([]), "the modem left");
    let (status, body) = end_call(&daemon, &id, common::ADMIN_TOKEN).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("transfer"),
        "{body}"
    );
    // Closing the session does not reach it either: A and B still talk.
    let response = client()
        .delete(format!("{}/api/v1/sessions/{id}", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("close");
    assert!(response.status().is_success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));
    sim.act(A, "hangup", json!({})).await;
}
