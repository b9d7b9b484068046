//! `simmask bench relay` runs end to end, in one process and as separate
//! processes, and reports what it measured. No timing is asserted: the
//! figures are for `scripts/performance`, not for a test.

use std::process::Command;

use serde_json::Value;

fn bench(extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args([
            "bench",
            "relay",
            "--modems",
            "2",
            "--messages",
            "3",
            "--interval-ms",
            "50",
            "--burst",
            "0",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("simmask bench");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

fn assert_report(report: &Value) {
    assert_eq!(report["relayed"], report["messages"], "{report}");
    assert_eq!(report["samples"], 3, "{report}");
    for key in ["p50", "p99", "max"] {
        assert!(report["overhead_ms"][key].is_f64(), "{report}");
    }
    assert!(
        report["peak_rss_mb"].as_f64().is_some_and(|mb| mb > 0.0),
        "{report}"
    );
}

#[test]
fn the_relay_bench_runs_in_one_process() {
    assert_report(&bench(&[]));
}

#[test]
fn the_relay_bench_runs_as_separate_processes() {
    let report = bench(&["--separate-processes"]);
    assert_eq!(report["separate_processes"], true, "{report}");
    assert_report(&report);
}
