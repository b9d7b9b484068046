//! The command line for people, as a process: at a terminal (a real pty,
//! as a person's shell gives it) it prints tables with units and masked
//! numbers; piped it prints the JSON programs read. `status` reads a live
//! API; `config check` names every problem; `doctor` creates nothing;
//! completions and man pages come from the same definitions.

mod api_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use simmask::number::PhoneNumber;
use simmask::store::{LiveSim, NewOutbound, NewSession};
use time::OffsetDateTime;

/// Runs simmask with its stdout on a fresh pty; returns (exit code, output).
fn at_terminal(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut command = Command::cargo_bin("simmask").unwrap();
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("simmask runs");
    // The command keeps its copy of the terminal's fd: without closing it
    // (and ours), the reader below would never see the end.
    drop(command);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut output = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match master.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => output.extend_from_slice(&buffer[..n]),
            // EIO: the child closed the terminal.
            Err(_) => break,
        }
    }
    let status = child.wait().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output).replace("\r\n", "\n"),
    )
}

/// Runs simmask with stdout piped (assert_cmd): (exit code, stdout).
fn piped(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::cargo_bin("simmask").unwrap();
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

fn config(dir: &Path, database: &Path, extra: &str) -> PathBuf {
    let path = dir.join("simmask.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"{}\"\n\n[modems]\nports = [\"{}/tty*\"]\n{extra}",
            database.display(),
            dir.display()
        ),
    )
    .unwrap();
    path
}

async fn with_session(api: &api_common::Api) {
    let now = OffsetDateTime::now_utc();
    let live = vec![LiveSim {
        iccid: api_common::iccid(0),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }];
    let session = api
        .store
        .open_session(
            NewSession {
                participants: [
                    PhoneNumber::from_e164("+447911000001").unwrap(),
                    PhoneNumber::from_e164("+447911000002").unwrap(),
                ],
                mode: simmask::masking::Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: Some("ride 7".into()),
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: Default::default(),
            },
            live,
            now,
        )
        .await
        .unwrap();
    api.store
        .queue_sms(
            NewOutbound {
                session_id: Some(session.id),
                proxy_iccid: api_common::iccid(0),
                from_position: Some(0),
                to: PhoneNumber::from_e164("+447911000002").unwrap(),
                body: "on my way".into(),
            },
            now,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_api_as_a_table_at_a_terminal_and_json_in_a_pipe() {
    let api = api_common::start(2).await;
    with_session(&api).await;
    let base = api.base.clone();
    let admin = api.admin.clone();
    let viewer = api.viewer.clone();
    let (code, text, json, shown, refused) = tokio::task::spawn_blocking(move || {
        let (code, text) = at_terminal(
            &["status", "--url", &base],
            &[("SIMMASK_TOKEN", admin.as_str())],
        );
        let (_, json) = piped(&["status", "--url", &base, "--token", &viewer], &[]);
        let (_, shown) = at_terminal(
            &[
                "status",
                "--url",
                &base,
                "--token",
                &admin,
                "--show-numbers",
            ],
            &[],
        );
        let (refused, _) = piped(&["status", "--url", &base, "--token", "smk_nope"], &[]);
        (code, text, json, shown, refused)
    })
    .await
    .unwrap();
    println!("{text}");
    assert_eq!(code, 0);
    assert!(text.contains("SIMs: 2 (2 healthy)"), "{text}");
    assert!(text.contains("-70 dBm (excellent)"), "{text}");
    assert!(text.contains("sent (day)"), "rate-limit use: {text}");
    assert!(text.contains("Open sessions: 1"), "{text}");
    assert!(text.contains("+44*******001 ⇄ +44*******002"), "{text}");
    assert!(
        !text.contains("+447911000001"),
        "masked at a terminal: {text}"
    );
    assert!(text.contains("store: ok"), "{text}");
    assert!(text.contains("in step with this machine"), "{text}");
    assert!(!text.trim_start().starts_with('{'));
    assert!(shown.contains("+447911000001 ⇄ +447911000002"), "{shown}");

    let status: Value = serde_json::from_str(&json).expect("JSON when piped");
    assert_eq!(status["sims"].as_array().unwrap().len(), 2);
    assert_eq!(status["recent"][0]["from"], "+44*******001");
    assert_ne!(refused, 0, "a wrong token fails");
}

#[test]
fn config_check_names_every_problem_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("simmask.db");
    let path = config(
        dir.path(),
        &database,
        "poll_intervall = 5\n\n[sms]\nper_day = 0\n\n[callbacks.urls]\nmodem_up = \"ftp://x\"\n",
    );
    let file = path.to_str().unwrap();
    let (code, json) = piped(&["config", "check", "--config", file], &[]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).unwrap();
    let problems: Vec<(String, u64)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("modems.poll_intervall".to_string(), 9),
            ("sms.per_day".to_string(), 12),
            ("callbacks.urls.modem_up".to_string(), 15),
        ],
        "{json}"
    );
    let (code, text) = at_terminal(&["config", "check", "--config", file], &[]);
    println!("{text}");
    assert_eq!(code, 1);
    assert!(text.contains("3 problems"), "{text}");
    assert!(
        text.contains("line") && text.contains("modems.poll_intervall"),
        "{text}"
    );
    assert!(!database.exists(), "config check opens no database");

    // doctor on a good configuration: the missing store is a finding, and
    // stays missing.
    let path = config(dir.path(), &database, "");
    let (code, text) = at_terminal(&["doctor", "--config", path.to_str().unwrap()], &[]);
    println!("{text}");
    assert_eq!(code, 1);
    assert!(text.contains("no database at"), "{text}");
    assert!(!database.exists(), "doctor never creates a store");
    let (code, json) = piped(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap()["ok"], true);
}

#[test]
fn tokens_and_sessions_read_as_tables_at_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("simmask.db");
    let path = config(dir.path(), &database, "");
    let file = path.to_str().unwrap();
    let (code, text) = at_terminal(
        &[
            "token",
            "create",
            "ops",
            "--role",
            "admin",
            "--expires",
            "90d",
            "--config",
            file,
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Shown once") && text.contains("smk_"),
        "{text}"
    );
    assert!(text.contains("expires 20"), "{text}");
    let (_, text) = at_terminal(&["token", "list", "--config", file], &[]);
    println!("{text}");
    assert!(
        text.contains("last used") && text.contains("never"),
        "{text}"
    );
    let (code, _) = piped(&["token", "revoke", "ops", "--config", file], &[]);
    assert_eq!(code, 0);
    let (_, json) = piped(&["token", "list", "--config", file], &[]);
    assert_eq!(
        json.trim(),
        "[]",
        "revoked tokens are not listed by default"
    );
    let (_, json) = piped(&["token", "list", "--all", "--config", file], &[]);
    let all: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(all[0]["state"], "revoked");
    let (code, json) = piped(&["--json", "token", "revoke", "ops", "--config", file], &[]);
    assert_ne!(code, 0, "{json}");

    let (_, text) = at_terminal(&["session", "list", "--config", file], &[]);
    assert!(text.contains("No sessions."), "{text}");
    let (_, text) = at_terminal(
        &[
            "pdu",
            "decode",
            "--no-smsc",
            "0001000B915121551532F400000CC8329BFD06DDDF723619",
        ],
        &[],
    );
    assert!(
        text.contains("text:") && !text.trim_start().starts_with('{'),
        "{text}"
    );
    let (_, json) = piped(
        &[
            "pdu",
            "decode",
            "--no-smsc",
            "0001000B915121551532F400000CC8329BFD06DDDF723619",
        ],
        &[],
    );
    assert!(json.starts_with('{'));
}

#[test]
fn export_writes_interactions_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("simmask.db");
    let path = config(dir.path(), &database, "");
    let file = path.to_str().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = simmask::store::Store::open(&database).unwrap();
        store
            .upsert_sim(
                api_common::iccid(0),
                PhoneNumber::from_e164("+447009000000").unwrap(),
                String::new(),
                None,
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        store
            .queue_sms(
                NewOutbound {
                    session_id: None,
                    proxy_iccid: api_common::iccid(0),
                    from_position: None,
                    to: PhoneNumber::from_e164("+447911000002").unwrap(),
                    body: "=HYPERLINK(\"http://x.example\",\"you\")".into(),
                },
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
    });
    let (code, csv) = piped(
        &[
            "export",
            "interactions",
            "--from",
            "2020-01-01",
            "--config",
            file,
        ],
        &[],
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains("'+44*******002") && !lines[1].contains("HYPERLINK"),
        "{csv}"
    );
    let (_, jsonl) = piped(
        &[
            "export",
            "interactions",
            "--from",
            "2020-01-01",
            "--format",
            "jsonl",
            "--show-numbers",
            "--config",
            file,
        ],
        &[],
    );
    let row: Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(row["to"], "+447911000002");
    assert_eq!(row["body"], "=HYPERLINK(\"http://x.example\",\"you\")");
    // As CSV a spreadsheet shows the text rather than running it; the
    // number stays a number.
    let (code, csv) = piped(
        &[
            "export",
            "interactions",
            "--from",
            "2020-01-01",
            "--show-numbers",
            "--config",
            file,
        ],
        &[],
    );
    assert_eq!(code, 0);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let field = |name: &str| row[headers.iter().position(|h| h == name).unwrap()].to_string();
    assert_eq!(field("body"), "'=HYPERLINK(\"http://x.example\",\"you\")");
    assert_eq!(field("to"), "+447911000002");
    let (code, _) = piped(
        &["export", "interactions", "--from", "soon", "--config", file],
        &[],
    );
    assert_eq!(code, 1);
}

#[test]
fn completions_and_man_pages_are_generated_from_the_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script) = piped(&["completions", shell], &[]);
        assert_eq!(code, 0);
        assert!(
            script.contains("simmask") && script.contains("show-numbers"),
            "{shell}"
        );
    }
    let (code, page) = piped(&["man"], &[]);
    assert_eq!(code, 0);
    assert!(
        page.contains(".TH simmask") && page.contains("status"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, _) = piped(&["man", "--out", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(dir.path().join("simmask.1").exists());
    assert!(dir.path().join("simmask-token-revoke.1").exists());
}
