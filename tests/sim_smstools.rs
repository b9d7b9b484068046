//! Debian's smstools (`smsd`, a client no one here wrote) drives every
//! profile's virtual modem through the `simmask sim` process: a file in its
//! outgoing spool reaches a handset, and a handset's message lands in its
//! incoming spool with the text. Fails, not skips, when smsd is absent
//! (`scripts/test` installs it).
//!
//! Every profile but `terse`: smsd 3.1 checks that a modem is ready with a
//! bare `AT` and waits for `OK`; a firmware answering ERROR to it is "not
//! ready to answer commands" for ever (smsd logs it and retries), so smsd
//! cannot drive such a modem at all.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A child process stopped (SIGTERM, then its whole group) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // smsd forks one process per device into its group: none may outlive the test.
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn start_sim(profiles: &str, modems: usize, links: &Path) -> (Process, serde_json::Value) {
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
        .args(["--control", "127.0.0.1:0", "--seed", "21"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("simmask binary runs");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("bank JSON line");
    let bank = serde_json::from_str(&line).expect("bank line is JSON");
    (Process(child), bank)
}

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

/// Polls `check` every 200 ms until it is true or `limit` passes.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// The texts of the files in smsd's incoming spool (body after the header).
fn incoming_texts(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|content| {
            let (header, body) = content.split_once("\n\n")?;
            Some((header.to_string(), body.trim_end().to_string()))
        })
        .collect()
}

#[test]
fn smstools_sends_from_its_spool_and_receives_into_it_on_every_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not `terse`: see the module doc.
    let profiles = ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"];
    let (_sim, bank) = start_sim(
        &profiles.join(","),
        profiles.len(),
        &dir.path().join("links"),
    );
    let control_url = bank["control"].as_str().expect("control").to_string();
    let modems = bank["modems"].as_array().expect("modems").clone();

    let spool = dir.path().join("spool");
    for sub in ["outgoing", "checked", "failed", "incoming", "sent"] {
        std::fs::create_dir_all(spool.join(sub)).expect("spool dir");
    }
    let names: Vec<String> = (0..modems.len()).map(|i| format!("GSM{i}")).collect();
    let mut config = format!(
        "devices = {}\n\
         outgoing = {spool}/outgoing\nchecked = {spool}/checked\nfailed = {spool}/failed\n\
         incoming = {spool}/incoming\nsent = {spool}/sent\n\
         logfile = {spool}/smsd.log\ninfofile = {spool}/smsd.running\npidfile = {spool}/smsd.pid\n\
         loglevel = 7\ndelaytime = 1\ndelaytime_mainprocess = 1\nerrorsleeptime = 1\n\
         decode_unicode_text = yes\nincoming_utf8 = yes\n",
        names.join(", "),
        spool = spool.display()
    );
    for (name, modem) in names.iter().zip(&modems) {
        config.push_str(&format!(
            "\n[{name}]\ndevice = {}\nincoming = yes\nbaudrate = 115200\nmemory_start = 1\n",
            modem["link"].as_str().expect("link")
        ));
    }
    let config_path = dir.path().join("smsd.conf");
    std::fs::write(&config_path, config).expect("write smsd.conf");
    let smsd = Command::new("smsd")
        .arg("-t")
        .arg(format!("-c{}", config_path.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("smsd is installed (apt-get install smstools)");
    let _smsd = Process(smsd);

    // A handset writes to each SIM: each message lands in the incoming spool.
    let mut expected_in = Vec::new();
    for (i, modem) in modems.iter().enumerate() {
        let msisdn = modem["msisdn"].as_str().expect("msisdn");
        let text = format!("hello smstools on {} ✓", profiles[i]);
        control(
            reqwest::Method::POST,
            &format!("{control_url}/handsets/+4477009006{i:02}/sms"),
            Some(serde_json::json!({"to": msisdn, "text": text})),
        );
        expected_in.push((format!("4477009006{i:02}"), text));
    }
    // One file per modem in the outgoing spool: each reaches its handset.
    let mut expected_out = Vec::new();
    for i in 0..modems.len() {
        let handset = format!("+4477009007{i:02}");
        let text = format!("from the spool, file {i}");
        std::fs::write(
            spool.join("outgoing").join(format!("out{i}")),
            format!("To: {}\n\n{text}\n", &handset[1..]),
        )
        .expect("write outgoing file");
        expected_out.push((handset, text));
    }

    let incoming = spool.join("incoming");
    let all_in = wait_for(Duration::from_secs(60), || {
        let received = incoming_texts(&incoming);
        expected_in.iter().all(|(from, text)| {
            received
                .iter()
                .any(|(header, body)| header.contains(&format!("From: {from}")) && body == text)
        })
    });
    assert!(
        all_in,
        "incoming spool: {:?}\nlog: {}",
        incoming_texts(&incoming),
        std::fs::read_to_string(spool.join("smsd.log")).unwrap_or_default()
    );

    let bank_numbers: Vec<&str> = modems.iter().filter_map(|m| m["msisdn"].as_str()).collect();
    let all_out = wait_for(Duration::from_secs(60), || {
        expected_out.iter().all(|(handset, text)| {
            let received = control(
                reqwest::Method::GET,
                &format!("{control_url}/handsets/{handset}/messages"),
                None,
            );
            received.as_array().is_some_and(|messages| {
                messages.iter().any(|m| {
                    m["text"] == text.as_str()
                        && bank_numbers.contains(&m["from"].as_str().unwrap_or(""))
                })
            })
        })
    });
    assert!(
        all_out,
        "outgoing not delivered; log: {}",
        std::fs::read_to_string(spool.join("smsd.log")).unwrap_or_default()
    );
}
