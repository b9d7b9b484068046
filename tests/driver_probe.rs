//! `simmask probe` as a process on ports that hold no modem.

use std::process::Command;

fn probe(port: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["probe", port])
        .output()
        .expect("run simmask")
}

#[test]
fn absent_port_exits_2_with_one_line_reason() {
    let out = probe("/nonexistent/ttyUSB9");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/ttyUSB9"), "{stderr}");
}

#[test]
fn dev_null_is_not_a_modem() {
    let out = probe("/dev/null");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
