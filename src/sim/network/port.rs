//! Each modem's port as the network sees it: the queue of unsolicited
//! output and the notifier that wakes the port task, boot, plug and
//! unplug, and the trace of the bytes on the line.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use super::{Direction, Held, ModemSettings, Network, NetworkError, PortCommand, TraceEntry};

impl Network {
    /// The notifier the port task of modem `index` waits on.
    pub fn waker(&self, index: usize) -> Option<Arc<Notify>> {
        self.inner.wakers.get(index).cloned()
    }

    /// Queues unsolicited output for modem `index` and wakes its port task.
    pub fn push_urc(&self, index: usize, bytes: Vec<u8>) {
        if let Some(slot) = self.lock().modems.get_mut(index) {
            slot.queue_urc(bytes);
        }
        self.wake(index);
    }

    pub(super) fn wake(&self, index: usize) {
        if let Some(waker) = self.inner.wakers.get(index) {
            waker.notify_one();
        }
    }

    /// A mark for [`Network::take_urcs_since`]: how many URCs modem
    /// `index` has had queued so far.
    pub fn urc_mark(&self, index: usize) -> u64 {
        self.with_modem(index, |slot| slot.urcs_queued).unwrap_or(0)
    }

    /// Takes the pending URCs of modem `index` queued after `mark`, leaving
    /// older ones for the port's idle writer.
    pub fn take_urcs_since(&self, index: usize, mark: u64) -> Vec<u8> {
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(index) else {
            return Vec::new();
        };
        let newer = usize::try_from(slot.urcs_queued.saturating_sub(mark)).unwrap_or(usize::MAX);
        let keep = slot.urcs.len().saturating_sub(newer);
        slot.urcs.split_off(keep).into_iter().flatten().collect()
    }

    /// Takes modem `index`'s pending unsolicited output.
    pub fn take_urcs(&self, index: usize) -> Vec<u8> {
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(index) else {
            return Vec::new();
        };
        slot.urcs.drain(..).flatten().collect()
    }

    /// A modem came up (boot or re-plug): its settings return to the
    /// profile's defaults, and held messages are offered again.
    pub fn boot(&self, index: usize) {
        self.reboot_calls(index);
        {
            let mut state = self.lock();
            if let Some(slot) = state.modems.get_mut(index) {
                slot.settings = ModemSettings::from_profile(&slot.profile);
                slot.storages.select_default(&slot.profile);
                slot.lock.power_on();
                // Power-on is what brings locked-up firmware back.
                slot.faults.hung = false;
                slot.boots += 1;
                slot.urcs.clear();
                // Whatever waited for an acknowledgement is re-offered.
                let pending: Vec<_> = slot.awaiting_ack.drain(..).collect();
                for delivery in pending.into_iter().filter_map(|waiting| waiting.delivery) {
                    state.held.push_back(Held::Modem(delivery));
                }
            }
        }
        self.retry_held();
    }

    /// Records the port of modem `index` as plugged at `path`/`link` (or not).
    pub fn set_plugged(&self, index: usize, path: Option<PathBuf>, link: Option<PathBuf>) {
        if path.is_none() {
            self.drop_modem_calls(index);
        }
        let _ = self.with_modem(index, |slot| {
            slot.plugged = path.is_some();
            slot.path = path;
            slot.link = link;
        });
    }

    /// Attaches the channel to modem `index`'s port task.
    pub fn attach_port(&self, index: usize, port: tokio::sync::mpsc::UnboundedSender<PortCommand>) {
        let _ = self.with_modem(index, |slot| slot.port = Some(port));
    }

    /// Asks modem `index`'s port task to unplug or plug.
    pub fn port_command(&self, index: usize, command: PortCommand) -> Result<(), NetworkError> {
        let port = self.with_modem(index, |slot| slot.port.clone())?;
        match port {
            Some(port) if port.send(command).is_ok() => Ok(()),
            _ => Err(NetworkError::UnknownModem(index)),
        }
    }

    /// Records bytes seen on modem `index`'s port (see [`super::Trace::record`]).
    pub fn trace(&self, index: usize, dir: Direction, bytes: &[u8]) {
        let t_us = self.inner.started.elapsed().as_micros() as u64;
        if let Some(slot) = self.lock().modems.get_mut(index) {
            slot.trace.record(t_us, dir, bytes);
        }
    }

    /// Records bytes crossing a paced line, the first starting at `start`
    /// and each taking `1 / bytes_per_second`: every line is stamped with
    /// the time its last byte is on the line, as a serial port shows it.
    pub fn trace_paced(
        &self,
        index: usize,
        dir: Direction,
        bytes: &[u8],
        start: std::time::Instant,
        bytes_per_second: f64,
    ) {
        let started = self.inner.started;
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(index) else {
            return;
        };
        let mut from = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let ends = match dir {
                Direction::Rx => matches!(byte, b'\r' | 0x1A | 0x1B),
                Direction::Tx => byte == b'\n' || (byte == b' ' && at > 0 && bytes[at - 1] == b'>'),
            };
            if ends || at + 1 == bytes.len() {
                let done =
                    start + std::time::Duration::from_secs_f64((at + 1) as f64 / bytes_per_second);
                let t_us = done.saturating_duration_since(started).as_micros() as u64;
                slot.trace.record(t_us, dir, &bytes[from..=at]);
                from = at + 1;
            }
        }
    }

    pub fn trace_of(&self, index: usize) -> Result<Vec<TraceEntry>, NetworkError> {
        self.with_modem(index, |slot| slot.trace.entries())
    }
}
