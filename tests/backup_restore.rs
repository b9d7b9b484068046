//! Backup while running, restore onto a fresh installation: the session,
//! its interactions and the API token made before come back and keep
//! working (an SMS is relayed in the restored session). `simmask restore`
//! refuses a running daemon, an existing database without `--replace`, and
//! a file that is not a simmask backup, each with a precise message.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, Sim, client, free_port, write_config};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";

fn simmask(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn get_with(daemon: &Daemon, token: &str, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}{path}", daemon.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restored_on_a_fresh_install_keeps_sessions_interactions_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let proxy = sim.msisdn(0);

    // The first installation: a token, a session, a relayed SMS.
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let port = free_port();
    let config = write_config(&first, &sim, port, "");
    let created = simmask(&["token", "create", "ops", "--role", "viewer"], &config);
    assert!(created.status.success(), "{}", stderr(&created));
    let token = serde_json::from_slice::<Value>(&created.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({"label": "before"})).await;
    let id = session["id"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "first message").await;
    assert_eq!(
        sim.wait_messages(B, 1, Duration::from_secs(20)).await.len(),
        1
    );

    // Backed up while running; restore refuses while it runs.
    let backup = dir.path().join("simmask-backup.db");
    let taken = simmask(&["backup", backup.to_str().unwrap()], &config);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let refused = simmask(&["restore", backup.to_str().unwrap()], &config);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("simmask is running"),
        "{}",
        stderr(&refused)
    );
    assert!(daemon.process.terminate());

    // A fresh installation elsewhere.
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let port = free_port();
    let config = write_config(&second, &sim, port, "");
    let restored = simmask(&["restore", backup.to_str().unwrap()], &config);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let report: Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(report["set_aside"], Value::Null);
    assert!(second.join("simmask.db").exists());

    // Again: the database exists now.
    let again = simmask(&["restore", backup.to_str().unwrap()], &config);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("pass --replace"),
        "{}",
        stderr(&again)
    );
    // Not a backup at all.
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "not a database, just some text that is long enough").unwrap();
    let bad = simmask(&["restore", "--replace", junk.to_str().unwrap()], &config);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("is not a simmask backup"),
        "{}",
        stderr(&bad)
    );
    // --replace sets the current one aside and restores.
    let replaced = simmask(&["restore", "--replace", backup.to_str().unwrap()], &config);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    let report: Value = serde_json::from_slice(&replaced.stdout).unwrap();
    let aside = report["set_aside"].as_str().unwrap();
    assert!(Path::new(aside).exists(), "{aside}");

    let daemon = Daemon::start(&config, port, 1).await;
    // The token from before works, with its role.
    let (status, me) = get_with(&daemon, &token, "/api/v1/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "ops");
    assert_eq!(me["role"], "viewer");
    // The session is open and has its interaction.
    let restored = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(restored["status"], "open", "{restored}");
    assert_eq!(restored["label"], "before");
    let interactions = daemon
        .get(&format!("/api/v1/sessions/{id}/interactions"))
        .await;
    let list = interactions
        .as_array()
        .or_else(|| interactions["interactions"].as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{interactions}");
    // And it still relays.
    sim.handset_sms(B, &proxy, "after the restore").await;
    let at_a = sim.wait_messages(A, 1, Duration::from_secs(20)).await;
    assert_eq!(at_a.len(), 1, "{at_a:?}");
    assert_eq!(at_a[0]["text"], "after the restore");
    assert_eq!(at_a[0]["from"], proxy.as_str());
}
