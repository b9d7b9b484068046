//! Two appliances, one pool: two `simmask run` daemons share one
//! PostgreSQL (started by the test), each driving one modem of the virtual
//! network as its bank. Both APIs list the same pool and sessions, and the
//! masking rule holds across them, and each API's event stream carries
//! the other appliance's events. (Relaying SMS through a fleet is
//! `pg_relay_e2e`'s.)

mod common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use pg_common::Postgres;
use serde_json::json;

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911777999";

/// A daemon's configuration in `dir`: the modem `modem` of `sim` only, the
/// fleet's database, the appliance's name.
fn fleet_config(dir: &Path, sim: &Sim, modem: usize, port: u16, url: &str, name: &str) -> PathBuf {
    let path = write_config(dir, sim, port, &format!("[appliance]\nname = \"{name}\"\n"));
    pg_common::store_in_postgres(&path, url);
    // Only the modem `modem` of the simulated bank.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("/modem*\"]", &format!("/modem{modem}\"]"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The event stream of `daemon`'s API.
async fn feed(daemon: &Daemon) -> reqwest::Response {
    let response = common::client()
        .get(format!("{}/api/v1/events", daemon.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
}

/// Every event `feed` carried until one satisfies `done` (or, with
/// `done` never true, until `wait` passes), in order.
async fn events_until(
    feed: &mut reqwest::Response,
    wait: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + wait;
    let mut buffer = String::new();
    loop {
        let events: Vec<serde_json::Value> = buffer
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect();
        if events.iter().any(&done) {
            return events;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return events;
        }
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, feed.chunk()).await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_one_pool_and_one_session_list() {
    let pg = Postgres::start();
    let url = pg.database("fleet").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    let (dir1, dir2) = (dir.path().join("site-1"), dir.path().join("site-2"));
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    let (port1, port2) = (free_port(), free_port());
    let config1 = fleet_config(&dir1, &sim, 0, port1, &url, "site-1");
    let config2 = fleet_config(&dir2, &sim, 1, port2, &url, "site-2");
    let log1 = dir1.join("daemon.log");
    let log2 = dir2.join("daemon.log");
    let daemon1 = Daemon::start_logged(&config1, port1, 1, &log1, Duration::from_secs(60)).await;
    // The second daemon sees its own SIM and the first's: one pool.
    let daemon2 = Daemon::start_logged(&config2, port2, 2, &log2, Duration::from_secs(60)).await;
    daemon1.wait_ready(2).await;

    let iccids = |numbers: &serde_json::Value| -> Vec<String> {
        let mut iccids: Vec<String> = numbers
            .as_array()
            .expect("a list")
            .iter()
            .map(|n| n["iccid"].as_str().unwrap().to_string())
            .collect();
        iccids.sort();
        iccids
    };
    let pool1 = daemon1.get("/api/v1/numbers").await;
    let pool2 = daemon2.get("/api/v1/numbers").await;
    let mut expected = vec![sim.iccid(0), sim.iccid(1)];
    expected.sort();
    assert_eq!(iccids(&pool1), expected);
    assert_eq!(iccids(&pool2), expected);
    // Each SIM names the appliance that holds it, on both APIs.
    for pool in [&pool1, &pool2] {
        for number in pool.as_array().unwrap() {
            let holder = if number["iccid"] == json!(sim.iccid(0)) {
                "site-1"
            } else {
                "site-2"
            };
            assert_eq!(number["appliance"], json!(holder), "{number}");
        }
    }

    // A person talks to two others: the second session must take the
    // other proxy, whichever appliance's API opens it.
    let (mut feed1, mut feed2) = (feed(&daemon1).await, feed(&daemon2).await);
    let first = daemon1.open_session(A, B, json!({"label": "one"})).await;
    // One stream covers the fleet: the session opened through site-1
    // shows on site-2's stream, naming where it happened.
    let opened = |id: &serde_json::Value| {
        let id = id.clone();
        move |e: &serde_json::Value| e["kind"] == "session_opened" && e["session_id"] == id
    };
    let seen = events_until(&mut feed2, Duration::from_secs(30), opened(&first["id"])).await;
    let remote = seen
        .iter()
        .find(|e| opened(&first["id"])(e))
        .unwrap_or_else(|| panic!("site-1's session_opened not on site-2's stream: {seen:?}"));
    assert_eq!(remote["appliance"], json!("site-1"), "{remote}");
    assert_eq!(remote["proxy_number"], first["proxy_number"], "{remote}");
    let second = daemon2.open_session(A, C, json!({"label": "two"})).await;
    assert_ne!(first["proxy_number"], second["proxy_number"]);
    // And the other way; site-1's own event is there once, without an
    // appliance, never echoed back from the fleet.
    let mut seen = events_until(&mut feed1, Duration::from_secs(30), opened(&second["id"])).await;
    seen.extend(events_until(&mut feed1, Duration::from_secs(2), |_| false).await);
    let of_second: Vec<_> = seen.iter().filter(|e| opened(&second["id"])(e)).collect();
    assert_eq!(of_second.len(), 1, "{seen:?}");
    assert_eq!(of_second[0]["appliance"], json!("site-2"), "{seen:?}");
    let of_first: Vec<_> = seen.iter().filter(|e| opened(&first["id"])(e)).collect();
    assert_eq!(of_first.len(), 1, "{seen:?}");
    assert!(of_first[0].get("appliance").is_none(), "{seen:?}");
    // A third with the same person has no proxy left, on either API.
    let refused = common::client()
        .post(format!("{}/api/v1/sessions", daemon1.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"participants": [A, D]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);

    // Both APIs list both sessions, and each finds the other's.
    for daemon in [&daemon1, &daemon2] {
        let listed = daemon.get("/api/v1/sessions").await;
        let ids: Vec<&str> = listed["sessions"]
            .as_array()
            .or_else(|| listed.as_array())
            .expect("sessions")
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&first["id"].as_str().unwrap()), "{listed}");
        assert!(ids.contains(&second["id"].as_str().unwrap()), "{listed}");
    }
    let seen = daemon2
        .get(&format!(
            "/api/v1/sessions/{}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(seen["proxy_number"], first["proxy_number"]);

    // Closing through the other API frees the proxy for both.
    let closed = common::client()
        .delete(format!(
            "{}/api/v1/sessions/{}",
            daemon2.url,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        closed.status().is_success(),
        "{}",
        closed.text().await.unwrap()
    );
    daemon1.open_session(A, D, json!({})).await;
    if std::env::var_os("SIMMASK_PG_SHOW_LOGS").is_some() {
        for log in [&log1, &log2] {
            for line in std::fs::read_to_string(log).unwrap().lines() {
                if line.contains("ERROR") || line.contains("WARN") {
                    println!("{line}");
                }
            }
        }
    }
}

/// `/healthz` of a fleet appliance while PostgreSQL is stopped and after
/// it is back: the outage, since when, and the status degraded.
async fn health_until(
    daemon: &Daemon,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let health: serde_json::Value = common::client()
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
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not seen: {health}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_the_database_away_and_back() {
    let pg = Postgres::start();
    let url = pg.database("outage").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = fleet_config(dir.path(), &sim, 0, port, &url, "site-1");
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_logged(&config, port, 1, &log, Duration::from_secs(60)).await;

    let up = health_until(&daemon, "a healthy store", |h| h["status"] == "ok").await;
    assert_eq!(up["store"]["backend"], json!("postgres"), "{up}");
    assert_eq!(up["store"]["database_reachable"], json!(true), "{up}");
    assert!(up["store"]["unreachable_since"].is_null(), "{up}");

    let stopped_at = time::OffsetDateTime::now_utc();
    pg.stop();
    let away = health_until(&daemon, "the outage", |h| {
        h["store"]["database_reachable"] == json!(false)
    })
    .await;
    assert_eq!(away["status"], json!("degraded"), "{away}");
    let since = time::OffsetDateTime::parse(
        away["store"]["unreachable_since"].as_str().expect("since"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(since >= stopped_at - time::Duration::seconds(1), "{away}");
    assert!(
        !away["store"]["database_error"]
            .as_str()
            .expect("why")
            .is_empty(),
        "{away}"
    );
    // The url's password would never be there; the url itself is not.
    assert!(!away.to_string().contains("postgres://"), "{away}");

    pg.start_again();
    let back = health_until(&daemon, "the database back", |h| h["status"] == "ok").await;
    assert_eq!(back["store"]["database_reachable"], json!(true), "{back}");
    assert!(back["store"]["database_error"].is_null(), "{back}");
    // The store answers again through the API.
    daemon.get("/api/v1/numbers").await;
}
