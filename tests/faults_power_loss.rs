//! Power loss (issue 13, "Faults"): the daemon killed in the middle of its
//! writes leaves a store that opens (WAL), and every start checks the file
//! (`PRAGMA quick_check`) and says so: in its log, on `/healthz` and on
//! `/api/v1/status`; `simmask doctor` runs the same check. A file with a
//! torn page is named as damaged, and the appliance still serves (a
//! supervisor restarting it would not mend the file).
//!
//! A kill -9 loses what the process had not handed to the kernel; a power
//! cut also loses what the kernel had not written. The second is covered by
//! the store's fsync of the log before it answers the commits that precede a
//! SIM delete (see the store) and cannot be produced on this machine; the
//! torn page below is what a cut in the middle of a page write leaves.

mod browser_common;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, Sim, assert_no_numbers_in, free_port, write_config};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";

async fn healthz(daemon: &Daemon) -> Value {
    common::client()
        .get(format!("{}/healthz", daemon.url))
        .send()
        .await
        .expect("healthz answers")
        .json()
        .await
        .expect("JSON")
}

/// `/healthz` once the start-up check has finished.
async fn checked(daemon: &Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = healthz(daemon).await;
        if !matches!(
            health["store"]["integrity"].as_str(),
            Some("checking" | "unchecked")
        ) {
            return health;
        }
        assert!(Instant::now() < deadline, "the check never ended: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `simmask doctor --json`'s integrity line.
fn doctor_integrity(config: &Path, root: &Path) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["doctor", "--json", "--config"])
        .arg(config)
        .arg("--root")
        .arg(root)
        .output()
        .expect("simmask doctor");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let checks = report["checks"]
        .as_array()
        .or_else(|| report.as_array())
        .cloned()
        .unwrap_or_default();
    checks
        .into_iter()
        .find(|c| c["name"] == "integrity")
        .unwrap_or_else(|| panic!("no integrity check in {report}"))
}

/// Overwrites the first byte of `table`'s root page with a value that is no
/// b-tree page type, as a torn write leaves it. The table is filled first
/// so that its root is an interior page of its own.
fn tear_a_page(db: &Path, table: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (x TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO {table} SELECT hex(randomblob(40)) FROM n;"
    ))
    .unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    // Closing checkpoints the WAL into the file.
    drop(conn);
    let mut bytes = std::fs::read(db).unwrap();
    let offset = usize::try_from((root - 1) * page_size).unwrap();
    bytes[offset] = 0x63;
    std::fs::write(db, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_write_leaves_a_store_that_opens_and_every_start_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let db = dir.path().join("simmask.db");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let log = dir.path().join("daemon.log");

    let mut daemon = Daemon::start_logged(&config, port, 1, &log, Duration::from_secs(60)).await;
    let health = checked(&daemon).await;
    assert_eq!(health["store"]["integrity"], "ok", "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    let session = daemon.open_session(A, B, json!({"mode": "sms"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();

    // A burst, and the kill while it is being stored and relayed.
    let mut sent = Vec::new();
    for n in 0..20 {
        let text = format!("burst {n} before the power went");
        sim.handset_sms(A, &proxy, &text).await;
        sent.push(text);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    daemon.process.signal(Signal::SIGKILL);
    let _ = daemon.process.child.wait();
    assert!(
        dir.path().join("simmask.db-wal").exists(),
        "killed with a write-ahead log to recover"
    );

    // The next start opens it, checks it and says so; nothing is lost.
    let daemon = Daemon::start_logged(&config, port, 1, &log, Duration::from_secs(60)).await;
    let health = checked(&daemon).await;
    assert_eq!(health["store"]["integrity"], "ok", "{health}");
    assert!(health["store"]["checked_at"].is_string(), "{health}");
    let status = daemon.get("/api/v1/status").await;
    assert_eq!(status["store"]["condition"]["integrity"], "ok", "{status}");
    assert_eq!(status["store"]["ok"], true, "{status}");
    let got = sim
        .wait_messages(B, sent.len(), Duration::from_secs(60))
        .await;
    let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
    for text in &sent {
        assert!(texts.contains(&text.as_str()), "{text} lost: {texts:?}");
    }
    drop(daemon);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches("store integrity check: ok").count(),
        2,
        "each start says so: {logged}"
    );
    let line = doctor_integrity(&config, &root);
    assert_eq!(line["ok"], true, "{line}");

    // A torn page: the start names the damage, and still serves.
    tear_a_page(&db, "scratch_torn");
    let daemon = Daemon::start_logged(&config, port, 1, &log, Duration::from_secs(60)).await;
    let health = checked(&daemon).await;
    assert_eq!(health["store"]["integrity"], "failed", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["store"]["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{health}"
    );
    let status = daemon.get("/api/v1/status").await;
    assert_eq!(status["store"]["ok"], false, "{status}");
    assert!(status["store"]["error"].is_string(), "{status}");
    // The dashboard says so at the top of the page.
    let browser = browser_common::Browser::start().await;
    browser.sign_in(&daemon.url, ADMIN_TOKEN, 1).await;
    browser
        .wait_until(
            "const b = document.getElementById('store');\
             return !b.hidden && b.dataset.integrity === 'failed';",
            "the damaged store in its banner",
        )
        .await;
    let banner = browser.store_banner().await.unwrap_or_default();
    assert!(
        banner.starts_with("Store damaged:") && banner.contains("simmask restore"),
        "{banner}"
    );
    browser.close().await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("store integrity check FAILED"), "{logged}");
    let line = doctor_integrity(&config, &root);
    assert_eq!(line["ok"], false, "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("damaged"),
        "{line}"
    );
    drop(daemon);
    assert_no_numbers_in(&logged, &[A, B].map(String::from), "the daemon's log");
}
