//! The virtual GSM network: the bank's SIMs (subscribers), the handsets
//! outside the bank, and the SMSC between them.
//!
//! One [`Network`] is shared by every virtual modem, the control API and the
//! background ticker. It is a cheap `Clone` around one `std::sync::Mutex`;
//! no lock is ever held across an `.await`. Modems reach their pty task
//! through a queue of unsolicited output plus a [`Notify`] that wakes it.
//!
//! Messages are never dropped: whatever cannot be delivered now (handset off,
//! SIM storage full, modem unplugged, unregistered or PIN-locked, `+CMT` not
//! acknowledged) waits in the SMSC's held queue and is offered again when
//! things change. The one exception is the SMSC's own rule: a message to a
//! handset still held when its submit's validity period ends is given up,
//! with a failed status report.
//!
//! By file: `modem` (a bank modem's record and the settings that decide how
//! the network reaches it), `port` (its URC queue, boot, plug and trace),
//! `smsc` (routing submits, concatenation, held messages, expiry),
//! `delivery` (`+CMT` and `+CNMA`, storage with `+CMTI`), `reports`
//! (status reports), `handset` (the phones outside the bank), `faults`
//! (injected faults, registration, the PIN lock) and `call_service` (the
//! call model behind the lock, its notices delivered as URCs).

mod call_service;
mod delivery;
mod faults;
mod handset;
mod modem;
mod port;
mod reports;
mod smsc;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::pdu::ConcatReferences;
use crate::profile::Profile;
use crate::sim::calls::{CallNetwork, CallTiming};
use crate::sim::identity::Identity;
pub use crate::sim::trace::{Direction, Trace, TraceEntry};
pub use call_service::{CallServiceError, USSD_BALANCE};
pub use delivery::ACK_TIMEOUT;
use delivery::AwaitingAck;
pub use faults::{Faults, FaultsUpdate, LockState, PUK, Registration, SimLock};
pub use handset::{Handset, HandsetMessage};
pub use modem::{Cnmi, ModemSettings, ModemSlot, PortCommand};
use smsc::Held;
pub use smsc::{SMSC, SubmitRefused};

/// Why the network refused something asked through the control API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid number {0:?}: expected E.164 (+ and 1 to 15 digits)")]
    InvalidNumber(String),
    #[error("{0} is a SIM of the bank, not a handset")]
    NotAHandset(String),
    #[error("no handset {0} has used the network")]
    UnknownHandset(String),
    #[error("no modem with index {0}")]
    UnknownModem(usize),
    #[error("cannot encode the message: {0}")]
    Encode(String),
    #[error("invalid fault: {0}")]
    InvalidFault(String),
}

/// The state behind the lock.
#[derive(Debug)]
pub struct NetworkState {
    pub modems: Vec<ModemSlot>,
    pub handsets: BTreeMap<String, Handset>,
    held: VecDeque<Held>,
    concat: ConcatReferences,
    /// The call side; [`Network::modem_dial`] and the network's other
    /// call operations drive it.
    pub calls: CallNetwork,
}

struct Inner {
    state: Mutex<NetworkState>,
    /// Wakes modem i's port task when it has unsolicited output.
    wakers: Vec<Arc<Notify>>,
    started: Instant,
    /// Seconds the network's clock is ahead of this machine's.
    clock_offset: AtomicI64,
}

/// The shared network. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("modems", &self.inner.wakers.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// A network with these bank modems (profile and identity each), none
    /// plugged yet.
    pub fn new(modems: Vec<(Profile, Identity)>) -> Self {
        let wakers = modems.iter().map(|_| Arc::new(Notify::new())).collect();
        let mut calls = CallNetwork::new(CallTiming::default());
        for (index, (profile, identity)) in modems.iter().enumerate() {
            calls.add_modem(index, &identity.msisdn, &profile.voice);
        }
        let modems = modems
            .into_iter()
            .map(|(profile, identity)| ModemSlot::new(profile, identity))
            .collect();
        Network {
            inner: Arc::new(Inner {
                state: Mutex::new(NetworkState {
                    modems,
                    handsets: BTreeMap::new(),
                    held: VecDeque::new(),
                    concat: ConcatReferences::new(),
                    calls,
                }),
                wakers,
                started: Instant::now(),
                clock_offset: AtomicI64::new(0),
            }),
        }
    }

    /// The network's time: this machine's clock plus the offset set with
    /// `--clock-offset` or `PUT /clock`. Every SMSC timestamp and every
    /// `+CCLK?` of a modem that lets the network set its clock tell it.
    pub fn time(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(self.clock_offset())
    }

    /// Time since the network started.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// Seconds the network's clock is ahead of this machine's.
    pub fn clock_offset(&self) -> i64 {
        self.inner.clock_offset.load(Ordering::Relaxed)
    }

    pub fn set_clock_offset(&self, seconds: i64) {
        self.inner.clock_offset.store(seconds, Ordering::Relaxed);
    }

    /// [`Network::time`] as a PDU timestamp.
    pub(super) fn now_timestamp(&self) -> crate::pdu::Timestamp {
        crate::pdu::Timestamp::from_datetime(self.time())
    }

    /// The lock; a panic elsewhere while holding it does not make the
    /// network unusable (the state is kept consistent per operation).
    pub fn lock(&self) -> MutexGuard<'_, NetworkState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn modem_count(&self) -> usize {
        self.inner.wakers.len()
    }

    /// Runs `f` on modem `index`'s record.
    pub fn with_modem<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut ModemSlot) -> T,
    ) -> Result<T, NetworkError> {
        let mut state = self.lock();
        let slot = state
            .modems
            .get_mut(index)
            .ok_or(NetworkError::UnknownModem(index))?;
        Ok(f(slot))
    }

    /// The bank SIM with this MSISDN, if any.
    pub fn subscriber(&self, number: &str) -> Option<usize> {
        self.lock()
            .modems
            .iter()
            .position(|slot| slot.identity.msisdn == number)
    }

    /// Periodic work: unacknowledged `+CMT`s past their deadline are taken
    /// back; held messages are offered again.
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    /// [`Network::tick`] at a given time: messages to handsets whose
    /// validity period has passed are given up, with a failed status report
    /// when one was asked for.
    pub fn tick_at(&self, now: Instant) {
        self.give_up_expired(now);
        self.take_back_unacknowledged(now);
        self.retry_held();
        self.call_tick();
    }
}

#[cfg(test)]
mod tests;
