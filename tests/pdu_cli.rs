//! `simmask pdu` as a process: the JSON it prints, and exit status 2 with one
//! line on stderr for bad input.

use std::process::{Command, Output};

use serde_json::Value;

fn simmask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

// ModemManager src/tests/test-sms-part-3gpp.c test_pdu3 ("hellohello").
const HELLO: &str = "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37";

#[test]
fn decode_prints_the_fields() {
    let decoded = json(&simmask(&["pdu", "decode", HELLO]));
    assert_eq!(decoded["type"], "deliver");
    assert_eq!(decoded["smsc"], "+12345678901");
    assert_eq!(decoded["originator"], "+18005551212");
    assert_eq!(decoded["encoding"], "gsm7");
    assert_eq!(decoded["text"], "hellohello");
    assert_eq!(decoded["timestamp"], "2011-01-01T12:34:56+00:00");
    assert_eq!(decoded["concat"], Value::Null);
    assert_eq!(decoded["class"], Value::Null);
    assert_eq!(decoded["warnings"], serde_json::json!([]));
}

#[test]
fn decode_without_smsc_and_status_reports() {
    // The TPDU of ModemManager's test_pdu_not_stored, SMSC field removed.
    let report = json(&simmask(&[
        "pdu",
        "decode",
        "--no-smsc",
        "065A098136397339F7219011700463802190117004638030",
    ]));
    assert_eq!(report["type"], "status-report");
    assert_eq!(report["recipient"], "639337937");
    assert_eq!(report["message_reference"], 0x5A);
    assert_eq!(report["status"], 0x30);
    assert_eq!(report["discharge_time"], "2012-09-11T07:40:36+02:00");
}

#[test]
fn invalid_input_exits_2_with_one_line_naming_the_octet() {
    for (hex, expected) in [
        ("", "empty"),
        ("ZZ", "character 0"),
        ("0", "odd number"),
        ("0004", "octet 2"),
        ("000419", "octet 2"),
        ("0003", "octet 1"),
    ] {
        let output = simmask(&["pdu", "decode", hex]);
        assert_eq!(output.status.code(), Some(2), "{hex:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{hex:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn encode_prints_parts_that_decode_back() {
    let text =
        "Grüße aus Kraków — a message longer than seventy UTF-16 units, so it needs two parts 😀";
    let encoded = json(&simmask(&[
        "pdu",
        "encode",
        "--to",
        "+447911123456",
        "--text",
        text,
        "--status-report",
    ]));
    assert_eq!(encoded["encoding"], "ucs2");
    let parts = encoded["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let mut joined = String::new();
    for part in parts {
        let pdu = part["pdu"].as_str().unwrap();
        assert!(pdu.starts_with("00"), "no --smsc: the SIM's own SMSC");
        assert_eq!(
            part["tpdu_length"].as_u64().unwrap() as usize * 2 + 2,
            pdu.len()
        );
        let decoded = json(&simmask(&["pdu", "decode", pdu]));
        assert_eq!(decoded["type"], "submit");
        assert_eq!(decoded["destination"], "+447911123456");
        assert_eq!(decoded["status_report_request"], true);
        assert_eq!(decoded["concat"]["total"], 2);
        joined.push_str(decoded["text"].as_str().unwrap());
    }
    assert_eq!(joined, text);
}

#[test]
fn encode_numbers_as_given_or_international() {
    let unknown = json(&simmask(&[
        "pdu", "encode", "--to", "*100#", "--text", "hi",
    ]));
    let pdu = unknown["parts"][0]["pdu"].as_str().unwrap();
    let decoded = json(&simmask(&["pdu", "decode", pdu]));
    assert_eq!(decoded["destination"], "*100#");
    let with_smsc = json(&simmask(&[
        "pdu",
        "encode",
        "--to",
        "+15555551234",
        "--text",
        "hi",
        "--smsc",
        "+19037029920",
    ]));
    let pdu = with_smsc["parts"][0]["pdu"].as_str().unwrap();
    assert!(pdu.starts_with("07919130079229F0"), "{pdu}");
    let bad = simmask(&["pdu", "encode", "--to", "+44 abc", "--text", "hi"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--to"));
}
