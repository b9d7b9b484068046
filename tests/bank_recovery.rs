//! A modem that stops answering is reset (`AT+CFUN=1,1`), then power cycled
//! by the configured command, and quarantined when nothing helps.

mod driver_common;

use std::collections::HashMap;
use std::time::Duration;

use driver_common::{Fault, VirtualModem};
use simmask::bank::{Bank, BankConfig, BankEvent, SimState};
use simmask::modem::profile::Profiles;

fn config(glob: String, power_cycle_command: Option<String>) -> BankConfig {
    BankConfig {
        ports: vec![glob],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(200),
        power_cycle_command,
        quarantine_after: 1,
        pins: HashMap::new(),
        msisdn_for_iccid: HashMap::new(),
        baud: 115_200,
    }
}

async fn wait_for(
    events: &mut tokio::sync::mpsc::Receiver<BankEvent>,
    wanted: impl Fn(&BankEvent) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let event = events.recv().await.expect("bank alive");
            if wanted(&event) {
                return;
            }
        }
    })
    .await
    .expect("bank event in time")
}

#[tokio::test]
async fn a_modem_answering_garbage_is_reset_power_cycled_then_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyACM0");
    let modem = VirtualModem::plug(&link, "generic", 21);
    let iccid = modem.identity.iccid.clone();
    let record = dir.path().join("power-cycled");
    let command = format!("echo {{port}} >> {}", record.display());
    let (bank, mut events) = Bank::start(config(
        format!("{}/ttyACM*", dir.path().display()),
        Some(command),
    ))
    .await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;

    modem.set_fault(Fault::Garbage);
    wait_for(
        &mut events,
        |e| matches!(e, BankEvent::SimDown { reason, .. } if reason.contains("quarantined")),
    )
    .await;
    let status = bank.sims().into_iter().next().expect("status");
    assert_eq!(status.iccid, iccid);
    assert_eq!(status.state, SimState::Quarantined);
    assert!(!status.healthy);
    let error = status.last_error.expect("a reason");
    assert!(error.contains("quarantined"), "{error}");
    let cycled = std::fs::read_to_string(&record).expect("power-cycle command ran");
    assert_eq!(cycled.trim(), link.to_str().expect("path"));
    bank.shutdown();
}

#[tokio::test]
async fn a_silent_modem_that_a_power_cycle_revives_comes_back_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyACM0");
    let modem = VirtualModem::plug(&link, "simcom-sim800", 22);
    let marker = dir.path().join("cycled");
    let command = format!("touch {}", marker.display());
    let (bank, mut events) = Bank::start(config(
        format!("{}/ttyACM*", dir.path().display()),
        Some(command),
    ))
    .await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;

    modem.set_fault(Fault::Silent);
    wait_for(
        &mut events,
        |e| matches!(e, BankEvent::SimDown { reason, .. } if reason.contains("resetting")),
    )
    .await;
    assert_eq!(bank.sims()[0].state, SimState::Resetting);
    // The hub switches the port's power: the modem boots and answers again.
    tokio::time::timeout(Duration::from_secs(60), async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("power-cycle command ran");
    modem.set_fault(Fault::None);
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;
    let status = &bank.sims()[0];
    assert_eq!(status.state, SimState::Up);
    assert_eq!(status.recoveries, 0);
    bank.shutdown();
}
