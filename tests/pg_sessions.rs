//! A session's life past its opening on a fleet, on a real PostgreSQL
//! started by the test: retiring a SIM, reopening a session, the number's
//! traffic history, a clock step, bulk import. Through the doors a user
//! uses (two `simmask run` daemons on one `simmask sim`, their APIs, the
//! CLI) and, for what has no door of its own on a fleet yet, the store.

mod common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration as StdDuration;

use common::{Daemon, Sim, free_port, write_config};
use pg_common::Postgres;
use serde_json::{Value, json};
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::number::PhoneNumber;
use simmask::store::{ImportedSession, LiveSim, Location, NewSession, Store, StoreError};
use time::{Duration, OffsetDateTime};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";

/// A daemon's configuration in `dir`: the modem `modem` of `sim` only, the
/// fleet's database, the appliance's name.
fn fleet_config(dir: &Path, sim: &Sim, modem: usize, port: u16, url: &str, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let appliance = format!("[appliance]\nname = \"{name}\"\nheartbeat_timeout_seconds = 3\n");
    let path = write_config(dir, sim, port, &appliance);
    pg_common::store_in_postgres(&path, url);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("/modem*\"]", &format!("/modem{modem}\"]"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `simmask ARGS --config CONFIG`: exit code, JSON on stdout, stderr.
fn simmask(config: &Path, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("simmask runs");
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn numbers_of(daemon_numbers: &Value, appliance: &str) -> Value {
    daemon_numbers
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["appliance"] == appliance)
        .unwrap_or_else(|| panic!("no SIM of {appliance}: {daemon_numbers}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_reopen_and_history_work_through_any_appliance() {
    let pg = Postgres::start();
    let url = pg.database("lifecycle").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "quectel-ec25");
    let (dir1, dir2) = (dir.path().join("site-1"), dir.path().join("site-2"));
    let (port1, port2) = (free_port(), free_port());
    let config1 = fleet_config(&dir1, &sim, 0, port1, &url, "site-1");
    let config2 = fleet_config(&dir2, &sim, 1, port2, &url, "site-2");
    let within = StdDuration::from_secs(60);
    let site1 = Daemon::start_logged(&config1, port1, 1, &dir1.join("daemon.log"), within).await;
    let site2 = Daemon::start_logged(&config2, port2, 2, &dir2.join("daemon.log"), within).await;
    site1.wait_ready(2).await;

    // Only site-1's SIM takes sessions: site-2's is disabled.
    let numbers = site2.get("/api/v1/numbers").await;
    let (sim1, sim2) = (
        numbers_of(&numbers, "site-1"),
        numbers_of(&numbers, "site-2"),
    );
    let (iccid1, iccid2) = (
        sim1["id"].as_str().unwrap().to_string(),
        sim2["id"].as_str().unwrap().to_string(),
    );
    let (status, body) = site2
        .api(
            reqwest::Method::PUT,
            &format!("/api/v1/numbers/{iccid2}"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A session opened through site-2 lands on site-1's SIM and relays.
    let session = site2.open_session(A, B, json!({"mode": "sms"})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    assert_eq!(proxy, sim1["msisdn"].as_str().unwrap());
    sim.handset_sms(A, &proxy, "first").await;
    let got = sim.wait_texts(B, &["first".into()], within).await;
    assert!(got.iter().any(|m| m["text"] == "first"), "{got:?}");

    // The number's history, through the appliance that does not hold it:
    // the part received and the message sent this hour.
    let history_path = format!("/api/v1/numbers/{iccid1}/history");
    let mut traffic = Value::Null;
    for _ in 0..100 {
        traffic = site2.get(&history_path).await["traffic"].clone();
        let hours = traffic.as_array().expect("traffic");
        if hours.iter().any(|h| h["received"] == 1 && h["sent"] == 1) {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let hours = traffic.as_array().expect("traffic");
    assert_eq!(hours.len(), 1, "{traffic}");
    assert_eq!(
        (&hours[0]["received"], &hours[0]["sent"]),
        (&json!(1), &json!(1)),
        "{traffic}"
    );
    let (status, _) = site2
        .api(
            reqwest::Method::GET,
            "/api/v1/numbers/nope/history",
            json!(null),
        )
        .await;
    assert_eq!(status, 404);

    // Closed through site-1, reopened through site-2: site-1 relays again.
    let (status, closed) = site1
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            json!(null),
        )
        .await;
    assert_eq!(
        (status, &closed["status"]),
        (200, &json!("closed")),
        "{closed}"
    );
    let (status, reopened) = site2
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            json!({"ttl_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{reopened}");
    assert_eq!(reopened["status"], "open", "{reopened}");
    assert_eq!(reopened["close_reason"], Value::Null, "{reopened}");
    assert_eq!(
        site1.get(&format!("/api/v1/sessions/{id}")).await["status"],
        "open"
    );
    sim.handset_sms(B, &proxy, "second").await;
    let got = sim.wait_texts(A, &["second".into()], within).await;
    assert!(got.iter().any(|m| m["text"] == "second"), "{got:?}");
    // Both relayed messages counted fleet-wide (MQTT's daily figure).
    let store = connect(&url, "site-2").await;
    let since = OffsetDateTime::now_utc() - Duration::hours(1);
    assert_eq!(store.messages_relayed_since(since).await.unwrap(), 2);
    // And `simmask export` with the other appliance's configuration reads
    // them from the fleet's database too.
    let export = dir.path().join("export.jsonl");
    let from = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, summary, stderr) = simmask(
        &config1,
        &[
            "export",
            "interactions",
            "--from",
            &from,
            "--format",
            "jsonl",
            "--show-numbers",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        summary["bytes"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    let exported: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let bodies: Vec<&str> = exported.iter().filter_map(|i| i["body"].as_str()).collect();
    assert!(
        bodies.contains(&"first") && bodies.contains(&"second"),
        "{exported:?}"
    );
    assert_eq!(
        store
            .messages_relayed_since(OffsetDateTime::now_utc() + Duration::hours(1))
            .await
            .unwrap(),
        0
    );
    // Open already: a precise refusal, not a 500.
    let (status, body) = site1
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("session_open")),
        "{body}"
    );

    // Closed again, and A has a new session on the same proxy: reopening
    // the old one would put A twice on it (the masking rule).
    site2
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            json!(null),
        )
        .await;
    let newer = site1.open_session(A, C, json!({"mode": "sms"})).await;
    assert_eq!(newer["proxy_number"], proxy.as_str());
    let (status, body) = site2
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("participant_busy")),
        "{body}"
    );

    // The CLI on site-1's configuration reopens on the fleet too, once
    // the newer session is closed.
    site1
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{}", newer["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    let (code, cli, stderr) = simmask(&config1, &["session", "reopen", &id, "--ttl", "1h"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cli["status"], "open", "{cli}");

    // Retired through site-2 (site-1 holds the SIM): the decision is the
    // fleet's, its open sessions end, and both APIs say so.
    let (status, retired) = site2
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/numbers/{iccid1}/retire"),
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!(retired["sessions_closed"], json!([id]), "{retired}");
    assert_eq!(retired["number"]["enabled"], false, "{retired}");
    for site in [&site1, &site2] {
        let session = site.get(&format!("/api/v1/sessions/{id}")).await;
        assert_eq!(session["status"], "closed", "{session}");
        assert_eq!(session["close_reason"], "sim_retired", "{session}");
        let number = numbers_of(&site.get("/api/v1/numbers").await, "site-1");
        assert_eq!(number["enabled"], false, "{number}");
    }
    // No SIM takes sessions any more (site-2's disabled, site-1's retired).
    let (status, body) = site1
        .api(
            reqwest::Method::POST,
            "/api/v1/sessions",
            json!({"participants": [A, B]}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("no_free_proxy")),
        "{body}"
    );
    let (status, body) = site1
        .api(
            reqwest::Method::POST,
            "/api/v1/numbers/nope/retire",
            json!(null),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

// What follows has no door of its own on a fleet (the clock's follower is
// a daemon loop, import is the benchmark rig's): the store, as they use it.

const TIMEOUT: StdDuration = StdDuration::from_secs(30);

async fn connect(url: &str, appliance: &str) -> Store {
    Store::connect(&Location::Postgres(url.into()), appliance, TIMEOUT)
        .await
        .unwrap()
}

fn number(text: &str) -> PhoneNumber {
    PhoneNumber::from_e164(text).unwrap()
}

fn live(iccid: &str) -> LiveSim {
    LiveSim {
        iccid: iccid.into(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }
}

fn new_session(a: &str, b: &str, proxy: &str) -> NewSession {
    NewSession {
        participants: [number(a), number(b)],
        ttl: Some(Duration::hours(1)),
        idle_ttl: Some(Duration::minutes(30)),
        mode: Mode::Sms,
        label: None,
        actor: "test".into(),
        limits: PoolLimits::default(),
        sticky: false,
        proxy: Some(proxy.into()),
        fallback_number: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_moves_only_the_deadlines_this_appliances_clock_wrote() {
    let pg = Postgres::start();
    let url = pg.database("clocks").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    site1
        .upsert_sim(
            "p1".into(),
            number("+447700900001"),
            String::new(),
            None,
            now,
        )
        .await
        .unwrap();
    // One session opened on each appliance; the first one's activity is
    // then stamped by site-2 (its API relayed, say).
    let one = site1
        .open_session(new_session(A, B, "p1"), vec![live("p1")], now)
        .await
        .unwrap();
    let two = site2
        .open_session(new_session(C, B, "p1"), vec![live("p1")], now)
        .await
        .unwrap_err();
    // B is in `one` on p1 already: the masking rule.
    assert!(
        matches!(
            two,
            StoreError::Conflict {
                code: "participant_busy",
                ..
            }
        ) || matches!(two, StoreError::Allocation(_)),
        "{two:?}"
    );
    let two = site2
        .open_session(new_session(C, "+447911000999", "p1"), vec![live("p1")], now)
        .await
        .unwrap();
    let touched = now + Duration::minutes(5);
    site2.touch_session(one.id.clone(), touched).await.unwrap();

    // Site-1's clock steps 2 hours forward: its deadline of `one` moves,
    // not the activity site-2 stamped, nor anything of `two`.
    let step = Duration::hours(2);
    assert_eq!(site1.shift_open_sessions(step).await.unwrap(), 1);
    let (one_after, two_after) = (
        site1.session(one.id.clone()).await.unwrap(),
        site1.session(two.id.clone()).await.unwrap(),
    );
    let ms = |t: OffsetDateTime| t.unix_timestamp_nanos() / 1_000_000;
    assert_eq!(
        one_after.expires_at.map(ms),
        one.expires_at.map(|t| ms(t + step))
    );
    assert_eq!(ms(one_after.last_activity_at), ms(touched));
    assert_eq!(two_after.expires_at.map(ms), two.expires_at.map(ms));
    assert_eq!(ms(two_after.last_activity_at), ms(two.last_activity_at));
    // Site-2's step moves its own: `two` whole, and `one`'s activity.
    let back = Duration::minutes(-10);
    assert_eq!(site2.shift_open_sessions(back).await.unwrap(), 2);
    let (one_after, two_after) = (
        site2.session(one.id.clone()).await.unwrap(),
        site2.session(two.id.clone()).await.unwrap(),
    );
    assert_eq!(ms(one_after.last_activity_at), ms(touched + back));
    assert_eq!(
        one_after.expires_at.map(ms),
        one.expires_at.map(|t| ms(t + step))
    );
    assert_eq!(
        two_after.expires_at.map(ms),
        two.expires_at.map(|t| ms(t + back))
    );
    assert_eq!(
        ms(two_after.last_activity_at),
        ms(two.last_activity_at + back)
    );
    // Ended sessions never move.
    site1
        .close_session(two.id.clone(), "test".into(), now)
        .await
        .unwrap();
    assert_eq!(site2.shift_open_sessions(back).await.unwrap(), 1);
    assert_eq!(
        site2
            .session(two.id.clone())
            .await
            .unwrap()
            .expires_at
            .map(ms),
        two_after.expires_at.map(ms)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_is_all_or_nothing_and_keeps_the_masking_rule_fleet_wide() {
    let pg = Postgres::start();
    let url = pg.database("import").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    site1
        .upsert_sim(
            "p1".into(),
            number("+447700900001"),
            String::new(),
            None,
            now,
        )
        .await
        .unwrap();
    let session = |a: &str, b: &str| ImportedSession {
        proxy_iccid: "p1".into(),
        participants: [number(a), number(b)],
        mode: Mode::Both,
        label: Some("imported".into()),
        expires_at: Some(now + Duration::days(1)),
    };
    // Imported through site-2 onto site-1's SIM: routed by it.
    let ids = site2
        .import_sessions(vec![session(A, B), session(C, "+447911000999")], now)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let found = site1
        .open_session_of("p1".into(), number(C))
        .await
        .unwrap()
        .expect("routed");
    assert_eq!(found.id, ids[1]);
    assert_eq!(found.label.as_deref(), Some("imported"));
    // A again on p1 breaks the rule: nothing of the batch is imported.
    let refused = site1
        .import_sessions(
            vec![
                session("+447911000111", "+447911000222"),
                session(A, "+447911000333"),
            ],
            now,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Conflict {
                code: "participant_busy",
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        site1
            .open_session_of("p1".into(), number("+447911000111"))
            .await
            .unwrap()
            .is_none()
    );
    // An unknown proxy is named.
    let mut stray = session("+447911000444", "+447911000555");
    stray.proxy_iccid = "nope".into();
    assert!(matches!(
        site2.import_sessions(vec![stray], now).await,
        Err(StoreError::NoSuchSim(iccid)) if iccid == "nope"
    ));
    // Relayed messages, counted fleet-wide as on SQLite: none yet.
    assert_eq!(
        site2
            .messages_relayed_since(now - Duration::days(1))
            .await
            .unwrap(),
        0
    );
}

/// Waits until some transaction waits for a row lock (the opening's hold
/// on its SIM, in the test below).
async fn until_a_row_lock_is_awaited(raw: &tokio_postgres::Client) {
    for _ in 0..300 {
        let waiting: i64 = raw
            .query_one(
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("the opening did not wait for its SIM's row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_never_lands_on_a_sim_retired_under_it() {
    let pg = Postgres::start();
    let url = pg.database("racing").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    for (iccid, msisdn) in [("p1", "+447700900001"), ("p2", "+447700900002")] {
        site1
            .upsert_sim(iccid.into(), number(msisdn), String::new(), None, now)
            .await
            .unwrap();
    }
    let both = || vec![live("p1"), live("p2")];
    // p2 carries a session: allocation prefers the idle p1.
    site1
        .open_session(new_session(A, B, "p2"), both(), now)
        .await
        .unwrap();

    // Another appliance retires p1 (its transaction holds the SIM's row,
    // not committed yet) while site-2 opens a session that chooses p1.
    let raw = Postgres::client(&url).await;
    let mut retiring = Postgres::client(&url).await;
    let retire = retiring.transaction().await.unwrap();
    retire
        .execute("UPDATE sims SET enabled = FALSE WHERE iccid = 'p1'", &[])
        .await
        .unwrap();
    let mut request = new_session(C, "+447911000999", "p1");
    request.proxy = None;
    let opening = tokio::spawn({
        let site2 = site2.clone();
        async move { site2.open_session(request, both(), now).await }
    });
    until_a_row_lock_is_awaited(&raw).await;
    retire.commit().await.unwrap();
    // It waited, saw p1 withdrawn, and allocated again: on p2.
    let opened = opening.await.unwrap().unwrap();
    assert_eq!(opened.proxy_iccid, "p2");
    let on_p1: i64 = raw
        .query_one(
            "SELECT COUNT(*) FROM sessions WHERE proxy_iccid = 'p1' AND status = 'open'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_p1, 0);
    // Asked for p1 by name: refused, the SIM named as disabled.
    let refused = site2
        .open_session(new_session(C, "+447911000888", "p1"), both(), now)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("disabled"), "{refused}");
}
