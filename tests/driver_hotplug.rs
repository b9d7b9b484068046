//! Unplug and re-plug through the simulator's control API: requests fail
//! with a typed, retryable error while the modem is away (a send in flight
//! included), the actor reopens its path, and the bank recognises a SIM that
//! returns under another tty name.

mod driver_common;

use std::collections::HashMap;
use std::time::Duration;

use driver_common::Sim;
use serde_json::json;
use simmask::bank::{Bank, BankConfig, BankEvent, SimState};
use simmask::modem::actor::{ModemEvent, ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::profile::Profiles;

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<ModemEvent>) -> ModemEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("event in time")
        .expect("actor alive")
}

async fn until_event(events: &mut tokio::sync::mpsc::Receiver<ModemEvent>, wanted: ModemEvent) {
    loop {
        if next_event(events).await == wanted {
            return;
        }
    }
}

#[tokio::test]
async fn a_send_interrupted_by_an_unplug_fails_typed_and_the_next_one_works() {
    for profile in driver_common::PROFILES {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Sim::start(&[profile], Some(dir.path()), 3).await;
        let spawned = spawn_modem(&sim.port(0), ModemOptions::new(Profiles::builtin()))
            .await
            .expect("spawn");
        let (handle, mut events) = (spawned.handle, spawned.events);
        let handset = "+15550009001";

        // Every answer now takes a while: the send is surely in flight
        // when the modem is pulled out.
        sim.faults(0, json!({ "delay_ms": 800 })).await;
        let sending = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.send_sms(handset, "lost in transit", false).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        sim.unplug(0).await;
        let result = sending.await.expect("send task");
        assert_eq!(result, Err(AtError::Unplugged), "{profile}");
        assert!(AtError::Unplugged.is_retryable());
        until_event(&mut events, ModemEvent::Unplugged).await;
        assert_eq!(handle.signal().await, Err(AtError::Unplugged), "{profile}");
        assert!(!handle.is_connected());

        sim.faults(0, json!({ "delay_ms": 0 })).await;
        sim.plug(0, None).await;
        until_event(&mut events, ModemEvent::Replugged).await;
        let references = handle
            .send_sms(handset, "after the replug", false)
            .await
            .unwrap_or_else(|e| panic!("{profile}: send after replug: {e}"));
        assert_eq!(references.len(), 1);
        let received = sim.wait_messages(handset, 1).await;
        assert!(
            received.iter().any(|m| m["text"] == "after the replug"),
            "{profile}: {received:?}"
        );
        handle.shutdown();
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn the_bank_keeps_a_sim_that_returns_under_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(&["simcom-sim800"], Some(dir.path()), 5).await;
    let iccid = sim.modem(0).iccid.clone();
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(300),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
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
    wait_for(&|e| matches!(e, BankEvent::SimUp { sim: i } if *i == iccid)).await;

    // USB re-enumeration: the same modem comes back under another name.
    sim.unplug(0).await;
    wait_for(&|e| matches!(e, BankEvent::SimDown { sim: i, .. } if *i == iccid)).await;
    assert_eq!(bank.sims()[0].state, SimState::Unplugged);
    assert!(bank.handle(&iccid).is_some_and(|h| !h.is_connected()));

    sim.plug(0, Some("ttyUSB3")).await;
    wait_for(&|e| matches!(e, BankEvent::SimUp { sim: i } if *i == iccid)).await;
    let sims = bank.sims();
    assert_eq!(sims.len(), 1, "one SIM, not two: {sims:?}");
    assert_eq!(sims[0].state, SimState::Up);
    assert!(sims[0].port.ends_with("/ttyUSB3"), "{}", sims[0].port);
    let handle = bank.handle(&iccid).expect("handle");
    handle
        .signal()
        .await
        .expect("the SIM answers on its new port");
    bank.shutdown();
    sim.shutdown().await;
}

#[tokio::test]
async fn after_a_reset_the_modem_is_initialised_again() {
    for profile in ["quectel-ec25", "huawei-e173"] {
        let sim = Sim::start(&[profile], None, 9).await;
        let spawned = spawn_modem(&sim.port(0), ModemOptions::new(Profiles::builtin()))
            .await
            .expect("spawn");
        let (handle, mut events) = (spawned.handle, spawned.events);
        handle.reset().await.expect("AT+CFUN=1,1");
        until_event(&mut events, ModemEvent::Replugged).await;
        // PDU mode and new-message routing are back: sending and receiving work.
        let handset = "+15550009002";
        handle
            .send_sms(handset, "after the reset", false)
            .await
            .unwrap_or_else(|e| panic!("{profile}: {e}"));
        assert_eq!(sim.wait_messages(handset, 1).await.len(), 1);
        sim.handset_sms(handset, &sim.modem(0).msisdn, "hello again")
            .await;
        // Straight to the host (+CMT) on a profile routing directly, else
        // stored and announced (+CMTI).
        let (pdu_hex, direct) = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match events.recv().await {
                    Some(ModemEvent::SmsStored { storage, index }) => {
                        let sms = handle.read_sms(&storage, index).await.expect("read");
                        return (sms.pdu_hex, false);
                    }
                    Some(ModemEvent::SmsDirect { pdu_hex }) => return (pdu_hex, true),
                    _ => {}
                }
            }
        })
        .await
        .expect("the new message announced after the reset");
        let routes_directly = Profiles::builtin()
            .get(profile)
            .expect("profile")
            .sms
            .cnmi
            .split(',')
            .nth(1)
            == Some("2");
        assert_eq!(
            direct, routes_directly,
            "{profile}: routed as its profile says"
        );
        assert!(!pdu_hex.is_empty());
        if direct {
            handle.ack_sms().await.expect("+CNMA");
        }
        handle.shutdown();
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn another_sim_on_a_sims_old_port_is_a_different_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(&["generic", "generic"], Some(dir.path()), 8).await;
    let (first, second) = (sim.modem(0).iccid.clone(), sim.modem(1).iccid.clone());
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(300),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    })
    .await;
    let mut up = std::collections::HashSet::new();
    while up.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("in time")
            .expect("bank alive");
        if let BankEvent::SimUp { sim: iccid } = event {
            up.insert(iccid);
        }
    }
    // Both modems out; the second comes back under the first one's name.
    sim.unplug(0).await;
    sim.unplug(1).await;
    sim.plug(1, Some("modem0")).await;
    let old_port = sim.port(0);
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let sims = bank.sims();
            let state = |iccid: &str| sims.iter().find(|s| s.id == iccid).cloned();
            if let (Some(a), Some(b)) = (state(&first), state(&second))
                && a.state == SimState::Unplugged
                && b.state == SimState::Up
                && b.port == old_port
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("statuses: {:?}", bank.sims()));
    let handle = bank.handle(&second).expect("the second SIM's modem");
    assert_eq!(handle.identity().iccid.as_deref(), Some(second.as_str()));
    handle.ping().await.expect("answers");
    assert!(bank.handle(&first).is_none_or(|h| !h.is_connected()));
    bank.shutdown();
    sim.shutdown().await;
}
