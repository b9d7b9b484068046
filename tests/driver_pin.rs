//! SIM PIN handling against a scripted PIN-locked modem on a real pty: the
//! configured PIN unlocks it, a wrong PIN is sent once and never again (a
//! SIM blocks after three), a missing PIN is reported, and the bank shows
//! the SIM as locked with the reason.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use simmask::bank::{Bank, BankConfig, SimState};
use simmask::modem::actor::{ModemOptions, spawn_modem};
use simmask::modem::error::AtError;
use simmask::modem::profile::Profiles;
use tokio::io::unix::AsyncFd;

const ICCID: &str = "8944000000000000018";
const PIN: &str = "4321";

/// A PIN-locked 27.007 modem: answers `+CPIN: SIM PIN` until `AT+CPIN` gets
/// the right PIN (27.007 §8.3), `+CME ERROR: incorrect password` (§9.2.1
/// code 16) otherwise. Counts the PINs it was sent.
struct LockedModem {
    attempts: Arc<AtomicU32>,
    _task: tokio::task::JoinHandle<()>,
}

impl LockedModem {
    fn plug(link: &Path) -> LockedModem {
        let pair = openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pair.slave).expect("ttyname");
        let mut termios = tcgetattr(&pair.slave).expect("tcgetattr");
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).expect("raw");
        fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
        std::os::unix::fs::symlink(&path, link).expect("link");
        let attempts = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(serve(File::from(pair.master), pair.slave, attempts.clone()));
        LockedModem {
            attempts,
            _task: task,
        }
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

fn answer(line: &str, unlocked: &mut bool, attempts: &AtomicU32) -> String {
    let ok = |info: &str| format!("\r\n{info}\r\n\r\nOK\r\n");
    match line {
        "AT+CGMI" => ok("SIMMASK"),
        "AT+CGMM" => ok("GSM-27007"),
        "AT+CGSN" => ok("356938035643809"),
        "AT+CCID" => ok(&format!("+CCID: {ICCID}")),
        "AT+CPIN?" if *unlocked => ok("+CPIN: READY"),
        "AT+CPIN?" => ok("+CPIN: SIM PIN"),
        _ if line.starts_with("AT+CPIN=") => {
            attempts.fetch_add(1, Ordering::SeqCst);
            if line == format!("AT+CPIN=\"{PIN}\"") {
                *unlocked = true;
                "\r\nOK\r\n".into()
            } else {
                "\r\n+CME ERROR: incorrect password\r\n".into()
            }
        }
        _ if !*unlocked && (line.starts_with("AT+CIMI") || line.starts_with("AT+CM")) => {
            "\r\n+CME ERROR: SIM PIN required\r\n".into()
        }
        _ => "\r\nOK\r\n".into(),
    }
}

async fn serve(master: File, _slave: OwnedFd, attempts: Arc<AtomicU32>) {
    // SAFETY: the `File` owns its descriptor and moves into the AsyncFd, so
    // the descriptor stays open and unchanged for the AsyncFd's life.
    let Ok(fd) = (unsafe { AsyncFd::register(master) }) else {
        return;
    };
    let (mut line, mut unlocked) = (Vec::new(), false);
    let mut buf = [0u8; 256];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let n = match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
            Ok(Ok(n)) if n > 0 => n,
            Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(_) => return,
            Err(_would_block) => continue,
        };
        for &byte in &buf[..n] {
            if byte != b'\r' {
                line.push(byte);
                continue;
            }
            let command = String::from_utf8_lossy(&std::mem::take(&mut line))
                .trim()
                .to_string();
            let reply = answer(&command, &mut unlocked, &attempts);
            let mut rest = reply.as_bytes();
            while !rest.is_empty() {
                let Ok(mut guard) = fd.writable().await else {
                    return;
                };
                match guard.try_io(|inner| inner.get_ref().write(rest)) {
                    Ok(Ok(n)) => rest = &rest[n..],
                    Ok(Err(_)) => return,
                    Err(_would_block) => continue,
                }
            }
        }
    }
}

fn options(pin: Option<&str>) -> ModemOptions {
    let mut options = ModemOptions::new(Profiles::builtin());
    if let Some(pin) = pin {
        options.pin_for_iccid = HashMap::from([(ICCID.to_string(), pin.to_string())]);
    }
    options
}

#[tokio::test]
async fn the_configured_pin_unlocks_the_sim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = LockedModem::plug(&link);
    let spawned = spawn_modem(link.to_str().expect("path"), options(Some(PIN)))
        .await
        .expect("unlocked");
    let identity = spawned.handle.identity();
    assert_eq!(identity.pin_state.as_deref(), Some("READY"));
    assert_eq!(identity.iccid.as_deref(), Some(ICCID));
    assert_eq!(modem.attempts(), 1);
    spawned.handle.shutdown();
}

#[tokio::test]
async fn a_wrong_pin_is_sent_once_and_never_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = LockedModem::plug(&link);
    let path = link.to_str().expect("path");
    let options = options(Some("0000"));
    for _ in 0..3 {
        match spawn_modem(path, options.clone()).await {
            Err(AtError::PinRefused { iccid }) => assert_eq!(iccid, ICCID),
            other => panic!("expected PinRefused, got {:?}", other.err()),
        }
    }
    assert_eq!(modem.attempts(), 1, "the wrong PIN was retried");
}

#[tokio::test]
async fn a_missing_pin_is_reported_with_the_sim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyUSB0");
    let modem = LockedModem::plug(&link);
    match spawn_modem(link.to_str().expect("path"), options(None)).await {
        Err(AtError::PinRequired { iccid, state }) => {
            assert_eq!(iccid.as_deref(), Some(ICCID));
            assert_eq!(state, "SIM PIN");
        }
        other => panic!("expected PinRequired, got {:?}", other.err()),
    }
    assert_eq!(modem.attempts(), 0);
}

#[tokio::test]
async fn the_bank_shows_a_sim_with_a_refused_pin_as_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let modem = LockedModem::plug(&dir.path().join("ttyUSB0"));
    let (bank, _events) = Bank::start(BankConfig {
        ports: vec![format!("{}/ttyUSB*", dir.path().display())],
        profiles: Profiles::builtin(),
        poll_interval: Duration::from_millis(100),
        power_cycle_command: None,
        quarantine_after: 2,
        pins: HashMap::from([(ICCID.to_string(), "0000".to_string())]),
        msisdn_for_iccid: HashMap::new(),
        baud: 115_200,
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = bank.sims().into_iter().next() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the SIM shows up");
    assert_eq!(status.iccid, ICCID);
    assert_eq!(status.state, SimState::Locked);
    assert!(!status.healthy);
    let reason = status.last_error.expect("reason");
    assert!(reason.contains("pin refused"), "{reason}");
    assert!(bank.handle(ICCID).is_none());
    // Rescans come and go (every 0.5 s here); the PIN is not sent again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(modem.attempts(), 1);
    bank.shutdown();
}
