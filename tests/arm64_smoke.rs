//! The Raspberry Pi's build (`aarch64-unknown-linux-gnu`, profile `dist`:
//! the very binary of the arm64 package, which `scripts/package` builds and
//! `scripts/test` runs first) under qemu-user with Debian's cross libc:
//! `--version`, `pdu decode` answering as the native build does, and
//! `simmask run` with no modems serving `/healthz`, taking a token made by
//! `simmask token create` and answering `GET /api/v1/numbers`.
//!
//! Serial I/O is not run here: qemu-user 7.2 lacks the `TCGETS2` ioctl that
//! tokio-serial uses, so the pty paths are tested natively by the rest of
//! the suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/aarch64-unknown-linux-gnu/dist/simmask");
    assert!(
        path.exists(),
        "{} is missing: build it with `scripts/package arm64` (scripts/test does)",
        path.display()
    );
    path
}

/// The arm64 binary under emulation.
fn arm64() -> Command {
    let mut command = Command::new("qemu-aarch64");
    command.args(["-L", "/usr/aarch64-linux-gnu"]).arg(binary());
    command
}

fn output_of(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_arm64_build_is_aarch64_and_answers_like_the_native_one() {
    let header = output_of(Command::new("readelf").arg("-h").arg(binary()));
    assert!(header.contains("AArch64"), "{header}");

    let version = output_of(arm64().arg("--version"));
    assert_eq!(
        version.trim(),
        format!("simmask {}", env!("CARGO_PKG_VERSION"))
    );

    let pdu = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
    let emulated = output_of(arm64().args(["pdu", "decode", pdu]));
    let native =
        output_of(Command::new(env!("CARGO_BIN_EXE_simmask")).args(["pdu", "decode", pdu]));
    assert_eq!(emulated, native);
    assert!(emulated.contains("How are you?"), "{emulated}");

    // A bad PDU is an error naming the problem, not a crash.
    let bad = arm64()
        .args(["pdu", "decode", "07911326"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_arm64_daemon_serves_its_api_with_no_modems() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"{}/none*\"]\n",
            dir.path().join("simmask.db").display(),
            dir.path().display()
        ),
    )
    .unwrap();

    // The store is created and the token hashed by the arm64 build.
    let created = output_of(
        arm64()
            .args(["token", "create", "ops", "--role", "admin", "--config"])
            .arg(&config),
    );
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let token = created["token"].as_str().unwrap().to_string();

    let mut daemon = Daemon(
        arm64()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("simmask run under qemu"),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            break;
        }
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "the arm64 daemon exited"
        );
        assert!(
            Instant::now() < deadline,
            "no /healthz from the arm64 daemon"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let numbers = client
        .get(format!("{base}/api/v1/numbers"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(numbers.status().as_u16(), 200);
    let numbers: serde_json::Value = numbers.json().await.unwrap();
    let list = numbers
        .as_array()
        .or_else(|| numbers["numbers"].as_array())
        .expect("a list of numbers");
    assert!(list.is_empty(), "no modems, no numbers: {numbers}");

    let refused = client
        .get(format!("{base}/api/v1/numbers"))
        .bearer_auth("smk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // SIGTERM stops it cleanly, under emulation too.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the arm64 daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}
