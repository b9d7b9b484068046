//! Nothing lost on the direct path (`+CMT`, acknowledged by `AT+CNMA` only
//! after the commit; `simcom-sim800` receives this way): the daemon is
//! killed at the two instants that matter, and the network's redelivery of
//! what was not acknowledged (stored on the SIM, announced by `+CMTI`)
//! brings each message through exactly as the stored path would.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, free_port, write_config};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";

async fn trace(sim: &Sim) -> Vec<Value> {
    common::client()
        .get(format!("{}/modems/0/trace", sim.control))
        .send()
        .await
        .expect("sim control")
        .json()
        .await
        .expect("trace JSON")
}

/// Waits until the modem's trace is as `wanted` says.
async fn wait_until(sim: &Sim, what: &str, wanted: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = trace(sim).await;
        if wanted(&lines) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the trace: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is(line: &Value, dir: &str, prefix: &str) -> bool {
    line["dir"] == dir && line["line"].as_str().is_some_and(|l| l.starts_with(prefix))
}

/// Waits until B has `count` messages, then a little longer for any more.
async fn delivered(sim: &Sim, text: &str, count: usize) -> usize {
    sim.wait_messages(B, count, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = sim.messages(B).await;
    got.iter().filter(|m| m["text"] == text).count()
}

async fn start(dir: &std::path::Path) -> (Sim, std::path::PathBuf, u16, Daemon, String) {
    let sim = Sim::start(dir, 1, "simcom-sim800");
    let port = free_port();
    let config = write_config(dir, &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    // The profile routes new messages straight to the host.
    sim.handset_sms(A, &proxy, "warm-up").await;
    assert_eq!(delivered(&sim, "warm-up", 1).await, 1);
    let lines = trace(&sim).await;
    assert!(
        lines.iter().any(|l| is(l, "tx", "+CMT:")),
        "direct: {lines:?}"
    );
    assert!(lines.iter().any(|l| is(l, "rx", "AT+CNMA")), "acknowledged");
    assert!(
        !lines.iter().any(|l| is(l, "rx", "AT+CMGR")),
        "nothing read back"
    );
    (sim, config, port, daemon, proxy)
}

// The +CMT reached the daemon's port, the daemon never stored it: no
// +CNMA, so the network takes it back, stores it on the SIM, and the next
// daemon reads it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_receipt_and_commit_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, port, daemon, proxy) = start(dir.path()).await;
    let count = |lines: &[Value]| lines.iter().filter(|l| is(l, "tx", "+CMT:")).count();
    let before = count(&trace(&sim).await);
    // Frozen, it reads nothing: the +CMT waits in its port's buffer.
    daemon.process.signal(Signal::SIGSTOP);
    sim.handset_sms(A, &proxy, "never committed").await;
    wait_until(&sim, "the +CMT", |lines| count(lines) > before).await;
    daemon.process.signal(Signal::SIGKILL);
    drop(daemon);
    let _daemon = Daemon::start(&config, port, 1).await;
    assert_eq!(delivered(&sim, "never committed", 2).await, 1);
    let lines = trace(&sim).await;
    assert!(
        lines
            .iter()
            .any(|l| is(l, "rx", "AT+CMGR") || is(l, "rx", "AT+CMGL")),
        "read back from the SIM after the network stored it: {lines:?}"
    );
}

// Committed and relayed, killed before the +CNMA: the network stores the
// message again, and the next daemon recognises it (deleted, not relayed
// a second time). The relayed send in flight may go twice (one duplicate
// per kill, as on the stored path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_commit_and_acknowledgement_relays_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, config, port, daemon, proxy) = start(dir.path()).await;
    // The relayed send takes a while: the daemon is killed during it,
    // after the commit (the send starts only then), before the +CNMA
    // (sent once the relayed send is answered).
    sim.post("/modems/0/faults", json!({"submit_delay_ms": 3000}))
        .await;
    let acks_before = trace(&sim)
        .await
        .iter()
        .filter(|l| is(l, "rx", "AT+CNMA"))
        .count();
    let sends_before = trace(&sim)
        .await
        .iter()
        .filter(|l| is(l, "rx", "AT+CMGS"))
        .count();
    sim.handset_sms(A, &proxy, "committed, not acknowledged")
        .await;
    wait_until(&sim, "the relayed send", |lines| {
        lines.iter().filter(|l| is(l, "rx", "AT+CMGS")).count() > sends_before
    })
    .await;
    daemon.process.signal(Signal::SIGKILL);
    drop(daemon);
    let acks = trace(&sim)
        .await
        .iter()
        .filter(|l| is(l, "rx", "AT+CNMA"))
        .count();
    assert_eq!(acks, acks_before, "killed before the +CNMA");
    let deletes = |lines: &[Value]| lines.iter().filter(|l| is(l, "rx", "AT+CMGD")).count();
    let deletes_before = deletes(&trace(&sim).await);
    sim.post("/modems/0/faults", json!({"submit_delay_ms": 0}))
        .await;
    let _daemon = Daemon::start(&config, port, 1).await;
    // The network gives up on the +CNMA and stores the message; the new
    // daemon reads it, knows it, and deletes it.
    wait_until(&sim, "the stored copy's delete", |lines| {
        deletes(lines) > deletes_before
    })
    .await;
    let copies = delivered(&sim, "committed, not acknowledged", 1).await;
    assert!(
        (1..=2).contains(&copies),
        "{copies} copies: one, or two when the send in flight went again"
    );
}
