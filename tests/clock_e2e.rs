//! An appliance whose clock is wrong, on the virtual network: the network's
//! time is ahead of this machine's (`simmask sim --clock-offset`, then
//! `PUT /clock`), the daemon reads it from the modems (`AT+CTZU=1`,
//! `AT+CCLK?`) and from the SMSC timestamp of a received SMS, and reports
//! the difference on `/healthz`; sessions keep their lifetime.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, client, free_port, write_config};
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
