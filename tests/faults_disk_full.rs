//! Disk full (issue 13, "Faults"): the store's filesystem fills up while
//! messages arrive. Nothing is deleted from a SIM that was not stored, the
//! API says why it cannot store (`/healthz`, `/api/v1/status`, a 507 on
//! what would write), and when space returns traffic resumes by itself:
//! every message arrives, once.
//!
//! The store lives on a small tmpfs of its own, mounted in a private mount
//! namespace that only the daemon sees (`unshare -m`; `unshare -Urm`, a user
//! namespace, when not root): nothing is mounted on the machine, the mount
//! vanishes with the daemon, and the space is real ENOSPC, as SQLite meets
//! it on a full SD card. `RLIMIT_FSIZE` was the other candidate, but it
//! fails writes with EFBIG (and SIGXFSZ), which SQLite reports as an I/O
//! error, not as a full disk. The test reaches the tmpfs through
//! `/proc/<pid>/root`, which resolves paths in the daemon's namespace.
//!
//! The dashboard, open in headless Chromium all along, shows the full disk
//! in its store banner and drops the banner when space returns.

mod browser_common;
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, Process, Sim, assert_no_numbers_in, free_port, write_config};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911000111";

/// `simmask run` with its store directory on a tmpfs of `size` that only
/// it sees.
fn daemon_on_tmpfs(config: &Path, store_dir: &Path, size: &str, port: u16, log: &Path) -> Daemon {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    let stderr = std::fs::File::create(log).expect("log file");
    let child = Command::new("unshare")
        .args(if root {
            &["-m", "--propagation", "private"][..]
        } else {
            &["-Urm", "--propagation", "private"][..]
        })
        .args([
            "sh",
            "-c",
            r#"mount -t tmpfs -o "size=$1" simmask-test "$2" && shift 2 && exec "$@""#,
            "sh",
            size,
        ])
        .arg(store_dir)
        .arg(env!("CARGO_BIN_EXE_simmask"))
        .args(["run", "--config"])
        .arg(config)
        .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("unshare (util-linux) runs");
    Daemon {
        process: Process { child },
        url: format!("http://127.0.0.1:{port}"),
        config: config.to_path_buf(),
    }
}

/// `path` as the daemon sees it, in its own mount namespace.
fn inside(daemon: &Daemon, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{}/root", daemon.process.child.id()))
        .join(path.strip_prefix("/").expect("absolute"))
}

/// Fills the filesystem of `dir` to the last byte; how much it took.
fn fill(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(error) => panic!("filling {}: {error}", dir.display()),
        }
    }
    // The last partial block too.
    for size in [4096usize, 512, 1] {
        while file.write(&chunk[..size]).is_ok_and(|n| n > 0) {
            written += size as u64;
        }
    }
    let _ = file.sync_all();
    written
}

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

async fn wait_for(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Texts received by `number`, sorted.
async fn texts(sim: &Sim, number: &str) -> Vec<String> {
    let mut texts: Vec<String> = sim
        .messages(number)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect();
    texts.sort();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_messages_on_the_sims_and_traffic_resumes_with_space() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "simcom-sim800,generic");
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    // The store on the tmpfs, everything else where it was.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &dir.path().join("simmask.db").display().to_string(),
        &store_dir.join("simmask.db").display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = daemon_on_tmpfs(&config, &store_dir, "8m", port, &log);
    daemon.wait_ready(2).await;
    assert!(
        inside(&daemon, &store_dir).join("simmask.db").exists(),
        "the store is on the daemon's tmpfs"
    );
    assert!(
        !store_dir.join("simmask.db").exists(),
        "and nowhere else: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let first = daemon.open_session(A, B, json!({"mode": "sms"})).await;
    let second = daemon.open_session(C, D, json!({"mode": "sms"})).await;
    let proxies = [
        first["proxy_number"].as_str().unwrap().to_string(),
        second["proxy_number"].as_str().unwrap().to_string(),
    ];
    assert_ne!(proxies[0], proxies[1]);
    sim.handset_sms(A, &proxies[0], "before the disk filled up")
        .await;
    assert_eq!(
        sim.wait_messages(B, 1, Duration::from_secs(30)).await.len(),
        1
    );
    assert_eq!(healthz(&daemon).await["store"]["writable"], true);
    let browser = browser_common::Browser::start().await;
    browser.sign_in(&daemon.url, ADMIN_TOKEN, 2).await;
    assert_eq!(
        browser.store_banner().await,
        None,
        "a sound store: no banner"
    );

    // The second SIM's network is slow to accept a submit: its relay is in
    // flight when the disk fills up, and the send must still be recorded.
    let slow = sim
        .post("/modems/1/faults", json!({"submit_delay_ms": 3000}))
        .await;
    assert!(slow.status().is_success());
    let in_flight = "sent just before the disk filled up";
    sim.handset_sms(C, &proxies[1], in_flight).await;
    wait_for(
        "the relay is being sent",
        Duration::from_secs(30),
        async || {
            let trace: Vec<Value> = common::client()
                .get(format!("{}/modems/1/trace", sim.control))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            trace
                .iter()
                .any(|t| t["line"].as_str().is_some_and(|l| l.starts_with("AT+CMGS")))
        },
    )
    .await;

    // The disk fills up. Messages keep coming, on both SIMs.
    let filled = fill(&inside(&daemon, &store_dir));
    eprintln!("disk full: {filled} bytes of filler");
    let mut sent = [Vec::new(), vec![in_flight.to_string()]];
    let full_at = Instant::now();
    let mut refused = None;
    for n in 0..60 {
        for (side, (from, proxy)) in [(A, &proxies[0]), (C, &proxies[1])].into_iter().enumerate() {
            let text = format!("while the disk is full, number {n} from side {side}");
            sim.handset_sms(from, proxy, &text).await;
            sent[side].push(text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let health = healthz(&daemon).await;
        if health["store"]["disk_full"] == true {
            refused = Some(health);
            break;
        }
    }
    let health = match refused {
        Some(health) => health,
        None => {
            // Space the WAL could still reuse ran out only now.
            let mut seen = Value::Null;
            wait_for(
                "the store reports the full disk",
                Duration::from_secs(60),
                async || {
                    seen = healthz(&daemon).await;
                    seen["store"]["disk_full"] == true
                },
            )
            .await;
            seen
        }
    };
    eprintln!(
        "disk full reported after {:.1?} and {} messages: {health}",
        full_at.elapsed(),
        sent[0].len() * 2
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");
    let reason = health["store"]["write_error"].as_str().unwrap_or_default();
    assert!(reason.contains("full"), "{health}");

    // The API says why, on what reads and on what would write.
    let status = daemon.get("/api/v1/status").await;
    assert_eq!(status["store"]["ok"], false, "{status}");
    assert!(
        status["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{status}"
    );
    let refused = common::client()
        .post(format!("{}/api/v1/sessions", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"participants": ["+447911555001", "+447911555002"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 507);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "storage_full", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("stay on the SIMs"),
        "{body}"
    );

    // What arrives now stays on the SIMs: nothing is deleted that was not
    // stored, and nothing reaches anybody while the disk is full.
    let delivered_while_full = [texts(&sim, B).await.len(), texts(&sim, D).await.len()];
    for n in 0..20 {
        for (side, (from, proxy)) in [(A, &proxies[0]), (C, &proxies[1])].into_iter().enumerate() {
            let text = format!("still full, number {n} from side {side}");
            sim.handset_sms(from, proxy, &text).await;
            sent[side].push(text);
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, side) in [B, D].into_iter().enumerate() {
        let now = texts(&sim, side).await.len();
        assert_eq!(
            now, delivered_while_full[i],
            "nothing is relayed while nothing can be stored"
        );
    }
    let health = healthz(&daemon).await;
    assert_eq!(health["store"]["disk_full"], true, "still full: {health}");
    browser
        .wait_until(
            "const b = document.getElementById('store');\
             return !b.hidden && b.dataset.diskFull === 'true';",
            "the full disk in its store banner",
        )
        .await;
    let banner = browser.store_banner().await.unwrap_or_default();
    assert!(
        banner.contains("Disk full since") && banner.contains("stay on the SIMs"),
        "{banner}"
    );

    // Space returns: everything goes through by itself, each message once.
    sim.post("/modems/1/faults", json!({"submit_delay_ms": 0}))
        .await;
    std::fs::remove_file(inside(&daemon, &store_dir).join("filler")).unwrap();
    let freed_at = Instant::now();
    for (i, side) in [B, D].into_iter().enumerate() {
        let mut expected = sent[i].clone();
        if i == 0 {
            expected.push("before the disk filled up".into());
        }
        expected.sort();
        let got = sim
            .wait_messages(side, expected.len(), Duration::from_secs(120))
            .await;
        assert!(
            got.len() >= expected.len(),
            "{side}: {} of {}",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            texts(&sim, side).await,
            expected,
            "{side}: each message once"
        );
    }
    eprintln!(
        "traffic resumed: all in {:.1?} after space returned",
        freed_at.elapsed()
    );
    wait_for(
        "the store says it writes again",
        Duration::from_secs(30),
        async || healthz(&daemon).await["store"]["writable"] == true,
    )
    .await;
    let health = healthz(&daemon).await;
    assert_eq!(health["status"], "ok", "{health}");
    browser
        .wait_until(
            "return document.getElementById('store').hidden;",
            "the banner gone once the store writes again",
        )
        .await;
    browser.close().await;
    // And new sessions open again.
    daemon
        .open_session("+447911555001", "+447911555002", json!({"mode": "sms"}))
        .await;

    assert!(daemon.process.terminate(), "a clean exit on SIGTERM");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("a write was refused"), "{logged}");
    assert!(logged.contains("writes work again"), "{logged}");
    assert_no_numbers_in(&logged, &[A, B, C, D].map(String::from), "the daemon's log");
    eprintln!("disk full: done in {:.1?}", started.elapsed());
}
