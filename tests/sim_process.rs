//! `simmask sim` as a process: the JSON line, clean stop
//! on SIGTERM with the links removed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn sim_prints_bank_and_removes_links_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let mut child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["sim", "--modems", "3", "--seed", "5", "--links"])
        .arg(&links)
        .stdout(Stdio::piped())
        .spawn()
        .expect("simmask runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("JSON line");
    let bank: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert!(
        bank["control"]
            .as_str()
            .is_some_and(|c| c.starts_with("http://127.0.0.1:") && !c.ends_with(":0")),
        "{bank}"
    );
    let modems = bank["modems"].as_array().expect("modems");
    assert_eq!(modems.len(), 3);
    for (index, modem) in modems.iter().enumerate() {
        let link = links.join(format!("modem{index}"));
        assert_eq!(modem["link"], link.to_string_lossy().as_ref());
        assert!(link.exists(), "{link:?}");
        assert!(modem["msisdn"].as_str().is_some_and(|m| m.starts_with('+')));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    kill(pid, Signal::SIGTERM).expect("signal sim");
    let status = child.wait().expect("sim exits");
    assert!(status.success(), "{status:?}");
    for index in 0..3 {
        assert!(!links.join(format!("modem{index}")).exists());
    }
}
