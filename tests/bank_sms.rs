//! SMS end to end on the simulator with every profile, through the bank:
//! sending single and multipart messages in GSM 7-bit and UCS2 (checked on
//! the receiving handset), receiving them (`+CMTI` → read → `Inbound` →
//! confirmed → gone from the SIM), and delivery reports.

mod driver_common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use driver_common::{PROFILES, Sim};
use simmask::bank::{Bank, BankConfig, BankEvent, InboundSms};
use simmask::modem::actor::ModemEvent;
use simmask::pdu::{self, Tpdu};
use simmask::profile::Profiles;

const SINGLE_GSM7: &str = "Hello from simmask";
const SINGLE_UCS2: &str = "Привет, мир 👋";

fn long_gsm7() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(5)
}

fn long_ucs2() -> String {
    "Съешь же ещё этих мягких французских булок. ".repeat(3)
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<BankEvent>) -> BankEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("bank event in time")
        .expect("bank alive")
}

fn deliver_text(sms: &InboundSms) -> (String, Option<pdu::Concat>) {
    let decoded = pdu::decode_hex(&sms.pdu_hex, true).expect("inbound PDU decodes");
    match decoded.pdu.tpdu {
        Tpdu::Deliver(deliver) => (deliver.user_data.text, deliver.user_data.concat),
        other => panic!("expected an SMS-DELIVER, got {other:?}"),
    }
}

#[tokio::test]
async fn every_profile_sends_receives_and_reports_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(&PROFILES, Some(dir.path()), 31).await;
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/modem*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_secs(2),
        power_cycle_command: None,
        quarantine_after: 3,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    })
    .await;
    let expected: HashSet<String> = (0..PROFILES.len())
        .map(|i| sim.modem(i).iccid.clone())
        .collect();
    let mut up = HashSet::new();
    while up != expected {
        if let BankEvent::SimUp { sim: iccid } = next(&mut events).await {
            up.insert(iccid);
        }
    }

    for (index, profile) in PROFILES.iter().enumerate() {
        let modem = sim.modem(index).clone();
        let handle = bank.handle(&modem.iccid).expect("handle");
        let handset = format!("+1555020{index:04}");

        // Sending: the handset receives each text whole.
        let texts = [
            SINGLE_GSM7.to_string(),
            long_gsm7(),
            SINGLE_UCS2.to_string(),
            long_ucs2(),
        ];
        for text in &texts {
            let references = handle
                .send_sms(&handset, text, false)
                .await
                .unwrap_or_else(|e| panic!("{profile}: send: {e}"));
            let parts = pdu::segment(text).parts.len();
            assert_eq!(references.len(), parts, "{profile}: one TP-MR per part");
        }
        let received = sim.wait_messages(&handset, texts.len()).await;
        let got: Vec<&str> = received.iter().filter_map(|m| m["text"].as_str()).collect();
        for text in &texts {
            assert!(
                got.contains(&text.as_str()),
                "{profile}: {text:?} not in {got:?}"
            );
        }

        // Receiving: stored, read, handed on, deleted only when confirmed;
        // or, on a profile routing directly, each +CMT acknowledged once
        // confirmed (the network offers the next one only then).
        let direct = Profiles::builtin()
            .get(profile)
            .expect("profile")
            .sms
            .cnmi
            .split(',')
            .nth(1)
            == Some("2");
        sim.handset_sms(&handset, &modem.msisdn, SINGLE_GSM7).await;
        sim.handset_sms(&handset, &modem.msisdn, &long_ucs2()).await;
        let ucs2_parts = pdu::segment(&long_ucs2()).parts.len();
        let mut single = None;
        let mut parts = Vec::new();
        while single.is_none() || parts.len() < ucs2_parts {
            match next(&mut events).await {
                BankEvent::Inbound { sim: iccid, sms } if iccid == modem.iccid => {
                    assert_eq!(
                        sms.location.is_none(),
                        direct,
                        "{profile}: direct (+CMT) or stored (+CMTI) as its profile says"
                    );
                    assert!(!sms.status_report);
                    let (text, concat) = deliver_text(&sms);
                    let sms = if direct {
                        sms.confirm_stored().await.expect("+CNMA");
                        None
                    } else {
                        Some(sms)
                    };
                    match concat {
                        None => single = Some((text, sms)),
                        Some(concat) => parts.push((concat.sequence, text, sms)),
                    }
                }
                _ => {}
            }
        }
        let stored = handle.list_sms().await.expect("list");
        let expected = if direct { 0 } else { 1 + ucs2_parts };
        assert_eq!(
            stored.len(),
            expected,
            "{profile}: kept until confirmed, never stored when direct"
        );
        let (text, sms) = single.expect("single");
        assert_eq!(text, SINGLE_GSM7, "{profile}");
        if let Some(sms) = sms {
            sms.confirm_stored().await.expect("confirm");
        }
        parts.sort_by_key(|(sequence, _, _)| *sequence);
        let joined: String = parts.iter().map(|(_, text, _)| text.as_str()).collect();
        assert_eq!(joined, long_ucs2(), "{profile}");
        for (_, _, sms) in parts.into_iter() {
            if let Some(sms) = sms {
                sms.confirm_stored().await.expect("confirm part");
            }
        }
        assert_eq!(
            handle.list_sms().await.expect("list"),
            vec![],
            "{profile}: confirmed messages are gone from the SIM"
        );

        // Delivery report: routed directly (+CDS) or stored (+CDSI) per the
        // profile's +CNMI, with the TP-MR the send returned.
        let references = handle
            .send_sms(&handset, "report this", true)
            .await
            .expect("send with report");
        let report_pdu = loop {
            match next(&mut events).await {
                BankEvent::Modem {
                    sim: iccid,
                    event: ModemEvent::StatusReport { pdu_hex },
                } if iccid == modem.iccid => break pdu_hex,
                BankEvent::Inbound { sim: iccid, sms } if iccid == modem.iccid => {
                    assert!(sms.status_report, "{profile}: only the report is expected");
                    let pdu_hex = sms.pdu_hex.clone();
                    sms.confirm_stored().await.expect("confirm report");
                    break pdu_hex;
                }
                _ => {}
            }
        };
        let decoded = pdu::decode_hex(&report_pdu, true).expect("report decodes");
        let Tpdu::StatusReport(report) = decoded.pdu.tpdu else {
            panic!("{profile}: not a status report");
        };
        assert_eq!(vec![report.message_reference], references, "{profile}");
        assert!(report.delivered(), "{profile}");
    }
    bank.shutdown();
    sim.shutdown().await;
}

/// The driver's profiles with `generic` routing new messages straight to
/// the host (`+CNMI` mt=2), as an operator's profile file may ask.
fn direct_routing_profiles(dir: &std::path::Path) -> Profiles {
    let generic = Profiles::builtin().get("generic").expect("generic").clone();
    let text = toml::to_string(&generic)
        .expect("profile serialises")
        .replace("cnmi = \"2,1,0,1,0\"", "cnmi = \"2,2,0,1,0\"");
    assert!(text.contains("2,2,0,1,0"), "{text}");
    std::fs::write(dir.join("generic.toml"), text).expect("profile file");
    Profiles::load_dir(dir).expect("profiles load")
}

#[tokio::test]
async fn a_direct_delivery_is_acknowledged_only_when_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let profiles_dir = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles_dir).expect("profiles dir");
    let sim = Sim::start(&["generic"], Some(&links), 33).await;
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/modem*", links.display())],
        profiles: direct_routing_profiles(&profiles_dir),
        poll_interval: Duration::from_secs(2),
        power_cycle_command: None,
        quarantine_after: 3,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    })
    .await;
    let modem = sim.modem(0).clone();
    while !matches!(next(&mut events).await, BankEvent::SimUp { .. }) {}
    let handle = bank.handle(&modem.iccid).expect("handle");
    let capabilities = handle.identity().capabilities;
    assert_eq!(capabilities.cnmi, "2,2,0,1,0");
    assert_eq!(capabilities.sms_service, 1, "phase 2+: +CMT needs +CNMA");

    sim.handset_sms("+15550500001", &modem.msisdn, SINGLE_GSM7)
        .await;
    let sms = loop {
        if let BankEvent::Inbound { sms, .. } = next(&mut events).await {
            break sms;
        }
    };
    assert_eq!(sms.location, None, "routed directly, not stored");
    assert_eq!(deliver_text(&sms).0, SINGLE_GSM7);
    let acks = |trace: &[serde_json::Value]| {
        trace
            .iter()
            .filter(|e| e["dir"] == "rx" && e["line"] == "AT+CNMA")
            .count()
    };
    assert_eq!(
        acks(&sim.trace(0).await),
        0,
        "not acknowledged before confirmed"
    );
    sms.confirm_stored().await.expect("+CNMA");
    assert_eq!(acks(&sim.trace(0).await), 1);
    // Acknowledged, so not stored on the SIM either.
    assert_eq!(handle.list_sms().await.expect("list"), vec![]);
    bank.shutdown();
    sim.shutdown().await;
}

/// Issue 16: a Quectel EC25/EG25 told to store status reports (`+CNMI`
/// `<ds>`=2) keeps them in "SR" but announces `+CDSI: "SM",<n>` (the
/// virtual EC25 does the same; asterisk-chan-quectel PR #75). The profile
/// takes reports as `+CDS`; an operator's profile that stores them still
/// gets every report, read from "SR".
#[tokio::test]
async fn a_quectel_status_report_misannounced_as_sm_is_read_from_sr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let profiles_dir = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles_dir).expect("profiles dir");
    let builtin = Profiles::builtin();
    let quectel = builtin.get("quectel-ec25").expect("quectel");
    assert_eq!(quectel.sms.cnmi, "2,2,0,1,0", "the profile takes +CDS");
    let text = toml::to_string(quectel)
        .expect("profile serialises")
        .replace("cnmi = \"2,2,0,1,0\"", "cnmi = \"2,2,0,2,0\"");
    std::fs::write(profiles_dir.join("quectel-ec25.toml"), text).expect("profile file");
    let sim = Sim::start(&["quectel-ec25"], Some(&links), 35).await;
    let (bank, mut events) = Bank::start(BankConfig {
        ports: vec![format!("{}/modem*", links.display())],
        profiles: Profiles::load_dir(&profiles_dir).expect("profiles load"),
        poll_interval: Duration::from_secs(2),
        power_cycle_command: None,
        quarantine_after: 3,
        pins: HashMap::new(),
        msisdn_for_sim: HashMap::new(),
        known_sims: Vec::new(),
        baud: 115_200,
    })
    .await;
    let modem = sim.modem(0).clone();
    while !matches!(next(&mut events).await, BankEvent::SimUp { .. }) {}
    let handle = bank.handle(&modem.iccid).expect("handle");
    assert_eq!(handle.identity().capabilities.cnmi, "2,2,0,2,0");
    let references = handle
        .send_sms("+15550500002", "report this", true)
        .await
        .expect("send with report");
    let sms = loop {
        if let BankEvent::Inbound { sms, .. } = next(&mut events).await {
            break sms;
        }
    };
    assert!(sms.status_report, "the report, not another message");
    let (storage, _) = sms.location.clone().expect("stored");
    assert_eq!(
        storage, "SR",
        "read where it was stored, not where announced"
    );
    let decoded = pdu::decode_hex(&sms.pdu_hex, true).expect("report decodes");
    let Tpdu::StatusReport(report) = decoded.pdu.tpdu else {
        panic!("not a status report");
    };
    assert_eq!(vec![report.message_reference], references);
    sms.confirm_stored().await.expect("deleted from SR");
    let trace = sim.trace(0).await;
    assert!(
        trace
            .iter()
            .any(|e| e["dir"] == "tx" && e["line"] == "+CDSI: \"SM\",1"),
        "the modem announced \"SM\""
    );
    bank.shutdown();
    sim.shutdown().await;
}
