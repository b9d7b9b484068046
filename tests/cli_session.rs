//! `simmask session open|list|close`, `backup`, `erase` and `doctor` as
//! processes over a store that a daemon filled (here seeded through the
//! library, as the daemon does).

use std::process::Command;

use serde_json::Value;
use simmask::number::PhoneNumber;
use simmask::store::{SimStatusRecord, Store};
use time::OffsetDateTime;

fn simmask(config: &std::path::Path, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("simmask runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        output.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

async fn seeded(dir: &std::path::Path, healthy: bool) -> std::path::PathBuf {
    let db = dir.join("simmask.db");
    let store = Store::open(&db).unwrap();
    let now = OffsetDateTime::now_utc();
    for (iccid, msisdn) in [
        ("8944000000000000011", "+447700900111"),
        ("8944000000000000022", "+447700900222"),
    ] {
        store
            .upsert_sim(
                iccid.into(),
                PhoneNumber::from_e164(msisdn).unwrap(),
                String::new(),
                None,
                now,
            )
            .await
            .unwrap();
        store
            .save_sim_status(SimStatusRecord {
                iccid: iccid.into(),
                state: "up".into(),
                healthy,
                signal_dbm: Some(-70),
                registration: "home".into(),
                roaming: false,
                operator: "Virtual".into(),
                voice_method: Some("transfer".into()),
                port: "/dev/ttyUSB0".into(),
                last_error: String::new(),
                updated_at: now,
            })
            .await
            .unwrap();
    }
    let config = dir.join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"{}/tty*\"]\n[numbers]\ndefault_region = \"GB\"\n",
            db.display(),
            dir.display()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn sessions_open_list_close_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = seeded(dir.path(), true).await;

    let (code, first, stderr) = simmask(
        &config,
        &[
            "session",
            "open",
            "07911123456",
            "+447912345678",
            "--ttl",
            "2h",
            "--mode",
            "sms",
            "--label",
            "ride 7",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        first["participants"][0], "+447911123456",
        "national number read in GB"
    );
    assert_eq!(first["mode"], "sms");
    assert_eq!(first["status"], "open");
    assert!(first["expires_at"].is_string(), "{first}");
    assert!(
        first["proxy_number"]
            .as_str()
            .unwrap()
            .starts_with("+447700900")
    );

    // The same person again goes to the other proxy; a third time there is none.
    let (code, second, _) = simmask(
        &config,
        &["session", "open", "+447911123456", "+447911000111"],
    );
    assert_eq!(code, 0);
    assert_ne!(second["proxy_number"], first["proxy_number"]);
    let (code, _, stderr) = simmask(
        &config,
        &["session", "open", "+447911123456", "+447911000222"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("no free proxy"), "{stderr}");

    let (code, _, stderr) = simmask(
        &config,
        &["session", "open", "+447911123456", "not-a-number"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("participant"), "{stderr}");
    let (_, _, stderr) = simmask(
        &config,
        &[
            "session",
            "open",
            "+447911123456",
            "+447911000333",
            "--ttl",
            "soon",
        ],
    );
    assert!(stderr.contains("--ttl"), "{stderr}");

    let (code, list, _) = simmask(&config, &["session", "list", "--status", "open"]);
    assert_eq!(code, 0);
    assert_eq!(list.as_array().unwrap().len(), 2);

    let id = first["id"].as_str().unwrap();
    let (code, closed, _) = simmask(&config, &["session", "close", id]);
    assert_eq!(code, 0);
    assert_eq!(closed["status"], "closed");
    let (code, _, stderr) = simmask(&config, &["session", "close", id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already closed"), "{stderr}");

    // Backup while "running", then erase one participant everywhere.
    let out = dir.path().join("copy.db");
    let (code, backup, _) = simmask(&config, &["backup", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{backup}");
    assert!(out.exists());
    let (code, erased, _) = simmask(&config, &["erase", "+447911123456"]);
    assert_eq!(code, 0);
    assert_eq!(erased["erased"]["participants"], 2, "{erased}");
}

#[tokio::test]
async fn stale_or_unhealthy_sims_get_no_sessions_and_doctor_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = seeded(dir.path(), false).await;
    let (code, _, stderr) = simmask(
        &config,
        &["session", "open", "+447911123456", "+447912345678"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("no free proxy"), "{stderr}");
    let (code, checks, _) = simmask(&config, &["doctor"]);
    assert_eq!(code, 1);
    let failing: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(failing.contains(&"ports"), "{checks}");
    assert!(failing.iter().any(|n| n.starts_with("sim ")), "{checks}");
}

#[tokio::test]
async fn numbers_outside_the_plan_follow_the_setting_and_sessions_reopen_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = seeded(dir.path(), true).await;
    // +44 6… is not in the built-in plan; ten national digits is possible.
    let (code, session, stderr) = simmask(
        &config,
        &["session", "open", "+447911123456", "+446000000123"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(session["participants"][1], "+446000000123");
    let id = session["id"].as_str().unwrap().to_string();

    let (code, closed, stderr) = simmask(&config, &["session", "close", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(closed["close_reason"], "operator");
    let (code, reopened, stderr) = simmask(&config, &["session", "reopen", &id, "--ttl", "1h"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["close_reason"], Value::Null);
    let (code, _, stderr) = simmask(&config, &["session", "reopen", &id]);
    assert_ne!(code, 0);
    assert!(stderr.contains("open"), "{stderr}");

    let strict = std::fs::read_to_string(&config).unwrap() + "validation = \"strict\"\n";
    std::fs::write(&config, strict).unwrap();
    let (code, _, stderr) = simmask(
        &config,
        &["session", "open", "+447911123457", "+446000000124"],
    );
    assert_ne!(code, 0, "strict refuses a number outside the plan");
    assert!(stderr.contains("numbering plan"), "{stderr}");
    assert!(!stderr.contains("6000000124"), "redacted: {stderr}");
}

#[tokio::test]
async fn hubs_add_list_and_remove_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = seeded(dir.path(), true).await;

    let (code, hub, stderr) = simmask(
        &config,
        &["hub", "add", "07911 500500", "--label", "dispatch"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(hub["number"], "+447911500500", "national number read in GB");
    assert_eq!(hub["label"], "dispatch");
    assert_eq!(hub["sessions"], serde_json::json!([]));
    let id = hub["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("hub_"), "{id}");

    // More sessions with the hub than there are SIMs, each with a code
    // unique on its proxy (two proxies may hand out the same code).
    let mut codes = Vec::new();
    let mut on_proxy = std::collections::BTreeSet::new();
    for i in 1..=5 {
        let counterpart = format!("+44791160000{i}");
        let (code, session, stderr) =
            simmask(&config, &["session", "open", &counterpart, "+447911500500"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(session["hub_participant"], 1, "{session}");
        let hub_code = session["hub_code"].as_str().unwrap().to_string();
        on_proxy.insert((session["proxy_number"].to_string(), hub_code.clone()));
        codes.push(hub_code);
    }
    assert_eq!(on_proxy.len(), 5, "{on_proxy:?}");
    codes.sort();
    let (code, list, _) = simmask(&config, &["hub", "list"]);
    assert_eq!(code, 0);
    let mut listed: Vec<String> = list[0]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hub_code"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, codes);

    // Refused, each with its reason.
    let (code, _, stderr) = simmask(&config, &["hub", "add", "+447911500500"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("a hub already"), "{stderr}");
    let (code, _, stderr) = simmask(&config, &["hub", "add", "+447700900111"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("proxy number"), "{stderr}");
    let (code, _, stderr) = simmask(&config, &["hub", "add", "not-a-number"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("hub number"), "{stderr}");

    // Removing ends its sessions.
    let (code, removed, stderr) = simmask(&config, &["hub", "remove", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(removed["sessions_closed"].as_array().unwrap().len(), 5);
    let (_, open, _) = simmask(&config, &["session", "list", "--status", "open"]);
    assert_eq!(open, serde_json::json!([]));
    let (code, _, stderr) = simmask(&config, &["hub", "remove", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&id), "{stderr}");
    let (_, list, _) = simmask(&config, &["hub", "list"]);
    assert_eq!(list, serde_json::json!([]));
}
