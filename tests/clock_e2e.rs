//! An appliance whose clock is wrong, on the virtual network: the network's
//! time is ahead of this machine's (`simmask sim --clock-offset`, then
//! `PUT /clock`), the daemon reads it from the modems (`AT+CTZU=1`,
//! `AT+CCLK?`) and from the SMSC timestamp of a received SMS, and reports
//! the difference on `/healthz`; sessions keep their lifetime.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, Process, Sim, client, free_port, write_config};
use serde_json::{Value, json};

async fn clock(daemon: &Daemon) -> Value {
    client()
        .get(format!("{}/healthz", daemon.url))
        .send()
        .await
        .expect("healthz")
        .json::<Value>()
        .await
        .expect("JSON")["clock"]
        .clone()
}

/// Waits until the clock has a sample from `source` whose offset satisfies `ok`.
async fn wait_sample(daemon: &Daemon, source: &str, ok: impl Fn(i64) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let clock = clock(daemon).await;
        if let Some(sample) = clock["samples"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["source"] == source))
            && ok(sample["offset_seconds"].as_i64().unwrap())
        {
            return clock;
        }
        assert!(Instant::now() < deadline, "no {source} sample: {clock}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_clock_two_hours_behind_the_network_is_reported_and_sessions_keep_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start_with(dir.path(), 1, "quectel-ec25", &["--clock-offset", "7200"]);
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;

    // The modem's clock, set by the network, is two hours ahead: this
    // machine's is two hours behind.
    let near = |target: i64| move |offset: i64| (offset - target).abs() <= 5;
    let clock = wait_sample(&daemon, "cclk", near(-7200)).await;
    assert_eq!(clock["network_source"], "cclk", "{clock}");
    assert!(
        (clock["offset_seconds"].as_i64().unwrap() + 7200).abs() <= 5,
        "{clock}"
    );
    assert!(clock["network_from"].as_str().unwrap().starts_with("sim "));
    if clock["sync"] != "synchronized" {
        assert_eq!(clock["suspect"], true, "{clock}");
        assert!(
            clock["summary"]
                .as_str()
                .unwrap()
                .contains("behind the network's time"),
            "{clock}"
        );
    }
    // The daemon's own time did not jump: it follows the monotonic clock.
    assert!(
        clock["jump_seconds"].as_i64().unwrap().abs() <= 2,
        "{clock}"
    );

    // A session opened now keeps its hour, whatever the network says.
    let proxy = sim.msisdn(0);
    let session = daemon
        .open_session(
            "+447911123456",
            "+447912345678",
            json!({"ttl_seconds": 3600}),
        )
        .await;
    let expires = time::OffsetDateTime::parse(
        session["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        (3590..=3600).contains(&left.whole_seconds()),
        "expires in {left}"
    );

    // The network's clock changes; an SMS arrives with the SMSC's time.
    let set = sim.put("/clock", json!({"offset_seconds": -3600})).await;
    assert_eq!(set.status().as_u16(), 200);
    assert_eq!(set.json::<Value>().await.unwrap()["offset_seconds"], -3600);
    sim.handset_sms("+447911123456", &proxy, "what time is it?")
        .await;
    let clock = wait_sample(&daemon, "smsc", near(3600)).await;
    let smsc = clock["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "smsc")
        .unwrap()
        .clone();
    assert!(smsc["from"].as_str().unwrap().starts_with("sim "), "{smsc}");
    // The relay went on as usual.
    let relayed = sim
        .wait_messages("+447912345678", 1, Duration::from_secs(20))
        .await;
    assert_eq!(relayed[0]["text"], "what time is it?");
    assert_eq!(relayed[0]["from"], proxy.as_str());
    // And the modem's clock follows the network at the next poll.
    wait_sample(&daemon, "cclk", near(3600)).await;
}

#[tokio::test]
async fn the_simulator_refuses_an_impossible_clock() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    for body in [
        json!({"offset_seconds": 400_000_000_i64}),
        json!({"offset_seconds": "soon"}),
        json!({"offset": 1}),
    ] {
        let response = sim.put("/clock", body.clone()).await;
        assert_eq!(response.status().as_u16(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string() && error["message"].is_string());
    }
    let clock: Value = client()
        .get(format!("{}/clock", sim.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clock["offset_seconds"], 0);
}

/// Debian's libfaketime (`scripts/test` installs `faketime`): it moves the
/// system clock of one process, as NTP arriving late or `date -s` would.
fn libfaketime() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/faketime/libfaketimeMT.so.1",
        std::env::consts::ARCH
    ));
    assert!(
        path.exists(),
        "{} is missing: install Debian's faketime (scripts/test does)",
        path.display()
    );
    path
}

fn rfc3339(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339")
}

#[tokio::test]
async fn a_step_of_the_system_clock_leaves_open_sessions_the_time_they_had_left() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    // The daemon's system clock is this machine's until the file says
    // otherwise (read at every clock call); its monotonic clock is real.
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon {
        process: Process { child },
        url: format!("http://127.0.0.1:{port}"),
        config: config.clone(),
    };
    daemon.wait_ready(1).await;

    let session = daemon
        .open_session(
            "+447911123456",
            "+447912345678",
            json!({"ttl_seconds": 3600}),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    let expires = rfc3339(&session["expires_at"]);

    // NTP arrives: the system clock jumps two hours on. The daemon follows
    // (within its 15 s check), and the session's deadline with it.
    std::fs::write(&offset, "+2h\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let moved = loop {
        let now: Value = daemon.get(&format!("/api/v1/sessions/{id}")).await;
        assert_eq!(now["status"], "open", "the step expired it: {now}");
        let moved = rfc3339(&now["expires_at"]) - expires;
        if moved.whole_seconds() > 0 {
            break moved;
        }
        assert!(Instant::now() < deadline, "the deadline never moved: {now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        (moved.whole_seconds() - 7200).abs() <= 2,
        "moved by {moved}"
    );
    // The daemon's time agrees with the stepped system clock again, and a
    // session opened now gets its full hour from it.
    let clock = clock(&daemon).await;
    assert!(
        clock["jump_seconds"].as_i64().unwrap().abs() <= 2,
        "{clock}"
    );
    let system = rfc3339(&clock["system_time"]);
    let later = daemon
        .open_session(
            "+447911000001",
            "+447912000002",
            json!({"ttl_seconds": 3600}),
        )
        .await;
    let left = rfc3339(&later["expires_at"]) - system;
    assert!(
        (left.whole_seconds() - 3600).abs() <= 2,
        "expires in {left}"
    );
    // And the first session kept its hour (less the seconds this took).
    let first: Value = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    let left = rfc3339(&first["expires_at"]) - system;
    assert!(
        (3500..=3600).contains(&left.whole_seconds()),
        "the first session has {left} left"
    );
}
