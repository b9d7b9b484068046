//! A modem that stops answering is reset (`AT+CFUN=1,1`), then power cycled
//! by the configured command, and quarantined when nothing helps; faults
//! injected through the simulator's control API.

mod driver_common;

use std::collections::HashMap;
use std::time::Duration;

use driver_common::Sim;
use serde_json::json;
use simmask::bank::{Bank, BankConfig, BankEvent, SimState};
use simmask::profile::Profiles;

fn config(glob: String, power_cycle_command: Option<String>) -> BankConfig {
    BankConfig {
        ports: vec![glob],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(200),
        power_cycle_command,
        quarantine_after: 1,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
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

/// Far more responses than the test will ever ask for.
const FOREVER: u32 = 1_000_000;

#[tokio::test]
async fn a_modem_answering_garbage_is_reset_power_cycled_then_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let sim = Sim::start(&["generic"], Some(&links), 21).await;
    let iccid = sim.modem(0).iccid.clone();
    let record = dir.path().join("power-cycled");
    let command = format!("echo {{tty}} >> {}", record.display());
    let (bank, mut events) =
        Bank::start(config(format!("{}/modem*", links.display()), Some(command))).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;
    // The first poll is done: what follows is the fault, not start-up.
    wait_for(&mut events, |e| matches!(e, BankEvent::Health { .. })).await;

    // Noise on the line and no answer that ends a command.
    sim.faults(0, json!({ "noise": true, "drop_responses": FOREVER }))
        .await;
    wait_for(
        &mut events,
        |e| matches!(e, BankEvent::SimDown { reason, .. } if reason.contains("quarantined")),
    )
    .await;
    let status = bank.sims().into_iter().next().expect("status");
    assert_eq!(status.id, iccid);
    assert_eq!(status.state, SimState::Quarantined);
    assert!(!status.healthy);
    let error = status.last_error.expect("a reason");
    assert!(error.contains("quarantined"), "{error}");
    let cycled = std::fs::read_to_string(&record).expect("power-cycle command ran");
    assert_eq!(cycled.trim(), sim.port(0));
    bank.shutdown();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_modem_that_a_power_cycle_revives_comes_back_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let sim = Sim::start(&["simcom-sim800"], Some(&links), 22).await;
    let marker = dir.path().join("cycled");
    let command = format!("touch {}", marker.display());
    let (bank, mut events) =
        Bank::start(config(format!("{}/modem*", links.display()), Some(command))).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;
    // The first poll is done: what follows is the fault, not start-up.
    wait_for(&mut events, |e| matches!(e, BankEvent::Health { .. })).await;

    sim.faults(0, json!({ "drop_responses": FOREVER })).await;
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
    sim.faults(0, json!({ "drop_responses": 0 })).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;
    let status = &bank.sims()[0];
    assert_eq!(status.state, SimState::Up);
    assert_eq!(status.recoveries, 0);
    bank.shutdown();
    sim.shutdown().await;
}

/// A modem whose firmware locked up is unhealthy from its first unanswered
/// poll, well before the reset: the outbox holds the SIM's sends instead of
/// feeding each into the silence (a send waits a minute for its answer, and
/// the polls wait behind it: the storm in tests/storm_misbehave.rs saw the
/// reset come only after two such sends).
#[tokio::test]
async fn a_locked_up_modem_is_unhealthy_from_its_first_unanswered_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let sim = Sim::start(&["generic"], Some(&links), 23).await;
    let mut config = config(format!("{}/modem*", links.display()), None);
    // Polls far enough apart that the first silence is seen alone.
    config.poll_interval = Duration::from_secs(3);
    config.quarantine_after = 5;
    let (bank, mut events) = Bank::start(config).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::SimUp { .. })).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::Health { .. })).await;
    assert!(bank.sims()[0].healthy);

    sim.faults(0, json!({ "hung": true })).await;
    wait_for(&mut events, |e| matches!(e, BankEvent::Health { .. })).await;
    let status = &bank.sims()[0];
    assert_eq!(status.state, SimState::Up, "not yet reset");
    assert!(!status.healthy, "unhealthy from the first silence");
    let error = status.last_error.clone().expect("a reason");
    assert!(error.contains("timed out"), "{error}");

    // Answering again, it is healthy again without a reset.
    sim.faults(0, json!({ "hung": false })).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while !bank.sims()[0].healthy {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("healthy again");
    assert_eq!(bank.sims()[0].state, SimState::Up);
    bank.shutdown();
    sim.shutdown().await;
}
