//! `simmask probe` as a process: on ports that hold no modem, on the
//! simulator's profiles, and on a PIN-locked SIM it must not unlock.

mod driver_common;

use std::process::Command;

use driver_common::scripted::ScriptedModem;

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

/// Kills the simulator when the test ends, even on a failed assertion.
struct Sim(std::process::Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn probe_reports_the_identity_of_each_profile_on_sim_links() {
    use std::io::{BufRead, BufReader};
    let profiles = ["generic", "simcom-sim800", "quectel-ec25", "huawei-e173"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["sim", "--modems", "4", "--profile", &profiles.join(",")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start simmask sim");
    let stdout = child.stdout.take().expect("sim stdout");
    let _sim = Sim(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("sim prints its bank");
    let bank: serde_json::Value = serde_json::from_str(&first).expect("bank JSON");
    let modems = bank["modems"].as_array().expect("modems array");
    assert_eq!(modems.len(), 4);
    for (modem, profile) in modems.iter().zip(profiles) {
        let path = modem["path"].as_str().expect("pty path");
        let out = probe(path);
        assert_eq!(out.status.code(), Some(0), "{profile}: {:?}", out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
        assert_eq!(report["profile"], profile);
        for key in ["imei", "iccid", "imsi", "msisdn"] {
            assert_eq!(report[key], modem[key], "{profile}: {key}");
        }
        assert_eq!(report["pin_state"], "READY", "{profile}");
        assert!(report["signal_dbm"].is_i64(), "{profile}: {report}");
        let storage = &report["storages"][0];
        assert!(storage["name"].is_string(), "{profile}: {report}");
        assert!(storage["total"].as_u64() > Some(0), "{profile}: {report}");
        let supported = report["supported_storages"].as_array().expect("list");
        assert!(supported.contains(&storage["name"]), "{profile}: {report}");
    }
}

/// The probe brings the modem up as the driver does but has no PIN to
/// type: a locked SIM is reported as such, with what could be read.
#[tokio::test]
async fn a_locked_sim_is_probed_not_unlocked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let iccid = "8944000000000000018";
    let modem = ScriptedModem::plug(&link, iccid, Some("4321"));
    let path = link.to_str().expect("path").to_string();
    let out = tokio::task::spawn_blocking(move || probe(&path))
        .await
        .expect("probe ran");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    assert_eq!(report["pin_state"], "SIM PIN", "{report}");
    assert_eq!(report["iccid"], iccid, "{report}");
    assert_eq!(report["imei"], "356938035643809", "{report}");
    assert_eq!(report["imsi"], serde_json::Value::Null, "{report}");
    assert_eq!(report["registration"], "home", "{report}");
    assert_eq!(modem.attempts(), 0, "the probe typed a PIN");
}
