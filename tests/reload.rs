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
