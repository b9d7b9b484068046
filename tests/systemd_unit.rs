//! The unit as the amd64 package installs it, checked the way systemd
//! checks it: `systemd-analyze verify` on a root holding the package (and
//! the host's targets and `/bin/kill`, which the unit refers to), and
//! `systemd-analyze security --offline=true` rating its exposure "OK" or
//! better, also with the `clock.conf` drop-in that lets it set the clock.
//! Every hardening line carries its reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deb() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/debian/simmask_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.exists(),
        "{} is missing: build it with `scripts/package amd64` (scripts/test does)",
        path.display()
    );
    path
}

/// A root with the package installed, and what its unit needs from the
/// base system.
fn installed_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb())
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    let units = root.path().join("lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").expect("systemd is installed") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".target") || name.ends_with(".slice") {
            // Copies, not links: verify reads them inside the root.
            let _ = std::fs::copy(&path, units.join(&name));
        }
    }
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).unwrap();
    root
}

fn analyze(args: &[&str], root: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(format!("--root={}", root.display()))
        .arg("simmask.service")
        .output()
        .expect("systemd-analyze (Debian's systemd package) is installed")
}

/// "→ Overall exposure level for simmask.service: 1.4 OK 🙂" → (1.4, "OK").
fn exposure(root: &Path) -> (f64, String) {
    let output = analyze(&["security", "--offline=true"], root);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating: {text}"));
    let mut words = line.rsplit(':').next().unwrap().split_whitespace();
    let score = words.next().unwrap().parse().unwrap();
    (score, words.next().unwrap().to_string())
}

#[test]
fn systemd_accepts_the_installed_unit() {
    let root = installed_root();
    let output = analyze(&["verify"], root.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The check has teeth: a unit pointing at a missing binary fails it.
    let unit = root.path().join("lib/systemd/system/simmask.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        text.replace("/usr/bin/simmask", "/usr/local/bin/simmask"),
    )
    .unwrap();
    let broken = analyze(&["verify"], root.path());
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("is not executable"));
}

#[test]
fn the_unit_is_rated_ok_with_and_without_the_clock_drop_in() {
    let root = installed_root();
    let (score, rating) = exposure(root.path());
    assert!(score <= 2.0, "exposure {score} {rating}");
    assert!(rating == "OK" || rating == "SAFE", "{rating}");

    // With CAP_SYS_TIME for [clock] set_system_clock: still rated OK.
    let drop_in = root.path().join("etc/systemd/system/simmask.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::copy(
        root.path()
            .join("usr/share/doc/simmask/examples/clock.conf"),
        drop_in.join("clock.conf"),
    )
    .unwrap();
    let (with_clock, rating) = exposure(root.path());
    assert!(with_clock > score, "the drop-in was read");
    assert_eq!(rating, "OK", "{with_clock}");
    let output = analyze(&["verify"], root.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_unit_runs_the_packaged_binary_notifies_and_reloads() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/simmask.service"),
    )
    .unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/simmask run --config /etc/simmask/simmask.toml --log-format journald",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30",
        "User=simmask",
        "SupplementaryGroups=dialout",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-usb_device rw",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}

#[test]
fn every_hardening_line_says_why() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/simmask.service"),
    )
    .unwrap();
    let hardening = unit
        .split("# Hardening.")
        .nth(1)
        .expect("a hardening section")
        .split("[Install]")
        .next()
        .unwrap();
    let mut previous = "";
    for line in hardening.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        if !line.starts_with('#') {
            let key = line.split('=').next().unwrap();
            let same_key = previous.split('=').next() == Some(key);
            assert!(
                previous.starts_with('#') || same_key,
                "{line}: no reason given on the line before"
            );
        }
        previous = line;
    }
}
