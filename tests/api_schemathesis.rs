//! The API against its own OpenAPI document, fuzzed by schemathesis (from
//! PyPI; `scripts/test` installs it and names it in `SCHEMATHESIS`) while
//! `simmask demo` runs a whole appliance on a virtual bank: every operation,
//! with examples, boundary values, random data and stateful sequences, as
//! an admin. What must hold: no 5xx, and every response matches the schema
//! (content type and body as documented). The event stream is left out: it
//! never ends by design (tests/api_ops reads it).
//!
//! Bounded for CI: `SCHEMATHESIS_EXAMPLES` (default 10) examples per
//! operation and phase, at a pace the demo's rate limit lets through.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let schemathesis = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let version = Command::new(&schemathesis).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is missing ({schemathesis}): scripts/test installs it from PyPI"
    );
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());

    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("demo"))
        .env_remove("SIMMASK_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simmask demo");
    let mut demo_process = common::Process { child };
    let mut reader = BufReader::new(demo_process.child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    let demo: Value = serde_json::from_str(&line).expect("JSON first line");
    let token = demo["admin_token"].as_str().expect("token").to_string();
    let api = demo["api"].as_str().expect("api").to_string();
    let base = api
        .trim_end_matches('/')
        .trim_end_matches("/api/v1")
        .to_string();

    // The bank up, then the document as a client reads it.
    let client = common::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let numbers: Value = client
            .get(format!("{base}/api/v1/numbers"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let up = numbers
            .as_array()
            .or_else(|| numbers["numbers"].as_array())
            .is_some_and(|n| n.iter().filter(|n| n["healthy"] == true).count() >= 4);
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's SIMs never came up: {numbers}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let document = client
        .get(format!("{base}/api/v1/openapi.json"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, &document).unwrap();

    let started = Instant::now();
    let output = Command::new(&schemathesis)
        .arg("run")
        .arg(&schema)
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
        ])
        .args(["--max-examples", &examples])
        // The demo allows 20 requests a second once its burst is spent.
        .args(["--rate-limit", "15/s"])
        // The event stream never ends by design: tests/api_ops reads it.
        .args(["--exclude-path", "/api/v1/events"])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    eprintln!(
        "schemathesis in {:.0?} ({} examples per operation and phase):\n{}",
        started.elapsed(),
        examples,
        summary.join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(" passed") && stdout.contains("generated"),
        "no test case ran:\n{stdout}"
    );
    drop(demo_process);
}
