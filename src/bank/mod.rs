//! All modems: discovery of ports, identity (IMEI, SIM id), health, hotplug
//! and reset.
//!
//! The bank expands the configured globs, probes each new candidate port by
//! spawning a modem actor on it (which brings up only a port that speaks
//! AT), and keys everything by SIM id: the ICCID, or the IMSI for a SIM
//! whose ICCID the firmware cannot read (see [`SimId`]). A SIM that comes
//! back on another tty, or in another modem, is the same proxy number; one
//! once known by its IMSI keeps that id when a modem later reads its ICCID,
//! and the reverse (`resolve_id`). One worker task per SIM (see
//! `worker.rs`) turns the actor's events into [`BankEvent`]s, polls health
//! and resets a modem that stops answering.

pub mod usb;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::modem::actor::{ModemEvent, ModemHandle, ModemIdentity, ModemOptions, spawn_modem};
use crate::modem::error::AtError;
pub use crate::modem::init::{IdSource, SimId};
use crate::profile::Profiles;

/// How the bank finds and looks after its modems.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// Globs of candidate ports (`/dev/serial/by-id/*-if02-port0`, `/dev/ttyUSB*`).
    pub ports: Vec<String>,
    pub profiles: Profiles,
    /// Health poll period per SIM; ports are re-scanned as often (within
    /// 0.5 to 10 seconds).
    pub poll_interval: Duration,
    /// Run through `sh -c` when a reset does not bring a modem back (hubs
    /// with per-port power), with `{hub}` and `{port}` replaced by the
    /// modem's USB hub and port and `{tty}` by its serial port's path.
    pub power_cycle_command: Option<String>,
    /// Failed recoveries after which a modem is quarantined.
    pub quarantine_after: u32,
    /// SIM PINs by ICCID (a locked SIM gives no IMSI).
    pub pins: HashMap<String, String>,
    /// Numbers of SIMs that do not know their own (`AT+CNUM` empty), by
    /// SIM id (the ICCID, or `imsi:<IMSI>`).
    pub msisdn_for_sim: HashMap<String, String>,
    /// SIMs the pool knew before this start (from the store), so that a SIM
    /// is found under the id it had even when its modem now reads the other
    /// half of its identity.
    pub known_sims: Vec<KnownSim>,
    pub baud: u32,
}

/// A SIM of the pool by its id and IMSI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSim {
    pub id: String,
    /// Empty when never read.
    pub imsi: String,
}

/// The id a SIM found with `iccid` and `imsi` has in the pool, given the
/// SIMs already `known` (id, IMSI): a known ICCID is itself; a SIM first
/// known by its IMSI keeps that id once its ICCID is read; a SIM whose
/// ICCID cannot be read now is found by its IMSI under whatever id it has;
/// a new SIM is its ICCID, else `imsi:<IMSI>`. `None` without either.
pub fn resolve_id<'a>(
    iccid: Option<&str>,
    imsi: Option<&str>,
    known: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<String> {
    let fresh = SimId::of(iccid, imsi)?.into_string();
    if let Some(iccid) = iccid
        && known.clone().into_iter().any(|(id, _)| id == iccid)
    {
        return Some(iccid.to_string());
    }
    let Some(imsi) = imsi.filter(|i| !i.is_empty()) else {
        return Some(fresh);
    };
    let by_imsi = known
        .into_iter()
        .find(|&(id, known_imsi)| {
            known_imsi == imsi
                // With the ICCID read, only an IMSI-keyed entry is the same
                // SIM: two ICCIDs are two SIMs whatever their IMSIs say.
                && (iccid.is_none() || SimId::parse(id).source() == IdSource::Imsi)
        })
        .map(|(id, _)| id.to_string());
    Some(by_imsi.unwrap_or(fresh))
}

/// Where a SIM stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimState {
    Up,
    Resetting,
    Quarantined,
    Unplugged,
    /// The SIM wants a PIN that is missing or was refused.
    Locked,
}

impl SimState {
    pub fn as_str(self) -> &'static str {
        match self {
            SimState::Up => "up",
            SimState::Resetting => "resetting",
            SimState::Quarantined => "quarantined",
            SimState::Unplugged => "unplugged",
            SimState::Locked => "locked",
        }
    }
}

impl PartialEq<&str> for SimState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One SIM as the bank sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimStatus {
    /// The SIM id the pool keys on (see [`SimId`]).
    pub id: String,
    /// The ICCID when its modem could read it.
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    pub imsi: Option<String>,
    pub imei: Option<String>,
    /// The port path its modem was found on.
    pub port: String,
    pub profile: String,
    /// Up, registered and answering.
    pub healthy: bool,
    pub signal_dbm: Option<i16>,
    /// `home`, `roaming`, `searching`, `denied`, `not_searching`, `unknown`.
    pub registration: Option<String>,
    pub roaming: bool,
    pub operator: Option<String>,
    /// The modem takes calls (its profile has voice).
    pub voice: bool,
    /// The call-related supplementary services its profile lists (`+CHLD`
    /// values); how calls are bridged is the voice layer's choice.
    pub profile_chld: Vec<String>,
    /// What the network answered to `AT+CHLD=?`; `None` when the modem did
    /// not answer it (the services are then tried, not assumed missing).
    pub chld: Option<Vec<String>>,
    pub last_error: Option<String>,
    pub state: SimState,
    /// Recoveries (reset, power cycle) tried since the SIM last answered.
    pub recoveries: u32,
    /// The storage new messages arrive in, as `(name, used, total)`: a
    /// full one makes the network hold messages back.
    pub storage: Option<(String, u32, u32)>,
}

/// What the bank reports, each about one SIM by its id.
#[derive(Debug)]
pub enum BankEvent {
    /// A SIM was seen for the first time, or is back.
    SimUp {
        sim: String,
    },
    SimDown {
        sim: String,
        reason: String,
    },
    /// Signal or registration changed; read [`Bank::sims`].
    Health {
        sim: String,
    },
    /// A received message (or stored status report) to commit, then confirm.
    Inbound {
        sim: String,
        sms: InboundSms,
    },
    /// Calls, direct status reports, USSD.
    Modem {
        sim: String,
        event: ModemEvent,
    },
}

/// A message taken from a modem. It stays on the SIM (or unacknowledged)
/// until [`InboundSms::confirm_stored`] is called. Dropped without that (the
/// store refused it, or could not be reached), it is given back: the SIM is
/// listed again later and the message handed on again, until it is stored.
#[derive(Debug)]
pub struct InboundSms {
    /// The PDU with its SMSC field: an SMS-DELIVER, or an
    /// SMS-STATUS-REPORT when `status_report` is set.
    pub pdu_hex: String,
    /// `(storage, index)` when read from storage; `None` for a direct `+CMT`.
    pub location: Option<(String, u32)>,
    pub status_report: bool,
    handle: ModemHandle,
    outstanding: Arc<Outstanding>,
    /// This handing-on's mark on its slot in `outstanding`.
    ticket: u64,
    confirmed: bool,
}

impl InboundSms {
    /// Deletes the message from the SIM (or acknowledges the direct
    /// delivery with `AT+CNMA`); call it only once the message is durable.
    pub async fn confirm_stored(mut self) -> Result<(), AtError> {
        match &self.location {
            Some((storage, index)) => {
                self.handle.delete_sms(storage, *index).await?;
            }
            // Only phase 2+ message service wants +CNMA (27.005 §3.2.1).
            None if self.handle.identity().capabilities.sms_service == 1 => {
                self.handle.ack_sms().await?;
            }
            None => {}
        }
        self.confirmed = true;
        self.outstanding.confirmed.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for InboundSms {
    /// Frees the message's slot (unless a later handing-on owns it now);
    /// one not confirmed asks for the SIM to be listed again.
    fn drop(&mut self) {
        let Some(key) = self.location.take() else {
            return;
        };
        let mut slots = self
            .outstanding
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slots.get(&key) == Some(&self.ticket) {
            slots.remove(&key);
            if !self.confirmed {
                self.outstanding.returned.store(true, Ordering::Release);
            }
        }
    }
}

/// The stored messages of one SIM handed on and not yet confirmed, each
/// with the ticket of its handing-on: a `+CMTI` or a listing for one of
/// them does not hand it on twice.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    slots: Mutex<HashMap<(String, u32), u64>>,
    next_ticket: AtomicU64,
    /// A message was given back unstored since the worker last looked.
    returned: AtomicBool,
    /// A message was confirmed since the worker last looked.
    confirmed: AtomicBool,
}

impl Outstanding {
    /// Takes `key` for a new handing-on; `None` when one is under way.
    fn take(&self, key: (String, u32)) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.contains_key(&key) {
            return None;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        slots.insert(key, ticket);
        Some(ticket)
    }

    /// Forgets every slot (the modem was re-plugged: what it stores is
    /// listed afresh).
    fn clear(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The running bank. Cheap to clone.
#[derive(Clone)]
pub struct Bank {
    shared: Arc<Shared>,
}

struct Shared {
    config: BankConfig,
    /// The port globs in force: `config.ports` until [`Bank::set_ports`].
    ports: Mutex<Vec<String>>,
    options: ModemOptions,
    sims: Mutex<BTreeMap<String, Sim>>,
    /// Ports (as given and canonical) owned by a live actor.
    claimed: Mutex<HashMap<PathBuf, String>>,
    /// Ports being probed right now.
    probing: Mutex<HashSet<PathBuf>>,
    /// Ports that answered nothing useful: re-probed only now and then.
    not_modems: Mutex<HashMap<PathBuf, u32>>,
    events: mpsc::Sender<BankEvent>,
    stop: CancellationToken,
}

struct Sim {
    status: SimStatus,
    handle: Option<ModemHandle>,
    /// Stops this SIM's worker (when its modem is replaced).
    worker_stop: CancellationToken,
}

/// Re-scans between which a port that is no modem is probed again.
const NOT_MODEM_RESCANS: u32 = 10;

impl Bank {
    /// Starts discovery; modems come up in the background and announce
    /// themselves with [`BankEvent::SimUp`].
    pub async fn start(config: BankConfig) -> (Bank, mpsc::Receiver<BankEvent>) {
        let (events, receiver) = mpsc::channel(1024);
        let mut options = ModemOptions::new(config.profiles.clone());
        options.pin_for_iccid = config.pins.clone();
        options.baud = config.baud;
        let bank = Bank {
            shared: Arc::new(Shared {
                ports: Mutex::new(config.ports.clone()),
                config,
                options,
                sims: Mutex::default(),
                claimed: Mutex::default(),
                probing: Mutex::default(),
                not_modems: Mutex::default(),
                events,
                stop: CancellationToken::new(),
            }),
        };
        tokio::spawn(bank.clone().discover());
        (bank, receiver)
    }

    /// Every SIM seen since start, by id.
    pub fn sims(&self) -> Vec<SimStatus> {
        self.lock_sims()
            .values()
            .map(|sim| sim.status.clone())
            .collect()
    }

    /// Whether the SIM `id` is up and healthy (asked before every send: one
    /// lookup, not a copy of every SIM's status).
    pub fn sim_healthy(&self, id: &str) -> bool {
        self.lock_sims()
            .get(id)
            .is_some_and(|sim| sim.status.healthy)
    }

    /// Changes the port globs (a reload): the next scan probes what the new
    /// ones match. Modems already up stay up, whether matched or not.
    pub fn set_ports(&self, ports: Vec<String>) {
        *self.shared.ports.lock().unwrap_or_else(|e| e.into_inner()) = ports;
    }

    /// The model profile named `name`, as the bank's modems use it.
    pub fn profile(&self, name: &str) -> Option<crate::profile::Profile> {
        self.shared.config.profiles.get(name).ok().cloned()
    }

    /// The modem holding the SIM `id`, if one does.
    pub fn handle(&self, id: &str) -> Option<ModemHandle> {
        self.lock_sims().get(id).and_then(|sim| sim.handle.clone())
    }

    /// The id of the SIM a modem holds, as the pool knows it (see
    /// [`resolve_id`]).
    fn resolve(&self, identity: &ModemIdentity) -> Option<String> {
        let sims = self.lock_sims();
        let seen: Vec<(String, String)> = sims
            .values()
            .map(|sim| {
                (
                    sim.status.id.clone(),
                    sim.status.imsi.clone().unwrap_or_default(),
                )
            })
            .chain(
                self.shared
                    .config
                    .known_sims
                    .iter()
                    .map(|k| (k.id.clone(), k.imsi.clone())),
            )
            .collect();
        drop(sims);
        resolve_id(
            identity.iccid.as_deref(),
            identity.imsi.as_deref(),
            seen.iter().map(|(id, imsi)| (id.as_str(), imsi.as_str())),
        )
    }

    /// The configured number of the SIM `id` (by its id, its ICCID or its
    /// IMSI).
    fn configured_msisdn(&self, id: &str, identity: &ModemIdentity) -> Option<String> {
        let by = &self.shared.config.msisdn_for_sim;
        let imsi_id = identity
            .imsi
            .as_deref()
            .and_then(|imsi| SimId::of(None, Some(imsi)));
        by.get(id)
            .or_else(|| identity.iccid.as_ref().and_then(|iccid| by.get(iccid)))
            .or_else(|| imsi_id.and_then(|imsi_id| by.get(imsi_id.as_str())))
            .cloned()
    }

    /// Stops discovery, every worker and every modem actor.
    pub fn shutdown(&self) {
        self.shared.stop.cancel();
        for sim in self.lock_sims().values() {
            if let Some(handle) = &sim.handle {
                handle.shutdown();
            }
        }
    }

    fn lock_sims(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Sim>> {
        self.shared.sims.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rescan_interval(&self) -> Duration {
        self.shared
            .config
            .poll_interval
            .clamp(Duration::from_millis(500), Duration::from_secs(10))
    }

    /// Updates one SIM's status; returns whether anything changed.
    fn update(&self, id: &str, change: impl FnOnce(&mut SimStatus)) -> bool {
        let mut sims = self.lock_sims();
        let Some(sim) = sims.get_mut(id) else {
            return false;
        };
        let before = sim.status.clone();
        change(&mut sim.status);
        sim.status != before
    }

    /// Marks `path` (and the device it leads to) as owned by SIM `id`'s actor.
    fn claim(&self, id: &str, path: &Path) {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut claimed = self
            .shared
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The SIM's old port (if any) is free again.
        claimed.retain(|_, owner| owner != id);
        claimed.insert(path.to_path_buf(), id.to_string());
        claimed.insert(canonical, id.to_string());
    }

    /// Frees the ports of a SIM whose modem vanished: the device name may
    /// come back for this modem or another one, and either actor or scan
    /// may open it first.
    fn release(&self, id: &str) {
        self.shared
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, owner| owner != id);
    }

    async fn emit(&self, event: BankEvent) {
        let _ = self.shared.events.send(event).await;
    }

    async fn discover(self) {
        let mut rescans: u64 = 0;
        loop {
            for candidate in self.candidates() {
                self.consider(candidate);
            }
            rescans += 1;
            tracing::trace!(rescans, "ports scanned");
            tokio::select! {
                () = self.shared.stop.cancelled() => return,
                () = tokio::time::sleep(self.rescan_interval()) => {}
            }
        }
    }

    /// The paths the globs match now.
    fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let ports = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for pattern in &ports {
            match glob::glob(pattern) {
                Ok(paths) => out.extend(paths.flatten()),
                Err(error) => tracing::warn!(%pattern, %error, "bad port glob"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Starts probing `path` unless it is owned, being probed or known
    /// not to be a modem.
    fn consider(&self, path: PathBuf) {
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        {
            let claimed = self
                .shared
                .claimed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if claimed.contains_key(&path) {
                return;
            }
            // The same device under another name is skipped, unless its
            // owner lost its port: a re-enumerated modem may get the tty
            // number its old self had, under a new link.
            if let Some(owner) = claimed.get(&canonical)
                && self
                    .handle(owner)
                    .is_none_or(|handle| handle.is_connected())
            {
                return;
            }
        }
        {
            let mut not_modems = self
                .shared
                .not_modems
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(skipped) = not_modems.get_mut(&canonical) {
                *skipped += 1;
                if *skipped < NOT_MODEM_RESCANS {
                    return;
                }
                not_modems.remove(&canonical);
            }
        }
        if !self
            .shared
            .probing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(canonical.clone())
        {
            return;
        }
        let bank = self.clone();
        tokio::spawn(async move {
            bank.probe(&path, &canonical).await;
            bank.shared
                .probing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&canonical);
        });
    }

    async fn probe(&self, path: &Path, canonical: &Path) {
        let Some(text) = path.to_str() else {
            tracing::warn!(?path, "port path is not UTF-8; skipped");
            return;
        };
        let spawned = tokio::select! {
            () = self.shared.stop.cancelled() => return,
            spawned = spawn_modem(text, self.shared.options.clone()) => spawned,
        };
        match spawned {
            Ok(spawned) => {
                let identity = spawned.handle.identity();
                let Some(id) = self.resolve(&identity) else {
                    tracing::warn!(
                        port = text,
                        "modem with no SIM it can name (neither ICCID nor IMSI); ignored for now"
                    );
                    spawned.handle.shutdown();
                    self.not_a_modem(canonical);
                    return;
                };
                if identity.iccid.is_none() {
                    tracing::info!(
                        port = text,
                        sim = %worker::tail(&id),
                        "the modem cannot read its SIM's ICCID: the SIM is known by its IMSI"
                    );
                }
                self.adopt(id, path, canonical, spawned.handle, spawned.events)
                    .await;
            }
            Err(error) => {
                self.record_probe_failure(text, &error).await;
                tracing::debug!(port = text, %error, "no usable modem");
                self.not_a_modem(canonical);
            }
        }
    }

    fn not_a_modem(&self, canonical: &Path) {
        self.shared
            .not_modems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(canonical.to_path_buf(), 0);
    }

    /// A SIM that needs a PIN gets a status saying so. It is known by its
    /// ICCID: a locked SIM gives no IMSI.
    async fn record_probe_failure(&self, port: &str, error: &AtError) {
        let iccid = match error {
            AtError::PinRequired {
                iccid: Some(iccid), ..
            }
            | AtError::PinRefused { iccid } => iccid.clone(),
            _ => return,
        };
        let reason = error.to_string();
        let mut sims = self.lock_sims();
        let sim = sims.entry(iccid.clone()).or_insert_with(|| Sim {
            status: SimStatus {
                id: iccid.clone(),
                iccid: Some(iccid.clone()),
                msisdn: self.shared.config.msisdn_for_sim.get(&iccid).cloned(),
                imsi: None,
                imei: None,
                port: port.to_string(),
                profile: String::new(),
                healthy: false,
                signal_dbm: None,
                registration: None,
                roaming: false,
                operator: None,
                voice: false,
                profile_chld: Vec::new(),
                chld: None,
                last_error: None,
                state: SimState::Locked,
                recoveries: 0,
                storage: None,
            },
            handle: None,
            worker_stop: CancellationToken::new(),
        });
        if sim.handle.is_none() {
            sim.status.state = SimState::Locked;
            sim.status.last_error = Some(reason);
            sim.status.port = port.to_string();
        }
    }

    /// Takes a found modem into the bank: a SIM already known (moved to
    /// another port, or back after re-enumeration) keeps its entry.
    async fn adopt(
        &self,
        id: String,
        path: &Path,
        canonical: &Path,
        handle: ModemHandle,
        events: mpsc::Receiver<ModemEvent>,
    ) {
        let identity = handle.identity();
        // Many modems answer AT on two interfaces: while the SIM's actor is
        // connected elsewhere, this port is the same modem's other door.
        let connected_elsewhere = self
            .lock_sims()
            .get(&id)
            .and_then(|sim| sim.handle.clone())
            .is_some_and(|held| held.is_connected() && held.identity().path != identity.path);
        if connected_elsewhere {
            tracing::debug!(port = %identity.path, "another AT interface of a modem in use; left alone");
            handle.shutdown();
            let mut claimed = self
                .shared
                .claimed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            claimed.insert(path.to_path_buf(), id.clone());
            claimed.insert(canonical.to_path_buf(), id);
            return;
        }
        let capabilities = &identity.capabilities;
        let profile_chld = self
            .profile(&identity.profile)
            .map(|p| p.voice.chld)
            .unwrap_or_default();
        let msisdn = identity
            .msisdn
            .clone()
            .or_else(|| self.configured_msisdn(&id, &identity));
        let worker_stop = self.shared.stop.child_token();
        let previous = {
            let mut sims = self.lock_sims();
            let status = SimStatus {
                id: id.clone(),
                iccid: identity.iccid.clone(),
                msisdn,
                imsi: identity.imsi.clone(),
                imei: identity.imei.clone(),
                port: identity.path.clone(),
                profile: identity.profile.clone(),
                healthy: true,
                signal_dbm: None,
                registration: None,
                roaming: false,
                operator: None,
                voice: capabilities.voice,
                profile_chld,
                chld: capabilities.chld.clone(),
                last_error: None,
                state: SimState::Up,
                recoveries: 0,
                storage: None,
            };
            sims.insert(
                id.clone(),
                Sim {
                    status,
                    handle: Some(handle.clone()),
                    worker_stop: worker_stop.clone(),
                },
            )
        };
        {
            let mut claimed = self
                .shared
                .claimed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // The SIM's old port (if any) is free again.
            claimed.retain(|_, owner| owner != &id);
            claimed.insert(path.to_path_buf(), id.clone());
            claimed.insert(canonical.to_path_buf(), id.clone());
        }
        if let Some(previous) = previous {
            previous.worker_stop.cancel();
            if let Some(old) = previous.handle {
                tracing::info!(
                    from = %previous.status.port,
                    to = %identity.path,
                    "sim found on another port; the old port is released"
                );
                old.shutdown();
            }
        }
        let span = sim_span(&id);
        tokio::spawn(worker::run(self.clone(), id, handle, events, worker_stop).instrument(span));
    }
}

/// The span of the tasks that work for one SIM: their log lines read
/// `sim{id=3654}` (the id's last four digits).
pub fn sim_span(id: &str) -> tracing::Span {
    tracing::info_span!("sim", id = %worker::tail(id))
}

#[cfg(test)]
mod tests {
    use super::resolve_id;

    const ICCID: &str = "8944000000000000018";
    const IMSI: &str = "001010000000018";

    #[test]
    fn a_sim_keeps_the_id_it_was_first_known_by() {
        let none: [(&str, &str); 0] = [];
        // New SIMs: the ICCID, else the IMSI.
        assert_eq!(
            resolve_id(Some(ICCID), Some(IMSI), none).as_deref(),
            Some(ICCID)
        );
        assert_eq!(
            resolve_id(None, Some(IMSI), none).as_deref(),
            Some("imsi:001010000000018")
        );
        assert_eq!(resolve_id(None, None, none), None);
        // Known by its ICCID, now in a modem that cannot read it.
        let by_iccid = [(ICCID, IMSI)];
        assert_eq!(
            resolve_id(None, Some(IMSI), by_iccid).as_deref(),
            Some(ICCID)
        );
        // Known by its IMSI, now in a modem that reads its ICCID.
        let by_imsi = [("imsi:001010000000018", IMSI)];
        assert_eq!(
            resolve_id(Some(ICCID), Some(IMSI), by_imsi).as_deref(),
            Some("imsi:001010000000018")
        );
        // Two SIMs with ICCIDs are two SIMs, whatever their IMSIs say.
        let other = [("8944000000000000026", IMSI)];
        assert_eq!(
            resolve_id(Some(ICCID), Some(IMSI), other).as_deref(),
            Some(ICCID)
        );
    }
}
