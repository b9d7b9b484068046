//! A scripted modem on a real pty, for what the simulator does not play:
//! a PIN-locked SIM, one modem answering on two interfaces.

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
use tokio::io::unix::AsyncFd;

/// A scripted 27.007 modem with a fixed identity. With a PIN it answers
/// `+CPIN: SIM PIN` until `AT+CPIN` gets the right one (27.007 §8.3),
/// `+CME ERROR: incorrect password` (§9.2.1 code 16) otherwise, and counts
/// the PINs it was sent.
pub struct ScriptedModem {
    attempts: Arc<AtomicU32>,
    _task: tokio::task::JoinHandle<()>,
}

impl ScriptedModem {
    pub fn plug(link: &Path, iccid: &str, pin: Option<&str>) -> ScriptedModem {
        let pair = openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pair.slave).expect("ttyname");
        let mut termios = tcgetattr(&pair.slave).expect("tcgetattr");
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).expect("raw");
        fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
        std::os::unix::fs::symlink(&path, link).expect("link");
        let attempts = Arc::new(AtomicU32::new(0));
        let script = Script {
            iccid: iccid.to_string(),
            pin: pin.map(str::to_string),
            attempts: attempts.clone(),
        };
        let task = tokio::spawn(serve(File::from(pair.master), pair.slave, script));
        ScriptedModem {
            attempts,
            _task: task,
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

struct Script {
    iccid: String,
    pin: Option<String>,
    attempts: Arc<AtomicU32>,
}

fn answer(line: &str, unlocked: &mut bool, script: &Script) -> String {
    let ok = |info: &str| format!("\r\n{info}\r\n\r\nOK\r\n");
    match line {
        "AT+CGMI" => ok("SIMMASK"),
        "AT+CGMM" => ok("GSM-27007"),
        "AT+CGSN" => ok("356938035643809"),
        "AT+CCID" => ok(&format!("+CCID: {}", script.iccid)),
        "AT+CSQ" => ok("+CSQ: 18,99"),
        "AT+CREG?" => ok("+CREG: 1,1"),
        "AT+CPIN?" if *unlocked => ok("+CPIN: READY"),
        "AT+CPIN?" => ok("+CPIN: SIM PIN"),
        _ if line.starts_with("AT+CPIN=") => {
            script.attempts.fetch_add(1, Ordering::SeqCst);
            let pin = script.pin.as_deref().unwrap_or_default();
            if line == format!("AT+CPIN=\"{pin}\"") {
                *unlocked = true;
                "\r\nOK\r\n".into()
            } else {
                "\r\n+CME ERROR: incorrect password\r\n".into()
            }
        }
        _ if !*unlocked && (line.starts_with("AT+CIMI") || line.starts_with("AT+CM")) => {
            "\r\n+CME ERROR: SIM PIN required\r\n".into()
        }
        // The callee is busy at once: the dial's OK and the call's end
        // come out together.
        _ if line.starts_with("ATD") => "\r\nOK\r\n\r\nBUSY\r\n".into(),
        _ => "\r\nOK\r\n".into(),
    }
}

async fn serve(master: File, _slave: OwnedFd, script: Script) {
    // SAFETY: the `File` owns its descriptor and moves into the AsyncFd, so
    // the descriptor stays open and unchanged for the AsyncFd's life.
    let Ok(fd) = (unsafe { AsyncFd::register(master) }) else {
        return;
    };
    let (mut line, mut unlocked) = (Vec::new(), script.pin.is_none());
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
            let reply = answer(&command, &mut unlocked, &script);
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
