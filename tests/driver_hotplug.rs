//! Unplug and re-plug through real ptys: requests fail with a typed,
//! retryable error while the modem is away, the actor reopens its path,
//! and the bank recognises a SIM that returns under another tty name.

mod driver_common;

use std::collections::HashMap;
use std::time::Duration;

use driver_common::VirtualModem;
use simmask::bank::{Bank, BankConfig, BankEvent, SimState};
use simmask::modem::actor::{ModemEvent, ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::modem::profile::Profiles;

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<ModemEvent>) -> ModemEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("event in time")
        .expect("actor alive")
}

#[tokio::test]
async fn the_actor_reopens_its_path_and_fails_fast_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let mut modem = VirtualModem::plug(&link, "quectel-ec25", 3);
    let spawned = spawn_modem(
        link.to_str().expect("path"),
        ModemOptions::new(Profiles::builtin()),
    )
    .await
    .expect("spawn");
    let (handle, mut events) = (spawned.handle, spawned.events);
    handle.signal().await.expect("signal before unplug");

    modem.unplug().await;
    assert_eq!(next_event(&mut events).await, ModemEvent::Unplugged);
    let error = handle.signal().await.expect_err("no modem");
    assert_eq!(error, AtError::Unplugged);
    assert!(error.is_retryable());
    assert!(!handle.is_connected());

    modem.plug_at(&link);
    assert_eq!(next_event(&mut events).await, ModemEvent::Replugged);
    assert!(handle.is_connected());
    handle.signal().await.expect("signal after replug");
    assert_eq!(
        handle.identity().iccid.as_deref(),
        Some(modem.identity.iccid.as_str())
    );
    handle.shutdown();
}

#[tokio::test]
async fn the_bank_keeps_a_sim_that_returns_under_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut modem = VirtualModem::plug(&dir.path().join("ttyUSB0"), "simcom-sim800", 5);
    let iccid = modem.identity.iccid.clone();
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/ttyUSB*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(300),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::new(),
        msisdn_for_iccid: HashMap::new(),
        baud: 115_200,
    })
    .await;
    let mut wait_for = async |wanted: &dyn Fn(&BankEvent) -> bool| {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let event = events.recv().await.expect("bank alive");
                if wanted(&event) {
                    return;
                }
            }
        })
        .await
        .expect("bank event in time")
    };
    wait_for(&|e| matches!(e, BankEvent::SimUp { iccid: i } if *i == iccid)).await;

    // USB re-enumeration: the same modem comes back as ttyUSB3.
    modem.unplug().await;
    wait_for(&|e| matches!(e, BankEvent::SimDown { iccid: i, .. } if *i == iccid)).await;
    let status = &bank.sims()[0];
    assert_eq!(status.state, SimState::Unplugged);
    assert!(bank.handle(&iccid).is_some_and(|h| !h.is_connected()));

    let new_link = dir.path().join("ttyUSB3");
    modem.plug_at(&new_link);
    wait_for(&|e| matches!(e, BankEvent::SimUp { iccid: i } if *i == iccid)).await;
    let sims = bank.sims();
    assert_eq!(sims.len(), 1, "one SIM, not two: {sims:?}");
    assert_eq!(sims[0].state, SimState::Up);
    assert_eq!(sims[0].port, new_link.to_str().expect("path"));
    let handle = bank.handle(&iccid).expect("handle");
    handle
        .signal()
        .await
        .expect("the SIM answers on its new port");
    bank.shutdown();
}
