//! A SIM's daily send limit holds across a crash: the daemon is killed in
//! the middle of a day's budget and started again, and the SIM sends no
//! more than the budget left (the rate limiter is seeded from the outbox's
//! send log, not started empty).

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, Daemon, Sim, free_port};
use nix::sys::signal::Signal;
use serde_json::json;

const A: &str = "+447911123456";
const B: &str = "+447912345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_budget_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = dir.path().join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"{}/modem*\"]\npoll_interval_seconds = 2\n[sms]\nper_minute = 600\nper_day = 4\n",
            dir.path().join("simmask.db").display(),
            sim.links.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    for i in 0..3 {
        sim.handset_sms(A, &proxy, &format!("before {i}")).await;
    }
    assert_eq!(
        sim.wait_messages(B, 3, Duration::from_secs(30)).await.len(),
        3
    );

    // A crash in the middle of the day's budget (3 of 4 used), and a restart.
    daemon.process.signal(Signal::SIGKILL);
    drop(daemon);
    let daemon = Daemon::start(&config, port, 1).await;
    for i in 0..3 {
        sim.handset_sms(A, &proxy, &format!("after {i}")).await;
    }
    let received = sim.wait_messages(B, 4, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 4);
    // The other two wait for tomorrow however long we look.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let received = sim.messages(B).await;
    assert_eq!(received.len(), 4, "{received:?}");

    let status = common::client()
        .get(format!("{}/api/v1/status", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(status["sims"][0]["sends_last_day"], 4, "{status}");
    assert_eq!(status["limits"]["per_day"], 4);
    assert_eq!(status["sims"][0]["queue_depth"], 2, "{status}");
}
