//! `simmask demo` as a process: with no arguments beyond a free port it
//! starts the whole appliance on a virtual bank, prints how to reach it,
//! serves the API with the printed token, and stops cleanly on SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_appliance_and_stops_on_sigint() {
    let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env_remove("SIMMASK_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("simmask runs");
    let mut process = common::Process { child };
    let mut reader = BufReader::new(process.child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    let demo: Value = serde_json::from_str(&line).expect("JSON first line");
    let token = demo["admin_token"].as_str().expect("token").to_string();
    let api = demo["api"].as_str().expect("api").to_string();
    assert!(
        demo["dashboard"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        demo["sim_control"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(demo["modems"].as_array().unwrap().len(), 4);
    let data = std::path::PathBuf::from(demo["data"].as_str().unwrap());
    assert!(data.exists());

    // Every virtual SIM joins the pool.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let numbers: Value = common::client()
            .get(format!("{api}/numbers"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let healthy = numbers
            .as_array()
            .map(|n| n.iter().filter(|n| n["healthy"] == true).count())
            .unwrap_or(0);
        if healthy == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{numbers}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A wrong token is refused.
    let refused = common::client()
        .get(format!("{api}/numbers"))
        .bearer_auth("smk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    process.signal(Signal::SIGINT);
    let status = process.child.wait().expect("demo exits");
    assert!(status.success(), "{status:?}");
    assert!(!data.exists(), "the demo's temporary data is removed");
}
