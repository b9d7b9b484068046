//! Calls end to end on the simulator with every profile, through the modem
//! actor: place, answer, hold, join or transfer (as the network offers),
//! mute, hang up; caller ID with RING; USSD.

mod driver_common;

use std::time::Duration;

use driver_common::{PROFILES, Sim};
use simmask::modem::actor::{CallState, ModemEvent, ModemHandle, ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::profile::Profiles;
use tokio::sync::mpsc::Receiver;

async fn wait_calls(handle: &ModemHandle, wanted: &[CallState]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let calls = handle.list_calls().await.expect("+CLCC");
        let mut states: Vec<CallState> = calls.iter().map(|c| c.state).collect();
        states.sort_by_key(|s| *s as u8);
        let mut want = wanted.to_vec();
        want.sort_by_key(|s| *s as u8);
        if states == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls {calls:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ring(events: &mut Receiver<ModemEvent>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ModemEvent::Ring { caller }) = events.recv().await {
                return caller;
            }
        }
    })
    .await
    .expect("RING in time")
}

#[tokio::test]
async fn every_profile_places_answers_holds_bridges_and_hangs_up() {
    let sim = Sim::start(&PROFILES, None, 41).await;
    for (index, profile) in PROFILES.iter().enumerate() {
        let spawned = spawn_modem(&sim.port(index), ModemOptions::new(Profiles::builtin()))
            .await
            .expect("spawn");
        let (handle, mut events) = (spawned.handle, spawned.events);
        let capabilities = handle.identity().capabilities;
        assert!(capabilities.voice, "{profile}: voice probed");
        let a = format!("+1555030{index:04}");
        let b = format!("+1555031{index:04}");

        // Outgoing: the handset rings, answers, the call is active, hang up.
        handle.dial(&a).await.expect("dial");
        sim.wait_handset_state(&a, "ringing").await;
        sim.handset_answer(&a).await;
        wait_calls(&handle, &[CallState::Active]).await;
        handle.mute(true).await.expect("mute");
        handle.mute(false).await.expect("unmute");
        handle.hangup().await.expect("hang up");
        wait_calls(&handle, &[]).await;
        sim.wait_handset_state(&a, "idle").await;

        // Incoming with caller ID, answered, held, a second call placed.
        sim.handset_dial(&a, &sim.modem(index).msisdn).await;
        assert_eq!(
            ring(&mut events).await.as_deref(),
            Some(a.as_str()),
            "{profile}"
        );
        handle.answer().await.expect("answer");
        wait_calls(&handle, &[CallState::Active]).await;
        sim.wait_handset_state(&a, "active").await;
        handle.hold().await.expect("hold");
        wait_calls(&handle, &[CallState::Held]).await;
        handle.dial(&b).await.expect("dial b");
        sim.wait_handset_state(&b, "ringing").await;
        sim.handset_answer(&b).await;
        wait_calls(&handle, &[CallState::Held, CallState::Active]).await;

        if capabilities.transfer() {
            // Explicit call transfer: A and B talk, the modem is free.
            handle.transfer().await.expect("transfer");
            wait_calls(&handle, &[]).await;
            let call = sim.wait_handset_state(&a, "active").await;
            assert_eq!(call["connected_to"], serde_json::json!([b]), "{profile}");
            sim.handset_hangup(&a).await;
        } else {
            // The network offers neither join nor transfer (huawei-e173).
            assert!(!capabilities.multiparty());
            let refused = handle.transfer().await;
            assert!(
                matches!(refused, Err(AtError::Cme { .. } | AtError::Error)),
                "{profile}: {refused:?}"
            );
            // End the active call by its id, then the held one.
            let calls = handle.list_calls().await.expect("calls");
            let active = calls
                .iter()
                .find(|c| c.state == CallState::Active)
                .expect("active call");
            handle.hangup_call(active.id).await.expect("+CHLD=1x");
            wait_calls(&handle, &[CallState::Held]).await;
            handle.hangup().await.expect("hang up");
        }
        wait_calls(&handle, &[]).await;
        sim.wait_handset_state(&a, "idle").await;
        sim.wait_handset_state(&b, "idle").await;

        assert_eq!(
            handle.ussd("*100#").await.expect("ussd"),
            "Your balance is 12.34 EUR",
            "{profile}"
        );
        handle.shutdown();
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_multiparty_call_joins_both_handsets() {
    let sim = Sim::start(&["generic"], None, 42).await;
    let spawned = spawn_modem(&sim.port(0), ModemOptions::new(Profiles::builtin()))
        .await
        .expect("spawn");
    let (handle, mut events) = (spawned.handle, spawned.events);
    assert!(handle.identity().capabilities.multiparty());
    let (a, b) = ("+15550400001", "+15550400002");
    sim.handset_dial(a, &sim.modem(0).msisdn).await;
    ring(&mut events).await;
    handle.answer().await.expect("answer");
    handle.hold().await.expect("hold");
    handle.dial(b).await.expect("dial");
    sim.wait_handset_state(b, "ringing").await;
    sim.handset_answer(b).await;
    wait_calls(&handle, &[CallState::Held, CallState::Active]).await;
    handle.join().await.expect("join");
    handle.mute(true).await.expect("mute the bridge");
    wait_calls(&handle, &[CallState::Active, CallState::Active]).await;
    let heard = sim.handset_call(a).await;
    assert!(
        heard["connected_to"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == b)),
        "{heard}"
    );
    let calls = handle.list_calls().await.expect("calls");
    assert!(calls.iter().all(|c| c.multiparty), "{calls:?}");
    // One side leaves: the call list changes, the modem clears the rest.
    sim.handset_hangup(a).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        while events.recv().await != Some(ModemEvent::CallsChanged) {}
    })
    .await
    .expect("CallsChanged");
    handle.hangup().await.expect("hang up");
    wait_calls(&handle, &[]).await;
    sim.wait_handset_state(b, "idle").await;
    sim.shutdown().await;
}
