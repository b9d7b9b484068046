//! Hubs end to end, as processes: `simmask sim` (a SIMCom and a Quectel on
//! a virtual network, handsets driven through its control API) and
//! `simmask run`, driven through the daemon's HTTP API. A hub converses
//! with twenty people through a bank of two SIMs, both ways, by SMS; a
//! reply without a code, an unknown code; a counterpart's STOP; the hub
//! calling its proxy and keying a session's code, or none.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, Sim, start_bank, texts};
use serde_json::json;
use simmask::masking::hub;

const HUB: &str = "+447911500500";

fn counterpart(i: usize) -> String {
    format!("+4479116000{i:02}")
}

/// One session of the hub: its counterpart, proxy and code.
#[derive(Debug, Clone)]
struct Conversation {
    id: String,
    counterpart: String,
    proxy: String,
    code: String,
}

/// The bank (a SIMCom and a Quectel), the daemon, and a hub with
/// `count` sessions on it.
async fn hub_with(
    dir: &std::path::Path,
    count: usize,
    extra: &str,
) -> (Sim, Daemon, Vec<Conversation>) {
    let (sim, daemon) = start_bank(dir, 2, "simcom-sim800,quectel-ec25", extra).await;
    let (status, created) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/hubs",
            json!({"number": HUB, "label": "dispatch"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut conversations = Vec::new();
    for i in 0..count {
        let session = daemon
            .open_session(&counterpart(i), HUB, json!({"label": format!("job {i}")}))
            .await;
        conversations.push(Conversation {
            id: session["id"].as_str().unwrap().to_string(),
            counterpart: counterpart(i),
            proxy: session["proxy_number"].as_str().unwrap().to_string(),
            code: session["hub_code"].as_str().expect("a code").to_string(),
        });
    }
    (sim, daemon, conversations)
}

/// Waits until `number` has received `count` messages and returns them.
async fn received(sim: &Sim, number: &str, count: usize) -> Vec<(String, String)> {
    let messages = sim
        .wait_messages(number, count, Duration::from_secs(120))
        .await;
    let got = texts(&messages);
    assert!(got.len() >= count, "{number}: {got:?}");
    got
}

/// A code none of `conversations` on `proxy` has, by spelling or keys.
fn unused_code(conversations: &[Conversation], proxy: &str) -> String {
    let taken: Vec<&str> = conversations
        .iter()
        .filter(|c| c.proxy == proxy)
        .map(|c| c.code.as_str())
        .collect();
    hub::new_code(&taken, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_converses_with_twenty_people_through_two_sims() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon, conversations) = hub_with(dir.path(), 20, "").await;
    let proxies: HashMap<&str, usize> =
        conversations.iter().fold(HashMap::new(), |mut count, c| {
            *count.entry(c.proxy.as_str()).or_default() += 1;
            count
        });
    assert_eq!(proxies.len(), 2, "both SIMs carry the hub: {proxies:?}");

    // Twenty people write to the hub, each through their proxy.
    for (i, c) in conversations.iter().enumerate() {
        sim.handset_sms(&c.counterpart, &c.proxy, &format!("hello from {i}"))
            .await;
    }
    let at_hub = received(&sim, HUB, 20).await;
    assert_eq!(at_hub.len(), 20, "{at_hub:?}");
    for (i, c) in conversations.iter().enumerate() {
        let expected = (c.proxy.clone(), format!("[{}] hello from {i}", c.code));
        assert!(at_hub.contains(&expected), "{expected:?} not in {at_hub:?}");
    }
    // The hub answers each by its code, in either form and any case.
    for (i, c) in conversations.iter().enumerate() {
        let reply = if i % 2 == 0 {
            format!("{} reply to {i}", c.code.to_lowercase())
        } else {
            format!("[{}] reply to {i}", c.code)
        };
        sim.handset_sms(HUB, &c.proxy, &reply).await;
    }
    for (i, c) in conversations.iter().enumerate() {
        let got = received(&sim, &c.counterpart, 1).await;
        assert_eq!(got, [(c.proxy.clone(), format!("reply to {i}"))], "{c:?}");
    }
    // Nobody ever saw a real number.
    let everyone: Vec<String> = conversations
        .iter()
        .map(|c| c.counterpart.clone())
        .chain([HUB.to_string()])
        .collect();
    for number in &everyone {
        for (from, text) in texts(&sim.messages(number).await) {
            assert!(
                !everyone.contains(&from),
                "{number} got a message from {from}"
            );
            for real in &everyone {
                let digits = &real[3..];
                assert!(!text.contains(digits), "{number} was shown {real}: {text}");
            }
        }
    }

    // No code: to the counterpart the hub last heard from on that SIM, and
    // the hub is told which.
    let last = &conversations[7];
    sim.handset_sms(&last.counterpart, &last.proxy, "one more thing")
        .await;
    let at_hub = received(&sim, HUB, 21).await;
    assert_eq!(
        at_hub[20],
        (
            last.proxy.clone(),
            format!("[{}] one more thing", last.code)
        )
    );
    sim.handset_sms(HUB, &last.proxy, "noted, thanks").await;
    let got = received(&sim, &last.counterpart, 2).await;
    assert_eq!(got[1], (last.proxy.clone(), "noted, thanks".into()));
    let at_hub = received(&sim, HUB, 22).await;
    assert_eq!(at_hub[21].0, last.proxy);
    assert!(
        at_hub[21].1.starts_with(&format!("Sent to {}.", last.code)),
        "{:?}",
        at_hub[21]
    );

    // An unknown code: the hub is told, nothing is relayed.
    let unknown = unused_code(&conversations, &last.proxy);
    sim.handset_sms(HUB, &last.proxy, &format!("{unknown} anyone?"))
        .await;
    let at_hub = received(&sim, HUB, 23).await;
    assert!(
        at_hub[22]
            .1
            .starts_with(&format!("No conversation {unknown} on this number")),
        "{:?}",
        at_hub[22]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, c) in conversations.iter().enumerate() {
        let expected = if i == 7 { 2 } else { 1 };
        assert_eq!(sim.messages(&c.counterpart).await.len(), expected, "{c:?}");
    }
    // The session view names the code; the hub lists its twenty.
    let session = daemon
        .get(&format!("/api/v1/sessions/{}", conversations[3].id))
        .await;
    assert_eq!(session["hub_code"], conversations[3].code.as_str());
    assert_eq!(session["hub_participant"], 1);
    let hubs = daemon.get("/api/v1/hubs").await;
    assert_eq!(hubs[0]["sessions"].as_array().unwrap().len(), 20);
}

/// The hub calls `proxy`, is answered, keys `keys` (none: waits), and
/// `callee` must ring showing the proxy; they talk, then hang up.
async fn hub_call_reaches(sim: &Sim, proxy: &str, keys: Option<&str>, callee: &str) {
    sim.act(HUB, "dial", json!({"to": proxy})).await;
    sim.wait_call(HUB, "answered by the proxy", |s| s["state"] == "active")
        .await;
    if let Some(keys) = keys {
        // The hub hears no prompt: it keys once the call is answered.
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.act(HUB, "dtmf", json!({"digits": keys})).await;
    }
    sim.answer_through(proxy, HUB, callee).await;
    sim.hang_up(HUB, callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubs_call_reaches_the_session_whose_code_it_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon, conversations) =
        hub_with(dir.path(), 6, "[hubs]\ndtmf_timeout_seconds = 3\n").await;
    // On each SIM (SIMCom +DTMF, Quectel +QTONEDET), a code keyed as on a
    // phone; on the Quectel the hub ends with # and starts over with *.
    for (index, c) in conversations.iter().take(2).enumerate() {
        let keys = if index == 0 {
            hub::keys(&c.code)
        } else {
            format!("9*{}#", hub::keys(&c.code))
        };
        hub_call_reaches(&sim, &c.proxy, Some(&keys), &c.counterpart).await;
    }
    // No key: the counterpart the hub last heard from on that SIM.
    let last = &conversations[4];
    sim.handset_sms(&last.counterpart, &last.proxy, "call me")
        .await;
    received(&sim, HUB, 1).await;
    hub_call_reaches(&sim, &last.proxy, None, &last.counterpart).await;
    // A counterpart calling the hub's proxy reaches the hub, as in any session.
    let caller = &conversations[5];
    sim.act(&caller.counterpart, "dial", json!({"to": caller.proxy}))
        .await;
    let ringing = sim
        .wait_call(HUB, "rings", |s| s["state"] == "ringing")
        .await;
    assert_eq!(ringing["caller_id"], caller.proxy.as_str());
    sim.act(HUB, "answer", json!({})).await;
    sim.wait_call(caller.counterpart.as_str(), "talks to the hub", |s| {
        s["connected_to"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == HUB))
    })
    .await;
    sim.act(HUB, "hangup", json!({})).await;
    sim.wait_call(HUB, "idle", |s| s["state"] == "idle").await;
    // Keys no session has: the hub's call is ended, recorded as refused.
    let proxy = &conversations[0].proxy;
    sim.act(HUB, "dial", json!({"to": proxy})).await;
    sim.wait_call(HUB, "answered", |s| s["state"] == "active")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unknown = hub::keys(&unused_code(&conversations, proxy));
    sim.act(HUB, "dtmf", json!({"digits": format!("{unknown}#")}))
        .await;
    sim.wait_call(HUB, "hung up on", |s| s["state"] == "idle")
        .await;
    // Every call is in its session's history.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = daemon
            .get(&format!(
                "/api/v1/sessions/{}/interactions",
                conversations[0].id
            ))
            .await;
        if list.as_array().is_some_and(|l| {
            l.iter()
                .any(|i| i["kind"] == "call" && i["outcome"] == "completed")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counterparts_stop_ends_only_its_own_session_with_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon, conversations) = hub_with(dir.path(), 4, "").await;
    let (leaving, staying) = (&conversations[0], &conversations[2]);
    assert_eq!(
        leaving.proxy, staying.proxy,
        "the same SIM: {conversations:?}"
    );
    sim.handset_sms(&leaving.counterpart, &leaving.proxy, "STOP")
        .await;
    received(&sim, &leaving.counterpart, 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let session = daemon
            .get(&format!("/api/v1/sessions/{}", leaving.id))
            .await;
        if session["close_reason"] == "opt_out" {
            break;
        }
        assert!(Instant::now() < deadline, "{session}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for other in &conversations[1..] {
        let session = daemon.get(&format!("/api/v1/sessions/{}", other.id)).await;
        assert_eq!(session["status"], "open", "{session}");
    }
    // The hub writing to the one who left: no such conversation any more.
    sim.handset_sms(
        HUB,
        &leaving.proxy,
        &format!("{} are you there?", leaving.code),
    )
    .await;
    let at_hub = received(&sim, HUB, 1).await;
    assert!(at_hub[0].1.starts_with("No conversation"), "{at_hub:?}");
    // The others go on.
    sim.handset_sms(HUB, &staying.proxy, &format!("{} still on?", staying.code))
        .await;
    let got = received(&sim, &staying.counterpart, 1).await;
    assert_eq!(got, [(staying.proxy.clone(), "still on?".into())]);
    assert_eq!(
        sim.messages(&leaving.counterpart).await.len(),
        1,
        "only the STOP confirmation"
    );
}
