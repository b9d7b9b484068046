//! The call flows of issue 6, as tables of (second, input) → (state,
//! commands). `+CLCC` lines follow 3GPP TS 27.007 §7.18.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::modem::parse::parse_clcc;
use crate::number::PhoneNumber;

const X: &str = "+15550000001";
const Y: &str = "+15550000002";
const Z: &str = "+15550000003";
const T0: OffsetDateTime = datetime!(2026-01-02 10:00:00 UTC);

fn number(n: &str) -> PhoneNumber {
    PhoneNumber::from_e164(n).unwrap()
}

fn setup(methods: &[Method]) -> Setup {
    Setup {
        methods: Ok(methods.to_vec()),
        timing: BridgeTiming::default(),
        detects_keys: true,
    }
}

fn calls(lines: &[&str]) -> Input {
    Input::Calls(
        lines
            .iter()
            .filter_map(|l| parse_clcc(l).unwrap())
            .collect(),
    )
}

fn session() -> Input {
    Input::Session(Lookup::Bridge {
        session: Some("s1".into()),
        caller: number(X),
        other: number(Y),
    })
}

/// A command as a short string: the AT command, or `lookup`/`record:<outcome>`.
fn summary(command: &Command) -> String {
    match command {
        Command::LookupSession { caller } => format!("lookup {}", caller.0),
        Command::Answer => "ATA".into(),
        Command::Hold => "AT+CHLD=2".into(),
        Command::Dial(n) => format!("ATD{};", n.e164()),
        Command::Transfer => "AT+CHLD=4".into(),
        Command::Join => "AT+CHLD=3".into(),
        Command::Mute(on) => format!("AT+CMUT={}", u8::from(*on)),
        Command::HangupAll => "ATH".into(),
        Command::HangupCall(id) => format!("AT+CHLD=1{id}"),
        Command::ListCalls => "AT+CLCC".into(),
        Command::DetectKeys => "AT+DDET=1".into(),
        Command::Record(r) => format!("record:{}", r.outcome.as_str()),
    }
}

/// One row: at `second`, `input` leads to `state` with `commands`.
type Row<'a> = (i64, Input, &'a str, &'a [&'a str]);

/// Runs a flow and returns every record and every logged transition.
fn run(setup: &Setup, rows: Vec<Row>) -> (Vec<CallRecord>, Vec<String>) {
    let mut bridge = Bridge::new(setup.clone());
    let mut records = Vec::new();
    let mut log = Vec::new();
    for (row, (second, input, state, expected)) in rows.into_iter().enumerate() {
        let shown = format!("{input:?}");
        let (commands, transition) = bridge.step(input, T0 + Duration::seconds(second));
        let got: Vec<String> = commands.iter().map(summary).collect();
        assert_eq!(
            (bridge.state().name(), got.as_slice()),
            (
                state,
                expected
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .as_slice()
            ),
            "row {row}: {shown}"
        );
        log.extend(transition.map(|t| t.to_string()));
        records.extend(commands.into_iter().filter_map(|c| match c {
            Command::Record(r) => Some(r),
            _ => None,
        }));
    }
    (records, log)
}

/// The rows up to the other side ringing, shared by most flows.
fn to_alerting() -> Vec<Row<'static>> {
    vec![
        (0, Input::Ring, "ringing", &[]),
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (
            1,
            Input::Done(CommandKind::Answer),
            "holding-caller",
            &["AT+CHLD=2"],
        ),
        (
            1,
            Input::Done(CommandKind::Hold),
            "dialing-other",
            &["ATD+15550000002;"],
        ),
        (1, Input::Done(CommandKind::Dial), "dialing-other", &[]),
        (
            2,
            calls(&[
                "+CLCC: 1,1,1,0,0,\"+15550000001\",145",
                "+CLCC: 2,0,3,0,0,\"+15550000002\",145",
            ]),
            "alerting-other",
            &[],
        ),
    ]
}

fn both_legs_up() -> Input {
    calls(&[
        "+CLCC: 1,1,1,0,0,\"+15550000001\",145",
        "+CLCC: 2,0,0,0,0,\"+15550000002\",145",
    ])
}

/// The rows of a conference up and joined, from [`to_alerting`].
fn to_conference() -> Vec<Row<'static>> {
    let mut rows = to_alerting();
    rows.extend([
        (
            10,
            both_legs_up(),
            "bridged(conference)",
            &["AT+CMUT=1", "AT+CHLD=3"][..],
        ),
        (
            10,
            Input::Done(CommandKind::Mute),
            "bridged(conference)",
            &[][..],
        ),
        (
            10,
            Input::Done(CommandKind::Join),
            "bridged(conference)",
            &[][..],
        ),
    ]);
    rows
}

/// The rows of the other side answering and the modem asked to transfer,
/// from [`to_alerting`].
fn to_transfer() -> Vec<Row<'static>> {
    let mut rows = to_alerting();
    rows.push((10, both_legs_up(), "bridged(transfer)", &["AT+CHLD=4"][..]));
    rows
}

#[test]
fn transfer_bridges_and_frees_the_modem() {
    let mut rows = to_transfer();
    rows.extend([(
        10,
        Input::Done(CommandKind::Transfer),
        "idle",
        &["record:transferred"][..],
    )]);
    let (records, log) = run(&setup(&[Method::Transfer, Method::Conference]), rows);
    let record = &records[0];
    assert_eq!(record.session.as_deref(), Some("s1"));
    assert_eq!(record.caller, Some(number(X)));
    assert_eq!(record.other, Some(number(Y)));
    assert_eq!(record.started_at, T0);
    assert_eq!(record.answered_at, Some(T0 + Duration::seconds(10)));
    assert_eq!(record.duration, Some(Duration::ZERO));
    assert_eq!(
        log,
        [
            "idle -> ringing (RING)",
            "ringing -> answered (session found)",
            "answered -> holding-caller (caller answered)",
            "holding-caller -> dialing-other (caller on hold)",
            "dialing-other -> alerting-other (the other side rings)",
            "alerting-other -> bridged(transfer) (the other side answered; transferring)",
            "bridged(transfer) -> idle (transferred; the modem is free)",
        ]
    );
    // Numbers never appear in the transition log.
    assert!(log.iter().all(|l| !l.contains("555")));
}

#[test]
fn conference_clears_when_one_side_hangs_up() {
    let mut rows = to_conference();
    rows.extend([
        (
            20,
            calls(&[
                "+CLCC: 1,1,0,0,1,\"+15550000001\",145",
                "+CLCC: 2,0,0,0,1,\"+15550000002\",145",
            ]),
            "bridged(conference)",
            &[][..],
        ),
        (
            70,
            Input::NoCarrier,
            "bridged(conference)",
            &["AT+CLCC"][..],
        ),
        (
            70,
            calls(&["+CLCC: 2,0,0,0,0,\"+15550000002\",145"]),
            "clearing",
            &["ATH"][..],
        ),
        (
            70,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:completed"][..],
        ),
    ]);
    let (records, _) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(records[0].duration, Some(Duration::seconds(60)));
    assert_eq!(records[0].outcome, Outcome::Completed);
}

#[test]
fn a_refused_transfer_falls_back_to_conference() {
    let mut rows = to_transfer();
    rows.extend([(
        10,
        Input::Failed(CommandKind::Transfer, "+CME ERROR: 3".into()),
        "bridged(conference)",
        &["AT+CMUT=1", "AT+CHLD=3"][..],
    )]);
    let (_, log) = run(&setup(&[Method::Transfer, Method::Conference]), rows);
    assert_eq!(
        log.last().unwrap(),
        "bridged(transfer) -> bridged(conference) (transfer refused (+CME ERROR: 3); the other side answered; joining)"
    );
    // Without a conference to fall back to, the caller is released.
    let mut rows = to_transfer();
    rows.extend([
        (
            10,
            Input::Failed(CommandKind::Transfer, "+CME ERROR: 3".into()),
            "clearing",
            &["ATH"][..],
        ),
        (
            10,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:failed"][..],
        ),
    ]);
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn busy_no_answer_and_unreachable_release_the_caller() {
    let cases: [(Input, &[&str]); 2] = [
        (Input::Busy, &["record:busy"]),
        (Input::NoAnswer, &["record:no_answer"]),
    ];
    for (input, outcome) in cases {
        let mut rows = to_alerting();
        rows.extend([
            (5, input, "clearing", &["ATH"][..]),
            (5, calls(&[]), "idle", outcome),
        ]);
        run(&setup(&[Method::Transfer]), rows);
    }
    // NO CARRIER is only a hint; the snapshot shows the dialled leg gone.
    let mut rows = to_alerting();
    rows.extend([
        (5, Input::NoCarrier, "alerting-other", &["AT+CLCC"][..]),
        (
            5,
            calls(&["+CLCC: 1,1,1,0,0,\"+15550000001\",145"]),
            "clearing",
            &["ATH"][..],
        ),
        (
            5,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:unreachable"][..],
        ),
    ]);
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn the_other_side_rings_too_long() {
    let mut rows = to_alerting();
    rows.extend([
        (20, Input::Tick, "alerting-other", &["AT+CLCC"][..]),
        (31, Input::Tick, "clearing", &["ATH"][..]),
        (
            31,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:no_answer"][..],
        ),
    ]);
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn the_caller_giving_up_cancels_the_outgoing_leg_at_once() {
    let mut rows = to_alerting();
    rows.extend([
        (4, Input::NoCarrier, "alerting-other", &["AT+CLCC"][..]),
        (
            4,
            calls(&["+CLCC: 2,0,3,0,0,\"+15550000002\",145"]),
            "clearing",
            &["ATH"][..],
        ),
        (
            4,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:caller_hung_up"][..],
        ),
    ]);
    let (records, _) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(records[0].answered_at, None);
    assert_eq!(records[0].duration, None);
}

#[test]
fn the_caller_hanging_up_before_the_bridge_dials() {
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (0, Input::NoCarrier, "answered", &["AT+CLCC"]),
        (0, calls(&[]), "idle", &["record:caller_hung_up"]),
    ];
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn ringing_that_stops_is_abandoned() {
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (3, Input::Ring, "ringing", &[]),
        (6, Input::Tick, "ringing", &[]),
        (10, Input::Tick, "idle", &["record:abandoned"]),
    ];
    let (_, log) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(log[1], "ringing -> idle (no RING for two ring periods)");
}

#[test]
fn strangers_and_withheld_numbers_are_rejected() {
    let stranger = Input::Session(Lookup::Reject {
        caller: Some(number(Z)),
        reason: "out of session".into(),
    });
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (
            0,
            Input::CallerId(Some(Z.into())),
            "ringing",
            &["lookup +15550000003"],
        ),
        (0, stranger, "clearing", &["ATH"]),
        (
            0,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:rejected"],
        ),
    ];
    let (records, _) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(records[0].outcome.reason(), "out of session");
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (0, Input::CallerId(None), "clearing", &["ATH"]),
        (0, calls(&[]), "idle", &["record:rejected"]),
    ];
    run(&setup(&[Method::Transfer]), rows);
    // No +CLIP at all, and +CLCC shows no number either.
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (3, Input::Ring, "ringing", &["AT+CLCC"]),
        (3, calls(&["+CLCC: 1,1,4,0,0"]), "clearing", &["ATH"]),
    ];
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn a_sim_that_cannot_bridge_rejects_with_its_reason() {
    let setup = Setup {
        methods: choose_method(
            &["0".into(), "1".into(), "2".into()],
            None,
            Method::Conference,
        ),
        timing: BridgeTiming::default(),
        detects_keys: false,
    };
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "clearing", &["ATH"]),
        (
            0,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:no_method"],
        ),
    ];
    let (records, _) = run(&setup, rows);
    assert!(records[0].outcome.reason().contains("+CHLD=4"));
}

#[test]
fn a_second_call_while_bridging_is_rejected_and_never_joins() {
    let mut rows = to_alerting();
    rows.extend([
        (
            3,
            Input::CallWaiting(Some(Z.into())),
            "alerting-other",
            &["AT+CLCC"][..],
        ),
        (
            3,
            calls(&[
                "+CLCC: 1,1,1,0,0,\"+15550000001\",145",
                "+CLCC: 2,0,3,0,0,\"+15550000002\",145",
                "+CLCC: 3,1,5,0,0,\"+15550000003\",145",
            ]),
            "alerting-other",
            &["AT+CHLD=13", "record:second_call_rejected"][..],
        ),
        (
            9,
            calls(&[
                "+CLCC: 1,1,1,0,0,\"+15550000001\",145",
                "+CLCC: 2,0,0,0,0,\"+15550000002\",145",
                "+CLCC: 3,1,5,0,0,\"+15550000003\",145",
            ]),
            "bridged(conference)",
            &[
                "AT+CHLD=13",
                "record:second_call_rejected",
                "AT+CMUT=1",
                "AT+CHLD=3",
            ][..],
        ),
    ]);
    let (records, _) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(records[0].caller, Some(number(Z)));
}

#[test]
fn a_modem_without_clip_is_asked_who_calls() {
    let rows: Vec<Row> = vec![
        (0, Input::Ring, "ringing", &[]),
        (3, Input::Ring, "ringing", &["AT+CLCC"]),
        (
            3,
            calls(&["+CLCC: 1,1,4,0,0,\"+15550000001\",145"]),
            "ringing",
            &["lookup +15550000001"],
        ),
        (3, session(), "answered", &["ATA"]),
        // The answer is confirmed by the snapshot, not by OK.
        (
            4,
            calls(&["+CLCC: 1,1,0,0,0,\"+15550000001\",145"]),
            "holding-caller",
            &["AT+CHLD=2"],
        ),
        (
            4,
            calls(&["+CLCC: 1,1,1,0,0,\"+15550000001\",145"]),
            "dialing-other",
            &["ATD+15550000002;"],
        ),
    ];
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn commands_that_fail_or_hang_release_the_caller() {
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (
            0,
            Input::Done(CommandKind::Answer),
            "holding-caller",
            &["AT+CHLD=2"],
        ),
        (
            0,
            Input::Failed(CommandKind::Hold, "ERROR".into()),
            "holding-caller",
            &["AT+CLCC"],
        ),
        // The snapshot shows the caller still active: the hold did not take.
        (
            0,
            calls(&["+CLCC: 1,1,0,0,0,\"+15550000001\",145"]),
            "clearing",
            &["ATH"],
        ),
        (30, Input::Tick, "idle", &["record:failed"]),
    ];
    let (records, log) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(records[0].outcome, Outcome::Failed("hold: ERROR".into()));
    assert_eq!(log[3], "holding-caller -> clearing (hold failed)");
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (16, Input::Tick, "clearing", &["ATH"]),
    ];
    run(&setup(&[Method::Transfer]), rows);
    let mut rows = to_alerting();
    rows.truncate(4);
    rows.extend([
        (
            1,
            Input::Done(CommandKind::Hold),
            "dialing-other",
            &["ATD+15550000002;"][..],
        ),
        (
            1,
            Input::Failed(CommandKind::Dial, "NO CARRIER".into()),
            "clearing",
            &["ATH"][..],
        ),
    ]);
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn stray_calls_while_idle_are_released() {
    let rows: Vec<Row> = vec![
        (
            0,
            calls(&["+CLCC: 1,0,0,0,0,\"+15550000001\",145"]),
            "clearing",
            &["ATH"],
        ),
        (0, Input::Done(CommandKind::HangupAll), "idle", &[]),
        (1, Input::Tick, "idle", &[]),
        // One side of a call begun before a restart hangs up: the snapshot
        // shows the other side still on the line, which is released.
        (2, Input::NoCarrier, "idle", &["AT+CLCC"]),
        (
            2,
            calls(&["+CLCC: 2,0,0,0,1,\"+15550000002\",145"]),
            "clearing",
            &["ATH"],
        ),
        (2, Input::Done(CommandKind::HangupAll), "idle", &[]),
        // Nothing left: nothing to do.
        (3, Input::NoCarrier, "idle", &["AT+CLCC"]),
        (3, calls(&[]), "idle", &[]),
    ];
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn methods_come_from_the_profile_the_modem_and_the_operator() {
    let all: Vec<String> = ["0", "1", "1x", "2", "2x", "3", "4"]
        .map(String::from)
        .to_vec();
    // Multiparty unless the operator opted in to transfer; a transfer
    // falls back to multiparty, never the other way.
    assert_eq!(
        choose_method(&all, None, Method::Conference),
        Ok(vec![Method::Conference])
    );
    assert_eq!(
        choose_method(&all, None, Method::Transfer),
        Ok(vec![Method::Transfer, Method::Conference])
    );
    let no_ect: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
    assert_eq!(
        choose_method(&all, Some(&no_ect), Method::Transfer),
        Ok(vec![Method::Conference])
    );
    assert_eq!(
        choose_method(&all, Some(&["0".to_string()]), Method::Transfer),
        Err(NoMethod::NoHold)
    );
    let huawei: Vec<String> = ["0", "1", "1x", "2", "2x"].map(String::from).to_vec();
    assert_eq!(
        choose_method(&huawei, None, Method::Transfer),
        Err(NoMethod::NeitherTransferNorConference)
    );
    // A network with transfer only bridges nothing unless the operator
    // chose transfer, and says why.
    let ect_only: Vec<String> = ["1", "2", "4"].map(String::from).to_vec();
    let refused = choose_method(&all, Some(&ect_only), Method::Conference);
    assert_eq!(refused, Err(NoMethod::TransferNotChosen));
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("voice_method = \"transfer\"")
    );
    assert_eq!(
        choose_method(&all, Some(&ect_only), Method::Transfer),
        Ok(vec![Method::Transfer])
    );
    // The choice: the SIM's, else its profile's, else multiparty.
    use crate::profile::BridgeMethod::{Multiparty, Transfer};
    assert_eq!(Method::preferred(None, None), Method::Conference);
    assert_eq!(Method::preferred(None, Some(Transfer)), Method::Transfer);
    assert_eq!(
        Method::preferred(Some(Multiparty), Some(Transfer)),
        Method::Conference
    );
    assert_eq!(Method::preferred(Some(Transfer), None), Method::Transfer);
    // The pool's name for it.
    assert_eq!(
        method_name(true, &all, Some(&all), Method::Conference).as_deref(),
        Some("conference")
    );
    assert_eq!(
        method_name(true, &all, Some(&all), Method::Transfer).as_deref(),
        Some("transfer")
    );
    assert_eq!(method_name(false, &all, Some(&all), Method::Transfer), None);
    // A modem that did not answer AT+CHLD=?: its profile's services are tried.
    assert_eq!(
        method_name(true, &all, None, Method::Conference).as_deref(),
        Some("conference")
    );
}

#[test]
fn a_lost_modem_ends_the_call_at_once_whatever_the_state() {
    let cut_off = Outcome::Failed("the modem went away mid-call".into());
    // Idle: nothing to record.
    run(
        &setup(&[Method::Transfer]),
        vec![(0, Input::ModemLost, "idle", &[])],
    );
    // Ringing, before the router decided.
    let (records, log) = run(
        &setup(&[Method::Transfer]),
        vec![
            (0, Input::Ring, "ringing", &[]),
            (1, Input::ModemLost, "idle", &["record:failed"]),
        ],
    );
    assert_eq!(records[0].outcome, cut_off);
    assert_eq!(log[1], "ringing -> idle (the modem went away mid-call)");
    // The other side ringing: no ATH (it could not reach the modem).
    let mut rows = to_alerting();
    rows.push((5, Input::ModemLost, "idle", &["record:failed"][..]));
    let (records, _) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(records[0].outcome, cut_off);
    assert_eq!(records[0].answered_at, None);
    assert_eq!(records[0].other, Some(number(Y)));
    // A conference under way: its length so far is kept.
    let mut rows = to_alerting();
    rows.extend([
        (
            10,
            both_legs_up(),
            "bridged(conference)",
            &["AT+CMUT=1", "AT+CHLD=3"][..],
        ),
        (40, Input::ModemLost, "idle", &["record:failed"][..]),
    ]);
    let (records, _) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(records[0].duration, Some(Duration::seconds(30)));
    // Already clearing after a busy: the record keeps why it ended.
    let mut rows = to_alerting();
    rows.extend([
        (5, Input::Busy, "clearing", &["ATH"][..]),
        (6, Input::ModemLost, "idle", &["record:busy"][..]),
        // Whatever the port says later starts from idle.
        (7, Input::Done(CommandKind::HangupAll), "idle", &[][..]),
    ]);
    run(&setup(&[Method::Transfer]), rows);
}

/// A few inputs of every kind, for the property below.
fn sample_input(pick: u8) -> Input {
    match pick % 19 {
        17 => Input::End(EndRequest::Operator("ops".into())),
        18 => conference_lines(),
        0 => Input::Ring,
        1 => Input::CallerId(Some(X.into())),
        2 => Input::CallerId(None),
        3 => Input::CallWaiting(Some(Z.into())),
        4 => Input::NoCarrier,
        5 => Input::Busy,
        6 => Input::NoAnswer,
        7 => session(),
        8 => Input::Session(Lookup::Reject {
            caller: None,
            reason: "out of session".into(),
        }),
        9 => calls(&["+CLCC: 1,1,4,0,0,\"+15550000001\",145"]),
        10 => both_legs_up(),
        11 => calls(&[]),
        12 => Input::Done(CommandKind::Answer),
        13 => Input::Done(CommandKind::Hold),
        14 => Input::Failed(CommandKind::Transfer, "+CME ERROR: 3".into()),
        15 => Input::ModemLost,
        _ => Input::Tick,
    }
}

proptest::proptest! {
    /// Whatever the modem and the router say, in any order, the bridge
    /// never panics, and once the modem has no call left it is idle again
    /// within the clocks' limits, with every call it took on recorded.
    #[test]
    fn any_input_sequence_ends_idle(picks in proptest::collection::vec(0u8..19, 0..40)) {
        let mut bridge = Bridge::new(setup(&[Method::Transfer, Method::Conference]));
        let mut second = 0;
        for pick in picks {
            bridge.step(sample_input(pick), T0 + Duration::seconds(second));
            second += 1;
        }
        let end = T0 + Duration::seconds(second);
        for (offset, input) in [
            (0, calls(&[])),
            (0, Input::Done(CommandKind::HangupAll)),
            (60, Input::Tick),
            (120, Input::Tick),
            (180, Input::Tick),
        ] {
            bridge.step(input, end + Duration::seconds(offset));
        }
        proptest::prop_assert_eq!(bridge.state().name(), "idle");
    }
}

#[test]
fn a_transfer_whose_ok_was_lost_is_seen_in_the_snapshot() {
    let mut rows = to_transfer();
    rows.extend([(11, calls(&[]), "idle", &["record:transferred"][..])]);
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn a_step_whose_ok_was_lost_goes_on_when_the_snapshot_shows_it_done() {
    let timeout = || "timed out after 20s".to_string();
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (
            20,
            Input::Failed(CommandKind::Answer, timeout()),
            "answered",
            &["AT+CLCC"],
        ),
        (
            20,
            calls(&["+CLCC: 1,1,0,0,0,\"+15550000001\",145"]),
            "holding-caller",
            &["AT+CHLD=2"],
        ),
        (
            40,
            Input::Failed(CommandKind::Hold, timeout()),
            "holding-caller",
            &["AT+CLCC"],
        ),
        (
            40,
            calls(&["+CLCC: 1,1,1,0,0,\"+15550000001\",145"]),
            "dialing-other",
            &["ATD+15550000002;"],
        ),
    ];
    run(&setup(&[Method::Transfer]), rows);
    // No snapshot to be had either: the caller is released.
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, session(), "answered", &["ATA"]),
        (
            20,
            Input::Failed(CommandKind::Answer, timeout()),
            "answered",
            &["AT+CLCC"],
        ),
        (
            25,
            Input::Failed(CommandKind::ListCalls, timeout()),
            "clearing",
            &["ATH"],
        ),
        (
            25,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:failed"],
        ),
    ];
    let (records, _) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(
        records[0].outcome,
        Outcome::Failed("answer: timed out after 20s".into())
    );
}

fn conference_lines() -> Input {
    calls(&[
        "+CLCC: 1,1,0,0,1,\"+15550000001\",145",
        "+CLCC: 2,0,0,0,1,\"+15550000002\",145",
    ])
}

#[test]
fn a_conference_from_before_a_restart_is_taken_back_under_control() {
    let rows: Vec<Row> = vec![
        (0, Input::NoCarrier, "idle", &["AT+CLCC"]),
        (0, conference_lines(), "adopting", &["lookup +15550000001"]),
        (0, session(), "bridged(conference)", &["AT+CMUT=1"]),
        (
            1,
            Input::Done(CommandKind::Mute),
            "bridged(conference)",
            &[],
        ),
        (5, Input::Tick, "bridged(conference)", &["AT+CLCC"]),
        (5, conference_lines(), "bridged(conference)", &[]),
        // The operator (or the session's end) reaches it like any other.
        (
            9,
            Input::End(EndRequest::Operator("ops".into())),
            "clearing",
            &["ATH"],
        ),
        (
            9,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:ended_by_operator"],
        ),
    ];
    let (records, log) = run(&setup(&[Method::Transfer]), rows);
    assert_eq!(records[0].session.as_deref(), Some("s1"));
    assert_eq!(records[0].duration, Some(Duration::seconds(9)));
    assert_eq!(
        log[1],
        "adopting -> bridged(conference) (a conference from before a restart taken back)"
    );
    // One side leaving is seen as in any conference.
    let rows: Vec<Row> = vec![
        (0, conference_lines(), "adopting", &["lookup +15550000001"]),
        (0, session(), "bridged(conference)", &["AT+CMUT=1"]),
        (9, Input::NoCarrier, "bridged(conference)", &["AT+CLCC"]),
        (
            9,
            calls(&["+CLCC: 2,0,0,0,0,\"+15550000002\",145"]),
            "clearing",
            &["ATH"],
        ),
        (
            9,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:completed"],
        ),
    ];
    run(&setup(&[Method::Transfer]), rows);
    // Its session ended while the daemon was down: the call ends too.
    let gone = Input::Session(Lookup::Reject {
        caller: Some(number(X)),
        reason: "no open session for the caller on this number".into(),
    });
    let rows: Vec<Row> = vec![
        (0, conference_lines(), "adopting", &["lookup +15550000001"]),
        (0, gone, "clearing", &["ATH"]),
        (0, calls(&[]), "idle", &["record:session_ended"]),
    ];
    run(&setup(&[Method::Conference]), rows);
    // A session whose other participant is not the outgoing leg: not this
    // bridge's call, left to its two sides.
    let stranger = Input::Session(Lookup::Bridge {
        session: Some("s2".into()),
        caller: number(X),
        other: number(Z),
    });
    let rows: Vec<Row> = vec![
        (0, conference_lines(), "adopting", &["lookup +15550000001"]),
        (0, stranger, "idle", &[]),
        // No answer in time either.
        (1, conference_lines(), "adopting", &["lookup +15550000001"]),
        (20, Input::Tick, "idle", &[]),
        // A leg left before the lookup came back: the rest is released.
        (21, conference_lines(), "adopting", &["lookup +15550000001"]),
        (
            21,
            calls(&["+CLCC: 2,0,0,0,0,\"+15550000002\",145"]),
            "clearing",
            &["ATH"],
        ),
        (21, Input::Done(CommandKind::HangupAll), "idle", &[]),
        // Two calls not joined (one held) are not a conference.
        (30, Input::NoCarrier, "idle", &["AT+CLCC"]),
        (
            30,
            calls(&[
                "+CLCC: 1,1,1,0,0,\"+15550000001\",145",
                "+CLCC: 2,0,3,0,0,\"+15550000002\",145",
            ]),
            "clearing",
            &["ATH"],
        ),
    ];
    run(&setup(&[Method::Transfer]), rows);
}

#[test]
fn the_operator_ends_a_conference_for_both_sides() {
    let mut rows = to_conference();
    rows.extend([
        (
            40,
            Input::End(EndRequest::Operator("ops".into())),
            "clearing",
            &["ATH"][..],
        ),
        (
            40,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:ended_by_operator"][..],
        ),
    ]);
    let (records, log) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(
        records[0].outcome,
        Outcome::EndedByOperator("ended by the operator (ops)".into())
    );
    assert_eq!(records[0].duration, Some(Duration::seconds(30)));
    assert_eq!(records[0].session.as_deref(), Some("s1"));
    assert_eq!(
        log.last().map(String::as_str),
        Some("clearing -> idle (all calls released)")
    );
    assert!(log.contains(&"bridged(conference) -> clearing (ended by the operator)".into()));
}

#[test]
fn a_conference_ends_at_its_maximum_duration() {
    let setup = Setup {
        methods: Ok(vec![Method::Conference]),
        timing: BridgeTiming {
            max_duration: Some(Duration::seconds(60)),
            ..BridgeTiming::default()
        },
        detects_keys: false,
    };
    let mut rows = to_conference();
    rows.extend([
        (69, Input::Tick, "bridged(conference)", &["AT+CLCC"][..]),
        (70, Input::Tick, "clearing", &["ATH"][..]),
        (70, calls(&[]), "idle", &["record:max_duration"][..]),
    ]);
    let (records, log) = run(&setup, rows);
    assert_eq!(records[0].outcome, Outcome::MaxDuration);
    assert_eq!(records[0].duration, Some(Duration::seconds(60)));
    assert!(log.contains(
        &"bridged(conference) -> clearing (the call reached its maximum duration)".into()
    ));
    // Without a limit the conference goes on.
    let mut rows = to_conference();
    rows.push((
        100_000,
        Input::Tick,
        "bridged(conference)",
        &["AT+CLCC"][..],
    ));
    run(&self::setup(&[Method::Conference]), rows);
}

#[test]
fn a_session_ending_ends_the_call_at_any_step_the_modem_is_in() {
    let closed = || Input::End(EndRequest::SessionEnded("the session was closed".into()));
    // The other side still ringing: both legs are released.
    let mut rows = to_alerting();
    rows.extend([
        (5, closed(), "clearing", &["ATH"][..]),
        (
            5,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:session_ended"][..],
        ),
    ]);
    let (records, log) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(
        records[0].outcome,
        Outcome::SessionEnded("the session was closed".into())
    );
    assert_eq!(records[0].answered_at, None);
    assert_eq!(log[5], "alerting-other -> clearing (the session ended)");
    // A conference under way.
    let mut rows = to_conference();
    rows.extend([
        (30, closed(), "clearing", &["ATH"][..]),
        (30, calls(&[]), "idle", &["record:session_ended"][..]),
    ]);
    let (records, _) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(records[0].duration, Some(Duration::seconds(20)));
    // Nothing to end while idle, still ringing (the lookup decides), or
    // already clearing (the outcome it was ending with stays).
    let rows: Vec<Row> = vec![
        (0, closed(), "idle", &[]),
        (0, Input::Ring, "ringing", &[]),
        (0, closed(), "ringing", &[]),
    ];
    run(&setup(&[Method::Conference]), rows);
    let mut rows = to_alerting();
    rows.extend([
        (5, Input::Busy, "clearing", &["ATH"][..]),
        (5, closed(), "clearing", &[][..]),
        (
            5,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:busy"][..],
        ),
    ]);
    run(&setup(&[Method::Conference]), rows);
}

/// A hub (X) with two sessions on the SIM: K7 with Y, W3 with Z; it last
/// heard from Z.
fn hub_calls() -> Input {
    Input::Session(Lookup::Hub {
        caller: number(X),
        choices: vec![
            HubChoice {
                session: "s1".into(),
                code: "K7".into(),
                other: number(Y),
            },
            HubChoice {
                session: "s2".into(),
                code: "W3".into(),
                other: number(Z),
            },
        ],
        last: Some("s2".into()),
    })
}

fn hub_answered() -> Vec<Row<'static>> {
    vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, hub_calls(), "keying-code", &["ATA"]),
        (
            1,
            Input::Done(CommandKind::Answer),
            "keying-code",
            &["AT+DDET=1"],
        ),
        (1, Input::Done(CommandKind::DetectKeys), "keying-code", &[]),
    ]
}

#[test]
fn a_hub_keys_the_code_of_the_session_it_calls_into() {
    let mut rows = hub_answered();
    rows.extend([
        (2, Input::Key('5'), "keying-code", &[][..]),
        (3, Input::Key('7'), "holding-caller", &["AT+CHLD=2"][..]),
        (
            3,
            Input::Done(CommandKind::Hold),
            "dialing-other",
            &["ATD+15550000002;"][..],
        ),
    ]);
    let (_, log) = run(&setup(&[Method::Conference]), rows);
    assert!(
        log.contains(&"keying-code -> holding-caller (code keyed (K7); holding the hub)".into()),
        "{log:?}"
    );
}

#[test]
fn a_hub_that_keys_nothing_reaches_the_last_counterpart() {
    let mut rows = hub_answered();
    rows.extend([
        (5, Input::Tick, "keying-code", &[][..]),
        (11, Input::Tick, "holding-caller", &["AT+CHLD=2"][..]),
        (
            11,
            Input::Done(CommandKind::Hold),
            "dialing-other",
            &["ATD+15550000003;"][..],
        ),
    ]);
    run(&setup(&[Method::Conference]), rows);
    // `*` starts again; `#` ends the keys; keys no code has: hung up.
    let mut rows = hub_answered();
    rows.extend([
        (2, Input::Key('5'), "keying-code", &[][..]),
        (2, Input::Key('*'), "keying-code", &[][..]),
        (3, Input::Key('#'), "holding-caller", &["AT+CHLD=2"][..]),
        (
            3,
            Input::Done(CommandKind::Hold),
            "dialing-other",
            &["ATD+15550000003;"][..],
        ),
    ]);
    run(&setup(&[Method::Conference]), rows);
    // A key no code starts with can be taken back with `*`.
    let mut rows = hub_answered();
    rows.extend([
        (2, Input::Key('2'), "keying-code", &[][..]),
        (2, Input::Key('*'), "keying-code", &[][..]),
        (3, Input::Key('5'), "keying-code", &[][..]),
        (3, Input::Key('7'), "holding-caller", &["AT+CHLD=2"][..]),
    ]);
    run(&setup(&[Method::Conference]), rows);
    // Keys no code has, then `#`: hung up, recorded as refused.
    let mut rows = hub_answered();
    rows.extend([
        (2, Input::Key('2'), "keying-code", &[][..]),
        (3, Input::Key('#'), "clearing", &["ATH"][..]),
        (
            3,
            Input::Done(CommandKind::HangupAll),
            "idle",
            &["record:rejected"][..],
        ),
    ]);
    let (records, _) = run(&setup(&[Method::Conference]), rows);
    assert_eq!(records[0].caller, Some(number(X)));
    assert!(
        records[0].outcome.reason().contains("keyed 2"),
        "{records:?}"
    );
    // The same when the time to key runs out after them.
    let mut rows = hub_answered();
    rows.extend([
        (2, Input::Key('2'), "keying-code", &[][..]),
        (5, Input::Tick, "keying-code", &[][..]),
        (12, Input::Tick, "clearing", &["ATH"][..]),
    ]);
    run(&setup(&[Method::Conference]), rows);
}

#[test]
fn a_sim_that_detects_no_keys_puts_the_hub_through_to_the_last_one_at_once() {
    let blind = Setup {
        detects_keys: false,
        ..setup(&[Method::Conference])
    };
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, hub_calls(), "keying-code", &["ATA"]),
        (
            1,
            Input::Done(CommandKind::Answer),
            "holding-caller",
            &["AT+CHLD=2"],
        ),
    ];
    run(&blind, rows);
    // The hub hangs up before keying: recorded as such.
    let rows: Vec<Row> = vec![
        (
            0,
            Input::CallerId(Some(X.into())),
            "ringing",
            &["lookup +15550000001"],
        ),
        (0, hub_calls(), "keying-code", &["ATA"]),
        (
            1,
            Input::Done(CommandKind::Answer),
            "keying-code",
            &["AT+DDET=1"],
        ),
        (2, Input::NoCarrier, "keying-code", &["AT+CLCC"]),
        (2, calls(&[]), "idle", &["record:caller_hung_up"]),
    ];
    run(&setup(&[Method::Conference]), rows);
}
