//! The actor's life: its main loop (requests, URCs, the `RING` that waits
//! for its `+CLIP`), losing the port and reopening it with backoff, and the
//! reset that brings the modem up again on the same port.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Actor, ModemEvent};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::init::initialise;
use crate::modem::network::AtExec;
use crate::modem::port::AtPort;

/// How long after `RING` a `+CLIP` may still come to name the caller.
const CLIP_AFTER_RING: Duration = Duration::from_millis(500);
/// Reopening a vanished port: first wait, and the longest wait.
const REOPEN_FIRST: Duration = Duration::from_millis(200);
const REOPEN_MAX: Duration = Duration::from_secs(5);

impl Actor {
    pub(super) async fn run(mut self) {
        self.dispatch_urcs().await;
        let mut reopen_wait = REOPEN_FIRST;
        loop {
            if self.announce_unplug {
                self.announce_unplug = false;
                tracing::warn!(path = %self.path, "modem port gone; reopening with backoff");
                self.emit(ModemEvent::Unplugged).await;
            }
            if self.port.is_none() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    request = self.inbox.recv() => match request {
                        Some(request) => request.fail(AtError::Unplugged),
                        None => return,
                    },
                    () = tokio::time::sleep(reopen_wait) => {
                        if self.reopen().await {
                            reopen_wait = REOPEN_FIRST;
                        } else {
                            reopen_wait = (reopen_wait * 2).min(REOPEN_MAX);
                        }
                    }
                }
                continue;
            }
            let ring_deadline = self.ring_since.map(|at| at + CLIP_AFTER_RING);
            let Some(port) = self.port.as_mut() else {
                continue;
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                request = self.inbox.recv() => match request {
                    Some(request) => self.serve(request).await,
                    None => return,
                },
                read = port.read_unsolicited() => {
                    if read.is_err() {
                        self.lose_port();
                    }
                }
                () = sleep_until_or_forever(ring_deadline) => {
                    self.ring_since = None;
                    self.emit(ModemEvent::Ring { caller: None }).await;
                }
            }
            self.dispatch_urcs().await;
        }
    }

    /// Tries to open the path again and re-initialise; true when back.
    async fn reopen(&mut self) -> bool {
        let mut port = match AtPort::open_with_baud(&self.path, self.options.baud) {
            Ok(port) => port,
            Err(error) => {
                tracing::trace!(path = %self.path, %error, "port not back yet");
                return false;
            }
        };
        match initialise(&mut port, &self.path, &self.options).await {
            Ok((identity, profile)) => {
                tracing::info!(path = %self.path, profile = %identity.profile, "modem back");
                *self.identity.write().unwrap_or_else(|e| e.into_inner()) = identity;
                self.profile = profile;
                self.port = Some(port);
                self.selected_storage = None;
                self.connected.store(true, Ordering::Release);
                self.emit(ModemEvent::Replugged).await;
                self.dispatch_urcs().await;
                true
            }
            Err(error) => {
                tracing::debug!(path = %self.path, %error, "modem not back yet");
                false
            }
        }
    }

    pub(super) fn lose_port(&mut self) {
        if self.port.take().is_some() {
            self.connected.store(false, Ordering::Release);
            self.announce_unplug = true;
        }
    }

    /// `AT+CFUN=1,1`, the boot time the profile gives, then initialisation
    /// again on the same port. A port that vanished meanwhile (USB
    /// re-enumeration) is reopened by the main loop instead.
    pub(super) async fn reset(&mut self) -> Result<(), AtError> {
        // Modems answer OK before rebooting; a stuck one will not answer.
        let reset = Command::plain("AT+CFUN=1,1").with_timeout(Duration::from_secs(5));
        self.exec(&reset).await?;
        self.connected.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(self.profile.boot.reset_ms)).await;
        let Some(port) = self.port.as_mut() else {
            return Ok(());
        };
        // Boot noise (RDY, +CFUN: 1 …) is read and dropped with the answers.
        match initialise(port, &self.path, &self.options).await {
            Ok((identity, profile)) => {
                *self.identity.write().unwrap_or_else(|e| e.into_inner()) = identity;
                self.profile = profile;
                self.selected_storage = None;
                self.connected.store(true, Ordering::Release);
                self.emit(ModemEvent::Replugged).await;
            }
            Err(error) => {
                tracing::warn!(%error, "modem did not come back from its reset; reopening");
                self.port = None;
                self.announce_unplug = true;
            }
        }
        Ok(())
    }
}

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
