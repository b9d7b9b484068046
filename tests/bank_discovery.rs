//! The bank on the simulator: discovery through globs, identity by ICCID,
//! health polled into each SIM's status.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

mod driver_common;

use driver_common::scripted::ScriptedModem;
use simmask::bank::{Bank, BankConfig, BankEvent, SimState};
use simmask::profile::Profiles;
use simmask::sim::{SimConfig, Simulator};

const PROFILES: [&str; 4] = ["generic", "simcom-sim800", "quectel-ec25", "huawei-e173"];

fn config(glob: String) -> BankConfig {
    BankConfig {
        ports: vec![glob],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(500),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    }
}

/// Receives bank events until `done` says so, failing after `limit`.
async fn until(
    events: &mut tokio::sync::mpsc::Receiver<BankEvent>,
    limit: Duration,
    mut done: impl FnMut(&BankEvent) -> bool,
) {
    tokio::time::timeout(limit, async {
        while let Some(event) = events.recv().await {
            if done(&event) {
                return;
            }
        }
        panic!("bank event channel closed");
    })
    .await
    .expect("bank event in time");
}

#[tokio::test]
async fn every_modem_behind_the_glob_comes_up_once_by_iccid() {
    let links = tempfile::tempdir().expect("tempdir");
    let sim = Simulator::start(SimConfig {
        modems: PROFILES.len(),
        profiles: PROFILES.iter().map(|p| p.to_string()).collect(),
        control: "127.0.0.1:0".parse().expect("address"),
        links: Some(links.path().to_path_buf()),
        seed: 11,
        baud: None,
    })
    .await
    .expect("simulator");
    // A file matching the glob that is no serial port at all.
    std::fs::write(links.path().join("modem-not-a-tty"), b"").expect("decoy");
    let glob = format!("{}/modem*", links.path().display());
    let (bank, mut events) = Bank::start(config(glob)).await;

    let expected: HashSet<String> = sim
        .description()
        .modems
        .iter()
        .map(|m| m.iccid.clone())
        .collect();
    let mut up = HashSet::new();
    until(&mut events, Duration::from_secs(30), |event| {
        if let BankEvent::SimUp { sim: iccid } = event {
            assert!(up.insert(iccid.clone()), "{iccid} came up twice");
        }
        up == expected
    })
    .await;

    // Health arrives with the first poll.
    let mut healthy = HashSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while healthy != expected {
            tokio::time::sleep(Duration::from_millis(100)).await;
            healthy = bank
                .sims()
                .into_iter()
                .filter(|s| s.healthy && s.signal_dbm.is_some())
                .map(|s| s.id)
                .collect();
        }
    })
    .await
    .expect("every SIM healthy");

    for modem in &sim.description().modems {
        let status = bank
            .sims()
            .into_iter()
            .find(|s| s.id == modem.iccid)
            .expect("status");
        assert_eq!(status.state, SimState::Up);
        assert!(status.state == "up");
        assert_eq!(status.profile, modem.profile);
        assert_eq!(status.msisdn.as_deref(), Some(modem.msisdn.as_str()));
        assert_eq!(status.imei.as_deref(), Some(modem.imei.as_str()));
        assert_eq!(status.registration.as_deref(), Some("home"));
        assert!(status.operator.is_some());
        let handle = bank.handle(&modem.iccid).expect("handle");
        assert_eq!(
            handle.identity().iccid.as_deref(),
            Some(modem.iccid.as_str())
        );
        handle
            .ping()
            .await
            .expect("modem answers through the bank's handle");
    }
    assert_eq!(bank.sims().len(), PROFILES.len());
    bank.shutdown();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_modem_answering_on_two_interfaces_is_one_sim_on_one_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iccid = "8944000000000000026";
    // Two AT interfaces of one USB modem: same IMEI, same SIM.
    let _if02 = ScriptedModem::plug(&dir.path().join("usb-modem-if02-port0"), iccid, None);
    let _if03 = ScriptedModem::plug(&dir.path().join("usb-modem-if03-port0"), iccid, None);
    let (bank, mut events) = Bank::start(config(format!(
        "{}/usb-modem-if0*-port0",
        dir.path().display()
    )))
    .await;
    until(&mut events, Duration::from_secs(20), |e| {
        matches!(e, BankEvent::SimUp { .. })
    })
    .await;
    let port = bank.sims()[0].port.clone();
    // Several rescans later the SIM still has one entry on the same port,
    // and never went down or up again.
    let watch = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(event) = events.recv().await {
            if matches!(event, BankEvent::SimUp { .. } | BankEvent::SimDown { .. }) {
                return Some(event);
            }
        }
        None
    })
    .await;
    assert!(watch.is_err(), "flapped: {watch:?}");
    let sims = bank.sims();
    assert_eq!(sims.len(), 1);
    assert_eq!(sims[0].port, port);
    assert_eq!(sims[0].state, SimState::Up);
    bank.handle(iccid)
        .expect("handle")
        .ping()
        .await
        .expect("answers");
    bank.shutdown();
}
