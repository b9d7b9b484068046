//! `systemctl reload simmask` is SIGHUP: the daemon re-reads its file, puts
//! in force the port globs and the out-of-session policy (among the rest)
//! without a restart, says in the log what it did not apply, and keeps the
//! configuration in force when the new file is broken.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, Process, Sim, client, free_port, write_config};
use nix::sys::signal::Signal;
use serde_json::Value;

fn log_has(log: &std::path::Path, words: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(words)
}

fn wait_log(log: &std::path::Path, words: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log_has(log, words) {
        assert!(
            Instant::now() < deadline,
            "no {words:?} in the log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_ports_and_policy_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    // Start with globs that match no modem.
    let config = write_config(dir.path(), &sim, port, "");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, original.replace("/modem*", "/none*")).unwrap();

    let log = dir.path().join("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "simmask=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon {
        process: Process { child },
        url: format!("http://127.0.0.1:{port}"),
        config: config.clone(),
    };
    daemon.wait_ready(0).await;
    wait_log(&log, "simmask running");

    // A broken file changes nothing, and SIGHUP does not stop the daemon.
    std::fs::write(&config, "[api]\nlisten = 12\n").unwrap();
    daemon.process.signal(Signal::SIGHUP);
    wait_log(&log, "reload: the file was not applied");
    assert!(
        client()
            .get(format!("{}/healthz", daemon.url))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Now the modems' globs, an auto-reply for strangers, and a listen
    // address (which needs a restart).
    let reloaded = original.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1")
        + "\n[out_of_session]\npolicy = \"auto-reply\"\ntext = \"This number is not in use.\"\n";
    std::fs::write(&config, reloaded).unwrap();
    daemon.process.signal(Signal::SIGHUP);
    wait_log(&log, "configuration reloaded");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("modems.ports") && text.contains("out_of_session"),
        "{text}"
    );
    assert!(
        text.contains("not applied") && text.contains("api.listen"),
        "{text}"
    );

    // The new globs find the modem; the old listener still serves.
    daemon.wait_ready(1).await;
    let numbers: Value = daemon.get("/api/v1/numbers").await;
    assert_eq!(numbers.as_array().map(Vec::len), Some(1), "{numbers}");

    // The new policy answers a stranger.
    let proxy = sim.msisdn(0);
    sim.handset_sms("+447911000111", &proxy, "hello?").await;
    let replies = sim
        .wait_messages("+447911000111", 1, Duration::from_secs(20))
        .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["text"], "This number is not in use.");
    assert_eq!(replies[0]["from"], proxy.as_str());
}

/// Starts `simmask run` with its log in `dir/daemon.log`.
async fn start_logged(dir: &std::path::Path, config: &std::path::Path, port: u16) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["run", "--config"])
        .arg(config)
        .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "simmask=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon {
        process: Process { child },
        url: format!("http://127.0.0.1:{port}"),
        config: config.to_path_buf(),
    }
}

/// Rewrites the file with `[sms] per_day = per_day`, sends SIGHUP and waits
/// for the `count`th "configuration reloaded".
fn reload_per_day(
    daemon: &Daemon,
    original: &str,
    per_day: u32,
    log: &std::path::Path,
    count: usize,
) {
    let text = original.replace("per_day = 100000", &format!("per_day = {per_day}"));
    assert!(text.contains(&format!("\nper_day = {per_day}\n")), "{text}");
    std::fs::write(&daemon.config, text).unwrap();
    daemon.process.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("configuration reloaded")
        .count()
        < count
    {
        assert!(Instant::now() < deadline, "reload {count} not logged");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_changes_the_send_limits_of_the_api_and_of_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let original = std::fs::read_to_string(&config).unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = start_logged(dir.path(), &config, port).await;
    daemon.wait_ready(1).await;
    let proxy = sim.msisdn(0);
    let (alice, bob) = ("+447911123456", "+447912345678");
    daemon.open_session(alice, bob, serde_json::json!({})).await;

    // One message a day now: the API shows it, as the limit and as the
    // SIM's budget.
    reload_per_day(&daemon, &original, 1, &log, 1);
    assert!(log_has(&log, "sms.per_day"));
    let status: Value = daemon.get("/api/v1/status").await;
    assert_eq!(status["limits"]["per_day"], 1, "{status}");
    let numbers: Value = daemon.get("/api/v1/numbers").await;
    assert_eq!(
        numbers[0]["budgets"]["messages_today"]["limit"], 1,
        "{numbers}"
    );

    // The outbox sends one, then holds the next.
    sim.handset_sms(alice, &proxy, "one").await;
    let got = sim.wait_messages(bob, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    sim.handset_sms(alice, &proxy, "two").await;
    let held = sim.wait_messages(bob, 2, Duration::from_secs(4)).await;
    assert_eq!(held.len(), 1, "the day's budget is spent: {held:?}");

    // A larger budget by reload releases it, without a restart.
    reload_per_day(&daemon, &original, 100000, &log, 2);
    let got = sim.wait_messages(bob, 2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["text"], "two");
    let status: Value = daemon.get("/api/v1/status").await;
    assert_eq!(status["limits"]["per_day"], 100000, "{status}");
}
