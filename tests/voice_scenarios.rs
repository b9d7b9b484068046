//! Masked calls end to end, the flows of issue 6 that `voice_e2e` and
//! `calls_e2e` leave out: conferences ended from either side, strangers
//! forwarded to the operator, switched-off and barred participants, sessions
//! that carry no calls, several proxies and sessions at once, mixed banks,
//! unplugs, a lost `OK`, daemon restarts mid-call, and what the API, the
//! live feed and the metrics say of it all. `simmask sim` and `simmask run`
//! run as processes talking AT through ptys; the handsets are driven
//! through the simulator's control API, and the modem's trace shows what
//! the daemon sent.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, Sim, client, free_port, start_bank, write_config};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";

/// A copy of the shipped profiles in which no network offers explicit call
/// transfer (`+CHLD=4`), so every SIM bridges by conference.
fn profiles_without_transfer(dir: &Path) -> std::path::PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-config");
    for entry in std::fs::read_dir(shipped).expect("firmware-config") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("profile");
        let text = text.replace(", \"3\", \"4\"]", ", \"3\"]");
        std::fs::write(profiles.join(path.file_name().expect("name")), text).expect("write");
    }
    profiles
}

/// The simulator and the daemon on one SIM whose network bridges by
/// conference only.
async fn conference_bank(dir: &Path) -> (Sim, Daemon) {
    let profiles = profiles_without_transfer(dir);
    // The simulated network still offers transfer: the daemon's profile,
    // which the operator controls, is what rules it out.
    let sim = Sim::start(dir, 1, "quectel-ec25");
    let port = free_port();
    let config = write_config(dir, &sim, port, "");
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "[modems]\n",
        &format!("[modems]\nprofiles_dir = \"{}\"\n", profiles.display()),
    );
    std::fs::write(&config, text).expect("config");
    let daemon = Daemon::start(&config, port, 1).await;
    (sim, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_ends_for_both_whichever_side_hangs_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = conference_bank(dir.path()).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    // A calls, B answers, then B (the callee) hangs up: the modem, still in
    // the conference, clears A's leg.
    sim.bridge(&proxy, A, B).await;
    // They talk for a while: the record's duration covers it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.act(B, "hangup", json!({})).await;
    let released = sim
        .wait_call(A, "was released", |c| c["state"] == "idle")
        .await;
    assert_eq!(released["last_end"], "remote_hung_up", "{released}");
    let calls = daemon.wait_calls(&id, 1).await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    assert_eq!(calls[0]["from_participant"], 0, "{calls:?}");
    let talked = calls[0]["duration_seconds"].as_f64().unwrap_or_default();
    assert!(
        talked >= 1.0,
        "a conference lasts until the hang-up: {calls:?}"
    );

    // The modem is free again: B calls A the other way and hangs up first.
    sim.bridge(&proxy, B, A).await;
    sim.act(B, "hangup", json!({})).await;
    sim.wait_call(A, "was released", |c| c["state"] == "idle")
        .await;
    let calls = daemon.wait_calls(&id, 2).await;
    assert_eq!(calls[1]["outcome"], "completed", "{calls:?}");
    assert_eq!(calls[1]["from_participant"], 1, "{calls:?}");
    for call in &calls {
        assert!(!call["answered_at"].is_null(), "{call}");
        assert!(!call["ended_at"].is_null(), "{call}");
        assert!(call["duration_seconds"].as_f64().is_some(), "{call}");
    }
}

/// Reads `/api/v1/events` until an event of `kind` arrives (20 s at most);
/// returns the data of every event seen by then.
async fn events_until(mut feed: reqwest::Response, kind: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, feed.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event; saw {seen:?}"))
            .expect("event stream");
        let chunk = chunk.unwrap_or_else(|| panic!("the feed ended before {kind}: {seen:?}"));
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Server-sent events are separated by a blank line.
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let mut event = None;
            let mut data = None;
            for line in message.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event = Some(value.trim().to_string());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(value.trim()).ok();
                }
            }
            if let Some(data) = data {
                seen.push(data);
            }
            if event.as_deref() == Some(kind) {
                return seen;
            }
        }
    }
}

async fn subscribe(daemon: &Daemon) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("event feed");
    assert!(response.status().is_success(), "{}", response.status());
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_forwarded_to_the_operator_and_the_operator_never_loops() {
    const STRANGER: &str = "+447400123456";
    const OPERATOR: &str = "+447911000100";
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "quectel-ec25",
        &format!("[out_of_session]\npolicy = \"forward\"\nto = \"{OPERATOR}\"\n"),
    )
    .await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let feed = subscribe(&daemon).await;

    // The stranger reaches the operator, who sees the proxy, not the
    // stranger; the session's participants are left alone.
    sim.bridge(&proxy, STRANGER, OPERATOR).await;
    for number in [A, B] {
        assert_eq!(sim.call_state(number).await["state"], "idle", "{number}");
    }
    let operator = sim.call_state(OPERATOR).await;
    assert!(
        !operator["notifications"].to_string().contains(STRANGER),
        "the operator was shown the stranger: {operator}"
    );
    sim.act(STRANGER, "hangup", json!({})).await;
    sim.wait_call(OPERATOR, "hung up too", |c| c["state"] == "idle")
        .await;
    let events = events_until(feed, "call_ended").await;
    let ended = events.last().expect("call_ended");
    assert!(
        ended.to_string().contains("completed"),
        "the forwarded call was a conference until the hang-up: {ended}"
    );
    assert!(
        !ended.to_string().contains(&STRANGER[4..]),
        "no number in the event: {ended}"
    );

    // The operator calling the proxy is not forwarded to themselves.
    sim.act(OPERATOR, "dial", json!({"to": proxy})).await;
    let refused = sim
        .wait_call(OPERATOR, "was refused", |c| {
            c["state"] == "idle" && !c["last_end"].is_null()
        })
        .await;
    assert_eq!(refused["connected_to"], json!([]), "{refused}");
    for number in [A, B, STRANGER] {
        assert_eq!(sim.call_state(number).await["state"], "idle", "{number}");
    }
}

async fn set_state(sim: &Sim, number: &str, state: Value) {
    let response = sim.put(&format!("/handsets/{number}/state"), state).await;
    assert!(
        response.status().is_success(),
        "state of {number}: {}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_or_barred_participant_releases_the_caller_as_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 1, "simcom-sim800", "").await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    let states = [
        json!({"power": "off", "barred": false}),
        json!({"power": "on", "barred": true}),
    ];
    for (n, state) in states.into_iter().enumerate() {
        set_state(&sim, B, state.clone()).await;
        sim.act(A, "dial", json!({"to": proxy})).await;
        let released = sim
            .wait_call(A, "was released", |c| {
                c["state"] == "idle" && !c["last_end"].is_null()
            })
            .await;
        assert_eq!(released["connected_to"], json!([]), "{state}: {released}");
        assert_eq!(sim.call_state(B).await["state"], "idle", "{state}");
        let calls = daemon.wait_calls(&id, n + 1).await;
        assert_eq!(calls[n]["outcome"], "unreachable", "{state}: {calls:?}");
        assert!(calls[n]["answered_at"].is_null(), "{calls:?}");
        // The next dial must find the first call's end, not this one's.
        sim.act(A, "hangup", json!({})).await;
    }

    // B back on and reachable: the same session bridges again, and the
    // conference is recorded when it ends.
    set_state(&sim, B, json!({"power": "on", "barred": false})).await;
    sim.bridge(&proxy, A, B).await;
    sim.act(A, "hangup", json!({})).await;
    let calls = daemon.wait_calls(&id, 3).await;
    assert_eq!(calls[2]["outcome"], "completed", "{calls:?}");
    // The metrics count calls by outcome.
    let metrics = client()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for line in [
        "simmask_calls_total{outcome=\"unreachable\"} 2",
        "simmask_calls_total{outcome=\"completed\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line}:\n{metrics}");
    }
}

async fn close(daemon: &Daemon, session: &str) {
    let response = client()
        .delete(format!("{}/api/v1/sessions/{session}", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("close");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The AT commands the daemon sent to modem `index` (the simulator's trace).
async fn commands_sent(sim: &Sim, index: usize) -> Vec<String> {
    let trace: Value = client()
        .get(format!("{}/modems/{index}/trace", sim.control))
        .send()
        .await
        .expect("trace")
        .json()
        .await
        .expect("trace JSON");
    trace
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["dir"] == "rx")
        .filter_map(|entry| entry["line"].as_str().map(str::to_string))
        .collect()
}

/// How many `AT+CLCC` the daemon sent to modem 0.
async fn snapshots(sim: &Sim) -> usize {
    commands_sent(sim, 0)
        .await
        .iter()
        .filter(|line| *line == "AT+CLCC")
        .count()
}

/// `caller` dials the proxy and is hung up on; the proxy dials nobody.
async fn refused_without_dialing(sim: &Sim, proxy: &str, caller: &str, why: &str) {
    sim.act(caller, "dial", json!({"to": proxy})).await;
    let refused = sim
        .wait_call(caller, "was refused", |c| {
            c["state"] == "idle" && !c["last_end"].is_null()
        })
        .await;
    assert_eq!(refused["connected_to"], json!([]), "{why}: {refused}");
    let dials: Vec<String> = commands_sent(sim, 0)
        .await
        .into_iter()
        .filter(|line| line.starts_with("ATD"))
        .collect();
    assert_eq!(dials, Vec::<String>::new(), "{why}: the proxy dialled out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_only_closed_and_expired_sessions_bridge_no_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;

    let sms_only = daemon.open_session(A, B, json!({"mode": "sms"})).await;
    let proxy = sms_only["proxy_number"]
        .as_str()
        .expect("proxy")
        .to_string();
    refused_without_dialing(&sim, &proxy, A, "an SMS-only session").await;
    assert_eq!(sim.call_state(B).await["state"], "idle");
    // The session's history says why.
    let calls = daemon
        .wait_calls(sms_only["id"].as_str().expect("id"), 1)
        .await;
    assert_eq!(calls[0]["outcome"], "rejected", "{calls:?}");
    assert_eq!(
        calls[0]["reason"], "the session does not carry calls",
        "{calls:?}"
    );

    close(&daemon, sms_only["id"].as_str().expect("id")).await;
    refused_without_dialing(&sim, &proxy, B, "a closed session").await;

    let short = daemon
        .open_session(A, B, json!({"mode": "voice", "ttl_seconds": 1}))
        .await;
    assert_eq!(short["proxy_number"], proxy.as_str());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    refused_without_dialing(&sim, &proxy, A, "an expired session").await;
    let session = daemon
        .get(&format!(
            "/api/v1/sessions/{}",
            short["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(session["status"], "expired", "{session}");

    // A fresh voice session does dial out, as the trace shows.
    daemon.open_session(A, B, json!({"mode": "voice"})).await;
    sim.bridge(&proxy, A, B).await;
    let sent = commands_sent(&sim, 0).await;
    assert!(sent.iter().any(|line| line.starts_with("ATD")), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_two_proxies_at_once_never_cross() {
    const C: &str = "+447913445566";
    const D: &str = "+447400123456";
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 2, "quectel-ec25,simcom-sim800", "").await;
    let first = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let second = daemon.open_session(C, D, json!({"mode": "voice"})).await;
    let p1 = first["proxy_number"].as_str().expect("proxy").to_string();
    let p2 = second["proxy_number"].as_str().expect("proxy").to_string();
    assert_ne!(p1, p2, "the least loaded SIM takes the second session");

    // A and C dial their proxies together; each callee sees its own proxy
    // and talks only to its own caller.
    tokio::join!(
        sim.act(A, "dial", json!({"to": p1})),
        sim.act(C, "dial", json!({"to": p2})),
    );
    let ring_b = sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    let ring_d = sim.wait_call(D, "rang", |c| c["state"] == "ringing").await;
    assert_eq!(ring_b["caller_id"], p1.as_str());
    assert_eq!(ring_d["caller_id"], p2.as_str());
    sim.act(D, "answer", json!({})).await;
    sim.act(B, "answer", json!({})).await;
    for (number, other) in [(A, B), (B, A), (C, D), (D, C)] {
        sim.wait_call(number, "heard its partner", |c| {
            c["connected_to"] == json!([other])
        })
        .await;
    }
    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "hung up too", |c| c["state"] == "idle")
        .await;
    assert_eq!(sim.call_state(D).await["connected_to"], json!([C]));
    sim.act(D, "hangup", json!({})).await;
    sim.wait_call(C, "hung up too", |c| c["state"] == "idle")
        .await;

    // C and D are done; A and C open a session, which the masking rule
    // keeps off A's proxy. Whoever calls A shows the proxy of their own
    // session.
    close(&daemon, second["id"].as_str().expect("id")).await;
    let third = daemon.open_session(A, C, json!({"mode": "voice"})).await;
    assert_eq!(third["proxy_number"], p2.as_str(), "A already uses {p1}");
    for (caller, proxy) in [(B, &p1), (C, &p2)] {
        sim.act(caller, "dial", json!({"to": proxy})).await;
        let ringing = sim.wait_call(A, "rang", |c| c["state"] == "ringing").await;
        assert_eq!(ringing["caller_id"], proxy.as_str(), "call from {caller}");
        sim.act(A, "answer", json!({})).await;
        sim.wait_call(caller, "heard A", |c| c["connected_to"] == json!([A]))
            .await;
        sim.act(A, "hangup", json!({})).await;
        sim.wait_call(caller, "hung up too", |c| c["state"] == "idle")
            .await;
    }
}

async fn plug(sim: &Sim, index: usize, action: &str) {
    let response = sim
        .post(&format!("/modems/{index}/{action}"), json!({}))
        .await;
    assert!(
        response.status().is_success(),
        "{action} modem {index}: {}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplug_spares_a_transferred_call_and_ends_a_ringing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(dir.path(), 1, "generic");
    let daemon = Daemon::start_on(dir.path(), &sim, &sim.transfer_opt_in()).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    // After the transfer the network carries the call without the modem:
    // pulling the modem out does not cut A and B off.
    sim.bridge(&proxy, A, B).await;
    let calls = daemon.wait_calls(&id, 1).await;
    assert_eq!(calls[0]["outcome"], "transferred", "{calls:?}");
    plug(&sim, 0, "unplug").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (number, other) in [(A, B), (B, A)] {
        let call = sim.call_state(number).await;
        assert_eq!(call["connected_to"], json!([other]), "{number}: {call}");
    }
    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "hung up too", |c| c["state"] == "idle")
        .await;
    plug(&sim, 0, "plug").await;
    daemon.wait_ready(1).await;

    // Unplugged while B's phone rings: both of the proxy's legs drop, and
    // the call is recorded as failed.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    plug(&sim, 0, "unplug").await;
    for number in [A, B] {
        sim.wait_call(number, "was dropped", |c| c["state"] == "idle")
            .await;
    }
    let calls = daemon.wait_calls(&id, 2).await;
    assert_eq!(calls[1]["outcome"], "failed", "{calls:?}");
    assert_eq!(
        calls[1]["reason"], "the modem went away mid-call",
        "{calls:?}"
    );
    assert!(calls[1]["answered_at"].is_null(), "{calls:?}");

    // Back in: the SIM bridges again.
    plug(&sim, 0, "plug").await;
    daemon.wait_ready(1).await;
    sim.bridge(&proxy, B, A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_sessions_go_only_to_sims_that_can_bridge() {
    const C: &str = "+447913445566";
    const D: &str = "+447400123456";
    let dir = tempfile::tempdir().expect("tempdir");
    // Modem 0's network offers neither multiparty nor transfer.
    let sim = Sim::start(dir.path(), 2, "huawei-e173,quectel-ec25");
    let cannot = sim.msisdn(0);
    let can = sim.msisdn(1);
    let daemon = Daemon::start_on(dir.path(), &sim, "").await;

    // The API says which SIM bridges, and how.
    let numbers = daemon.get("/api/v1/numbers").await;
    let method_of = |msisdn: &str| {
        numbers
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["msisdn"] == msisdn)
            .map(|n| n["voice_method"].clone())
    };
    assert_eq!(method_of(&cannot), Some(Value::Null), "{numbers}");
    assert_eq!(method_of(&can), Some(json!("conference")), "{numbers}");

    // Two voice sessions both land on the SIM that can bridge, though it
    // is then the busier one; an SMS session may use the other.
    let first = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let second = daemon.open_session(C, D, json!({"mode": "both"})).await;
    assert_eq!(first["proxy_number"], can.as_str());
    assert_eq!(second["proxy_number"], can.as_str());
    let texts = daemon.open_session(A, C, json!({"mode": "sms"})).await;
    assert_eq!(texts["proxy_number"], cannot.as_str());

    // A voice session with A or B again has no proxy left: the reason says
    // the other SIM cannot bridge.
    let response = client()
        .post(format!("{}/api/v1/sessions", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"participants": [A, D], "mode": "voice"}))
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot bridge calls")),
        "{body}"
    );

    // A call to the SMS-only proxy reaches nobody; the voice proxy bridges.
    sim.act(A, "dial", json!({"to": cannot})).await;
    sim.wait_call(A, "was refused", |c| {
        c["state"] == "idle" && !c["last_end"].is_null()
    })
    .await;
    assert_eq!(sim.call_state(C).await["state"], "idle");
    sim.bridge(&can, D, C).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_are_relayed_while_the_proxy_holds_a_conference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = conference_bank(dir.path()).await;
    let session = daemon.open_session(A, B, json!({"mode": "both"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    // The modem stays in the conference while A and B talk; their texts
    // through the same proxy still go both ways.
    sim.bridge(&proxy, A, B).await;
    sim.handset_sms(A, &proxy, "during the call, from A").await;
    sim.handset_sms(B, &proxy, "during the call, from B").await;
    let at_b = sim.wait_messages(B, 1, Duration::from_secs(20)).await;
    let at_a = sim.wait_messages(A, 1, Duration::from_secs(20)).await;
    assert_eq!(at_b[0]["from"], proxy.as_str(), "{at_b:?}");
    assert_eq!(at_b[0]["text"], "during the call, from A");
    assert_eq!(at_a[0]["from"], proxy.as_str(), "{at_a:?}");
    assert_eq!(at_a[0]["text"], "during the call, from B");
    for (number, other) in [(A, B), (B, A)] {
        let call = sim.call_state(number).await;
        assert_eq!(call["connected_to"], json!([other]), "{number}: {call}");
    }

    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "was released", |c| c["state"] == "idle")
        .await;
    let calls = daemon.wait_calls(&id, 1).await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
}

async fn set_faults(sim: &Sim, index: usize, faults: Value) {
    let response = sim.post(&format!("/modems/{index}/faults"), faults).await;
    assert!(
        response.status().is_success(),
        "faults: {}",
        response.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_modem_is_reconciled_and_the_call_still_bridges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(dir.path(), 1, "quectel-ec25");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    // No health polls: the next command after the fault is the call's own.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("poll_interval_seconds = 2", "poll_interval_seconds = 3600");
    std::fs::write(&config, text).expect("config");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    // The daemon reads the modem's calls twice when it starts (the driver's
    // init, then the voice desk): the fault must not hit those.
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshots(&sim).await < 2 {
        assert!(Instant::now() < deadline, "the daemon never read the calls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The modem answers A, but its `OK` to `ATA` is lost on a noisy line.
    // The bridge waits the command out (20 s), then the `+CLCC` snapshot
    // shows A answered, and it goes on.
    set_faults(
        &sim,
        0,
        json!({"drop_responses": 1, "noise": true, "urc_mid_response": true}),
    )
    .await;
    sim.act(A, "dial", json!({"to": proxy})).await;
    let ringing = sim
        .wait_call_within(B, "rang", Duration::from_secs(40), |c| {
            c["state"] == "ringing"
        })
        .await;
    assert_eq!(ringing["caller_id"], proxy.as_str());
    sim.act(B, "answer", json!({})).await;
    for (number, other) in [(A, B), (B, A)] {
        sim.wait_call(number, "heard the other", |c| {
            c["connected_to"] == json!([other])
        })
        .await;
    }
    sim.act(B, "hangup", json!({})).await;
    sim.wait_call(A, "was released", |c| c["state"] == "idle")
        .await;
    let calls = daemon.wait_calls(&id, 1).await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    let faults: Value = client()
        .get(format!("{}/modems/0/faults", sim.control))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("faults JSON");
    assert_eq!(faults["drop_responses"], 0, "the fault was spent: {faults}");
    // It was `ATA`'s answer that was lost: the snapshot came next.
    let sent = commands_sent(&sim, 0).await;
    let after_answer: Vec<&String> = sent
        .iter()
        .skip_while(|line| *line != "ATA")
        .skip(1)
        .take(2)
        .collect();
    assert_eq!(after_answer, ["AT+CLCC", "AT+CHLD=2"], "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_left_by_a_restarted_daemon_is_still_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, mut daemon) = conference_bank(dir.path()).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();

    // The daemon stops mid-conference; the network keeps the call up.
    sim.bridge(&proxy, A, B).await;
    assert!(daemon.process.terminate(), "the daemon stops cleanly");
    let snapshots_before = snapshots(&sim).await;
    let port: u16 = daemon
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // The restarted daemon is kept alive to the end of the test.
    let restarted = Daemon::start(&daemon.config, port, 1).await;
    // Back up, the daemon reads the modem's calls: a conference between the
    // two sides is theirs, and is left alone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while snapshots(&sim).await <= snapshots_before {
        assert!(
            Instant::now() < deadline,
            "the restarted daemon never read the calls"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (number, other) in [(A, B), (B, A)] {
        let call = sim.call_state(number).await;
        assert_eq!(call["connected_to"], json!([other]), "{number}: {call}");
    }
    // The new daemon found the call's session: the call is in its control
    // again (the session shows it, and could end it).
    let id = session["id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = restarted.get(&format!("/api/v1/sessions/{id}")).await;
        if view["call"]["state"] == "bridged" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call was not taken back: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A hangs up: the new daemon, which never saw the call begin, still
    // clears B's leg rather than leaving B on the line with nobody.
    sim.act(A, "hangup", json!({})).await;
    let released = sim
        .wait_call(B, "was released", |c| c["state"] == "idle")
        .await;
    assert_eq!(released["last_end"], "remote_hung_up", "{released}");
    let calls = restarted.wait_calls(id, 1).await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    sim.bridge(&proxy, B, A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_whose_session_closed_while_the_daemon_was_down_ends_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let mut daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();
    sim.bridge(&proxy, A, B).await;
    assert!(daemon.process.terminate(), "the daemon stops cleanly");
    // The operator closes the session from the shell meanwhile.
    let closed = std::process::Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["session", "close", &id, "--config"])
        .arg(&config)
        .output()
        .expect("simmask session close");
    assert!(closed.status.success(), "{closed:?}");
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));

    // Back up, the daemon finds the conference, finds no session for it,
    // and ends it for both.
    let _restarted = Daemon::start(&config, port, 1).await;
    for number in [A, B] {
        let call = sim
            .wait_call(number, "was hung up on", |c| c["state"] == "idle")
            .await;
        assert_eq!(call["last_end"], "remote_hung_up", "{number}: {call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_half_made_when_the_daemon_died_is_released_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();

    // The daemon dies while B's phone rings and A waits on hold.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    daemon.process.signal(nix::sys::signal::Signal::SIGKILL);
    drop(daemon);
    assert_eq!(sim.call_state(A).await["state"], "held");

    // Back up, it finds the modem's calls that nobody bridges and releases
    // them, rather than leaving A on hold and B ringing for nothing.
    let _restarted = Daemon::start(&config, port, 1).await;
    for number in [A, B] {
        let call = sim
            .wait_call(number, "was released", |c| c["state"] == "idle")
            .await;
        assert_eq!(call["last_end"], "remote_hung_up", "{number}: {call}");
    }
    sim.bridge(&proxy, A, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_caller_while_the_other_side_rings_is_refused_and_never_joins() {
    const C: &str = "+447913445566";
    const D: &str = "+447400123456";
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;
    let first = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let second = daemon.open_session(C, D, json!({"mode": "voice"})).await;
    let proxy = first["proxy_number"].as_str().expect("proxy").to_string();
    assert_eq!(
        second["proxy_number"],
        proxy.as_str(),
        "one SIM, two sessions"
    );

    // A's call is being put through: B's phone rings, A waits on hold.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    // C calls the same proxy now: refused, and D's phone never rings.
    sim.act(C, "dial", json!({"to": proxy})).await;
    let refused = sim
        .wait_call(C, "was refused", |c| {
            c["state"] == "idle" && !c["last_end"].is_null()
        })
        .await;
    assert_eq!(refused["connected_to"], json!([]), "{refused}");
    assert_eq!(sim.call_state(D).await["state"], "idle");
    let dials: Vec<String> = commands_sent(&sim, 0)
        .await
        .into_iter()
        .filter(|line| line.starts_with("ATD"))
        .collect();
    assert_eq!(dials, [format!("ATD{B};")], "only B was dialled");

    // B answers and talks to A alone.
    assert_eq!(sim.call_state(B).await["state"], "ringing");
    sim.act(B, "answer", json!({})).await;
    for (number, other) in [(A, B), (B, A)] {
        sim.wait_call(number, "heard the other", |c| {
            c["connected_to"] == json!([other])
        })
        .await;
    }
    // While they talk, C is refused again and D's phone stays quiet.
    sim.act(C, "dial", json!({"to": proxy})).await;
    sim.wait_call(C, "was refused", |c| {
        c["state"] == "idle" && !c["last_end"].is_null()
    })
    .await;
    assert_eq!(sim.call_state(D).await["state"], "idle");
    assert_eq!(sim.call_state(A).await["connected_to"], json!([B]));
    sim.act(A, "hangup", json!({})).await;
    sim.wait_call(B, "was released", |c| c["state"] == "idle")
        .await;
    let calls = daemon
        .wait_calls(first["id"].as_str().expect("id"), 1)
        .await;
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    // C's session shows both refused calls, as C's.
    let refused = daemon
        .wait_calls(second["id"].as_str().expect("id"), 2)
        .await;
    for call in &refused {
        assert_eq!(call["outcome"], "second_call_rejected", "{refused:?}");
        assert_eq!(call["from_participant"], 0, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_releases_the_caller_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 1, "simcom-sim800", "").await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();
    let id = session["id"].as_str().expect("id").to_string();

    // B sees the proxy ringing and rejects it: A is released well before
    // any ring timeout, and the record says B did not take the call.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rang", |c| c["state"] == "ringing").await;
    sim.act(B, "hangup", json!({})).await;
    let released = sim
        .wait_call_within(A, "was released", Duration::from_secs(10), |c| {
            c["state"] == "idle"
        })
        .await;
    assert_eq!(released["connected_to"], json!([]), "{released}");
    let calls = daemon.wait_calls(&id, 1).await;
    // A rejected call comes back to the caller as user busy (TS 24.008
    // cause 17), which the modem reports as `BUSY`.
    assert_eq!(calls[0]["outcome"], "busy", "{calls:?}");
    assert!(calls[0]["answered_at"].is_null(), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_transfer_the_sim_bridges_the_next_call_while_the_first_goes_on() {
    const C: &str = "+447913445566";
    const D: &str = "+447400123456";
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(dir.path(), 1, "quectel-ec25");
    let daemon = Daemon::start_on(dir.path(), &sim, &sim.transfer_opt_in()).await;
    let first = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let second = daemon.open_session(C, D, json!({"mode": "voice"})).await;
    let proxy = first["proxy_number"].as_str().expect("proxy").to_string();
    assert_eq!(
        second["proxy_number"],
        proxy.as_str(),
        "one SIM, two sessions"
    );

    // A and B talk through the network alone; the same SIM then puts C
    // through to D, and the two conversations stay apart.
    sim.bridge(&proxy, A, B).await;
    sim.bridge(&proxy, C, D).await;
    for (number, other) in [(A, B), (B, A), (C, D), (D, C)] {
        let call = sim.call_state(number).await;
        assert_eq!(call["connected_to"], json!([other]), "{number}: {call}");
        assert_eq!(call["caller_id"], proxy.as_str(), "{number}: {call}");
    }
    sim.act(B, "hangup", json!({})).await;
    sim.wait_call(A, "hung up too", |c| c["state"] == "idle")
        .await;
    assert_eq!(sim.call_state(C).await["connected_to"], json!([D]));
    for session in [&first, &second] {
        let calls = daemon
            .wait_calls(session["id"].as_str().expect("id"), 1)
            .await;
        assert_eq!(calls[0]["outcome"], "transferred", "{calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_participants_calling_the_proxy_at_once_never_strands_anyone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().expect("proxy").to_string();

    // A and B call the proxy together: the SIM takes one call, refuses the
    // other, and then rings whoever it refused.
    tokio::join!(
        sim.act(A, "dial", json!({"to": proxy})),
        sim.act(B, "dial", json!({"to": proxy})),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (ringing, caller) = loop {
        let (a, b) = (sim.call_state(A).await, sim.call_state(B).await);
        if a["state"] == "ringing" {
            break (A, B);
        }
        if b["state"] == "ringing" {
            break (B, A);
        }
        assert!(Instant::now() < deadline, "nobody rang: {a} {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sim.call_state(ringing).await["caller_id"], proxy.as_str());
    sim.act(ringing, "answer", json!({})).await;
    for (number, other) in [(caller, ringing), (ringing, caller)] {
        sim.wait_call(number, "heard the other", |c| {
            c["connected_to"] == json!([other])
        })
        .await;
    }
    sim.act(caller, "hangup", json!({})).await;
    sim.wait_call(ringing, "hung up too", |c| c["state"] == "idle")
        .await;
    sim.bridge(&proxy, A, B).await;
}
