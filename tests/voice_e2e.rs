//! Masked calls end to end: `simmask sim` and `simmask run` as processes.
//! A dials the proxy, B's phone rings showing the proxy, B answers, the
//! network joins them in a muted conference (the default) and neither is
//! ever shown the other's number; with explicit call transfer opted in, the
//! network's transfer notification shows it.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sim, free_port, start_bank, write_config};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const STRANGER: &str = "+447400123456";

async fn wait_call_record(daemon: &Daemon, session: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = daemon.interactions(session).await;
        if let Some(call) = list.iter().find(|i| i["kind"] == "call") {
            return call.clone();
        }
        assert!(Instant::now() < deadline, "no call recorded: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the network showed `number` for its call, as one string: its caller
/// ID, its connected line and every notification with the number it carried
/// (not `connected_to`, which is whose voice it hears).
fn shown(call: &Value) -> String {
    json!([
        call["caller_id"],
        call["connected_line"],
        call["notifications"]
    ])
    .to_string()
}

/// One masked call from `caller` to the other participant through the
/// proxy; returns what each side was shown while they talked.
async fn masked_call(sim: &Sim, proxy: &str, caller: &str, callee: &str) -> (Value, Value) {
    sim.bridge(proxy, caller, callee).await;
    // Whatever the network tells them about the bridge has arrived by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shown = (sim.call_state(caller).await, sim.call_state(callee).await);
    sim.act(caller, "hangup", json!({})).await;
    sim.wait_call(callee, "hung up too", |s| s["state"] == "idle")
        .await;
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bridged_by_multiparty_both_ways_and_never_unmask() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "quectel-ec25",
        "[out_of_session]\npolicy = \"reject\"\n",
    )
    .await;
    let numbers = daemon.get("/api/v1/numbers").await;
    assert_eq!(numbers[0]["voice_method"], "conference", "{numbers}");
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();

    let (at_a, at_b) = masked_call(&sim, &proxy, A, B).await;
    // Each is shown the proxy only: caller ID, connected line, and the
    // network's multiparty notification, which carries no number.
    assert!(!shown(&at_a).contains(B), "A was shown B: {at_a}");
    assert!(!shown(&at_b).contains(A), "B was shown A: {at_b}");
    assert_eq!(at_a["connected_line"], proxy.as_str(), "{at_a}");
    assert!(shown(&at_b).contains("multiparty"), "{at_b}");
    let record = wait_call_record(&daemon, &id).await;
    assert_eq!(record["outcome"], "completed", "{record}");
    let (at_b, at_a) = masked_call(&sim, &proxy, B, A).await;
    assert!(!shown(&at_a).contains(B), "A was shown B: {at_a}");
    assert!(!shown(&at_b).contains(A), "B was shown A: {at_b}");

    // A stranger is hung up on and reaches nobody.
    sim.act(STRANGER, "dial", json!({"to": proxy})).await;
    sim.wait_call(STRANGER, "rejected", |s| s["state"] == "idle")
        .await;
    assert_eq!(sim.call_state(A).await["state"], "idle");
    assert_eq!(sim.call_state(B).await["state"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bridged_by_transfer_where_opted_in_and_the_network_unmasks() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "quectel-ec25");
    let port = free_port();
    let extra = format!(
        "[out_of_session]\npolicy = \"reject\"\n{}",
        sim.transfer_opt_in()
    );
    let config = write_config(dir.path(), &sim, port, &extra);
    let daemon = Daemon::start(&config, port, 1).await;
    let numbers = daemon.get("/api/v1/numbers").await;
    assert_eq!(numbers[0]["voice_method"], "transfer", "{numbers}");
    let session = daemon.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();

    let (at_a, at_b) = masked_call(&sim, &proxy, A, B).await;
    let record = wait_call_record(&daemon, &id).await;
    assert_eq!(record["outcome"], "transferred", "{record}");
    // The leak the README warns about: with the transfer the network told
    // each side the other's number (3GPP TS 23.091 §3).
    assert!(shown(&at_b).contains(A), "B was shown A: {at_b}");
    assert!(shown(&at_a).contains(B), "A was shown B: {at_a}");
    assert_eq!(at_b["notifications"][0]["kind"], "transferred", "{at_b}");
    masked_call(&sim, &proxy, B, A).await;

    // A stranger is hung up on and reaches nobody.
    sim.act(STRANGER, "dial", json!({"to": proxy})).await;
    sim.wait_call(STRANGER, "rejected", |s| s["state"] == "idle")
        .await;
    assert_eq!(sim.call_state(A).await["state"], "idle");
    assert_eq!(sim.call_state(B).await["state"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_without_transfer_bridges_by_conference() {
    let dir = tempfile::tempdir().unwrap();
    // The operator's profiles say this network offers no explicit call transfer.
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-config")).unwrap()
    {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(", \"3\", \"4\"]", ", \"3\"]");
        std::fs::write(profiles.join(path.file_name().unwrap()), text).unwrap();
    }
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        "[out_of_session]\npolicy = \"reject\"\n",
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[modems]\n",
        &format!("[modems]\nprofiles_dir = \"{}\"\n", profiles.display()),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, port, 1).await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    masked_call(&sim, &proxy, A, B).await;
    let record = wait_call_record(&daemon, &id).await;
    assert_eq!(record["outcome"], "completed", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_or_silent_participant_releases_the_caller_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, daemon) = start_bank(
        dir.path(),
        1,
        "simcom-sim800",
        "[voice]\nring_timeout_seconds = 3\n",
    )
    .await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();

    // B does not answer: after the ring timeout A is released.
    sim.act(A, "dial", json!({"to": proxy})).await;
    sim.wait_call(B, "rings", |s| s["state"] == "ringing").await;
    sim.wait_call(A, "released", |s| s["state"] == "idle").await;
    sim.wait_call(B, "stops ringing", |s| s["state"] == "idle")
        .await;
    let record = wait_call_record(&daemon, &id).await;
    assert_eq!(record["outcome"], "no_answer", "{record}");
}

/// Every shipped profile with an operator's copy in which the network
/// offers both multiparty and transfer (`+CHLD` 0 to 4), as a carrier may
/// for any model; written to `dir/profiles`.
fn profiles_offering_both(dir: &std::path::Path) -> std::path::PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/firmware-config")).unwrap()
    {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("chld = ") {
                    "chld = [\"0\", \"1\", \"1x\", \"2\", \"2x\", \"3\", \"4\"]".to_string()
                } else {
                    line.to_string()
                }
            })
            .collect();
        std::fs::write(profiles.join(path.file_name().unwrap()), text.join("\n")).unwrap();
    }
    profiles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_every_profile_only_an_opted_in_transfer_ever_shows_a_participant_the_other() {
    // Every model that takes calls, twice: on even modems the default
    // (multiparty), on odd ones transfer opted in.
    let models: Vec<String> = simmask::profile::Profiles::builtin()
        .iter()
        .filter(|p| p.voice.supported)
        .map(|p| p.name.clone())
        .collect();
    assert!(models.len() >= 4, "{models:?}");
    let bank: Vec<String> = models.iter().flat_map(|m| [m.clone(), m.clone()]).collect();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), bank.len(), &bank.join(","));
    for index in 0..bank.len() {
        let response = sim
            .put(
                &format!("/modems/{index}/services"),
                json!({"chld": ["0", "1", "1x", "2", "2x", "3", "4"]}),
            )
            .await;
        assert!(response.status().is_success());
    }
    let profiles = profiles_offering_both(dir.path());
    // Each SIM's number is given too: the terse firmware's SIM does not
    // know its own (it refuses AT+CNUM).
    let opted_in: String = (0..bank.len())
        .map(|i| {
            let method = if i % 2 == 1 {
                "voice_method = \"transfer\"\n"
            } else {
                ""
            };
            format!(
                "\n[[sims]]\niccid = \"{}\"\nmsisdn = \"{}\"\n{method}",
                sim.iccid(i),
                sim.msisdn(i)
            )
        })
        .collect();
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, &opted_in);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[modems]\n",
        &format!("[modems]\nprofiles_dir = \"{}\"\n", profiles.display()),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, port, bank.len()).await;

    // One session per SIM: the least loaded SIM takes each.
    let mut sessions = Vec::new();
    for n in 0..bank.len() {
        let a = format!("+4479110{n:02}001");
        let b = format!("+4479120{n:02}002");
        let session = daemon.open_session(&a, &b, json!({"mode": "voice"})).await;
        sessions.push((a, b, session));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (a, b, session) in &sessions {
        let proxy = session["proxy_number"].as_str().unwrap().to_string();
        let index = (0..bank.len())
            .find(|&i| sim.msisdn(i) == proxy)
            .expect("a bank SIM");
        assert!(seen.insert(index), "two sessions on one SIM");
        let (model, transfer) = (&bank[index], index % 2 == 1);
        let id = session["id"].as_str().unwrap();
        let (at_a, at_b) = masked_call(&sim, &proxy, a, b).await;
        let record = wait_call_record(&daemon, id).await;
        if transfer {
            assert_eq!(record["outcome"], "transferred", "{model}: {record}");
            // The leak the README warns about.
            assert!(shown(&at_b).contains(a.as_str()), "{model}: {at_b}");
            assert!(shown(&at_a).contains(b.as_str()), "{model}: {at_a}");
        } else {
            assert_eq!(record["outcome"], "completed", "{model}: {record}");
            assert!(
                !shown(&at_a).contains(b.as_str()),
                "{model}: A saw B: {at_a}"
            );
            assert!(
                !shown(&at_b).contains(a.as_str()),
                "{model}: B saw A: {at_b}"
            );
            assert_eq!(at_a["caller_id"], proxy.as_str(), "{model}: {at_a}");
            assert_eq!(at_a["connected_line"], proxy.as_str(), "{model}: {at_a}");
            assert_eq!(at_b["caller_id"], proxy.as_str(), "{model}: {at_b}");
        }
    }
    assert_eq!(seen.len(), bank.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_is_opted_in_per_profile_and_a_sim_may_opt_out_again() {
    let dir = tempfile::tempdir().unwrap();
    // The operator's copy of the EC25 profile opts its SIMs in to transfer.
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/firmware-config/quectel-ec25.toml"
    );
    let text = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("[voice]\n", "[voice]\nmethod = \"transfer\"\n");
    std::fs::write(profiles.join("quectel-ec25.toml"), text).unwrap();
    let sim = Sim::start(dir.path(), 3, "quectel-ec25,quectel-ec25,generic");
    let port = free_port();
    // The second EC25 SIM says otherwise: the SIM's word wins.
    let extra = format!(
        "[[sims]]\niccid = \"{}\"\nvoice_method = \"multiparty\"\n",
        sim.iccid(1)
    );
    let config = write_config(dir.path(), &sim, port, &extra);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[modems]\n",
        &format!("[modems]\nprofiles_dir = \"{}\"\n", profiles.display()),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, port, 3).await;
    let numbers = daemon.get("/api/v1/numbers").await;
    let method_of = |index: usize| {
        numbers
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["msisdn"] == sim.msisdn(index).as_str())
            .map(|n| n["voice_method"].clone())
    };
    assert_eq!(method_of(0), Some(json!("transfer")), "{numbers}");
    assert_eq!(method_of(1), Some(json!("conference")), "{numbers}");
    assert_eq!(method_of(2), Some(json!("conference")), "{numbers}");

    // Each SIM bridges as it says.
    let pairs = [
        ("+447911000101", "+447912000102"),
        ("+447911000201", "+447912000202"),
        ("+447911000301", "+447912000302"),
    ];
    for (a, b) in pairs {
        let session = daemon.open_session(a, b, json!({"mode": "voice"})).await;
        let proxy = session["proxy_number"].as_str().unwrap().to_string();
        let index = (0..3)
            .find(|&i| sim.msisdn(i) == proxy)
            .expect("a bank SIM");
        masked_call(&sim, &proxy, a, b).await;
        let record = wait_call_record(&daemon, session["id"].as_str().unwrap()).await;
        let expected = if index == 0 {
            "transferred"
        } else {
            "completed"
        };
        assert_eq!(record["outcome"], expected, "SIM {index}: {record}");
    }
}
