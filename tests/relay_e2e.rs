//! The relay end to end, as separate processes: `simmask sim` (the virtual
//! network) and `simmask run` (the daemon) talking AT through ptys. Handsets
//! A and B only ever see the proxy number.

mod common;

use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use serde_json::json;

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const STRANGER: &str = "+447400123456";

/// Messages' senders and texts.
fn received(messages: &[serde_json::Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap_or_default().to_string(),
                m["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_is_relayed_both_ways_through_the_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        "[out_of_session]\npolicy = \"auto-reply\"\ntext = \"No conversation here.\"\n",
    );
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"label": "ride 1"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    assert_eq!(proxy, sim.msisdn(0));

    sim.handset_sms(A, &proxy, "hello B, it's A").await;
    let at_b = sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    assert_eq!(received(&at_b), [(proxy.clone(), "hello B, it's A".into())]);

    // Unicode (UCS2) and a long message (several parts) arrive whole.
    let long: String = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
        .repeat(9)
        .chars()
        .take(500)
        .collect();
    sim.handset_sms(B, &proxy, "Привет 👋 ça va? 你好").await;
    sim.handset_sms(B, &proxy, &long).await;
    let at_a = sim.wait_messages(A, 2, Duration::from_secs(30)).await;
    assert_eq!(
        received(&at_a),
        [
            (proxy.clone(), "Привет 👋 ça va? 你好".into()),
            (proxy.clone(), long.clone())
        ]
    );

    // A stranger gets the policy's answer and reaches nobody.
    sim.handset_sms(STRANGER, &proxy, "who is this?").await;
    let at_stranger = sim
        .wait_messages(STRANGER, 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        received(&at_stranger),
        [(proxy.clone(), "No conversation here.".into())]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.messages(A).await.len(), 2);
    assert_eq!(sim.messages(B).await.len(), 1);

    // The interactions are recorded on the session.
    let id = session["id"].as_str().unwrap();
    let interactions = daemon
        .get(&format!("/api/v1/sessions/{id}/interactions"))
        .await;
    let list = interactions
        .as_array()
        .or_else(|| interactions["interactions"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 3, "{interactions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_of_one_person_route_independently_and_expiry_stops_relaying() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "simcom-sim800,quectel-ec25");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        "[out_of_session]\npolicy = \"reject\"\n",
    );
    let daemon = Daemon::start(&config, port, 2).await;
    let with_b = daemon.open_session(A, B, json!({})).await;
    let with_c = daemon.open_session(A, C, json!({"ttl_seconds": 3})).await;
    let p1 = with_b["proxy_number"].as_str().unwrap().to_string();
    let p2 = with_c["proxy_number"].as_str().unwrap().to_string();
    assert_ne!(
        p1, p2,
        "the masking rule puts A's two sessions on two proxies"
    );

    sim.handset_sms(A, &p1, "to B").await;
    sim.handset_sms(A, &p2, "to C").await;
    let at_b = sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    let at_c = sim.wait_messages(C, 1, Duration::from_secs(30)).await;
    assert_eq!(received(&at_b), [(p1.clone(), "to B".into())]);
    assert_eq!(received(&at_c), [(p2.clone(), "to C".into())]);

    // The session with C expires; what A sends there goes nowhere.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim.handset_sms(A, &p2, "too late").await;
    sim.handset_sms(A, &p1, "still on").await;
    let at_b = sim.wait_messages(B, 2, Duration::from_secs(30)).await;
    assert_eq!(received(&at_b)[1], (p1.clone(), "still on".into()));
    assert_eq!(sim.messages(C).await.len(), 1);
    let id = with_c["id"].as_str().unwrap();
    let session = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(session["status"], "expired", "{session}");
}
