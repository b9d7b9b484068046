//! Debian's gammu (a client no one here wrote) identifies every profile's
//! virtual modem through the `simmask sim` process and its pty links.
//! Fails, not skips, when gammu is absent (`scripts/test` installs it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Sim {
    child: Child,
    bank: serde_json::Value,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(profiles: &str, modems: usize, links: &std::path::Path) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args([
            "sim",
            "--modems",
            &modems.to_string(),
            "--profile",
            profiles,
        ])
        .arg("--links")
        .arg(links)
        .args(["--control", "127.0.0.1:0", "--seed", "9"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("simmask binary runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("bank JSON line");
    let bank: serde_json::Value = serde_json::from_str(&line).expect("bank line is JSON");
    Sim { child, bank }
}

#[test]
fn gammu_identifies_every_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profiles = ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"];
    let sim = start_sim(
        &profiles.join(","),
        profiles.len(),
        &dir.path().join("links"),
    );
    let modems = sim.bank["modems"].as_array().expect("modems array");
    assert_eq!(modems.len(), profiles.len());
    for modem in modems {
        let link = modem["link"].as_str().expect("link path");
        let rc = dir.path().join(format!("gammurc{}", modem["index"]));
        std::fs::write(&rc, format!("[gammu]\nconnection = at\ndevice = {link}\n"))
            .expect("write gammurc");
        let output = Command::new("gammu")
            .arg("-c")
            .arg(&rc)
            .arg("identify")
            .output()
            .expect("gammu is installed (apt-get install gammu)");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {text}", modem["profile"]);
        let imei = modem["imei"].as_str().expect("imei");
        let imsi = modem["imsi"].as_str().expect("imsi");
        assert!(text.contains(imei), "{}: {text}", modem["profile"]);
        assert!(text.contains(imsi), "{}: {text}", modem["profile"]);

        // A fresh SIM holds no messages; gammu walks the storage and says so.
        let output = Command::new("gammu")
            .arg("-c")
            .arg(&rc)
            .arg("getallsms")
            .output()
            .expect("gammu is installed (apt-get install gammu)");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {text}", modem["profile"]);
        assert!(
            text.contains("0 SMS parts in 0 SMS sequences"),
            "{}: {text}",
            modem["profile"]
        );
    }
}
