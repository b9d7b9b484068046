//! A fleet's traffic, end to end: two `simmask run` daemons on one
//! PostgreSQL (started by the test), each driving its own modems of the
//! virtual network. A session opened through either API relays SMS both
//! ways on the appliance that holds its SIM, masked; a daemon killed with
//! SIGKILL in the middle of a burst loses nothing (on the direct `+CMT`
//! path, acknowledged after the commit); a SIM moved from one
//! bank to the other keeps relaying for its sessions; PostgreSQL stopped
//! during traffic loses nothing once it is back (the messages wait on the
//! SIM meanwhile); a hub converses by its codes through both appliances.

mod common;
mod pg_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Sim, free_port};
use nix::sys::signal::Signal;
use pg_common::Postgres;
use serde_json::{Value, json};
use simmask::masking::hub;

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";

/// A daemon's configuration in `dir`: the links `ports` (globs under the
/// simulator's link directory) on the fleet's database `url`, as `name`.
fn fleet_config(
    dir: &Path,
    sim: &Sim,
    ports: &[&str],
    port: u16,
    url: &str,
    name: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let ports: Vec<String> = ports
        .iter()
        .map(|p| format!("\"{}/{p}\"", sim.links.display()))
        .collect();
    let config = dir.join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[api]
listen = "127.0.0.1:{port}"

[store]
backend = "postgres"
url = "{url}"

[appliance]
name = "{name}"

[modems]
ports = [{ports}]
poll_interval_seconds = 2

[sms]
per_minute = 600
per_day = 100000

[sessions]
sweep_interval_seconds = 1
"#,
            ports = ports.join(", ")
        ),
    )
    .unwrap();
    config
}

/// One appliance of the test's fleet.
struct Site {
    config: PathBuf,
    port: u16,
    log: PathBuf,
    daemon: Option<Daemon>,
}

impl Site {
    fn new(root: &Path, sim: &Sim, ports: &[&str], url: &str, name: &str) -> Site {
        let dir = root.join(name);
        let port = free_port();
        let config = fleet_config(&dir, sim, ports, port, url, name);
        Site {
            config,
            port,
            log: dir.join("daemon.log"),
            daemon: None,
        }
    }

    /// Starts the daemon; returns once the fleet shows `sims` SIMs up.
    async fn start(&mut self, sims: usize) {
        self.daemon = Some(
            Daemon::start_logged(
                &self.config,
                self.port,
                sims,
                &self.log,
                Duration::from_secs(60),
            )
            .await,
        );
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    /// Kills the daemon with SIGKILL, as a power cut would.
    fn kill(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.process.signal(Signal::SIGKILL);
            drop(daemon);
        }
    }

    /// The log's warnings and errors, for a failing assertion's message.
    fn troubles(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("ERROR") || line.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every message `to` received, by text: who it came from, how often.
async fn received(sim: &Sim, to: &str) -> HashMap<String, (Vec<String>, usize)> {
    let mut seen: HashMap<String, (Vec<String>, usize)> = HashMap::new();
    for message in sim.messages(to).await {
        let entry = seen
            .entry(message["text"].as_str().unwrap_or_default().to_string())
            .or_default();
        entry
            .0
            .push(message["from"].as_str().unwrap_or_default().to_string());
        entry.1 += 1;
    }
    seen
}

/// Starts both appliances and waits until each sees the fleet's two SIMs
/// healthy: an appliance's view of the other's SIM follows that one's
/// heartbeat and saved status, so a session opened before then can find
/// one SIM not yet usable.
async fn start_both(site1: &mut Site, site2: &mut Site) {
    site1.start(1).await;
    site2.start(2).await;
    for site in [&*site1, &*site2] {
        site.daemon()
            .wait_ready_within(2, Duration::from_secs(60))
            .await;
    }
}

/// Waits until `to` has received every text of `texts` (within `wait`);
/// answers what it received.
async fn wait_texts(
    sim: &Sim,
    to: &str,
    texts: &[String],
    wait: Duration,
) -> HashMap<String, (Vec<String>, usize)> {
    let deadline = Instant::now() + wait;
    loop {
        let seen = received(sim, to).await;
        if texts.iter().all(|t| seen.contains_key(t)) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that every text arrived from `proxy` and that the repeats are
/// at most `allowed`.
fn assert_all_from(
    seen: &HashMap<String, (Vec<String>, usize)>,
    texts: &[String],
    proxy: &str,
    allowed: usize,
    sites: &[&Site],
) {
    let missing: Vec<&String> = texts.iter().filter(|t| !seen.contains_key(*t)).collect();
    let logs: Vec<String> = sites.iter().map(|s| s.troubles()).collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?}\nlogs:\n{}",
        logs.join("\n---\n")
    );
    for text in texts {
        let (from, _) = &seen[text];
        assert!(from.iter().all(|f| f == proxy), "{text}: from {from:?}");
    }
    let repeats: usize = texts.iter().map(|t| seen[t].1 - 1).sum();
    assert!(
        repeats <= allowed,
        "{repeats} duplicates (allowed {allowed})"
    );
}

/// Which appliance holds the SIM of number `msisdn`, as `daemon` sees it.
async fn holder(daemon: &Daemon, msisdn: &str) -> Option<String> {
    let numbers = daemon.get("/api/v1/numbers").await;
    numbers
        .as_array()
        .or_else(|| numbers["numbers"].as_array())?
        .iter()
        .find(|n| n["number"] == json!(msisdn) || n["msisdn"] == json!(msisdn))
        .and_then(|n| n["appliance"].as_str().map(str::to_string))
}

/// Sends `count` messages `from` → `proxy`, `prefix` and a number, paced.
fn burst(
    sim: &Sim,
    from: &'static str,
    proxy: &str,
    prefix: &str,
    count: usize,
    pace: Duration,
) -> (tokio::task::JoinHandle<()>, Vec<String>) {
    let texts: Vec<String> = (0..count).map(|i| format!("{prefix} {i:03}")).collect();
    let control = sim.control.clone();
    let proxy = proxy.to_string();
    let sending = texts.clone();
    let task = tokio::spawn(async move {
        for text in sending {
            let response = common::client()
                .post(format!("{control}/handsets/{from}/sms"))
                .json(&json!({"to": proxy, "text": text}))
                .send()
                .await
                .expect("sim control");
            assert!(response.status().is_success());
            tokio::time::sleep(pace).await;
        }
    });
    (task, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_opened_through_either_api_relay_both_ways_on_the_sim_holder() {
    let pg = Postgres::start();
    let url = pg.database("relay").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    let mut site1 = Site::new(dir.path(), &sim, &["modem0"], &url, "site-1");
    let mut site2 = Site::new(dir.path(), &sim, &["modem1"], &url, "site-2");
    start_both(&mut site1, &mut site2).await;

    // A talks to B and to C: two sessions, on the two proxies (the masking
    // rule), one opened through each API.
    let first = site1.daemon().open_session(A, B, json!({})).await;
    let second = site2.daemon().open_session(A, C, json!({})).await;
    let (p1, p2) = (
        first["proxy_number"].as_str().unwrap().to_string(),
        second["proxy_number"].as_str().unwrap().to_string(),
    );
    assert_ne!(p1, p2);

    sim.handset_sms(B, &p1, "from B to A").await;
    sim.handset_sms(C, &p2, "from C to A").await;
    let at_a = wait_texts(
        &sim,
        A,
        &["from B to A".into(), "from C to A".into()],
        Duration::from_secs(30),
    )
    .await;
    assert_all_from(&at_a, &["from B to A".into()], &p1, 0, &[&site1, &site2]);
    assert_all_from(&at_a, &["from C to A".into()], &p2, 0, &[&site1, &site2]);
    sim.handset_sms(A, &p1, "from A to B").await;
    sim.handset_sms(A, &p2, "from A to C").await;
    let at_b = wait_texts(&sim, B, &["from A to B".into()], Duration::from_secs(30)).await;
    let at_c = wait_texts(&sim, C, &["from A to C".into()], Duration::from_secs(30)).await;
    assert_all_from(&at_b, &["from A to B".into()], &p1, 0, &[&site1, &site2]);
    assert_all_from(&at_c, &["from A to C".into()], &p2, 0, &[&site1, &site2]);
    // Masked: nobody saw another's real number, only the proxies.
    for (handset, proxies) in [(A, vec![&p1, &p2]), (B, vec![&p1]), (C, vec![&p2])] {
        for message in sim.messages(handset).await {
            let from = message["from"].as_str().unwrap().to_string();
            assert!(proxies.contains(&&from), "{handset} got one from {from}");
        }
    }

    // Both APIs see every relay, sent (or delivered, once the handset's
    // status report is matched).
    for site in [&site1, &site2] {
        for session in [&first, &second] {
            let relayed = site
                .daemon()
                .interactions(session["id"].as_str().unwrap())
                .await;
            let sent = relayed
                .iter()
                .filter(|i| matches!(i["status"].as_str(), Some("sent" | "delivered")))
                .count();
            assert_eq!((sent, relayed.len()), (2, 2), "{relayed:?}");
        }
        let status = site.daemon().get("/api/v1/status").await;
        let recent = status["recent"]
            .as_array()
            .unwrap_or_else(|| panic!("{status}"));
        assert!(recent.len() >= 4, "{status}");
        let sends: u64 = status["sims"]
            .as_array()
            .expect("sims")
            .iter()
            .map(|s| s["sends_last_day"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(sends, 4, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_sim_holder_mid_burst_loses_nothing() {
    let pg = Postgres::start();
    let url = pg.database("crash").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "simcom-sim800");
    let mut site1 = Site::new(dir.path(), &sim, &["modem0"], &url, "site-1");
    let mut site2 = Site::new(dir.path(), &sim, &["modem1"], &url, "site-2");
    start_both(&mut site1, &mut site2).await;
    // Opened through site-2's API; the proxy may be either site's.
    let session = site2.daemon().open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let held_by = holder(site2.daemon(), &proxy).await;
    assert!(
        matches!(held_by.as_deref(), Some("site-1" | "site-2")),
        "{held_by:?}"
    );
    let held_by_1 = held_by.as_deref() == Some("site-1");

    let total = 60;
    let (sender, texts) = burst(&sim, A, &proxy, "burst", total, Duration::from_millis(40));
    let mut kills = 0;
    for relayed in [15, 35] {
        sim.wait_messages(B, relayed, Duration::from_secs(60)).await;
        let site = if held_by_1 { &mut site1 } else { &mut site2 };
        site.kill();
        kills += 1;
        site.start(2).await;
    }
    sender.await.expect("all handed to the network");
    let seen = wait_texts(&sim, B, &texts, Duration::from_secs(90)).await;
    assert_all_from(&seen, &texts, &proxy, kills, &[&site1, &site2]);
    // This modem receives directly (`+CMT`, acknowledged by `AT+CNMA`
    // only after the commit): the path the burst took.
    let modem = if held_by_1 { 0 } else { 1 };
    let trace: Vec<Value> = common::client()
        .get(format!("{}/modems/{modem}/trace", sim.control))
        .send()
        .await
        .expect("sim control")
        .json()
        .await
        .expect("trace JSON");
    let is = |line: &Value, dir: &str, prefix: &str| {
        line["dir"] == dir && line["line"].as_str().is_some_and(|l| l.starts_with(prefix))
    };
    assert!(
        trace.iter().any(|l| is(l, "tx", "+CMT:")),
        "direct delivery"
    );
    assert!(trace.iter().any(|l| is(l, "rx", "AT+CNMA")), "acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_moved_to_the_other_bank_keeps_relaying_for_its_sessions() {
    let pg = Postgres::start();
    let url = pg.database("moved").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    // site-2 also takes whatever is plugged in under `moved*`.
    let mut site1 = Site::new(dir.path(), &sim, &["modem0"], &url, "site-1");
    let mut site2 = Site::new(dir.path(), &sim, &["modem1", "moved*"], &url, "site-2");
    start_both(&mut site1, &mut site2).await;
    // Two sessions of A: one on each proxy; the one on site-1's SIM moves.
    let first = site1.daemon().open_session(A, B, json!({})).await;
    let second = site1.daemon().open_session(A, C, json!({})).await;
    let moving = sim.msisdn(0);
    let (session, other) = if first["proxy_number"] == json!(moving) {
        (first, B)
    } else {
        (second, C)
    };
    assert_eq!(session["proxy_number"], json!(moving));
    assert_eq!(
        holder(site2.daemon(), &moving).await.as_deref(),
        Some("site-1")
    );
    sim.handset_sms(other, &moving, "before the move").await;
    let seen = wait_texts(
        &sim,
        A,
        &["before the move".into()],
        Duration::from_secs(30),
    )
    .await;
    assert_all_from(
        &seen,
        &["before the move".into()],
        &moving,
        0,
        &[&site1, &site2],
    );

    // Out of site-1's bank, into site-2's.
    let unplugged = sim.post("/modems/0/unplug", json!({})).await;
    assert!(unplugged.status().is_success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let plugged = sim.post("/modems/0/plug", json!({"link": "moved0"})).await;
    assert!(plugged.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(45);
    while holder(site1.daemon(), &moving).await.as_deref() != Some("site-2") {
        assert!(
            Instant::now() < deadline,
            "the SIM never moved to site-2\n{}",
            site2.troubles()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The same session relays through its SIM on the other appliance, both
    // ways, and it is still the same session.
    let back: Vec<String> = vec!["after the move, to A".into()];
    sim.handset_sms(other, &moving, &back[0]).await;
    let seen = wait_texts(&sim, A, &back, Duration::from_secs(30)).await;
    assert_all_from(&seen, &back, &moving, 0, &[&site1, &site2]);
    let forth: Vec<String> = vec!["after the move, from A".into()];
    sim.handset_sms(A, &moving, &forth[0]).await;
    let seen = wait_texts(&sim, other, &forth, Duration::from_secs(30)).await;
    assert_all_from(&seen, &forth, &moving, 0, &[&site1, &site2]);
    let id = session["id"].as_str().unwrap();
    let now = site1.daemon().get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(now["status"], json!("open"), "{now}");
    assert_eq!(now["proxy_number"], json!(moving), "{now}");
}

/// `/healthz` of `daemon` until `done` holds (within 60 s).
async fn health_until(daemon: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health: Value = common::client()
            .get(format!("{}/healthz", daemon.url))
            .send()
            .await
            .expect("/healthz answers while the database is away")
            .json()
            .await
            .unwrap();
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "{what} not seen: {health}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_during_traffic_loses_nothing_once_back() {
    let pg = Postgres::start();
    let url = pg.database("outage").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    let mut site1 = Site::new(dir.path(), &sim, &["modem0"], &url, "site-1");
    let mut site2 = Site::new(dir.path(), &sim, &["modem1"], &url, "site-2");
    start_both(&mut site1, &mut site2).await;
    let first = site1.daemon().open_session(A, B, json!({})).await;
    let second = site2.daemon().open_session(A, C, json!({})).await;
    let (p1, p2) = (
        first["proxy_number"].as_str().unwrap().to_string(),
        second["proxy_number"].as_str().unwrap().to_string(),
    );

    // Traffic on both SIMs; the database stops in the middle of it.
    let (to_b, texts_b) = burst(&sim, A, &p1, "to B", 20, Duration::from_millis(100));
    let (to_a, texts_a) = burst(&sim, C, &p2, "to A", 20, Duration::from_millis(100));
    sim.wait_messages(B, 5, Duration::from_secs(30)).await;
    pg.stop();
    for site in [&site1, &site2] {
        let away = health_until(site.daemon(), "the outage", |h| {
            h["store"]["database_reachable"] == json!(false)
        })
        .await;
        assert_eq!(away["status"], json!("degraded"), "{away}");
    }
    to_b.await.unwrap();
    to_a.await.unwrap();
    // Nothing can be relayed while the database is away: the messages wait
    // on their SIMs (a send already claimed may still go out).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = received(&sim, B).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        received(&sim, B).await.len() <= during + 1,
        "relayed while the database was away"
    );

    pg.start_again();
    for site in [&site1, &site2] {
        health_until(site.daemon(), "the database back", |h| h["status"] == "ok").await;
    }
    // Every message arrives once the database is back; a send in flight
    // when it went away may repeat (one per SIM).
    let seen = wait_texts(&sim, B, &texts_b, Duration::from_secs(60)).await;
    assert_all_from(&seen, &texts_b, &p1, 1, &[&site1, &site2]);
    let seen = wait_texts(&sim, A, &texts_a, Duration::from_secs(60)).await;
    assert_all_from(&seen, &texts_a, &p2, 1, &[&site1, &site2]);
}

/// `simmask ARGS --config CONFIG`, its JSON output (stdout is a pipe).
fn shell(config: &Path, args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("simmask");
    assert!(
        output.status.success(),
        "simmask {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON when piped")
}

/// A hub on a fleet: made through one appliance's API, listed by the
/// other's and by the shell; its sessions, opened through both APIs and
/// the shell, spread over both appliances' SIMs. Each counterpart's SMS
/// reaches the hub with its session's code in front, the hub's reply
/// naming a code reaches that counterpart alone, and the hub's call keying
/// a code reaches that person, each through the appliance that holds the
/// SIM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_converses_through_both_appliances_by_its_codes() {
    const HUB: &str = "+447911500500";
    let pg = Postgres::start();
    let url = pg.database("hubs").await;
    let dir = tempfile::tempdir().unwrap();
    // Models that hear keys (SIMCom +DTMF, Quectel +QTONEDET).
    let sim = Sim::start(dir.path(), 2, "simcom-sim800,quectel-ec25");
    let mut site1 = Site::new(dir.path(), &sim, &["modem0"], &url, "site-1");
    let mut site2 = Site::new(dir.path(), &sim, &["modem1"], &url, "site-2");
    start_both(&mut site1, &mut site2).await;

    let (status, made) = site2
        .daemon()
        .api(
            reqwest::Method::POST,
            "/api/v1/hubs",
            json!({"number": HUB, "label": "dispatch"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let listed = site1.daemon().get("/api/v1/hubs").await;
    assert_eq!(listed[0]["id"], made["id"], "{listed}");

    // Four people, opened through site-1's API, site-2's, and the shell
    // (on site-1's configuration): least loaded first, so two per SIM.
    let people: Vec<String> = (0..4).map(|i| format!("+4479116000{i:02}")).collect();
    let mut sessions = Vec::new();
    for (i, person) in people.iter().enumerate() {
        let session = match i {
            0 | 2 => site1.daemon().open_session(person, HUB, json!({})).await,
            1 => site2.daemon().open_session(person, HUB, json!({})).await,
            _ => shell(&site1.config, &["session", "open", person, HUB]),
        };
        let code = session["hub_code"].as_str().expect("a code").to_string();
        let proxy = session["proxy_number"].as_str().unwrap().to_string();
        sessions.push((person.clone(), proxy, code));
    }
    let proxies: std::collections::HashSet<&str> =
        sessions.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(proxies.len(), 2, "both appliances' SIMs carry the hub");
    let hubs = shell(&site2.config, &["hub", "list"]);
    assert_eq!(hubs[0]["label"], "dispatch", "{hubs}");
    assert_eq!(
        hubs[0]["sessions"].as_array().map(Vec::len),
        Some(4),
        "{hubs}"
    );

    // Each person writes to the hub; the hub sees the code in front.
    for (i, (person, proxy, _)) in sessions.iter().enumerate() {
        sim.handset_sms(person, proxy, &format!("hello from {i}"))
            .await;
    }
    let expected: Vec<String> = sessions
        .iter()
        .enumerate()
        .map(|(i, (_, _, code))| format!("[{code}] hello from {i}"))
        .collect();
    let at_hub = wait_texts(&sim, HUB, &expected, Duration::from_secs(60)).await;
    for (i, (_, proxy, _)) in sessions.iter().enumerate() {
        assert_all_from(&at_hub, &expected[i..=i], proxy, 0, &[&site1, &site2]);
    }
    // The hub answers each by its code (either form); each reaches its
    // person alone.
    for (i, (_, proxy, code)) in sessions.iter().enumerate() {
        let reply = if i % 2 == 0 {
            format!("{} reply to {i}", code.to_lowercase())
        } else {
            format!("[{code}] reply to {i}")
        };
        sim.handset_sms(HUB, proxy, &reply).await;
    }
    for (i, (person, proxy, _)) in sessions.iter().enumerate() {
        let text = format!("reply to {i}");
        let seen = wait_texts(
            &sim,
            person,
            std::slice::from_ref(&text),
            Duration::from_secs(60),
        )
        .await;
        assert_all_from(&seen, &[text], proxy, 0, &[&site1, &site2]);
        assert_eq!(seen.len(), 1, "{person}: {seen:?}");
    }
    // Nobody saw a real number: the hub and the people only proxies.
    for handset in people.iter().map(String::as_str).chain([HUB]) {
        for message in sim.messages(handset).await {
            let from = message["from"].as_str().unwrap();
            assert!(proxies.contains(from), "{handset} got one from {from}");
        }
    }

    // The hub calls each appliance's SIM and keys a session's code: the
    // SIM's holder finds the hub's conversations in the fleet's database
    // and the call reaches that person, showing the proxy.
    for proxy in &proxies {
        let (person, _, code) = sessions
            .iter()
            .find(|(_, p, _)| p == proxy)
            .expect("a session on the SIM");
        sim.act(HUB, "dial", json!({"to": proxy})).await;
        sim.wait_call(HUB, "answered by the proxy", |s| s["state"] == "active")
            .await;
        // The hub hears no prompt: it keys once the call is answered.
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.act(HUB, "dtmf", json!({"digits": hub::keys(code)}))
            .await;
        sim.answer_through(proxy, HUB, person).await;
        sim.hang_up(HUB, person).await;
    }

    // Removed through site-1: every session of the hub ends, fleet-wide.
    let id = made["id"].as_str().unwrap();
    let (status, removed) = site1
        .daemon()
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/hubs/{id}"),
            json!(null),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {removed}");
    let open = site2.daemon().get("/api/v1/sessions?status=open").await;
    let open = open
        .as_array()
        .or_else(|| open["sessions"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(open.is_empty(), "{open:?}");
}
