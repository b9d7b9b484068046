//! A virtual modem a test can unplug, plug back (under the same or another
//! link name) and make misbehave: the simulator's interpreter behind a real
//! pty, served by a loop that can drop or garble its answers.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use simmask::modem::profile::Profiles;
use simmask::sim::identity::Identity;
use simmask::sim::interpreter::Interpreter;
use simmask::sim::network::Network;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

/// How the modem answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Reads commands, answers nothing (a hung firmware).
    Silent,
    /// Answers every command with line noise and no final result.
    Garbage,
}

pub struct VirtualModem {
    pub identity: Identity,
    pub profile: String,
    pub link: PathBuf,
    fault: Arc<Mutex<Fault>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl VirtualModem {
    /// A freshly booted modem of `profile` behind `link`.
    pub fn plug(link: &Path, profile: &str, seed: u64) -> VirtualModem {
        let mut modem = VirtualModem {
            identity: Identity::generate(seed, 0),
            profile: profile.to_string(),
            link: link.to_path_buf(),
            fault: Arc::new(Mutex::new(Fault::None)),
            stop: CancellationToken::new(),
            task: None,
        };
        modem.plug_at(link);
        modem
    }

    /// Plugs the same modem (same IMEI and SIM) back in at `link`.
    pub fn plug_at(&mut self, link: &Path) {
        let profile = Profiles::builtin()
            .get(&self.profile)
            .expect("profile")
            .clone();
        let pair = openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pair.slave).expect("ttyname");
        let mut termios = tcgetattr(&pair.slave).expect("tcgetattr");
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).expect("raw pty");
        fcntl(&pair.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&path, link).expect("link");
        self.link = link.to_path_buf();
        self.stop = CancellationToken::new();
        // A network of its own per plug: the SIM's storage is not what the
        // hotplug tests look at.
        let network = Network::new(vec![(profile, self.identity.clone())]);
        let interpreter = Interpreter::new(network, 0);
        self.task = Some(tokio::spawn(serve(
            File::from(pair.master),
            pair.slave,
            interpreter,
            self.fault.clone(),
            self.stop.clone(),
        )));
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    /// Pulls the modem out: the pty closes and its link goes away.
    pub async fn unplug(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.link);
    }
}

async fn serve(
    master: File,
    _slave: OwnedFd,
    mut interpreter: Interpreter,
    fault: Arc<Mutex<Fault>>,
    stop: CancellationToken,
) {
    // SAFETY: the `File` owns its descriptor and moves into the AsyncFd, so
    // the descriptor stays open and unchanged for the AsyncFd's life.
    let Ok(fd) = (unsafe { AsyncFd::register(master) }) else {
        return;
    };
    let mut buf = [0u8; 1024];
    loop {
        let guard = tokio::select! {
            () = stop.cancelled() => return,
            guard = fd.readable() => guard,
        };
        let Ok(mut guard) = guard else { return };
        let n = match guard.try_io(|inner| inner.get_ref().read(&mut buf)) {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        };
        let reply = interpreter.feed(&buf[..n]);
        let current = *fault.lock().expect("fault lock");
        let reply = match current {
            Fault::None => reply,
            Fault::Silent => continue,
            Fault::Garbage if reply.is_empty() => continue,
            Fault::Garbage => b"\r\n\x7f#?~ZX\xff\xfe12\r\n+++\r\n".to_vec(),
        };
        let mut rest = reply.as_slice();
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
