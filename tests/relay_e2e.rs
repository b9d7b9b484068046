//! The relay end to end, as separate processes: `simmask sim` (the virtual
//! network) and `simmask run` (the daemon) talking AT through ptys. Handsets
//! A and B only ever see the proxy number.

mod common;

use std::time::Duration;

use common::{Daemon, Sim, free_port, start_bank, texts, write_config};
use serde_json::json;

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const STRANGER: &str = "+447400123456";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_is_relayed_both_ways_through_the_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "generic",
        "[out_of_session]\npolicy = \"auto-reply\"\ntext = \"No conversation here.\"\n",
    )
    .await;
    let session = daemon.open_session(A, B, json!({"label": "ride 1"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    assert_eq!(proxy, sim.msisdn(0));

    sim.handset_sms(A, &proxy, "hello B, it's A").await;
    let at_b = sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    assert_eq!(texts(&at_b), [(proxy.clone(), "hello B, it's A".into())]);

    // Unicode (UCS2) and a long message (several parts) arrive whole.
    let long: String = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
        .repeat(9)
        .chars()
        .take(500)
        .collect();
    sim.handset_sms(B, &proxy, "Привет 👋 ça va? 你好").await;
    sim.handset_sms(B, &proxy, &long).await;
    let at_a = sim.wait_messages(A, 2, Duration::from_secs(30)).await;
    // Sent back to back, they arrive in the order they were sent.
    assert_eq!(
        texts(&at_a),
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
        texts(&at_stranger),
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
    let (sim, daemon) = start_bank(
        dir.path(),
        2,
        "simcom-sim800,quectel-ec25",
        "[out_of_session]\npolicy = \"reject\"\n",
    )
    .await;
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
    assert_eq!(texts(&at_b), [(p1.clone(), "to B".into())]);
    assert_eq!(texts(&at_c), [(p2.clone(), "to C".into())]);

    // The session with C expires; what A sends there goes nowhere.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim.handset_sms(A, &p2, "too late").await;
    sim.handset_sms(A, &p1, "still on").await;
    let at_b = sim.wait_messages(B, 2, Duration::from_secs(30)).await;
    assert_eq!(texts(&at_b)[1], (p1.clone(), "still on".into()));
    assert_eq!(sim.messages(C).await.len(), 1);
    let id = with_c["id"].as_str().unwrap();
    let session = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(session["status"], "expired", "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_sim_storage_is_relayed_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A SIM800 stores 50 messages on the SIM.
    let sim = Sim::start(dir.path(), 1, "simcom-sim800");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    // While the daemon is stopped the SIM fills up and the network holds
    // the rest; once it runs again everything comes through.
    let mut daemon = daemon;
    assert!(daemon.process.terminate(), "a clean exit on SIGTERM");
    drop(daemon);
    let burst = 70;
    for i in 0..burst {
        sim.handset_sms(A, &proxy, &format!("burst {i}")).await;
    }
    let _daemon = Daemon::start(&config, port, 1).await;
    let at_b = sim.wait_messages(B, burst, Duration::from_secs(120)).await;
    let mut texts: Vec<String> = texts(&at_b).into_iter().map(|(_, t)| t).collect();
    texts.sort();
    let mut expected: Vec<String> = (0..burst).map(|i| format!("burst {i}")).collect();
    expected.sort();
    assert_eq!(texts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_destination_delays_only_its_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(dir.path(), 1, "generic", "").await;
    // Three sessions on the one proxy.
    let d = "+447911000111";
    let e = "+447911000222";
    let f = "+447911000333";
    let ab = daemon.open_session(A, B, json!({})).await;
    let cd = daemon.open_session(C, d, json!({})).await;
    daemon.open_session(e, f, json!({})).await;
    let proxy = ab["proxy_number"].as_str().unwrap().to_string();

    // B is switched off, D is barred.
    let off = sim
        .put(&format!("/handsets/{B}/state"), json!({"power": "off"}))
        .await;
    assert!(off.status().is_success());
    let barred = sim
        .put(&format!("/handsets/{d}/state"), json!({"barred": true}))
        .await;
    assert!(barred.status().is_success());

    sim.handset_sms(A, &proxy, "for B, who is off").await;
    sim.handset_sms(C, &proxy, "for D, who is barred").await;
    sim.handset_sms(e, &proxy, "for F, all fine").await;
    let at_f = sim.wait_messages(f, 1, Duration::from_secs(30)).await;
    assert_eq!(texts(&at_f), [(proxy.clone(), "for F, all fine".into())]);

    // D's message fails with the network's reason in its interaction.
    let id = cd["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = daemon
            .get(&format!("/api/v1/sessions/{id}/interactions"))
            .await;
        let list = body
            .as_array()
            .or_else(|| body["interactions"].as_array())
            .cloned()
            .unwrap_or_default();
        let failed = list.iter().find(|i| i["status"] == "failed");
        if let Some(failed) = failed {
            let reason = failed["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("CMS"), "{failed}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sim.messages(d).await.is_empty());

    // B comes back and gets what the network held for it.
    assert!(sim.messages(B).await.is_empty());
    sim.put(&format!("/handsets/{B}/state"), json!({"power": "on"}))
        .await;
    let at_b = sim.wait_messages(B, 1, Duration::from_secs(30)).await;
    assert_eq!(texts(&at_b), [(proxy, "for B, who is off".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_replugged_under_a_new_name_keeps_relaying() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(dir.path(), 1, "quectel-ec25", "").await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "before").await;
    sim.wait_messages(B, 1, Duration::from_secs(30)).await;

    assert!(
        sim.post("/modems/0/unplug", json!({}))
            .await
            .status()
            .is_success()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plugged = sim.post("/modems/0/plug", json!({"link": "modem7"})).await;
    assert!(plugged.status().is_success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sim.links.join("modem7").exists() {
        assert!(std::time::Instant::now() < deadline, "the new link appears");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sim.handset_sms(A, &proxy, "after").await;
    sim.handset_sms(B, &proxy, "reply").await;
    let at_b = sim.wait_messages(B, 2, Duration::from_secs(60)).await;
    assert_eq!(texts(&at_b)[1], (proxy.clone(), "after".into()));
    let at_a = sim.wait_messages(A, 1, Duration::from_secs(60)).await;
    assert_eq!(texts(&at_a), [(proxy, "reply".into())]);
}
