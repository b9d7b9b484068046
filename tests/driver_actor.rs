//! The modem actor on the simulator, through real ptys: identity, profile,
//! capabilities, health, and typed errors.

mod driver_common;

use simmask::modem::actor::{ModemEvent, ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::modem::parse::RegistrationStatus;
use simmask::profile::Profiles;
use simmask::sim::{SimConfig, Simulator};

const PROFILES: [&str; 4] = ["generic", "simcom-sim800", "quectel-ec25", "huawei-e173"];

async fn simulator(profiles: &[&str]) -> Simulator {
    Simulator::start(SimConfig {
        modems: profiles.len(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        control: "127.0.0.1:0".parse().expect("address"),
        links: None,
        seed: 7,
        baud: None,
    })
    .await
    .expect("simulator starts")
}

#[tokio::test]
async fn each_profile_initialises_with_its_identity_and_health() {
    let sim = simulator(&PROFILES).await;
    for modem in &sim.description().modems {
        let path = modem.path.to_str().expect("utf-8 pty path");
        let spawned = spawn_modem(path, ModemOptions::new(Profiles::builtin()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", modem.profile));
        let handle = spawned.handle;
        let id = handle.identity();
        let name = &modem.profile;
        assert_eq!(&id.profile, name);
        assert_eq!(id.imei.as_deref(), Some(modem.imei.as_str()), "{name}");
        assert_eq!(id.iccid.as_deref(), Some(modem.iccid.as_str()), "{name}");
        assert_eq!(id.imsi.as_deref(), Some(modem.imsi.as_str()), "{name}");
        assert_eq!(id.msisdn.as_deref(), Some(modem.msisdn.as_str()), "{name}");
        assert_eq!(id.pin_state.as_deref(), Some("READY"), "{name}");
        let profile = Profiles::builtin().get(name).expect("profile").clone();
        assert_eq!(id.capabilities.receive_storage, profile.sms.default_storage);
        let storages: Vec<String> = profile
            .sms
            .storages
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(id.capabilities.storages, storages, "{name}");
        assert_eq!(id.capabilities.cnmi, profile.sms.cnmi, "{name}");

        let signal = handle.signal().await.expect("signal");
        assert!(
            signal.dbm.is_some_and(|d| (-113..=-51).contains(&d)),
            "{name}: {signal:?}"
        );
        let registration = handle.registration().await.expect("registration");
        assert_eq!(registration.status, RegistrationStatus::Home, "{name}");
        assert!(!registration.roaming);
        assert!(registration.operator.is_some(), "{name}: {registration:?}");
        assert_eq!(handle.list_sms().await.expect("list"), vec![], "{name}");
        handle.ping().await.expect("ping");
        handle.shutdown();
        assert_eq!(handle.ping().await, Err(AtError::Stopped));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_before_reaching_the_modem() {
    let sim = simulator(&["generic"]).await;
    let path = sim.description().modems[0]
        .path
        .to_str()
        .expect("path")
        .to_string();
    let handle = spawn_modem(&path, ModemOptions::new(Profiles::builtin()))
        .await
        .expect("spawn")
        .handle;
    assert!(matches!(
        handle.dial("123;ATH").await,
        Err(AtError::Invalid(_))
    ));
    assert!(matches!(
        handle.ussd("*1\"#").await,
        Err(AtError::Invalid(_))
    ));
    assert!(matches!(
        handle.send_sms("not a number", "hi", false).await,
        Err(AtError::Invalid(_))
    ));
    assert!(matches!(
        handle.read_sms("S\"M", 1).await,
        Err(AtError::Invalid(_))
    ));
    assert!(matches!(
        handle.hangup_call(0).await,
        Err(AtError::Invalid(_))
    ));
    // The modem still answers after all of it.
    handle.ping().await.expect("ping");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_port_that_is_no_modem_fails_to_spawn() {
    let missing = spawn_modem(
        "/nonexistent/ttyUSB7",
        ModemOptions::new(Profiles::builtin()),
    )
    .await;
    assert!(
        matches!(missing, Err(AtError::Io(_))),
        "{:?}",
        missing.err()
    );
}

#[tokio::test]
async fn a_refused_submit_is_a_typed_message_service_error() {
    let sim = driver_common::Sim::start(&["quectel-ec25"], None, 12).await;
    let handle = spawn_modem(&sim.port(0), ModemOptions::new(Profiles::builtin()))
        .await
        .expect("spawn")
        .handle;
    let handset = "+15550700001";
    // 3GPP TS 27.005 §3.2.5: 500 unknown error.
    sim.faults(0, serde_json::json!({ "cms_error_on_submit": 500 }))
        .await;
    let refused = handle.send_sms(handset, "refused", false).await;
    assert!(
        matches!(
            refused,
            Err(AtError::Cms {
                code: Some(500),
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(!refused.expect_err("refused").is_retryable());
    sim.faults(0, serde_json::json!({ "cms_error_on_submit": null }))
        .await;
    handle
        .send_sms(handset, "accepted", false)
        .await
        .expect("the modem is fine after a refusal");
    assert_eq!(sim.wait_messages(handset, 1).await.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_call_ending_in_the_same_read_as_the_dials_ok_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let _modem = driver_common::scripted::ScriptedModem::plug(&link, "8944000000000000034", None);
    let spawned = spawn_modem(
        link.to_str().expect("path"),
        ModemOptions::new(Profiles::builtin()),
    )
    .await
    .expect("spawn");
    let (handle, mut events) = (spawned.handle, spawned.events);
    handle.dial("+15550700003").await.expect("the dial's OK");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(ModemEvent::Busy) => return,
                Some(_) => {}
                None => panic!("actor gone"),
            }
        }
    })
    .await;
    assert!(event.is_ok(), "BUSY after the OK was lost");
    handle.shutdown();
}
