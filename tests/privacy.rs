//! Privacy from outside: `simmask sim` and `simmask run` as processes. After
//! a day's worth of traffic (relayed SMS both ways, a long message, a
//! stranger, a barred destination, a masked call, a refused request), the
//! daemon's logs at info level hold no participant's number in any form;
//! and `simmask erase` on the live database leaves no trace of the erased
//! number in the database's files.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    ADMIN_TOKEN, Daemon, Process, Sim, free_port, leaks, number_forms as forms, write_config,
};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911000111";
const STRANGER: &str = "+447400123456";

/// Starts `simmask run` with its logs at info level (the default an
/// operator gets) in the journal's format (as the unit runs it) written to
/// `log`.
async fn daemon_logging_to(config: &Path, port: u16, log: &Path) -> Daemon {
    let stderr = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["run", "--log-format", "journald", "--config"])
        .arg(config)
        .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("simmask run");
    let daemon = Daemon {
        process: Process { child },
        url: format!("http://127.0.0.1:{port}"),
        config: config.to_path_buf(),
    };
    daemon.wait_ready(1).await;
    daemon
}

async fn wait_until<F: Fn(&Value) -> bool>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Value,
    done: F,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}; last {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_participant_number_reaches_the_logs_or_survives_an_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "quectel-ec25");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        "[out_of_session]\npolicy = \"auto-reply\"\ntext = \"No conversation here.\"\n",
    );
    let log = dir.path().join("daemon.log");
    let daemon = daemon_logging_to(&config, port, &log).await;

    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let other = daemon.open_session(C, D, json!({})).await;
    assert_eq!(other["proxy_number"], proxy.as_str());

    // A request with a bad number is refused, and says so without echoing it.
    let refused = common::client()
        .post(format!("{}/api/v1/sessions", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"participants": [A, "+4479111234567890"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);

    // SMS both ways, one of them long; a stranger; a barred destination.
    let put = sim
        .put(&format!("/handsets/{D}/state"), json!({"barred": true}))
        .await;
    assert!(put.status().is_success());
    sim.handset_sms(A, &proxy, "meet at the north gate").await;
    sim.handset_sms(B, &proxy, &"on my way, ".repeat(30)).await;
    sim.handset_sms(STRANGER, &proxy, "who is this?").await;
    sim.handset_sms(C, &proxy, "for D, who is barred").await;
    assert_eq!(
        sim.wait_messages(B, 1, Duration::from_secs(30)).await.len(),
        1
    );
    assert_eq!(
        sim.wait_messages(A, 1, Duration::from_secs(30)).await.len(),
        1
    );
    assert_eq!(
        sim.wait_messages(STRANGER, 1, Duration::from_secs(30))
            .await
            .len(),
        1
    );
    let cd = other["id"].as_str().unwrap().to_string();
    wait_until(
        "D's message fails",
        async || {
            daemon
                .get(&format!("/api/v1/sessions/{cd}/interactions"))
                .await
        },
        |body| {
            body.as_array()
                .or_else(|| body["interactions"].as_array())
                .is_some_and(|list| list.iter().any(|i| i["status"] == "failed"))
        },
    )
    .await;

    // A masked call from A to B, and one from the stranger.
    sim.act(A, "dial", json!({"to": proxy})).await;
    wait_until(
        "B rings",
        async || sim.call_state(B).await,
        |s| s["state"] == "ringing",
    )
    .await;
    sim.act(B, "answer", json!({})).await;
    wait_until(
        "A talks to B",
        async || sim.call_state(A).await,
        |s| {
            s["connected_to"]
                .as_array()
                .is_some_and(|c| c.iter().any(|n| n == B))
        },
    )
    .await;
    sim.act(A, "hangup", json!({})).await;
    wait_until(
        "B hung up",
        async || sim.call_state(B).await,
        |s| s["state"] == "idle",
    )
    .await;
    sim.act(STRANGER, "dial", json!({"to": proxy})).await;
    wait_until(
        "the stranger is hung up on",
        async || sim.call_state(STRANGER).await,
        |s| s["state"] == "idle",
    )
    .await;

    // A viewer sees the sessions with masked numbers, and cannot find
    // them by a whole number either.
    let created = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["token", "create", "watcher", "--role", "viewer", "--config"])
        .arg(&config)
        .output()
        .expect("simmask token create");
    assert!(created.status.success());
    let shown: Value = serde_json::from_slice(&created.stdout).expect("token JSON");
    let viewer = shown["token"].as_str().expect("token").to_string();
    let id = session["id"].as_str().unwrap();
    let seen: Value = common::client()
        .get(format!("{}/api/v1/sessions/{id}", daemon.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        seen["participants"],
        json!(["+44*******456", "+44*******678"])
    );
    for number in [A, B] {
        let search = common::client()
            .post(format!("{}/api/v1/sessions/search", daemon.url))
            .bearer_auth(&viewer)
            .json(&json!({"participant": number}))
            .send()
            .await
            .unwrap();
        assert_eq!(search.status().as_u16(), 403, "a viewer searching {number}");
    }

    // The session ends; A asks to be forgotten while the daemon runs.
    let closed = common::client()
        .delete(format!("{}/api/v1/sessions/{id}", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success());
    let erase = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["erase", A, "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .expect("simmask erase");
    let erase_log = String::from_utf8_lossy(&erase.stderr).to_string();
    assert!(erase.status.success(), "{erase_log}");
    let erased: Value = serde_json::from_slice(&erase.stdout).expect("erase JSON");
    assert_eq!(erased["erased"]["participants"], 1, "{erased}");
    // The session's record stays, with A shown as erased.
    let record = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(record["participants"], json!(["[erased]", B]), "{record}");

    // Nothing in the database's files holds A's number or the texts any more.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("simmask.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_ascii_uppercase();
        for needle in forms(A)
            .into_iter()
            .chain(["MEET AT THE NORTH GATE".into(), "ON MY WAY".into()])
        {
            assert!(!text.contains(&needle), "{needle} in {name}");
        }
    }

    // The logs say what happened, and never to whom.
    let mut daemon = daemon;
    assert!(daemon.process.terminate(), "a clean exit on SIGTERM");
    let logged = std::fs::read_to_string(&log).unwrap();
    for expected in ["SIM up", "session opened", "session closed"] {
        assert!(logged.contains(expected), "{expected}:\n{logged}");
    }
    // The journal's format: each line's syslog priority first (info 6,
    // warning 4, error 3), no time stamp of its own; each line names the
    // modem, SIM or session it concerns.
    for line in logged.lines().filter(|l| !l.is_empty()) {
        assert!(
            ["<3>", "<4>", "<6>"].iter().any(|p| line.starts_with(p)),
            "not a journal line: {line}"
        );
        assert!(!line[3..].starts_with("20"), "a time stamp: {line}");
    }
    let line_with = |words: &str| {
        logged
            .lines()
            .find(|l| l.contains(words))
            .unwrap_or_else(|| panic!("{words}:\n{logged}"))
    };
    let tail = &sim.iccid(0)[sim.iccid(0).len() - 4..];
    let modem = line_with("modem initialised");
    assert!(
        modem.starts_with("<6>") && modem.contains(&format!(" iccid={tail}}}")),
        "{modem}"
    );
    assert!(line_with("SIM up").contains(&sim.iccid(0)));
    assert!(line_with("session opened").contains("session=ses_"));
    // The barred destination: a warning, from the SIM's outbox, about a
    // session.
    let failed = line_with("sms send failed");
    assert!(
        failed.starts_with("<4>")
            && failed.contains(&format!("sim{{id={tail}}}"))
            && failed.contains("session=ses_"),
        "{failed}"
    );
    for number in [A, B, C, D, STRANGER] {
        let found = leaks(&logged, number);
        assert!(
            found.is_empty(),
            "{number} in the daemon's log:\n{found:#?}"
        );
        let found = leaks(&erase_log, number);
        assert!(found.is_empty(), "{number} in erase's log:\n{found:#?}");
    }
}

#[test]
fn the_leak_finder_sees_every_form_of_a_number() {
    let log =
        "a +447911123456 b\nnational 07911123456\npdu 0C91449711214365\nclean +*********456\n";
    assert_eq!(
        leaks(log, A),
        [
            "a +447911123456 b",
            "national 07911123456",
            "pdu 0C91449711214365"
        ]
    );
    assert!(leaks(log, B).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_of_ended_sessions_are_forgotten_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "see you").await;
    assert_eq!(
        sim.wait_messages(B, 1, Duration::from_secs(30)).await.len(),
        1
    );
    let id = session["id"].as_str().unwrap();
    let closed = common::client()
        .delete(format!("{}/api/v1/sessions/{id}", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success());
    let mut daemon = daemon;
    assert!(daemon.process.terminate(), "a clean exit on SIGTERM");
    drop(daemon);
    // Kept by default, across a restart.
    let daemon = Daemon::start(&config, port, 1).await;
    let record = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(record["participants"], json!([A, B]), "{record}");
    let mut daemon = daemon;
    assert!(daemon.process.terminate());
    drop(daemon);

    // Configured to forget at once: the retention sweep at start-up does.
    let config = write_config(
        dir.path(),
        &sim,
        port,
        "forget_numbers_days = 0\n", // lands in [sessions], the last section
    );
    let daemon = Daemon::start(&config, port, 1).await;
    let record = wait_until(
        "the numbers are forgotten",
        async || daemon.get(&format!("/api/v1/sessions/{id}")).await,
        |record| record["participants"] == json!(["[erased]", "[erased]"]),
    )
    .await;
    assert_eq!(record["status"], "closed", "{record}");
    let interactions = daemon
        .get(&format!("/api/v1/sessions/{id}/interactions"))
        .await;
    let list = interactions
        .as_array()
        .or_else(|| interactions["interactions"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "the record stays: {interactions}");
}
