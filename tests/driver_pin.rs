//! SIM PIN handling against a scripted PIN-locked modem on a real pty: the
//! configured PIN unlocks it, a wrong PIN is sent once and never again (a
//! SIM blocks after three), a missing PIN is reported, and the bank shows
//! the SIM as locked with the reason.

mod driver_common;

use std::collections::HashMap;
use std::time::Duration;

use driver_common::scripted::ScriptedModem;
use simmask::bank::{Bank, BankConfig, SimState};
use simmask::modem::actor::{ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::modem::init::{Step, bring_up};
use simmask::modem::port::AtPort;
use simmask::profile::Profiles;

const ICCID: &str = "8944000000000000018";
const PIN: &str = "4321";

fn options(pin: Option<&str>) -> ModemOptions {
    let mut options = ModemOptions::new(Profiles::builtin());
    if let Some(pin) = pin {
        options.pin_for_iccid = HashMap::from([(ICCID.to_string(), pin.to_string())]);
    }
    options
}

#[tokio::test]
async fn the_configured_pin_unlocks_the_sim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = ScriptedModem::plug(&link, ICCID, Some(PIN));
    let spawned = spawn_modem(link.to_str().expect("path"), options(Some(PIN)))
        .await
        .expect("unlocked");
    let identity = spawned.handle.identity();
    assert_eq!(identity.pin_state.as_deref(), Some("READY"));
    assert_eq!(identity.iccid.as_deref(), Some(ICCID));
    assert_eq!(modem.attempts(), 1);
    spawned.handle.shutdown();
}

#[tokio::test]
async fn a_wrong_pin_is_sent_once_and_never_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = ScriptedModem::plug(&link, ICCID, Some(PIN));
    let path = link.to_str().expect("path");
    let options = options(Some("0000"));
    for _ in 0..3 {
        match spawn_modem(path, options.clone()).await {
            Err(AtError::PinRefused { iccid }) => assert_eq!(iccid, ICCID),
            other => panic!("expected PinRefused, got {:?}", other.err()),
        }
    }
    assert_eq!(modem.attempts(), 1, "the wrong PIN was retried");
}

#[tokio::test]
async fn a_missing_pin_is_reported_with_the_sim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = ScriptedModem::plug(&link, ICCID, Some(PIN));
    match spawn_modem(link.to_str().expect("path"), options(None)).await {
        Err(AtError::PinRequired { iccid, state }) => {
            assert_eq!(iccid.as_deref(), Some(ICCID));
            assert_eq!(state, "SIM PIN");
        }
        other => panic!("expected PinRequired, got {:?}", other.err()),
    }
    assert_eq!(modem.attempts(), 0);
}

/// Bring-up goes on past a SIM it cannot unlock: the report keeps what
/// was found, and each missing field says why.
#[tokio::test]
async fn bring_up_reports_a_locked_sim_field_by_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let _modem = ScriptedModem::plug(&link, ICCID, Some(PIN));
    let mut port = AtPort::open(link.to_str().expect("path")).expect("open");
    let report = bring_up(&mut port, &options(None))
        .await
        .expect("a modem is there");
    assert_eq!(report.identity.iccid.as_deref(), Some(ICCID));
    assert_eq!(report.identity.imei.as_deref(), Some("356938035643809"));
    assert_eq!(report.pin_state.as_deref(), Some("SIM PIN"));
    assert_eq!(report.identity.imsi, None);
    let why = report.failures_of(Step::Imsi).next().expect("why no IMSI");
    assert_eq!(why.command, "AT+CIMI");
    assert!(matches!(
        report.driver_blocker(),
        Some(AtError::PinRequired { state, .. }) if state == "SIM PIN"
    ));
    assert_eq!(report.failures_of(Step::Unlock).count(), 1);
}

#[tokio::test]
async fn the_bank_shows_a_sim_with_a_refused_pin_as_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modem = ScriptedModem::plug(&dir.path().join("ttyUSB0"), ICCID, Some(PIN));
    let (bank, _events) = Bank::start(BankConfig {
        ports: vec![format!("{}/ttyUSB*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(100),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::from([(ICCID.to_string(), "0000".to_string())]),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = bank.sims().into_iter().next() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the SIM shows up");
    assert_eq!(status.id, ICCID);
    assert_eq!(status.state, SimState::Locked);
    assert!(!status.healthy);
    let reason = status.last_error.expect("reason");
    assert!(reason.contains("pin refused"), "{reason}");
    assert!(bank.handle(ICCID).is_none());
    // Rescans come and go (every 0.5 s here); the PIN is not sent again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(modem.attempts(), 1);
    bank.shutdown();
}
