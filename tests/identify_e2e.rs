//! Issue 16 end to end, as processes: `simmask sim`, `simmask probe` and
//! `simmask run` on every profile, the `terse` one (a bare `AT` answered
//! with ERROR, the radio off at boot, only the core of 27.005/27.007) and a
//! SIM whose ICCID its modem cannot read.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, Sim, texts};
use serde_json::{Value, json};

const PROFILES: [&str; 5] = [
    "generic",
    "simcom-sim800",
    "quectel-ec25",
    "huawei-e173",
    "terse",
];

fn modem(sim: &Sim, index: usize) -> &Value {
    &sim.bank["modems"][index]
}

fn probe(port: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["probe", port])
        .output()
        .expect("run simmask probe");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("probe JSON")
}

/// `[[sims]]` giving a SIM that does not know its number its MSISDN.
fn numbered(key: &str, value: &str, msisdn: &str) -> String {
    format!("\n[[sims]]\n{key} = \"{value}\"\nmsisdn = \"{msisdn}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_identifies_every_profile_the_terse_one_included() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), PROFILES.len(), &PROFILES.join(","));
    for (index, profile) in PROFILES.iter().enumerate() {
        let modem = modem(&sim, index).clone();
        let link = sim.links.join(format!("modem{index}"));
        let report = tokio::task::spawn_blocking(move || probe(link.to_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(report["profile"], *profile, "{report}");
        for key in ["imei", "iccid", "imsi"] {
            assert_eq!(report[key], modem[key], "{profile}: {key}: {report}");
        }
        assert_eq!(report["sim_id"], modem["iccid"], "{profile}");
        assert_eq!(report["id_source"], "iccid", "{profile}");
        for key in ["manufacturer", "model", "revision"] {
            assert!(report[key].is_string(), "{profile}: {key}: {report}");
        }
        assert_eq!(report["pin_state"], "READY", "{profile}: {report}");
        assert_eq!(report["registration"], "home", "{profile}: {report}");
        let failures = report["failures"].as_array().expect("failures");
        if *profile == "terse" {
            // Booted with its radio off, switched on by the probe.
            assert_eq!(report["functionality"], 0, "{report}");
            assert_eq!(report["powered_on"], true, "{report}");
            // Its SIM does not know its number: null, and why.
            assert_eq!(report["msisdn"], Value::Null, "{report}");
            assert!(
                failures
                    .iter()
                    .any(|f| f["step"] == "msisdn" && f["command"] == "AT+CNUM"),
                "{report}"
            );
            // AT+CPMS? refused: the counts come from selecting "SM".
            assert_eq!(report["storages"][0]["name"], "SM", "{report}");
            assert_eq!(report["storages"][0]["total"], 30, "{report}");
            assert_eq!(report["chld"], Value::Null, "AT+CHLD=? refused");
        } else {
            assert_eq!(report["msisdn"], modem["msisdn"], "{profile}: {report}");
            assert_eq!(report["powered_on"], false, "{profile}");
            assert!(report["chld"].is_array(), "{profile}: {report}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_is_relayed_both_ways_on_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), PROFILES.len(), &PROFILES.join(","));
    let terse = modem(&sim, 4);
    let daemon = Daemon::start_on(
        dir.path(),
        &sim,
        &numbered(
            "iccid",
            terse["iccid"].as_str().unwrap(),
            terse["msisdn"].as_str().unwrap(),
        ),
    )
    .await;
    // One session per SIM: the least-loaded proxy goes to each in turn
    // (SMS only: the Huawei's network cannot bridge calls).
    let mut sessions = Vec::new();
    for i in 0..PROFILES.len() {
        let a = format!("+4479111000{i:02}");
        let b = format!("+4479122000{i:02}");
        let session = daemon.open_session(&a, &b, json!({"mode": "sms"})).await;
        let proxy = session["proxy_number"].as_str().unwrap().to_string();
        sessions.push((a, b, proxy));
    }
    let mut proxies: Vec<&str> = sessions.iter().map(|(_, _, p)| p.as_str()).collect();
    proxies.sort();
    let mut msisdns: Vec<String> = (0..PROFILES.len()).map(|i| sim.msisdn(i)).collect();
    msisdns.sort();
    assert_eq!(proxies, msisdns, "one session on each SIM");
    for (a, b, proxy) in &sessions {
        sim.handset_sms(a, proxy, &format!("to {b} via {proxy}"))
            .await;
        sim.handset_sms(b, proxy, &format!("to {a} via {proxy}"))
            .await;
    }
    for (a, b, proxy) in &sessions {
        let index = (0..PROFILES.len()).find(|&i| sim.msisdn(i) == *proxy);
        let profile = index.map_or("?", |i| PROFILES[i]);
        let at_b = sim.wait_messages(b, 1, Duration::from_secs(60)).await;
        assert_eq!(
            texts(&at_b),
            [(proxy.clone(), format!("to {b} via {proxy}"))],
            "{profile}"
        );
        let at_a = sim.wait_messages(a, 1, Duration::from_secs(60)).await;
        assert_eq!(
            texts(&at_a),
            [(proxy.clone(), format!("to {a} via {proxy}"))],
            "{profile}"
        );
    }
}

/// A SIM whose modem cannot read its ICCID (no vendor command, no +CRSM)
/// is still a pool unit, known by its IMSI, and relays both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_whose_iccid_cannot_be_read_relays_under_its_imsi() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "terse");
    let fault = sim
        .post("/modems/0/faults", json!({"iccid_unreadable": true}))
        .await;
    assert!(fault.status().is_success());
    let imsi = modem(&sim, 0)["imsi"].as_str().unwrap().to_string();
    let proxy = sim.msisdn(0);
    let daemon = Daemon::start_on(dir.path(), &sim, &numbered("imsi", &imsi, &proxy)).await;

    let numbers = daemon.get("/api/v1/numbers").await;
    let number = &numbers[0];
    assert_eq!(number["id"], format!("imsi:{imsi}"), "{numbers}");
    assert_eq!(number["iccid"], Value::Null, "{numbers}");
    assert_eq!(number["id_source"], "imsi", "{numbers}");
    assert_eq!(number["msisdn"], proxy.as_str(), "{numbers}");

    let (a, b) = ("+447911123456", "+447912345678");
    let session = daemon.open_session(a, b, json!({})).await;
    assert_eq!(session["proxy_number"], proxy.as_str());
    sim.handset_sms(a, &proxy, "known by its IMSI").await;
    let at_b = sim.wait_messages(b, 1, Duration::from_secs(60)).await;
    assert_eq!(texts(&at_b), [(proxy.clone(), "known by its IMSI".into())]);
    sim.handset_sms(b, &proxy, "and back").await;
    let at_a = sim.wait_messages(a, 1, Duration::from_secs(60)).await;
    assert_eq!(texts(&at_a), [(proxy.clone(), "and back".into())]);
}

/// The terse firmware refuses `AT+CHLD=?` but holds and joins: its calls
/// are bridged (a muted conference, the default) by what its profile says
/// the network offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_bridged_on_the_terse_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "terse");
    let modem = modem(&sim, 0).clone();
    let proxy = sim.msisdn(0);
    let daemon = Daemon::start_on(
        dir.path(),
        &sim,
        &numbered("iccid", modem["iccid"].as_str().unwrap(), &proxy),
    )
    .await;
    let numbers = daemon.get("/api/v1/numbers").await;
    assert_eq!(numbers[0]["voice_method"], "conference", "{numbers}");
    let (a, b) = ("+447911123456", "+447912345678");
    daemon.open_session(a, b, json!({"mode": "voice"})).await;
    let dial = sim
        .post(&format!("/handsets/{a}/dial"), json!({"to": proxy}))
        .await;
    assert!(dial.status().is_success());
    let ringing = sim.wait_call(b, "rings", |s| s["state"] == "ringing").await;
    assert_eq!(ringing["caller_id"], proxy.as_str(), "B sees the proxy");
    let answer = sim.post(&format!("/handsets/{b}/answer"), json!({})).await;
    assert!(answer.status().is_success());
    let at_a = sim
        .wait_call(a, "talks to B", |s| {
            s["connected_to"]
                .as_array()
                .is_some_and(|c| c.iter().any(|n| n == b))
        })
        .await;
    assert_eq!(at_a["caller_id"], proxy.as_str(), "A sees the proxy");
    let heard = at_a["connected_to"].as_array().unwrap();
    assert!(
        !heard.iter().any(|n| n == proxy.as_str()),
        "the bridge's own leg is muted: {at_a}"
    );
    let hangup = sim.post(&format!("/handsets/{a}/hangup"), json!({})).await;
    assert!(hangup.status().is_success());
    sim.wait_call(b, "hung up too", |s| s["state"] == "idle")
        .await;
}
