//! The network's message routing seen from the modems and handsets:
//! storage and `+CMTI`, held messages, status reports, `+CNMA`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::reports::VALIDITY_EXPIRED;
use super::*;
use crate::pdu::{self, Address, Encoding, Submit, Tpdu, UserData};
use crate::profile::Profiles;

pub(crate) fn network(profiles: &[&str]) -> Network {
    let builtin = Profiles::builtin();
    Network::new(
        profiles
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    builtin.get(name).expect("profile").clone(),
                    Identity::generate(5, i),
                )
            })
            .collect(),
    )
}

fn plug(network: &Network, index: usize) {
    network.set_plugged(index, Some(PathBuf::from("/dev/null")), None);
    network.boot(index);
}

fn urcs(network: &Network, index: usize) -> String {
    String::from_utf8_lossy(&network.take_urcs(index)).into_owned()
}

/// A network of one plugged generic modem whose host set `+CNMI=<cnmi>`
/// and `+CSMS=<csms>`, and its SIM's number.
fn one_sim(cnmi: &str, csms: u8) -> (Network, String) {
    let net = network(&["generic"]);
    plug(&net, 0);
    net.with_modem(0, |m| {
        m.settings.cnmi = Cnmi::parse(cnmi).unwrap();
        m.settings.csms = csms;
    })
    .unwrap();
    let sim = msisdn(&net, 0);
    (net, sim)
}

fn msisdn(network: &Network, index: usize) -> String {
    network.lock().modems[index].identity.msisdn.clone()
}

/// A text from a modem to `to`, asking for a status report or not.
fn submit(to: &str, text: &str, report: bool) -> Submit {
    Submit {
        message_reference: 0,
        destination: Address::international(to),
        pid: 0,
        dcs: 0,
        class: None,
        validity: None,
        status_report_request: report,
        reject_duplicates: false,
        reply_path: false,
        user_data: UserData::text(Encoding::Gsm7, text),
    }
}

#[test]
fn handset_sms_is_stored_and_announced_with_cmti() {
    let net = network(&["generic"]);
    plug(&net, 0);
    net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse("2,1,0,0,0").unwrap())
        .unwrap();
    let sim = msisdn(&net, 0);
    assert_eq!(net.handset_sms("+447700900500", &sim, "hello").unwrap(), 1);
    assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
    let used = net
        .with_modem(0, |m| m.storages.receive_storage().used())
        .unwrap();
    assert_eq!(used, 1);
}

#[test]
fn unplugged_modem_gets_its_messages_on_boot() {
    let net = network(&["generic"]);
    let sim = msisdn(&net, 0);
    net.handset_sms("+447700900500", &sim, "queued").unwrap();
    assert_eq!(urcs(&net, 0), "");
    plug(&net, 0);
    let cnmi = net.with_modem(0, |m| m.settings.cnmi).unwrap();
    assert_eq!(cnmi.mt, 1, "generic profile routes to storage");
    assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
}

#[test]
fn switched_off_handset_gets_held_messages_on_power_on() {
    let net = network(&["generic"]);
    plug(&net, 0);
    let handset = "+447700900600";
    net.set_handset_state(handset, Some(false), None).unwrap();
    let submit = submit(handset, "are you there", true);
    net.with_modem(0, |m| m.settings.cnmi.ds = 1).unwrap();
    assert_eq!(net.submit(0, &submit), Ok(1));
    assert!(net.handset_messages(handset).unwrap().is_empty());
    assert_eq!(urcs(&net, 0), "");
    net.set_handset_state(handset, Some(true), None).unwrap();
    let messages = net.handset_messages(handset).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "are you there");
    let report = urcs(&net, 0);
    assert!(report.starts_with("\r\n+CDS: "), "{report:?}");
    let pdu_line = report.lines().nth(2).unwrap_or_default();
    let decoded = pdu::decode_hex(pdu_line, true).unwrap();
    let Tpdu::StatusReport(status) = decoded.pdu.tpdu else {
        panic!("not a status report: {decoded:?}");
    };
    assert_eq!(status.message_reference, 1);
    assert!(status.delivered());
}

#[test]
fn a_message_held_past_its_validity_is_given_up_with_a_failed_report() {
    let net = network(&["generic"]);
    plug(&net, 0);
    net.with_modem(0, |m| m.settings.cnmi.ds = 1).unwrap();
    let handset = "+447700900602";
    net.set_handset_state(handset, Some(false), None).unwrap();
    let submit = Submit {
        // TS 23.040 §9.2.3.12.1: relative 0 is five minutes.
        validity: Some(pdu::ValidityPeriod::Relative(0)),
        ..submit(handset, "too late", true)
    };
    assert_eq!(net.submit(0, &submit), Ok(1));
    net.tick_at(Instant::now() + Duration::from_secs(4 * 60));
    assert_eq!(urcs(&net, 0), "", "still within its validity");
    net.tick_at(Instant::now() + Duration::from_secs(6 * 60));
    let report = urcs(&net, 0);
    let pdu_line = report.lines().nth(2).unwrap_or_default();
    let Tpdu::StatusReport(status) = pdu::decode_hex(pdu_line, true).unwrap().pdu.tpdu else {
        panic!("not a status report: {report:?}");
    };
    assert_eq!(status.message_reference, 1);
    assert_eq!(status.status, VALIDITY_EXPIRED);
    assert!(status.failed());
    net.set_handset_state(handset, Some(true), None).unwrap();
    assert!(net.handset_messages(handset).unwrap().is_empty());
}

#[test]
fn a_long_text_mode_submit_to_another_sim_arrives_in_parts() {
    let net = network(&["generic", "simcom-sim800"]);
    plug(&net, 0);
    plug(&net, 1);
    let target = msisdn(&net, 1);
    let text = "x".repeat(200);
    let submit = submit(&target, &text, false);
    assert_eq!(net.submit(0, &submit), Ok(1));
    assert_eq!(
        urcs(&net, 1),
        "\r\n+CMTI: \"SM\",1\r\n\r\n+CMTI: \"SM\",2\r\n"
    );
    let parts: Vec<UserData> = net
        .with_modem(1, |m| {
            m.storages
                .read_storage()
                .list(crate::sim::storage::StatFilter::All)
        })
        .unwrap()
        .into_iter()
        .map(
            |(_, stored)| match pdu::decode_hex(&stored.pdu, true).unwrap().pdu.tpdu {
                Tpdu::Deliver(deliver) => deliver.user_data,
                other => panic!("not a deliver: {other:?}"),
            },
        )
        .collect();
    let concat: Vec<_> = parts.iter().map(|p| p.concat.unwrap()).collect();
    assert_eq!(concat[0].reference, concat[1].reference);
    assert_eq!((concat[0].sequence, concat[1].sequence), (1, 2));
    let joined: String = parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(joined, text);
}

#[test]
fn barred_handset_refuses_and_bad_numbers_are_errors() {
    let net = network(&["generic"]);
    plug(&net, 0);
    net.set_handset_state("+447700900601", None, Some(true))
        .unwrap();
    let mut submit = submit("+447700900601", "x", false);
    assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Barred));
    submit.destination = Address::from_number("0123").unwrap();
    assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Unassigned));
    assert_eq!(
        net.handset_sms("447700900500", "+447700900000", "x"),
        Err(NetworkError::InvalidNumber("447700900500".into()))
    );
    let sim = msisdn(&net, 0);
    assert_eq!(
        net.handset_messages(&sim),
        Err(NetworkError::NotAHandset(sim.clone()))
    );
}

#[test]
fn full_storage_holds_until_space_is_freed() {
    let net = network(&["generic"]);
    plug(&net, 0);
    let sim = msisdn(&net, 0);
    let capacity = net
        .with_modem(0, |m| m.storages.receive_storage().capacity)
        .unwrap();
    for i in 0..=capacity {
        net.handset_sms("+447700900500", &sim, &format!("m{i}"))
            .unwrap();
    }
    let announced = urcs(&net, 0).matches("+CMTI").count();
    assert_eq!(announced, usize::from(capacity));
    net.with_modem(0, |m| m.storages.read_storage().delete(3))
        .unwrap();
    net.retry_held();
    assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",3\r\n");
}

#[test]
fn direct_delivery_needs_cnma_under_csms_1() {
    let (net, sim) = one_sim("2,2,0,0,0", 1);
    net.handset_sms("+447700900500", &sim, "direct").unwrap();
    let urc = urcs(&net, 0);
    assert!(urc.starts_with("\r\n+CMT: ,"), "{urc:?}");
    assert!(net.acknowledge(0));
    assert!(!net.acknowledge(0));

    // Unacknowledged past the timeout: the network stores it instead.
    net.handset_sms("+447700900500", &sim, "not acked").unwrap();
    assert!(urcs(&net, 0).starts_with("\r\n+CMT: ,"));
    net.tick_at(Instant::now() + ACK_TIMEOUT / 2);
    assert_eq!(urcs(&net, 0), "");
    net.tick_at(Instant::now() + ACK_TIMEOUT + Duration::from_secs(1));
    assert_eq!(urcs(&net, 0), "\r\n+CMTI: \"SM\",1\r\n");
    assert!(!net.acknowledge(0), "nothing waits any more");
}

#[test]
fn the_next_direct_delivery_waits_for_the_acknowledgement_of_the_last() {
    let (net, sim) = one_sim("2,2,0,0,0", 1);
    net.handset_sms("+447700900500", &sim, "first").unwrap();
    net.handset_sms("+447700900500", &sim, "second").unwrap();
    // 27.005 §3.4.4: one +CMT at a time, so +CNMA answers the one seen.
    assert_eq!(urcs(&net, 0).matches("+CMT:").count(), 1);
    assert!(net.acknowledge(0));
    assert_eq!(urcs(&net, 0).matches("+CMT:").count(), 1);
    assert!(net.acknowledge(0));
    assert_eq!(urcs(&net, 0), "");
    assert!(!net.acknowledge(0));
}

/// Operations on one SIM that may make the network hold, retry, store
/// or hand over a message.
#[derive(Debug, Clone)]
enum Step {
    HandsetSends,
    Delete(u16),
    DeleteAll,
    Cnmi(u8),
    Csms(u8),
    Ack,
    Reject,
    Replug,
    Unplug,
    Timeout,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(Step::HandsetSends),
        1 => (1u16..4).prop_map(Step::Delete),
        1 => Just(Step::DeleteAll),
        1 => (0u8..3).prop_map(Step::Cnmi),
        1 => (0u8..2).prop_map(Step::Csms),
        1 => Just(Step::Ack),
        1 => Just(Step::Reject),
        1 => Just(Step::Replug),
        1 => Just(Step::Unplug),
        1 => Just(Step::Timeout),
    ]
}

/// The texts of the DELIVER PDUs in `+CMT` URCs (PDU mode).
fn direct_texts(urcs: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut lines = urcs.split("\r\n");
    while let Some(line) = lines.next() {
        if line.starts_with("+CMT: ")
            && let Some(Ok(decoded)) = lines.next().map(|hex| pdu::decode_hex(hex, true))
            && let Tpdu::Deliver(deliver) = decoded.pdu.tpdu
        {
            texts.push(deliver.user_data.text);
        }
    }
    texts
}

fn stored_texts(net: &Network) -> Vec<String> {
    net.with_modem(0, |m| {
        m.storages
            .receive_storage()
            .list(crate::sim::storage::StatFilter::All)
    })
    .unwrap_or_default()
    .into_iter()
    .filter_map(
        |(_, stored)| match pdu::decode_hex(&stored.pdu, true).ok()?.pdu.tpdu {
            Tpdu::Deliver(deliver) => Some(deliver.user_data.text),
            _ => None,
        },
    )
    .collect()
}

/// What the host has been handed: texts it has for sure, and direct
/// deliveries still waiting for its `+CNMA` (under `+CSMS=1`).
#[derive(Default)]
struct Host {
    csms: u8,
    seen: std::collections::BTreeSet<String>,
    unacked: VecDeque<String>,
}

impl Host {
    fn observe(&mut self, net: &Network) {
        for text in direct_texts(&urcs(net, 0)) {
            if self.csms == 1 {
                self.unacked.push_back(text);
            } else {
                self.seen.insert(text);
            }
        }
        self.seen.extend(stored_texts(net));
    }
}

proptest::proptest! {
    /// Whatever the SIM does (a small storage filling up, deletes,
    /// unacknowledged or rejected direct deliveries, unplugging), every
    /// message a handset sends reaches the host in the end: never dropped.
    #[test]
    fn no_message_to_a_sim_is_ever_lost(steps in proptest::collection::vec(step(), 1..60)) {
        let net = network(&["generic"]);
        // A SIM of two slots is full most of the time.
        net.with_modem(0, |m| m.storages.receive_storage().capacity = 2).unwrap();
        plug(&net, 0);
        let sim = msisdn(&net, 0);
        let mut sent = Vec::new();
        let mut model = Host::default();
        let mut later = Instant::now();
        for step in steps {
            // What the modem printed so far reaches the host first.
            model.observe(&net);
            match step {
                Step::HandsetSends => {
                    let text = format!("message {}", sent.len());
                    net.handset_sms("+447700900500", &sim, &text).unwrap();
                    sent.push(text);
                }
                Step::Delete(index) => {
                    net.with_modem(0, |m| m.storages.read_storage().delete(index)).unwrap();
                    net.retry_held();
                }
                Step::DeleteAll => {
                    net.with_modem(0, |m| m.storages.read_storage().delete_by_flag(4)).unwrap();
                    net.retry_held();
                }
                Step::Cnmi(mt) => {
                    net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse(&format!("2,{mt},0,0,0")).unwrap()).unwrap();
                }
                Step::Csms(service) => {
                    net.with_modem(0, |m| m.settings.csms = service).unwrap();
                    model.csms = service;
                }
                Step::Ack => {
                    if net.acknowledge(0) {
                        let acked = model.unacked.pop_front();
                        model.seen.extend(acked);
                    }
                }
                Step::Reject => {
                    if net.reject(0) {
                        model.unacked.pop_front();
                    }
                }
                Step::Replug => {
                    model.unacked.clear();
                    plug(&net, 0);
                    model.csms = 0;
                }
                Step::Unplug => net.set_plugged(0, None, None),
                Step::Timeout => {
                    later += ACK_TIMEOUT + Duration::from_secs(1);
                    net.tick_at(later);
                    model.unacked.clear();
                }
            }
        }
        // Drain: back on, storage routing, read and empty until nothing is left.
        model.observe(&net);
        plug(&net, 0);
        net.with_modem(0, |m| m.settings.cnmi = Cnmi::parse("2,1,0,0,0").unwrap()).unwrap();
        net.retry_held();
        for _ in 0..=sent.len() {
            model.observe(&net);
            net.with_modem(0, |m| m.storages.read_storage().delete_by_flag(4)).unwrap();
            net.retry_held();
        }
        model.observe(&net);
        let seen = model.seen;
        for text in &sent {
            proptest::prop_assert!(seen.contains(text), "{text} was lost");
        }
    }
}

#[test]
fn a_paced_line_stamps_each_line_when_its_last_byte_is_across() {
    let net = network(&["generic"]);
    plug(&net, 0);
    let start = net.inner.started + Duration::from_secs(1);
    // 1000 bytes per second: each byte takes a millisecond.
    net.trace_paced(0, Direction::Tx, b"\r\nOK\r\n\r\n> ", start, 1000.0);
    net.trace_paced(0, Direction::Rx, b"AT\r", start, 1000.0);
    let stamps: Vec<(u64, String)> = net
        .trace_of(0)
        .unwrap()
        .into_iter()
        .map(|e| (e.t_us, e.line))
        .collect();
    assert_eq!(
        stamps,
        [
            (1_006_000, "OK".to_string()),
            (1_010_000, "> ".to_string()),
            (1_003_000, "AT".to_string())
        ]
    );
}

#[test]
fn under_csms_1_a_status_report_is_acknowledged_like_a_message_and_they_take_turns() {
    let (net, sim) = one_sim("2,2,0,1,0", 1);
    let handset = "+447700900700";
    let submit = submit(handset, "report me", true);
    assert_eq!(net.submit(0, &submit), Ok(1));
    assert!(urcs(&net, 0).starts_with("\r\n+CDS: "));
    // The +CDS is unacknowledged: a new message waits for its +CNMA.
    net.handset_sms(handset, &sim, "after the report").unwrap();
    assert_eq!(urcs(&net, 0), "");
    assert!(net.acknowledge(0));
    assert!(urcs(&net, 0).starts_with("\r\n+CMT: ,"));
    assert!(net.acknowledge(0));
    assert!(!net.acknowledge(0));
}

/// The EC25/EG25 quirk the quectel profile reproduces (asterisk-chan-quectel
/// PR #75): with <ds>=2 a status report is stored in "SR" but announced as
/// +CDSI: "SM",<n>; "SM" holds nothing at that index.
#[test]
fn a_quectel_stores_status_reports_in_sr_and_announces_sm() {
    let net = network(&["quectel-ec25", "generic"]);
    plug(&net, 0);
    net.with_modem(0, |m| m.settings.cnmi.ds = 2).unwrap();
    let submit = submit("+447700900601", "report, please", true);
    assert_eq!(net.submit(0, &submit), Ok(1));
    assert_eq!(urcs(&net, 0), "\r\n+CDSI: \"SM\",1\r\n");
    let (in_sm, in_sr) = net
        .with_modem(0, |m| {
            let sm = m.storages.position("SM").unwrap();
            let sr = m.storages.position("SR").unwrap();
            (m.storages.at(sm).used(), m.storages.at(sr).used())
        })
        .unwrap();
    assert_eq!((in_sm, in_sr), (0, 1));
    // Any other model stores and names the same storage.
    plug(&net, 1);
    net.with_modem(1, |m| m.settings.cnmi.ds = 2).unwrap();
    assert_eq!(net.submit(1, &submit), Ok(1));
    assert_eq!(urcs(&net, 1), "\r\n+CDSI: \"SM\",1\r\n");
    let in_sm = net
        .with_modem(1, |m| m.storages.receive_storage().used())
        .unwrap();
    assert_eq!(in_sm, 1);
}

#[test]
fn a_counted_cms_error_refuses_that_many_submits_then_clears() {
    let net = network(&["generic"]);
    plug(&net, 0);
    let update: FaultsUpdate = serde_json::from_value(
        serde_json::json!({"cms_error_on_submit": 42, "cms_error_submits": 2}),
    )
    .unwrap();
    net.update_faults(0, update).unwrap();
    let submit = Submit {
        message_reference: 0,
        destination: Address::international("+447700900601"),
        pid: 0,
        dcs: 0,
        class: None,
        validity: None,
        status_report_request: false,
        reject_duplicates: false,
        reply_path: false,
        user_data: UserData::text(Encoding::Gsm7, "x"),
    };
    assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Injected(42)));
    assert_eq!(net.submit(0, &submit), Err(SubmitRefused::Injected(42)));
    assert_eq!(net.submit(0, &submit), Ok(1));
    let faults = net.with_modem(0, |slot| slot.faults.clone()).unwrap();
    assert_eq!(faults.cms_error_on_submit, None);
    assert_eq!(faults.cms_error_submits, None);
}

#[test]
fn filling_the_storage_stops_at_its_capacity_and_a_power_on_ends_a_hang() {
    let net = network(&["generic"]);
    plug(&net, 0);
    let update: FaultsUpdate =
        serde_json::from_value(serde_json::json!({"fill_storage": 1000, "hung": true})).unwrap();
    net.update_faults(0, update).unwrap();
    let (used, capacity, hung) = net
        .with_modem(0, |slot| {
            let storage = slot.storages.receive_storage();
            (storage.used(), storage.capacity, slot.faults.hung)
        })
        .unwrap();
    assert_eq!(used, usize::from(capacity));
    assert!(hung);
    plug(&net, 0);
    assert!(!net.with_modem(0, |slot| slot.faults.hung).unwrap());
}
