//! Proxy-grade semantics and safety rails end to end, as processes:
//! `simmask sim` (handsets on a virtual network) and `simmask run` (the
//! daemon), driven through the simulator's control API and the daemon's
//! HTTP API. STOP/START, the block list, loop protection (and a
//! conversation held while the modem was away, read at once, which is no
//! loop), the front desk (SMS and calls), the fallback after expiry, and
//! the recipients budget.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Feed, Sim, start_bank, texts};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911777999";
const STAFF: &str = "+447911500500";
const STRANGER: &str = "+447400123456";
const SECOND_STRANGER: &str = "+447400654321";

async fn open(daemon: &Daemon, a: &str, b: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"participants": [a, b]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    daemon
        .api(reqwest::Method::POST, "/api/v1/sessions", body)
        .await
}

/// Waits until `done` holds for the session `id`.
async fn wait_session(daemon: &Daemon, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let session = daemon.get(&format!("/api/v1/sessions/{id}")).await;
        if done(&session) {
            return session;
        }
        assert!(Instant::now() < deadline, "session {id}: {session}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the session's interactions hold one that `done` accepts.
async fn wait_interaction(daemon: &Daemon, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = daemon
            .get(&format!("/api/v1/sessions/{id}/interactions"))
            .await;
        if let Some(found) = list.as_array().and_then(|l| l.iter().find(|i| done(i))) {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "session {id}: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `caller` dials the proxy; `callee` must ring showing the proxy, answer
/// and be connected with the caller; then both hang up.
async fn call_reaches(sim: &Sim, proxy: &str, caller: &str, callee: &str) {
    sim.bridge(proxy, caller, callee).await;
    sim.hang_up(caller, callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_the_conversation_until_start() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        "[opt_out]\nstop_keywords = [\"STOP\", \"ARRET\", \"BAJA\"]\n\
         [out_of_session]\npolicy = \"auto-reply\"\ntext = \"No conversation here.\"\n",
    )
    .await;
    let (_, session) = open(&daemon, A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "hi B").await;
    sim.wait_messages(B, 1, Duration::from_secs(30)).await;

    // B opts out with a configured equivalent, in any case and spacing.
    sim.handset_sms(B, &proxy, "  Baja ").await;
    let at_b = sim.wait_messages(B, 2, Duration::from_secs(30)).await;
    assert_eq!(
        texts(&at_b)[1],
        (
            proxy.clone(),
            "You will get no more messages from this number. Send START to undo.".into()
        )
    );
    let closed = wait_session(&daemon, &id, |s| s["status"] == "closed").await;
    assert_eq!(closed["close_reason"], "opt_out");
    // A keeps writing: nothing reaches B, not even through a new session.
    sim.handset_sms(A, &proxy, "are you there?").await;
    let (status, refused) = open(&daemon, C, B, json!({})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("opted_out")),
        "{refused}"
    );
    let (status, refused) = daemon
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("opted_out")),
        "{refused}"
    );
    // The keyword itself never reached A (A only has the auto-reply).
    let at_a = sim.wait_messages(A, 1, Duration::from_secs(30)).await;
    assert_eq!(
        texts(&at_a),
        [(proxy.clone(), "No conversation here.".into())]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sim.messages(B).await.len(), 2, "nothing more for B");

    sim.handset_sms(B, &proxy, "start").await;
    let at_b = sim.wait_messages(B, 3, Duration::from_secs(30)).await;
    assert_eq!(
        texts(&at_b)[2].1,
        "Messages from this number are back on. Send STOP to stop them."
    );
    let (status, again) = open(&daemon, A, B, json!({})).await;
    assert_eq!(status, 201, "{again}");
    sim.handset_sms(A, &proxy, "welcome back").await;
    let at_b = sim.wait_messages(B, 4, Duration::from_secs(30)).await;
    assert_eq!(texts(&at_b)[3], (proxy.clone(), "welcome back".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_list_and_loop_protection_stop_relays_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        "[loop_protection]\nmax_similar_per_hour = 3\n",
    )
    .await;
    let (_, session) = open(&daemon, A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();

    let (status, _) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/blocks",
            json!({"number": A, "reason": "test"}),
        )
        .await;
    assert_eq!(status, 201);
    sim.handset_sms(A, &proxy, "let me through").await;
    let blocked = wait_interaction(&daemon, &id, |i| i["rule"] == "block_list").await;
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    let (status, _) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/blocks/remove",
            json!({"number": A}),
        )
        .await;
    assert_eq!(status, 200);

    // Two auto-responders answer each other through the proxy.
    let mut feed = Feed::open(&daemon, None).await;
    let bounce = |n: u32| format!("Out of office until Monday (ref {n})");
    sim.handset_sms(A, &proxy, &bounce(1)).await;
    sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    sim.handset_sms(B, &proxy, &bounce(2)).await;
    sim.wait_messages(A, 1, Duration::from_secs(30)).await;
    sim.handset_sms(A, &proxy, &bounce(3)).await;
    sim.wait_messages(B, 2, Duration::from_secs(30)).await;
    sim.handset_sms(B, &proxy, &bounce(4)).await;
    let event = feed.wait_kind("loop_detected").await.data;
    assert_eq!(event["session_id"], id.as_str());
    assert!(
        event["reason"].as_str().unwrap().contains("near-identical"),
        "{event}"
    );
    let stopped = wait_session(&daemon, &id, |s| s["status"] == "closed").await;
    assert_eq!(stopped["close_reason"], "loop");
    let looped = wait_interaction(&daemon, &id, |i| i["rule"] == "loop").await;
    assert!(
        looped["reason"]
            .as_str()
            .unwrap()
            .contains("within an hour")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sim.messages(A).await.len(), 1, "the fourth bounce stayed");
    assert!(
        sim.messages(B)
            .await
            .iter()
            .all(|m| m["text"] != "let me through"),
        "the blocked message stayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_desk_pairs_strangers_with_the_staff_by_sms_and_call() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "quectel-ec25",
        "[out_of_session]\npolicy = \"reject\"\n",
    )
    .await;
    let iccid = sim.bank["modems"][0]["iccid"].as_str().unwrap().to_string();
    let proxy = sim.msisdn(0);
    let (status, view) = daemon
        .api(
            reqwest::Method::PUT,
            &format!("/api/v1/numbers/{iccid}"),
            json!({"front_desk": STAFF}),
        )
        .await;
    assert_eq!(
        (status, view["front_desk"].as_str()),
        (200, Some(STAFF)),
        "{view}"
    );

    sim.handset_sms(STRANGER, &proxy, "hello, I need help")
        .await;
    let at_staff = sim.wait_messages(STAFF, 1, Duration::from_secs(30)).await;
    assert_eq!(
        texts(&at_staff),
        [(proxy.clone(), "hello, I need help".into())]
    );
    sim.handset_sms(STAFF, &proxy, "how can I help?").await;
    let at_stranger = sim
        .wait_messages(STRANGER, 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        texts(&at_stranger),
        [(proxy.clone(), "how can I help?".into())]
    );
    let (_, found) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/sessions/search",
            json!({"participant": STRANGER, "status": "open"}),
        )
        .await;
    let session = &found["sessions"][0];
    assert_eq!(session["label"], "front desk", "{found}");
    assert_eq!(session["participants"], json!([STRANGER, STAFF]));
    let id = session["id"].as_str().unwrap().to_string();

    // That session is closed; a second stranger calls: a new session with
    // the staff, who rings seeing the proxy.
    daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Value::Null,
        )
        .await;
    call_reaches(&sim, &proxy, SECOND_STRANGER, STAFF).await;
    let (_, found) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/sessions/search",
            json!({"participant": SECOND_STRANGER}),
        )
        .await;
    assert_eq!(
        found["sessions"][0]["participants"],
        json!([SECOND_STRANGER, STAFF])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_expiry_go_to_the_session_or_global_fallback() {
    const FALLBACK: &str = "+447911000555";
    const GLOBAL: &str = "+447911000999";
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "quectel-ec25",
        &format!("fallback_number = \"{GLOBAL}\"\n[out_of_session]\npolicy = \"reject\"\n"),
    )
    .await;
    let (status, own) = open(
        &daemon,
        A,
        B,
        json!({"ttl_seconds": 2, "fallback_number": FALLBACK}),
    )
    .await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["fallback_number"], FALLBACK);
    let (_, plain) = open(&daemon, C, D, json!({"ttl_seconds": 2})).await;
    let proxy = own["proxy_number"].as_str().unwrap().to_string();
    for session in [&own, &plain] {
        let expired = wait_session(&daemon, session["id"].as_str().unwrap(), |s| {
            s["status"] == "expired"
        })
        .await;
        assert_eq!(expired["close_reason"], "ttl");
    }
    call_reaches(&sim, &proxy, A, FALLBACK).await;
    call_reaches(&sim, &proxy, C, GLOBAL).await;
    // A stranger is not a former participant: the policy rejects the call.
    sim.act(STRANGER, "dial", json!({"to": proxy})).await;
    let ended = sim
        .wait_call(STRANGER, "rejected", |s| s["state"] == "idle")
        .await;
    assert_ne!(ended["last_end"], Value::Null, "{ended}");
    assert_eq!(sim.call_state(GLOBAL).await["state"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipients_budget_blocks_new_recipients_and_steers_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let iccid = sim.bank["modems"][0]["iccid"].as_str().unwrap().to_string();
    let daemon = Daemon::start_on(
        dir.path(),
        &sim,
        &format!("[[sims]]\niccid = \"{iccid}\"\nrecipients_per_month = 3\n"),
    )
    .await;
    let (_, first) = open(&daemon, A, B, json!({})).await;
    let (_, second) = open(&daemon, C, D, json!({})).await;
    let proxy = first["proxy_number"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "to B").await;
    sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    sim.handset_sms(B, &proxy, "to A").await;
    sim.wait_messages(A, 1, Duration::from_secs(30)).await;
    sim.handset_sms(C, &proxy, "to D").await;
    sim.wait_messages(D, 1, Duration::from_secs(30)).await;
    // C would be a fourth distinct recipient this month.
    sim.handset_sms(D, &proxy, "to C").await;
    let id = second["id"].as_str().unwrap();
    let blocked = wait_interaction(&daemon, id, |i| i["rule"] == "recipient_budget").await;
    assert!(
        blocked["reason"]
            .as_str()
            .unwrap()
            .contains("3 distinct numbers"),
        "{blocked}"
    );
    let numbers = daemon.get("/api/v1/numbers").await;
    assert_eq!(
        numbers[0]["budgets"]["recipients_this_month"],
        json!({"used": 3, "limit": 3})
    );
    let (status, refused) = open(&daemon, STRANGER, SECOND_STRANGER, json!({})).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("close to a budget"),
        "{refused}"
    );
    assert!(sim.messages(C).await.is_empty());
}

/// A conversation the network held while the modem was unplugged, written
/// over eight minutes (the network's clock is stepped between messages, as
/// the SMSC stamps each when it takes it), reaches the daemon within a few
/// seconds of the replug. By arrival that is eleven replies back and forth
/// faster than people type; by the SMSC's stamps it is people talking: all
/// relayed, and the session stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_held_while_the_modem_was_away_is_no_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;
    let (_, session) = open(&daemon, A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    let response = sim.post("/modems/0/unplug", json!({})).await;
    assert!(response.status().is_success());
    let lines = [
        "are you on the train yet",
        "just got on, it's packed",
        "which carriage are you in",
        "the fourth one, near the doors",
        "ok I'm coming through",
        "wait, the doors are closing",
        "made it, see you in a minute",
        "found a seat by the window",
        "I can see you now",
        "waving at you",
        "what a morning",
        "coffee later? my treat",
    ];
    for (i, line) in (0_i64..).zip(lines) {
        let response = sim
            .put("/clock", json!({"offset_seconds": -540 + 40 * i}))
            .await;
        assert!(response.status().is_success());
        let from = if i % 2 == 0 { A } else { B };
        sim.handset_sms(from, &proxy, line).await;
    }
    let response = sim.put("/clock", json!({"offset_seconds": 0})).await;
    assert!(response.status().is_success());
    let response = sim.post("/modems/0/plug", json!({})).await;
    assert!(response.status().is_success());
    let to = |side: usize| -> Vec<(String, String)> {
        lines
            .iter()
            .skip(side)
            .step_by(2)
            .map(|line| (proxy.clone(), (*line).to_string()))
            .collect()
    };
    let at_b = sim.wait_messages(B, 6, Duration::from_secs(60)).await;
    let at_a = sim.wait_messages(A, 6, Duration::from_secs(60)).await;
    let mut got_b = texts(&at_b);
    let mut got_a = texts(&at_a);
    got_b.sort();
    got_a.sort();
    let (mut want_b, mut want_a) = (to(0), to(1));
    want_b.sort();
    want_a.sort();
    assert_eq!((got_b, got_a), (want_b, want_a));
    let record = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(record["status"], "open", "{record}");
    let history = daemon.interactions(&id).await;
    assert!(history.iter().all(|i| i["rule"].is_null()), "{history:?}");
}
