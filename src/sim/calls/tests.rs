//! The call model driven as the modems and handsets would: ringing,
//! busy, hold and waiting, multiparty, transfer, hang-up, and a property
//! test that random operations keep every party consistent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::profile::Voice;

const P: &str = "+447700900100";
const Q: &str = "+447700900101";
const A: &str = "+15550000001";
const B: &str = "+15550000002";
const C: &str = "+15550000003";

fn voice(chld: &[&str], clcc_urc: bool) -> Voice {
    Voice {
        supported: true,
        chld: chld.iter().map(|s| s.to_string()).collect(),
        clcc_urc,
        dtmf: None,
        method: None,
    }
}

const ALL: &[&str] = &["0", "1", "1x", "2", "2x", "3", "4"];

/// Modem 0 is P and modem 1 is Q, both offering every service, with
/// caller ID presentation on.
fn network() -> (CallNetwork, Instant) {
    let mut net = CallNetwork::new(CallTiming::default());
    net.add_modem(0, P, &voice(ALL, false));
    net.add_modem(1, Q, &voice(ALL, true));
    for index in [0, 1] {
        net.update_settings(index, |s| s.clip = true).unwrap();
    }
    (net, Instant::now())
}

fn m(index: usize) -> Party {
    Party::Modem(index)
}

fn h(number: &str) -> Party {
    Party::Handset(number.to_string())
}

fn lines(notices: &[Notice], index: usize) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Modem { index: i, line } if *i == index => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn dial(net: &mut CallNetwork, from: &Party, to: &Party, now: Instant) -> Vec<Notice> {
    let dialed = net.number_of(to).unwrap();
    net.dial(from, to, &dialed, Reach::Reachable, now).unwrap()
}

fn tick(net: &mut CallNetwork, now: Instant) -> Vec<Notice> {
    net.tick(now, |_| Reach::Reachable)
}

fn states(net: &CallNetwork, index: usize) -> Vec<(u8, CallState, bool, String)> {
    net.calls_of(&m(index))
        .into_iter()
        .map(|c| (c.id, c.state, c.multiparty, c.number))
        .collect()
}

/// A calls P and P answers: A active with P.
fn a_connected_to_p(net: &mut CallNetwork, now: Instant) {
    dial(net, &h(A), &m(0), now);
    net.answer(&m(0)).unwrap();
}

/// The bridge's path: A calls P, P answers, holds A, dials B, B answers.
fn bridge_ready(net: &mut CallNetwork, now: Instant) {
    a_connected_to_p(net, now);
    net.chld(0, "2").unwrap();
    dial(net, &m(0), &h(B), now);
    net.answer(&h(B)).unwrap();
}

#[test]
fn a_handset_calling_a_modem_rings_with_its_own_number() {
    let (mut net, now) = network();
    let notices = dial(&mut net, &h(A), &m(0), now);
    assert_eq!(
        lines(&notices, 0),
        ["RING", "+CLIP: \"+15550000001\",145,,,,0"]
    );
    assert_eq!(net.clcc_lines(0), ["+CLCC: 1,1,4,0,0,\"+15550000001\",145"]);
    let a = net.handset_call(A);
    assert_eq!((a.state, a.caller_id.as_deref()), ("alerting", Some(P)));
    assert!(a.connected_to.is_empty());
}

#[test]
fn ring_style_follows_clip_and_crc() {
    let (mut net, now) = network();
    net.update_settings(0, |s| {
        s.clip = false;
        s.crc = true;
    })
    .unwrap();
    let notices = dial(&mut net, &h(A), &m(0), now);
    assert_eq!(lines(&notices, 0), ["+CRING: VOICE"]);
}

#[test]
fn a_modem_calling_a_handset_presents_its_msisdn() {
    let (mut net, now) = network();
    let (link, _) = net.originate(&m(0), &h(B), "+15550000002", now).unwrap();
    assert_eq!(states(&net, 0), [(1, CallState::Dialing, false, B.into())]);
    assert_eq!(net.handset_call(B).state, "idle");
    net.alert(link, Reach::Reachable, now);
    assert_eq!(states(&net, 0), [(1, CallState::Alerting, false, B.into())]);
    let b = net.handset_call(B);
    assert_eq!((b.state, b.caller_id.as_deref()), ("ringing", Some(P)));
    let notices = net.answer(&h(B)).unwrap();
    assert_eq!(states(&net, 0), [(1, CallState::Active, false, B.into())]);
    assert!(notices.iter().any(|n| matches!(n,
        Notice::Handset { number, call } if number == B && call.state == "active")));
    assert_eq!(net.handset_call(B).connected_to, [P]);
}

#[test]
fn the_tick_alerts_after_the_setup_delay() {
    let timing = CallTiming {
        setup_delay: Duration::from_secs(2),
        ..CallTiming::default()
    };
    let mut net = CallNetwork::new(timing);
    net.add_modem(0, P, &voice(ALL, false));
    let now = Instant::now();
    net.originate(&m(0), &h(B), B, now).unwrap();
    assert!(tick(&mut net, now + Duration::from_secs(1)).is_empty());
    assert_eq!(net.handset_call(B).state, "idle");
    tick(&mut net, now + Duration::from_secs(2));
    assert_eq!(net.handset_call(B).state, "ringing");
    net.hangup(&m(0)).unwrap();
    net.originate(&m(0), &h(C), C, now).unwrap();
    let notices = net.tick(now + Duration::from_secs(3), |_| Reach::SwitchedOff);
    assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
    assert!(net.clcc_lines(0).is_empty());
}

#[test]
fn modem_to_modem_calls_show_each_msisdn() {
    let (mut net, now) = network();
    let notices = dial(&mut net, &m(0), &m(1), now);
    assert!(lines(&notices, 1).contains(&format!("+CLIP: \"{P}\",145,,,,0")));
    net.answer(&m(1)).unwrap();
    assert_eq!(states(&net, 0), [(1, CallState::Active, false, Q.into())]);
    assert_eq!(states(&net, 1), [(1, CallState::Active, false, P.into())]);
}

#[test]
fn ring_repeats_until_the_no_answer_timeout() {
    let (mut net, now) = network();
    dial(&mut net, &h(A), &m(0), now);
    let timing = net.timing();
    assert!(lines(&tick(&mut net, now + Duration::from_secs(1)), 0).is_empty());
    assert_eq!(
        lines(&tick(&mut net, now + timing.ring_period), 0)[0],
        "RING"
    );
    let notices = tick(&mut net, now + timing.ring_timeout);
    assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
    assert!(net.clcc_lines(0).is_empty());
    let a = net.handset_call(A);
    assert_eq!((a.state, a.last_end), ("idle", Some(EndReason::NoAnswer)));
}

#[test]
fn an_unanswered_modem_call_gets_no_answer() {
    let (mut net, now) = network();
    dial(&mut net, &m(0), &h(B), now);
    let timeout = net.timing().ring_timeout;
    let notices = tick(&mut net, now + timeout);
    assert_eq!(lines(&notices, 0), ["NO ANSWER"]);
    assert_eq!(net.handset_call(B).state, "idle");
}

#[test]
fn a_busy_handset_gives_busy() {
    let (mut net, now) = network();
    dial(&mut net, &h(B), &h(C), now);
    let notices = dial(&mut net, &m(0), &h(B), now);
    assert_eq!(lines(&notices, 0), ["BUSY"]);
    assert!(net.clcc_lines(0).is_empty());
    // A handset calling a busy handset hears busy too.
    dial(&mut net, &h(A), &h(C), now);
    assert_eq!(net.handset_call(A).last_end, Some(EndReason::Busy));
}

#[test]
fn switched_off_and_barred_fail_at_once() {
    for reach in [Reach::SwitchedOff, Reach::Barred] {
        let (mut net, now) = network();
        let notices = net.dial(&m(0), &h(B), B, reach, now).unwrap();
        assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
        assert!(net.clcc_lines(0).is_empty());
        assert_eq!(net.handset_call(B).state, "idle");
        net.dial(&h(A), &m(0), P, reach, now).unwrap();
        assert_eq!(net.handset_call(A).last_end, Some(EndReason::Unreachable));
    }
}

#[test]
fn rejecting_gives_busy_and_giving_up_stops_the_ringing() {
    let (mut net, now) = network();
    dial(&mut net, &m(0), &h(B), now);
    let notices = net.hangup(&h(B)).unwrap();
    assert_eq!(lines(&notices, 0), ["BUSY"]);
    assert_eq!(net.handset_call(B).last_end, Some(EndReason::HungUp));

    dial(&mut net, &h(A), &m(0), now);
    let notices = net.hangup(&h(A)).unwrap();
    assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
    assert!(net.clcc_lines(0).is_empty());
    assert!(lines(&tick(&mut net, now + Duration::from_secs(10)), 0).is_empty());
}

#[test]
fn hang_up_reaches_the_other_side() {
    let (mut net, now) = network();
    a_connected_to_p(&mut net, now);
    assert_eq!(net.handset_call(A).connected_to, [P]);
    let notices = net.hangup(&h(A)).unwrap();
    assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
    a_connected_to_p(&mut net, now);
    net.hangup(&m(0)).unwrap();
    let a = net.handset_call(A);
    assert_eq!(
        (a.state, a.last_end),
        ("idle", Some(EndReason::RemoteHungUp))
    );
}

#[test]
fn answering_without_a_ringing_call_fails() {
    let (mut net, _) = network();
    assert_eq!(net.answer(&m(0)), Err(CallError::NoIncomingCall));
    assert_eq!(net.answer(&h(A)), Err(CallError::NoIncomingCall));
}

#[test]
fn own_number_and_second_calls_are_refused() {
    let (mut net, now) = network();
    assert_eq!(
        net.dial(&m(0), &m(0), P, Reach::Reachable, now),
        Err(CallError::OwnNumber)
    );
    dial(&mut net, &h(A), &h(B), now);
    assert_eq!(
        net.dial(&h(A), &m(0), P, Reach::Reachable, now),
        Err(CallError::AlreadyInCall)
    );
    dial(&mut net, &h(C), &m(0), now);
    assert!(matches!(
        net.dial(&m(0), &h(B), B, Reach::Reachable, now),
        Err(CallError::NotAllowed(_))
    ));
}

#[test]
fn a_second_call_waits_and_hold_accepts_it() {
    let (mut net, now) = network();
    net.update_settings(0, |s| s.ccwa = true).unwrap();
    a_connected_to_p(&mut net, now);
    let notices = dial(&mut net, &h(B), &m(0), now);
    assert_eq!(lines(&notices, 0), ["+CCWA: \"+15550000002\",145,1"]);
    assert_eq!(
        states(&net, 0),
        [
            (1, CallState::Active, false, A.into()),
            (2, CallState::Waiting, false, B.into())
        ]
    );
    // A waiting call never RINGs.
    assert!(lines(&tick(&mut net, now + Duration::from_secs(4)), 0).is_empty());
    assert!(matches!(net.answer(&m(0)), Err(CallError::NotAllowed(_))));
    net.chld(0, "2").unwrap();
    assert_eq!(
        states(&net, 0),
        [
            (1, CallState::Held, false, A.into()),
            (2, CallState::Active, false, B.into())
        ]
    );
    let a = net.handset_call(A);
    assert_eq!((a.state, a.connected_to.len()), ("held", 0));
    assert_eq!(net.handset_call(B).connected_to, [P]);
    // Swap.
    net.chld(0, "2").unwrap();
    assert_eq!(net.handset_call(A).connected_to, [P]);
    assert_eq!(net.handset_call(B).state, "held");
}

#[test]
fn chld_0_rejects_a_waiting_call_then_releases_held_ones() {
    let (mut net, now) = network();
    a_connected_to_p(&mut net, now);
    dial(&mut net, &m(0), &m(1), now); // A is held automatically
    net.answer(&m(1)).unwrap();
    dial(&mut net, &h(B), &m(0), now);
    net.chld(0, "0").unwrap();
    assert_eq!(net.handset_call(B).last_end, Some(EndReason::Busy));
    assert_eq!(net.handset_call(A).state, "held");
    let notices = net.chld(0, "0").unwrap();
    assert!(lines(&notices, 0).is_empty());
    assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
    assert_eq!(states(&net, 0), [(2, CallState::Active, false, Q.into())]);
    net.hangup(&m(0)).unwrap();
    assert!(matches!(net.chld(0, "0"), Err(CallError::NotAllowed(_))));
}

#[test]
fn chld_1_releases_the_active_call_and_takes_the_other() {
    let (mut net, now) = network();
    a_connected_to_p(&mut net, now);
    dial(&mut net, &h(B), &m(0), now);
    net.chld(0, "1").unwrap();
    assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
    assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
    // With no waiting call, 1 retrieves the held one.
    net.chld(0, "2").unwrap();
    dial(&mut net, &m(0), &h(C), now);
    net.answer(&h(C)).unwrap();
    net.chld(0, "1").unwrap();
    assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
    assert_eq!(net.handset_call(C).state, "idle");
}

#[test]
fn chld_1x_releases_one_call() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    assert_eq!(net.chld(0, "17"), Err(CallError::NoSuchCall(7)));
    net.chld(0, "11").unwrap();
    assert_eq!(net.handset_call(A).state, "idle");
    assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
}

#[test]
fn multiparty_connects_everyone_and_mute_hides_the_modem() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    assert_eq!(net.handset_call(A).state, "held");
    net.chld(0, "3").unwrap();
    assert_eq!(
        states(&net, 0),
        [
            (1, CallState::Active, true, A.into()),
            (2, CallState::Active, true, B.into())
        ]
    );
    assert_eq!(net.handset_call(A).connected_to, [B, P]);
    net.update_settings(0, |s| s.muted = true).unwrap();
    let (a, b) = (net.handset_call(A), net.handset_call(B));
    assert_eq!(a.connected_to, [B]);
    assert_eq!(b.connected_to, [A]);
    // Neither sees the other's number.
    assert_eq!(a.caller_id.as_deref(), Some(P));
    assert_eq!(b.caller_id.as_deref(), Some(P));
    let notices = net.hangup(&h(A)).unwrap();
    assert_eq!(lines(&notices, 0), ["NO CARRIER"]);
    assert_eq!(states(&net, 0), [(2, CallState::Active, false, B.into())]);
    assert!(net.handset_call(B).connected_to.is_empty());
}

#[test]
fn private_communication_splits_a_multiparty() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    assert!(matches!(net.chld(0, "21"), Err(CallError::NotAllowed(_))));
    net.chld(0, "3").unwrap();
    net.chld(0, "22").unwrap();
    assert_eq!(
        states(&net, 0),
        [
            (1, CallState::Held, false, A.into()),
            (2, CallState::Active, false, B.into())
        ]
    );
    assert_eq!(net.handset_call(B).connected_to, [P]);
}

#[test]
fn transfer_connects_the_remote_parties_and_frees_the_modem() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    net.chld(0, "4").unwrap();
    assert!(net.clcc_lines(0).is_empty());
    let (a, b) = (net.handset_call(A), net.handset_call(B));
    assert_eq!(
        (a.state, a.connected_to.clone()),
        ("active", vec![B.to_string()])
    );
    assert_eq!(
        (b.state, b.connected_to.clone()),
        ("active", vec![A.to_string()])
    );
    assert_eq!(a.caller_id.as_deref(), Some(P));
    assert_eq!(b.caller_id.as_deref(), Some(P));
    // The modem is free for the next call.
    dial(&mut net, &h(C), &m(0), now);
    assert_eq!(states(&net, 0), [(1, CallState::Incoming, false, C.into())]);
    let notices = net.hangup(&h(B)).unwrap();
    assert!(lines(&notices, 0).is_empty());
    assert_eq!(net.handset_call(A).last_end, Some(EndReason::RemoteHungUp));
}

#[test]
fn transfer_and_join_need_an_active_and_a_held_call() {
    let (mut net, now) = network();
    a_connected_to_p(&mut net, now);
    for value in ["3", "4"] {
        assert!(matches!(net.chld(0, value), Err(CallError::NotAllowed(_))));
    }
    net.chld(0, "2").unwrap();
    dial(&mut net, &m(0), &h(B), now);
    // B still rings: no transfer of an alerting call here.
    assert!(matches!(net.chld(0, "4"), Err(CallError::NotAllowed(_))));
    assert!(matches!(net.chld(0, "2"), Err(CallError::NotAllowed(_))));
}

#[test]
fn services_the_network_does_not_offer_are_refused() {
    let mut net = CallNetwork::new(CallTiming::default());
    net.add_modem(0, P, &voice(&["0", "1", "1x", "2", "2x"], false));
    assert_eq!(net.chld_test_line(0).unwrap(), "+CHLD: (0,1,1x,2,2x)");
    let now = Instant::now();
    bridge_ready(&mut net, now);
    for value in ["3", "4"] {
        let error = net.chld(0, value).unwrap_err();
        assert_eq!(error, CallError::NotOffered(value.into()));
        assert_eq!(error.cme().map(|c| c.0), Some(3));
    }
    for value in ["5", "x", "18", "1a", "22222"] {
        let error = net.chld(0, value).unwrap_err();
        assert_eq!(error, CallError::InvalidChld(value.into()));
        assert_eq!(error.cme().map(|c| c.0), Some(4));
    }
}

#[test]
fn the_network_may_withdraw_a_service() {
    let (mut net, now) = network();
    net.set_services(0, vec!["1".into(), "2".into(), "3".into()])
        .unwrap();
    assert_eq!(net.chld_test_line(0).unwrap(), "+CHLD: (1,2,3)");
    assert_eq!(
        net.set_services(0, vec!["5".into()]),
        Err(CallError::InvalidChld("5".into()))
    );
    bridge_ready(&mut net, now);
    assert_eq!(net.chld(0, "4"), Err(CallError::NotOffered("4".into())));
    net.chld(0, "3").unwrap();
}

#[test]
fn a_modem_without_hold_is_busy_while_in_a_call() {
    let mut net = CallNetwork::new(CallTiming::default());
    net.add_modem(0, P, &voice(&["0", "1"], false));
    let now = Instant::now();
    a_connected_to_p(&mut net, now);
    assert_eq!(
        net.dial(&m(0), &h(B), B, Reach::Reachable, now),
        Err(CallError::NotOffered("2".into()))
    );
    dial(&mut net, &h(B), &m(0), now);
    assert_eq!(net.handset_call(B).last_end, Some(EndReason::Busy));
}

#[test]
fn unplugging_drops_every_leg() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    net.chld(0, "3").unwrap();
    net.drop_party(&m(0));
    for number in [A, B] {
        let call = net.handset_call(number);
        assert_eq!(
            (call.state, call.last_end),
            ("idle", Some(EndReason::RemoteHungUp))
        );
    }
}

#[test]
fn clcc_reports_are_only_for_models_that_have_them() {
    let (mut net, now) = network();
    assert_eq!(
        net.update_settings(0, |s| s.clcc = true),
        Err(CallError::ClccUrcUnsupported)
    );
    net.update_settings(1, |s| s.clcc = true).unwrap();
    let notices = dial(&mut net, &h(A), &m(1), now);
    assert_eq!(
        lines(&notices, 1),
        [
            "RING",
            "+CLIP: \"+15550000001\",145,,,,0",
            "+CLCC: 1,1,4,0,0,\"+15550000001\",145"
        ]
    );
    let notices = net.answer(&m(1)).unwrap();
    assert_eq!(
        lines(&notices, 1),
        ["+CLCC: 1,1,0,0,0,\"+15550000001\",145"]
    );
    let notices = net.hangup(&h(A)).unwrap();
    assert_eq!(
        lines(&notices, 1),
        ["NO CARRIER", "+CLCC: 1,1,6,0,0,\"+15550000001\",145"]
    );
}

/// The notifications a handset was sent, as `kind` or `kind:number`.
fn shown(net: &CallNetwork, number: &str) -> Vec<String> {
    net.handset_call(number)
        .notifications
        .iter()
        .map(|n| match &n.number {
            Some(number) => format!("{}:{number}", n.code),
            None => n.code.clone(),
        })
        .collect()
}

#[test]
fn a_muted_conference_notifies_without_numbers() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    // A was put on hold to dial B: A is told.
    assert_eq!(shown(&net, A), ["+CSSU: 2"]);
    assert!(shown(&net, B).is_empty());
    net.chld(0, "3").unwrap();
    // 24.084: the held side is taken back, everyone learns of the multiparty.
    assert_eq!(shown(&net, A), ["+CSSU: 2", "+CSSU: 3", "+CSSU: 4"]);
    assert_eq!(shown(&net, B), ["+CSSU: 4"]);
    let (a, b) = (net.handset_call(A), net.handset_call(B));
    // A dialled P and P answered; B was called by P.
    assert_eq!(
        (a.caller_id.as_deref(), a.connected_line.as_deref()),
        (Some(P), Some(P))
    );
    assert_eq!(
        (b.caller_id.as_deref(), b.connected_line.as_deref()),
        (Some(P), None)
    );
    assert!(a.notifications.iter().all(|n| n.number.is_none()));
    assert!(b.notifications.iter().all(|n| n.number.is_none()));
}

#[test]
fn a_transfer_tells_each_side_the_other_number() {
    let (mut net, now) = network();
    bridge_ready(&mut net, now);
    net.chld(0, "4").unwrap();
    // 23.091 §3: each remote party is given the other's directory number.
    assert_eq!(shown(&net, A), ["+CSSU: 2", &format!("+CSSU: 8:{B}")]);
    assert_eq!(shown(&net, B), [format!("+CSSU: 8:{A}")]);
    // The caller IDs stay as they were: the leak is in the notification.
    assert_eq!(net.handset_call(B).caller_id.as_deref(), Some(P));
    let transferred = &net.handset_call(B).notifications[0];
    assert_eq!(transferred.kind, SsKind::Transferred);
    assert_eq!(transferred.line(), format!("+CSSU: 8,,\"{A}\",145"));
}

#[test]
fn presentation_restriction_hides_the_number_in_a_transfer() {
    let (mut net, now) = network();
    // B restricts its number: after the transfer A is told nothing of it.
    net.set_clir(B, true);
    assert!(net.clir(B));
    bridge_ready(&mut net, now);
    net.chld(0, "4").unwrap();
    assert_eq!(shown(&net, A), ["+CSSU: 2", "+CSSU: 8"]);
    assert_eq!(shown(&net, B), [format!("+CSSU: 8:{A}")]);
    // A caller that restricts its number rings withheld.
    net.hangup(&h(A)).unwrap();
    net.set_clir(C, true);
    let notices = dial(&mut net, &h(C), &m(0), now);
    assert_eq!(lines(&notices, 0), ["RING", "+CLIP: \"\",128,,,,1"]);
    assert_eq!(net.clcc_lines(0), ["+CLCC: 1,1,4,0,0"]);
    net.answer(&m(0)).unwrap();
    assert_eq!(net.handset_call(C).connected_line.as_deref(), Some(P));
    net.set_clir(C, false);
    assert!(!net.clir(C));
}

#[test]
fn a_modem_with_cssn_hears_what_is_done_to_its_calls() {
    let (mut net, now) = network();
    net.update_settings(1, |s| {
        s.cssi = true;
        s.cssu = true;
    })
    .unwrap();
    // Q calls P; P holds Q: Q's modem reports it.
    dial(&mut net, &m(1), &m(0), now);
    net.answer(&m(0)).unwrap();
    let notices = net.chld(0, "2").unwrap();
    assert_eq!(lines(&notices, 1), ["+CSSU: 2"]);
    // P dials B and transfers: Q is told it now talks to B.
    dial(&mut net, &m(0), &h(B), now);
    net.answer(&h(B)).unwrap();
    let notices = net.chld(0, "4").unwrap();
    assert_eq!(lines(&notices, 1), [format!("+CSSU: 8,,\"{B}\",145")]);
    assert_eq!(shown(&net, B), [format!("+CSSU: 8:{Q}")]);
    net.hangup(&h(B)).unwrap();
    // Q calls P while P is in a call: Q's call waits, and Q is told so.
    a_connected_to_p(&mut net, now);
    let notices = dial(&mut net, &m(1), &m(0), now);
    assert_eq!(lines(&notices, 1), ["+CSSI: 3"]);
    // Without +CSSN nothing is printed.
    net.update_settings(1, |s| s.cssu = false).unwrap();
    assert!(lines(&net.chld(0, "2").unwrap(), 1).is_empty());
}

#[test]
fn a_handset_calling_a_busy_modem_is_told_it_waits() {
    let (mut net, now) = network();
    a_connected_to_p(&mut net, now);
    dial(&mut net, &h(B), &m(0), now);
    assert_eq!(shown(&net, B), ["+CSSI: 3"]);
    net.chld(0, "2").unwrap();
    assert_eq!(shown(&net, A), ["+CSSU: 2"]);
    // Swapping back takes A off hold and puts B on it.
    net.chld(0, "2").unwrap();
    assert_eq!(shown(&net, A), ["+CSSU: 2", "+CSSU: 3"]);
    assert_eq!(shown(&net, B), ["+CSSI: 3", "+CSSU: 2"]);
}

/// One random operation on a network of modems 0-1 and handsets A-C.
fn apply(net: &mut CallNetwork, op: (u8, u8, u8), now: Instant) {
    let parties = [m(0), m(1), h(A), h(B), h(C)];
    let chld = ["0", "1", "11", "12", "2", "21", "22", "3", "4"];
    let party = &parties[usize::from(op.1) % parties.len()];
    let other = &parties[usize::from(op.2) % parties.len()];
    let _ = match op.0 % 7 {
        0 => {
            let dialed = net.number_of(other).unwrap_or_default();
            let reach = if op.2.is_multiple_of(5) {
                Reach::Barred
            } else {
                Reach::Reachable
            };
            net.dial(party, other, &dialed, reach, now).map(drop)
        }
        1 => net.answer(party).map(drop),
        2 => net.hangup(party).map(drop),
        3 => net
            .chld(usize::from(op.1 % 2), chld[usize::from(op.2) % chld.len()])
            .map(drop),
        4 => net.update_settings(usize::from(op.1 % 2), |s| s.muted = op.2.is_multiple_of(2)),
        5 => {
            net.tick(now + Duration::from_secs(u64::from(op.2)), |_| {
                Reach::Reachable
            });
            Ok(())
        }
        _ => {
            net.drop_party(&m(usize::from(op.1 % 2)));
            Ok(())
        }
    };
}

proptest::proptest! {
    /// Any sequence of operations keeps the network consistent: call
    /// ids unique per party, at most one call being set up each way,
    /// at most one held group and one active group per modem, and
    /// handsets hear each other symmetrically.
    #[test]
    fn any_sequence_keeps_the_network_consistent(
        ops in proptest::collection::vec((0u8..7, 0u8..5, 0u8..9), 0..60)
    ) {
        let (mut net, now) = network();
        for op in ops {
            apply(&mut net, op, now);
            for party in [m(0), m(1), h(A), h(B), h(C)] {
                let calls = net.calls_of(&party);
                let ids: BTreeSet<u8> = calls.iter().map(|c| c.id).collect();
                proptest::prop_assert_eq!(ids.len(), calls.len());
                let count = |states: &[CallState]| {
                    calls.iter().filter(|c| states.contains(&c.state)).count()
                };
                proptest::prop_assert!(count(&[CallState::Dialing, CallState::Alerting]) <= 1);
                proptest::prop_assert!(count(&[CallState::Incoming, CallState::Waiting]) <= 1);
                let active = count(&[CallState::Active]);
                let multiparty = calls.iter().filter(|c| c.multiparty).count();
                // Several active calls are one multiparty call.
                proptest::prop_assert!(active <= 1 || multiparty >= active);
                if let Party::Handset(number) = &party {
                    proptest::prop_assert!(calls.len() <= 1);
                    for heard in net.handset_call(number).connected_to {
                        if [A, B, C].contains(&heard.as_str()) {
                            proptest::prop_assert!(
                                net.handset_call(&heard).connected_to.contains(number)
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn national_numbers_have_type_129() {
    assert_eq!(number_type("07700900100"), 129);
    assert_eq!(number_type("+447700900100"), 145);
}

#[test]
fn keys_pressed_reach_the_modems_that_hear_them_in_their_vendors_words() {
    let (mut net, now) = network();
    let mut simcom = voice(ALL, true);
    simcom.dtmf = Some(crate::profile::DtmfDetection::Ddet);
    let mut quectel = voice(ALL, false);
    quectel.dtmf = Some(crate::profile::DtmfDetection::Qtonedet);
    net.add_modem(0, P, &simcom);
    net.add_modem(1, Q, &quectel);
    // Not in a call: nothing to press keys in.
    assert_eq!(net.press_keys(&h(A), "5"), Err(CallError::NotInCall));
    a_connected_to_p(&mut net, now);
    // Detection off: nothing reported.
    assert!(lines(&net.press_keys(&h(A), "5").unwrap(), 0).is_empty());
    net.update_settings(0, |s| s.dtmf = true).unwrap();
    let notices = net.press_keys(&h(A), "57#").unwrap();
    assert_eq!(lines(&notices, 0), ["+DTMF: 5", "+DTMF: 7", "+DTMF: #"]);
    net.update_settings(0, |s| s.dtmf_timed = true).unwrap();
    assert_eq!(
        lines(&net.press_keys(&h(A), "*").unwrap(), 0),
        ["+DTMF: *,100"]
    );
    assert_eq!(net.press_keys(&h(A), "5x"), Err(CallError::NotAKey('x')));
    // On hold, the modem hears nothing.
    net.chld(0, "2").unwrap();
    assert_eq!(net.press_keys(&h(A), "5"), Err(CallError::NotInCall));
    net.hangup(&m(0)).unwrap();
    // Quectel reports the key's ASCII code.
    dial(&mut net, &h(B), &m(1), now);
    net.answer(&m(1)).unwrap();
    net.update_settings(1, |s| s.dtmf = true).unwrap();
    let notices = net.press_keys(&h(B), "5#").unwrap();
    assert_eq!(lines(&notices, 1), ["+QTONEDET: 53", "+QTONEDET: 35"]);
    assert!(lines(&notices, 0).is_empty());
}
