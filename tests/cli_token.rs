//! `simmask token create|list` as a process.

use std::process::Command;

fn simmask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_simmask"))
}

#[test]
fn a_token_is_shown_once_and_listed_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("simmask.toml");
    let database = dir.path().join("simmask.db");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"/dev/ttyUSB*\"]\n",
            database.display()
        ),
    )
    .unwrap();

    let output = simmask()
        .args(["token", "create", "ops", "--role", "admin", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["name"], "ops");
    assert_eq!(shown["role"], "admin");
    let token = shown["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("smk_"));

    let again = simmask()
        .args(["token", "create", "ops", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let list = simmask()
        .args(["token", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains("\"ops\"") && listed.contains("admin"));
    assert!(
        !listed.contains(&token[4..]),
        "the token itself is never listed"
    );
    // The database and its write-ahead log hold the hash, never the token.
    let mut stored = std::fs::read(&database).unwrap();
    stored.extend(std::fs::read(dir.path().join("simmask.db-wal")).unwrap_or_default());
    let hash = simmask::api::auth::hash_token(&token);
    assert!(stored.windows(hash.len()).any(|w| w == hash.as_bytes()));
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "only the hash is stored"
    );
}

#[test]
fn a_bad_config_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("simmask.toml");
    std::fs::write(&config, "[api]\nlisten = \"127.0.0.1:0\"\nlisten_too = 1\n").unwrap();
    let output = simmask()
        .args(["token", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listen_too") && stderr.contains("line 3"),
        "{stderr}"
    );
}
