//! The fuzz targets of `fuzz/` run on stable within CI's time: proptest
//! drives each door of `fuzz/harness.rs` with many cases, from raw bytes and
//! from inputs shaped like what each door expects (hex PDUs, AT lines,
//! TOML, JSON), so that the cases get past the first check. The longer,
//! coverage-guided runs are `cargo +nightly fuzz run <target>` (see
//! `fuzz/README.md`).
//!
//! `FUZZ_CASES` scales every count (default 1: CI's bounded run).

#[path = "../fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases(base: u32) -> Config {
    let scale: u32 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    Config {
        cases: base.saturating_mul(scale),
        failure_persistence: None,
        ..Config::default()
    }
}

fn run<S: Strategy>(config: Config, strategy: S, test: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let count = config.cases;
    let mut runner = TestRunner::new(config);
    runner
        .run(&strategy, |value| {
            test(value);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fuzz_props: {count} cases passed");
}

/// Hex digits, mostly pairs, as a modem prints a PDU.
fn hex_pdu() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(|octets| {
        octets
            .iter()
            .map(|o| format!("{o:02X}"))
            .collect::<String>()
            .into_bytes()
    })
}

/// Lines a modem could send: known prefixes, quoted fields, numbers,
/// noise, terminators in odd places.
fn at_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("+CMTI: \"SM\",".to_string()),
        Just("+CMT: ,".to_string()),
        Just("+CMGS: ".to_string()),
        Just("+CMGL: ".to_string()),
        Just("+CSQ: ".to_string()),
        Just("+CREG: ".to_string()),
        Just("+CLCC: 1,0,0,0,0,\"".to_string()),
        Just("+CUSD: 0,\"".to_string()),
        Just("+CPMS: ".to_string()),
        Just("+CNMI: (0-2),(0-3)".to_string()),
        Just("+CMS ERROR: ".to_string()),
        Just("+CME ERROR: ".to_string()),
        Just("OK".to_string()),
        Just("ERROR".to_string()),
        Just("RING".to_string()),
        Just("> ".to_string()),
        Just("\r\n".to_string()),
        Just("\r".to_string()),
        Just("\"".to_string()),
        Just(",".to_string()),
        "[0-9]{1,5}",
        "[ -~]{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat().into_bytes())
}

/// TOML in simmask's shape: its sections and keys with odd values.
fn toml_text() -> impl Strategy<Value = Vec<u8>> {
    let section = prop_oneof![
        Just("[api]\n"),
        Just("[store]\n"),
        Just("[sms]\n"),
        Just("[modems]\n"),
        Just("[sessions]\n"),
        Just("[numbers]\n"),
        Just("[[sims]]\n"),
        Just("[[callbacks]]\n"),
        Just("[voice]\n"),
        Just("[clock]\n"),
    ];
    let key = prop_oneof![
        Just("listen"),
        Just("path"),
        Just("ports"),
        Just("per_minute"),
        Just("per_day"),
        Just("iccid"),
        Just("msisdn"),
        Just("url"),
        Just("secret"),
        Just("validation"),
        Just("default_region"),
        Just("ttl"),
        Just("baud"),
    ];
    let value = prop_oneof![
        "\"[ -~]{0,20}\"",
        "-?[0-9]{1,12}",
        Just("true".to_string()),
        Just("[\"/dev/ttyUSB*\"]".to_string()),
        Just("\"127.0.0.1:8080\"".to_string()),
        Just("\"+447911123456\"".to_string()),
        Just("\"1h\"".to_string()),
        Just("{}".to_string()),
    ];
    let line = (section, key, value).prop_map(|(s, k, v)| format!("{s}{k} = {v}\n"));
    prop::collection::vec(line, 0..10).prop_map(|l| l.concat().into_bytes())
}

/// JSON objects with the API's field names and values of every type.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("participants"),
        Just("mode"),
        Just("ttl_seconds"),
        Just("expires_at"),
        Just("name"),
        Just("role"),
        Just("expires_in_seconds"),
        Just("number"),
        Just("reason"),
        Just("status"),
        Just("code"),
        Just("proxy_number"),
        Just("text"),
        Just("to"),
        Just("metadata"),
        Just("sticky"),
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "[ -~]{0,16}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("+447911123456")),
        Just(serde_json::Value::from("07911 123456")),
        Just(serde_json::Value::from("sms")),
        Just(serde_json::Value::from("admin")),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(key, value, 0..5).prop_map(|fields| {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        serde_json::to_vec(&object).unwrap()
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

#[test]
fn pdu_decoder() {
    run(cases(4000), prop_oneof![bytes(300), hex_pdu()], |data| {
        harness::pdu(&data)
    });
}

#[test]
fn at_digester() {
    run(cases(4000), prop_oneof![bytes(300), at_bytes()], |data| {
        harness::at(&data)
    });
}

#[test]
fn config_parser() {
    run(cases(2000), prop_oneof![bytes(300), toml_text()], |data| {
        harness::config(&data)
    });
}

#[test]
fn api_json_bodies() {
    run(cases(300), prop_oneof![bytes(200), json_body()], |data| {
        harness::api_body(&data)
    });
}
