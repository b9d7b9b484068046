//! `simmask doctor` as a process, against a running daemon on the virtual
//! network, on a good installation and on a broken one (each problem named,
//! with what to do), presented as a root directory (`--root`): its
//! /etc/passwd and /etc/group, udev rules, /proc and /run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Sim, free_port, write_config};
use serde_json::{Value, json};

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `simmask doctor`: (exit code, checks by name).
fn doctor(config: &Path, root: &Path, extra: &[&str]) -> (i32, Vec<(String, bool, String)>) {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["doctor", "--config"])
        .arg(config)
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let checks = checks
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["ok"].as_bool().unwrap(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (output.status.code().unwrap(), checks)
}

fn find<'a>(checks: &'a [(String, bool, String)], name: &str) -> &'a (String, bool, String) {
    checks
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
}

/// Runs doctor until `done` holds of its answer (the daemon saves what it
/// sees at each poll).
fn doctor_until(
    config: &Path,
    root: &Path,
    extra: &[&str],
    done: impl Fn(i32, &[(String, bool, String)]) -> bool,
) -> (i32, Vec<(String, bool, String)>) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (code, checks) = doctor(config, root, extra);
        if done(code, &checks) {
            return (code, checks);
        }
        assert!(
            Instant::now() < deadline,
            "doctor never got there: {checks:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_a_good_installation_and_names_each_problem_of_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let iccid = sim.bank["modems"][0]["iccid"].as_str().unwrap().to_string();

    // A good installation: the package's user, group, rules; timesyncd
    // synchronised; ModemManager away.
    let good = tempfile::tempdir().unwrap();
    write(
        good.path(),
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\nsimmask:x:998:998::/var/lib/simmask:/usr/sbin/nologin\n",
    );
    write(
        good.path(),
        "etc/group",
        "dialout:x:20:pi,simmask\nsimmask:x:998:\n",
    );
    write(
        good.path(),
        "lib/udev/rules.d/99-simmask.rules",
        "# rules\n",
    );
    write(good.path(), "run/systemd/timesync/synchronized", "");
    write(good.path(), "proc/1/comm", "systemd\n");
    let storage = format!("sim {iccid} storage");
    let (code, checks) = doctor_until(&config, good.path(), &[], |code, checks| {
        code == 0 && checks.iter().any(|(n, _, _)| n == &storage)
    });
    assert_eq!(code, 0, "{checks:#?}");
    for name in [
        "config",
        "ports",
        "service user",
        "udev rules",
        "modemmanager",
        "clock",
        "disk",
        "store",
    ] {
        assert!(find(&checks, name).1, "{name}: {checks:#?}");
    }
    assert!(find(&checks, &format!("sim {iccid}")).2.contains("home"));
    assert!(find(&checks, &storage).2.contains("/"), "{checks:#?}");

    // A broken one: the user outside dialout, no rules, ModemManager
    // holding the modem's port, timesyncd without a server, a network two
    // hours ahead, a disk too small, and a SIM that lost its network.
    let broken = tempfile::tempdir().unwrap();
    write(
        broken.path(),
        "etc/passwd",
        "simmask:x:998:998::/var/lib/simmask:/usr/sbin/nologin\n",
    );
    write(
        broken.path(),
        "etc/group",
        "dialout:x:20:pi\nsimmask:x:998:\n",
    );
    std::fs::create_dir_all(broken.path().join("run/systemd/timesync")).unwrap();
    write(broken.path(), "proc/4242/comm", "ModemManager\n");
    let tty = std::fs::canonicalize(sim.links.join("modem0")).unwrap();
    std::os::unix::fs::symlink(&tty, broken.path().join("proc/4242/fd/7").as_path())
        .or_else(|_| {
            std::fs::create_dir_all(broken.path().join("proc/4242/fd"))?;
            std::os::unix::fs::symlink(&tty, broken.path().join("proc/4242/fd/7"))
        })
        .unwrap();
    assert_eq!(
        sim.put("/clock", json!({"offset_seconds": 7200}))
            .await
            .status()
            .as_u16(),
        200
    );
    assert!(
        sim.post("/modems/0/faults", json!({"registration": "searching"}))
            .await
            .status()
            .is_success()
    );
    let sim_name = format!("sim {iccid}");
    let (code, checks) = doctor_until(
        &config,
        broken.path(),
        &["--min-free-mib", "100000000"],
        |_, checks| {
            checks
                .iter()
                .any(|(n, ok, d)| n == &sim_name && !ok && d.contains("not registered"))
                && checks
                    .iter()
                    .any(|(n, ok, d)| n == "clock" && !ok && d.contains("behind"))
        },
    );
    assert_eq!(code, 1);
    let failed = |name: &str, words: &str| {
        let (_, ok, detail) = find(&checks, name);
        assert!(!ok, "{name} passed: {detail}");
        assert!(detail.contains(words), "{name}: {detail}");
    };
    failed("service user", "sudo adduser simmask dialout");
    failed("udev rules", "99-simmask.rules is not installed");
    failed(
        "modemmanager",
        &format!("ModemManager holds {}", tty.display()),
    );
    failed("clock", "behind the network's time");
    failed("disk", "MiB free for the store");
    failed(&sim_name, "not registered (searching): check the antenna");
    assert!(find(&checks, "store").1);
    drop(daemon);
}

#[test]
fn doctor_reports_a_missing_store_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("simmask.db");
    let config = dir.path().join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{}\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"{}/none*\"]\n",
            free_port(),
            database.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (code, checks) = doctor(&config, dir.path(), &[]);
    assert_eq!(code, 1);
    let (_, ok, detail) = find(&checks, "store");
    assert!(!ok);
    assert!(detail.contains("no database at"), "{detail}");
    assert!(!database.exists(), "doctor created the store");
    let (_, ok, detail) = find(&checks, "ports");
    assert!(!ok && detail.contains("ls /dev/simmask/"), "{detail}");
}

/// A SIM whose receiving storage fills up (firmware that keeps a copy of
/// every message it sends, which the appliance rightly leaves alone):
/// the daemon reads the fill at its health poll and doctor names it.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_a_sim_storage_the_firmware_filled() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "simcom-sim800");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let daemon = Daemon::start(&config, port, 1).await;
    let iccid = sim.bank["modems"][0]["iccid"].as_str().unwrap().to_string();
    let storage = format!("sim {iccid} storage");
    let root = tempfile::tempdir().unwrap();
    let (_, checks) = doctor_until(&config, root.path(), &[], |_, checks| {
        checks.iter().any(|(n, ok, _)| n == &storage && *ok)
    });
    let before = find(&checks, &storage).2.clone();

    let filled = sim
        .post("/modems/0/faults", json!({"fill_storage": 1000}))
        .await;
    assert!(filled.status().is_success());
    let (code, checks) = doctor_until(&config, root.path(), &[], |_, checks| {
        checks.iter().any(|(n, ok, _)| n == &storage && !*ok)
    });
    assert_eq!(code, 1, "{checks:#?}");
    let (_, _, detail) = find(&checks, &storage);
    // "SM 30/30: nearly full, …" with the profile's capacity.
    let fill = detail.split(':').next().unwrap();
    let (used, total) = fill
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.split_once('/'))
        .unwrap_or_else(|| panic!("no used/total in {detail:?} (before: {before:?})"));
    assert_eq!(used, total, "{detail}");
    assert!(detail.contains("nearly full"), "{detail}");
    // The sent copies are not the appliance's to relay or delete.
    let numbers = daemon.get("/api/v1/numbers").await;
    assert_eq!(numbers[0]["received"], 0, "{numbers}");
    drop(daemon);
}
