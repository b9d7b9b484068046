//! A virtual modem that a test can unplug and plug back, under the same or
//! another link name, built from the simulator's pty and interpreter.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use simmask::modem::profile::Profiles;
use simmask::sim::identity::Identity;
use simmask::sim::interpreter::Interpreter;
use simmask::sim::pty::Pty;
use tokio_util::sync::CancellationToken;

pub struct VirtualModem {
    pub identity: Identity,
    pub profile: String,
    pub link: PathBuf,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl VirtualModem {
    /// A freshly booted modem of `profile` behind `link`.
    pub fn plug(link: &Path, profile: &str, seed: u64) -> VirtualModem {
        let identity = Identity::generate(seed, 0);
        let mut modem = VirtualModem {
            identity,
            profile: profile.to_string(),
            link: link.to_path_buf(),
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
        let pty = Pty::open().expect("pty");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&pty.path, link).expect("link");
        self.link = link.to_path_buf();
        self.stop = CancellationToken::new();
        let interpreter = Interpreter::new(profile, self.identity.clone());
        self.task = Some(tokio::spawn(pty.serve(interpreter, self.stop.clone())));
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
