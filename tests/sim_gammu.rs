//! Debian's gammu (a client no one here wrote) identifies every profile's
//! virtual modem through the `simmask sim` process and its pty links.
//! Fails, not skips, when gammu is absent (`scripts/test` installs it).
//!
//! Every profile but `terse`: gammu tells its replies apart by the echo of
//! the command it sent (it switches echo on with `ATE1` for that, and says
//! so in its log), and the terse firmware never echoes, whatever `ATE`
//! says. Every reply then reads as "Frame not request now" and gammu gives
//! up with a timeout. The rest of terse (a bare `AT` answered with ERROR,
//! the radio off at boot, which gammu switches on with `AT+CFUN=1`) gammu
//! copes with: given echo, it identifies the terse modem.

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

/// Runs gammu with the config `rc`; returns its stdout after checking it
/// succeeded.
fn gammu(rc: &std::path::Path, args: &[&str], what: &str) -> String {
    // A bound on every run: a client that hangs fails the test (exit 124)
    // instead of stalling the suite.
    let output = Command::new("timeout")
        .args(["120", "gammu"])
        .arg("-c")
        .arg(rc)
        .args(args)
        .output()
        .expect("coreutils' timeout runs");
    assert_ne!(
        output.status.code(),
        Some(127),
        "gammu is not installed (apt-get install gammu)"
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: gammu {args:?} ended with {} (124: hung past 120 s): {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// One request to the simulator's control API.
fn control(
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut request = reqwest::Client::new().request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control API answers");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.json().await.expect("JSON answer")
    })
}

/// gammu sends, reads and deletes on every profile's modem, and what it
/// does is checked on the network's side (the handset's messages) and on
/// the SIM (what `getallsms` lists).
#[test]
fn gammu_sends_reads_and_deletes_on_every_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not `terse`: see the module doc.
    let profiles = ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"];
    let sim = start_sim(
        &profiles.join(","),
        profiles.len(),
        &dir.path().join("links"),
    );
    let control_url = sim.bank["control"].as_str().expect("control").to_string();
    let modems = sim.bank["modems"].as_array().expect("modems array").clone();
    // gammu pauses between its start-up commands, so the profiles run side
    // by side, one thread and one handset each.
    std::thread::scope(|scope| {
        for modem in &modems {
            let dir = dir.path();
            let control_url = control_url.as_str();
            scope.spawn(move || {
                let profile = modem["profile"].as_str().expect("profile");
                let index = modem["index"].as_u64().expect("index");
                let msisdn = modem["msisdn"].as_str().expect("msisdn");
                let handset = format!("+4477009005{index:02}");
                let link = modem["link"].as_str().expect("link");
                let rc = dir.join(format!("gammurc-send{index}"));
                std::fs::write(&rc, format!("[gammu]\nconnection = at\ndevice = {link}\n"))
                    .expect("write gammurc");

                let text = format!("from gammu on {profile}");
                gammu(&rc, &["sendsms", "TEXT", &handset, "-text", &text], profile);
                let received = control(
                    reqwest::Method::GET,
                    &format!("{control_url}/handsets/{handset}/messages"),
                    None,
                );
                assert_eq!(received[0]["text"], text.as_str(), "{profile}: {received}");
                assert_eq!(received[0]["from"], msisdn, "{profile}: {received}");

                // A long text goes as concatenated parts; the handset puts
                // them back together.
                let long = format!("{} the end", "a long text from gammu ".repeat(12));
                let length = long.len().to_string();
                gammu(
                    &rc,
                    &["sendsms", "TEXT", &handset, "-len", &length, "-text", &long],
                    profile,
                );
                let received = control(
                    reqwest::Method::GET,
                    &format!("{control_url}/handsets/{handset}/messages"),
                    None,
                );
                assert_eq!(received[1]["text"], long.as_str(), "{profile}: {received}");

                let inbound = format!("to {profile}: ünïcödé ✓");
                control(
                    reqwest::Method::POST,
                    &format!("{control_url}/handsets/{handset}/sms"),
                    Some(serde_json::json!({"to": msisdn, "text": inbound})),
                );
                let listed = gammu(&rc, &["getallsms"], profile);
                assert!(listed.contains(&inbound), "{profile}: {listed}");
                assert!(listed.contains(&handset), "{profile}: {listed}");
                assert!(
                    listed.contains("1 SMS parts in 1 SMS sequences"),
                    "{profile}: {listed}"
                );

                // gammu's folders: 1 is the SIM's inbox, 3 the phone's.
                let folder = if listed.contains("phone memory") {
                    "3"
                } else {
                    "1"
                };
                gammu(&rc, &["deleteallsms", folder], profile);
                let listed = gammu(&rc, &["getallsms"], profile);
                assert!(
                    listed.contains("0 SMS parts in 0 SMS sequences"),
                    "{profile}: {listed}"
                );
            });
        }
    });
}

#[test]
fn gammu_identifies_every_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not `terse`: see the module doc.
    let profiles = ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"];
    let sim = start_sim(
        &profiles.join(","),
        profiles.len(),
        &dir.path().join("links"),
    );
    let modems = sim.bank["modems"].as_array().expect("modems array");
    assert_eq!(modems.len(), profiles.len());
    // gammu pauses between its start-up commands: the profiles run side by side.
    std::thread::scope(|scope| {
        for modem in modems {
            let dir = dir.path();
            scope.spawn(move || {
                let profile = modem["profile"].as_str().expect("profile");
                let link = modem["link"].as_str().expect("link path");
                let rc = dir.join(format!("gammurc{}", modem["index"]));
                std::fs::write(&rc, format!("[gammu]\nconnection = at\ndevice = {link}\n"))
                    .expect("write gammurc");
                let text = gammu(&rc, &["identify"], profile);
                let imei = modem["imei"].as_str().expect("imei");
                let imsi = modem["imsi"].as_str().expect("imsi");
                assert!(text.contains(imei), "{profile}: {text}");
                assert!(text.contains(imsi), "{profile}: {text}");

                // A fresh SIM holds no messages; gammu walks the storage and says so.
                let text = gammu(&rc, &["getallsms"], profile);
                assert!(
                    text.contains("0 SMS parts in 0 SMS sequences"),
                    "{profile}: {text}"
                );
            });
        }
    });
}
