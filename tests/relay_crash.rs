//! Nothing lost: the daemon is killed with SIGKILL in the middle of a burst
//! of 100 messages and started again; every message arrives, with at most
//! one duplicate per kill (the send that was in flight).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use nix::sys::signal::Signal;
use serde_json::json;

const A: &str = "+447911123456";
const B: &str = "+447912345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "simcom-sim800");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();

    // A sends 100 messages at a steady pace while the daemon is killed twice.
    let total = 100;
    let sender = {
        let control = sim.control.clone();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let response = common::client()
                    .post(format!("{control}/handsets/{A}/sms"))
                    .json(&json!({"to": proxy, "text": format!("message {i:03}")}))
                    .send()
                    .await
                    .expect("sim control");
                assert!(response.status().is_success());
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut kills = 0;
    let mut daemon = Some(daemon);
    for relayed in [20, 55] {
        sim.wait_messages(B, relayed, Duration::from_secs(60)).await;
        if let Some(running) = daemon.take() {
            running.process.signal(Signal::SIGKILL);
            drop(running);
        }
        kills += 1;
        daemon = Some(Daemon::start(&config, port, 1).await);
    }
    sender.await.expect("all sent");
    let texts: Vec<String> = (0..total).map(|i| format!("message {i:03}")).collect();
    let at_b = sim.wait_texts(B, &texts, Duration::from_secs(180)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in &at_b {
        assert_eq!(message["from"], proxy.as_str());
        *counts
            .entry(message["text"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for i in 0..total {
        assert!(
            counts.contains_key(&format!("message {i:03}")),
            "message {i} lost"
        );
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates after {kills} kills"
    );
}
