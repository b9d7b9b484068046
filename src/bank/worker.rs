//! One SIM's worker: turns its modem's events into bank events, reads
//! stored messages (and lists what is already stored on start and after
//! every re-plug), polls health, and resets a modem that stops answering:
//! `AT+CFUN=1,1`, then the power-cycle command, then quarantine.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Bank, BankEvent, InboundSms, Outstanding, SimState};
use crate::modem::actor::{ModemEvent, ModemHandle, StoredSms};
use crate::modem::error::AtError;

/// The storage of status reports (3GPP TS 27.005 §3.1 `"SR"`).
const STATUS_REPORTS: &str = "SR";

/// Consecutive unanswered polls after which the modem is taken as stuck.
const UNANSWERED_BEFORE_RESET: u32 = 3;
/// How long past its profile's boot time a reset or power-cycled modem may
/// take to answer again.
const RECOVERY_GRACE: Duration = Duration::from_secs(3);
/// How long the power-cycle command may run.
const POWER_CYCLE_LIMIT: Duration = Duration::from_secs(30);
/// A message the store gave back (a full disk, say) is listed again after
/// this long at first, then twice as long each time it comes back, up to
/// [`RETRY_MAX`]; a message stored resets the wait.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

struct Worker {
    bank: Bank,
    sim: String,
    handle: ModemHandle,
    /// Stored messages handed on and not yet confirmed: a `+CMTI` for one
    /// already listed is not handed on twice.
    outstanding: Arc<Outstanding>,
    unanswered: u32,
    /// A read failed: list everything at the next poll.
    relist: bool,
    /// When to list again for messages the store gave back, and the wait
    /// after that.
    retry_at: Option<Instant>,
    retry_wait: Duration,
    /// Stored PDUs that do not decode, handed on once: the relay leaves
    /// them on the SIM, and listing again does not hand them on again.
    undecodable: HashSet<String>,
}

pub(super) async fn run(
    bank: Bank,
    sim: String,
    handle: ModemHandle,
    mut events: mpsc::Receiver<ModemEvent>,
    stop: CancellationToken,
) {
    let mut worker = Worker {
        bank,
        sim,
        handle,
        outstanding: Arc::default(),
        unanswered: 0,
        relist: false,
        retry_at: None,
        retry_wait: RETRY_FIRST,
        undecodable: HashSet::new(),
    };
    worker
        .bank
        .emit(BankEvent::SimUp {
            sim: worker.sim.clone(),
        })
        .await;
    worker.hand_on_stored().await;
    worker.poll().await;
    let interval = worker
        .bank
        .shared
        .config
        .poll_interval
        .max(Duration::from_millis(100));
    let mut next_poll = Instant::now() + interval;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => worker.on_event(event).await,
                // The actor stopped (shut down, replaced).
                None => return,
            },
            () = tokio::time::sleep_until(next_poll) => {
                next_poll = Instant::now() + interval;
                // Nothing to ask a modem that is away or given up on.
                if matches!(
                    worker.state(),
                    Some(SimState::Quarantined | SimState::Unplugged)
                ) {
                    continue;
                }
                // A modem that announces nothing new (it refused every
                // +CNMI setting) is listed at every poll instead.
                let silent = worker.handle.identity().capabilities.cnmi.is_empty();
                // Listing waits for a modem that answers polls again.
                if worker.poll().await && (worker.relist || silent || worker.retry_due()) {
                    worker.relist = false;
                    worker.hand_on_stored().await;
                }
            }
        }
    }
}

/// The last four characters of a SIM id, for log lines.
pub(super) fn tail(id: &str) -> String {
    let skip = id.chars().count().saturating_sub(4);
    id.chars().skip(skip).collect()
}

impl Worker {
    fn state(&self) -> Option<SimState> {
        self.bank
            .lock_sims()
            .get(&self.sim)
            .map(|sim| sim.status.state)
    }

    async fn emit(&self, event: BankEvent) {
        self.bank.emit(event).await;
    }

    async fn on_event(&mut self, event: ModemEvent) {
        match event {
            ModemEvent::SmsStored { storage, index } => {
                match self.handle.read_sms(&storage, index).await {
                    Ok(sms) => self.hand_on(sms).await,
                    Err(error) => {
                        tracing::warn!(%storage, index, %error, "stored message unreadable; listing later");
                        self.relist = true;
                    }
                }
            }
            ModemEvent::StatusReportStored { storage, index } => {
                self.read_status_report(&storage, index).await;
            }
            ModemEvent::SmsDirect { pdu_hex } => {
                let sms = InboundSms {
                    status_report: is_status_report(&pdu_hex),
                    pdu_hex,
                    location: None,
                    handle: self.handle.clone(),
                    outstanding: self.outstanding.clone(),
                    ticket: 0,
                    confirmed: false,
                };
                self.emit(BankEvent::Inbound {
                    sim: self.sim.clone(),
                    sms,
                })
                .await;
            }
            ModemEvent::Unplugged => {
                self.bank.release(&self.sim);
                self.bank.update(&self.sim, |s| {
                    s.state = SimState::Unplugged;
                    s.healthy = false;
                    s.last_error = Some("modem unplugged".into());
                });
                self.emit(BankEvent::SimDown {
                    sim: self.sim.clone(),
                    reason: "modem unplugged".into(),
                })
                .await;
            }
            ModemEvent::Replugged => {
                self.unanswered = 0;
                let identity = self.handle.identity();
                if self.bank.resolve(&identity).as_deref() != Some(self.sim.as_str()) {
                    // Another modem or SIM came back under this port's name:
                    // this SIM is away, and discovery adopts the newcomer.
                    tracing::warn!(port = %identity.path, "another SIM is on the port now");
                    self.handle.shutdown();
                    if let Some(sim) = self.bank.lock_sims().get_mut(&self.sim) {
                        sim.handle = None;
                    }
                    self.bank.release(&self.sim);
                    self.bank.update(&self.sim, |s| {
                        s.state = SimState::Unplugged;
                        s.healthy = false;
                        s.last_error = Some("another SIM took its port".into());
                    });
                    self.emit(BankEvent::SimDown {
                        sim: self.sim.clone(),
                        reason: "another SIM took its port".into(),
                    })
                    .await;
                    return;
                }
                self.bank
                    .claim(&self.sim, std::path::Path::new(&identity.path));
                self.bank.update(&self.sim, |s| {
                    s.state = SimState::Up;
                    s.healthy = true;
                    s.last_error = None;
                    s.recoveries = 0;
                    s.port = identity.path.clone();
                });
                self.emit(BankEvent::SimUp {
                    sim: self.sim.clone(),
                })
                .await;
                // What arrived while the modem was away is on the SIM now.
                self.outstanding.clear();
                self.hand_on_stored().await;
                self.poll().await;
            }
            ModemEvent::Registration(registration) => {
                let changed = self.bank.update(&self.sim, |s| {
                    s.registration = Some(status_name(&registration));
                    s.roaming = registration.roaming;
                    s.healthy = s.state == SimState::Up && registration.registered();
                });
                if changed {
                    self.emit(BankEvent::Health {
                        sim: self.sim.clone(),
                    })
                    .await;
                }
            }
            event => {
                self.emit(BankEvent::Modem {
                    sim: self.sim.clone(),
                    event,
                })
                .await;
            }
        }
    }

    /// A status report announced by `+CDSI: <storage>,<index>`. Quectel
    /// EC25/EG25 announce reports as `"SM"` while storing them in `"SR"`
    /// (asterisk-chan-quectel PR #75): a slot that holds no status report,
    /// or nothing, is read again from `"SR"`, and whatever message does sit
    /// in the slot named is left for its own announcement.
    async fn read_status_report(&mut self, storage: &str, index: u32) {
        let named = self.handle.read_sms(storage, index).await;
        if let Ok(sms) = &named
            && is_status_report(&sms.pdu_hex)
        {
            if let Ok(sms) = named {
                self.hand_on(sms).await;
            }
            return;
        }
        if storage != STATUS_REPORTS {
            tracing::debug!(
                %storage,
                index,
                "no status report where +CDSI said; reading it from SR"
            );
            match self.handle.read_sms(STATUS_REPORTS, index).await {
                Ok(sms) if is_status_report(&sms.pdu_hex) => {
                    self.hand_on(sms).await;
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(index, %error, "no status report in SR either");
                }
            }
        }
        tracing::warn!(%storage, index, "announced status report not found; listing later");
        self.relist = true;
    }

    /// Whether to list again now for messages the store gave back.
    fn retry_due(&mut self) -> bool {
        if self.outstanding.confirmed.swap(false, Ordering::AcqRel) {
            self.retry_wait = RETRY_FIRST;
        }
        if self.outstanding.returned.swap(false, Ordering::AcqRel) && self.retry_at.is_none() {
            tracing::debug!(wait = ?self.retry_wait, "messages given back unstored; listing again");
            self.retry_at = Some(Instant::now() + self.retry_wait);
            self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
        }
        match self.retry_at {
            Some(at) if Instant::now() >= at => {
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }

    /// Hands on one stored message unless it is already waiting for its
    /// confirmation (or does not decode and was handed on before).
    async fn hand_on(&mut self, sms: StoredSms) {
        if crate::pdu::decode_hex(&sms.pdu_hex, true).is_err()
            && !self.undecodable.insert(sms.pdu_hex.clone())
        {
            return;
        }
        let key = (sms.storage.clone(), sms.index);
        let Some(ticket) = self.outstanding.take(key) else {
            return;
        };
        let inbound = InboundSms {
            status_report: is_status_report(&sms.pdu_hex),
            pdu_hex: sms.pdu_hex,
            location: Some((sms.storage, sms.index)),
            handle: self.handle.clone(),
            outstanding: self.outstanding.clone(),
            ticket,
            confirmed: false,
        };
        self.emit(BankEvent::Inbound {
            sim: self.sim.clone(),
            sms: inbound,
        })
        .await;
    }

    /// Lists every stored message and hands on those not yet handed on:
    /// nothing left on a SIM is forgotten.
    async fn hand_on_stored(&mut self) {
        match self.handle.list_sms().await {
            Ok(stored) => {
                for sms in stored {
                    // Sent or unsent drafts are not inbound traffic.
                    if sms.status <= 1 {
                        self.hand_on(sms).await;
                    }
                }
            }
            Err(error) => {
                if error != AtError::Unplugged {
                    tracing::warn!(%error, "listing stored messages failed; trying again later");
                }
                self.relist = true;
            }
        }
    }

    /// One health poll: signal and registration, each read on its own.
    /// True when the modem answered. Only silence (a timeout) counts
    /// towards a reset: a modem that answers without the value (a bare
    /// `OK` to `AT+CSQ`, an `ERROR`) is alive, and its error is shown.
    async fn poll(&mut self) -> bool {
        let signal = self.handle.signal().await;
        // A silent modem is not asked twice in one poll.
        let registration = match &signal {
            Err(error @ (AtError::Timeout(_) | AtError::Unplugged | AtError::Stopped)) => {
                Err(error.clone())
            }
            _ => self.handle.registration().await,
        };
        let errors = [signal.as_ref().err(), registration.as_ref().err()];
        // The actor is reopening the port; Replugged will follow.
        if errors
            .iter()
            .flatten()
            .any(|e| matches!(e, AtError::Unplugged | AtError::Stopped))
        {
            return false;
        }
        if let Some(silence) = errors
            .iter()
            .flatten()
            .find(|e| matches!(e, AtError::Timeout(_)))
        {
            self.unanswered += 1;
            tracing::debug!(error = %silence, unanswered = self.unanswered, "health poll unanswered");
            let error = silence.to_string();
            // Not healthy from the first silence: the outbox holds this
            // SIM's sends (each would wait out its own long timeout on a
            // modem that answers nothing, and keep the polls waiting behind
            // it) until a poll is answered again or the reset is over.
            let changed = self.bank.update(&self.sim, |s| {
                s.last_error = Some(error);
                s.healthy = false;
            });
            if changed {
                self.emit(BankEvent::Health {
                    sim: self.sim.clone(),
                })
                .await;
            }
            if self.unanswered >= UNANSWERED_BEFORE_RESET {
                self.unanswered = 0;
                self.recover().await;
            }
            return false;
        }
        self.unanswered = 0;
        // How full the receiving storage is (doctor warns before it fills),
        // and the modem's clock: the network's time, for crate::clock.
        let storage = self
            .handle
            .storage_use()
            .await
            .ok()
            .and_then(|storages| storages.last().cloned());
        if let Ok(Some(network)) = self.handle.clock().await {
            crate::clock::record_network_time(
                crate::clock::Source::Cclk,
                network,
                &format!("sim {}", tail(&self.sim)),
            );
        }
        let problem = errors.iter().flatten().next().map(|e| e.to_string());
        if let Some(problem) = &problem {
            tracing::debug!(error = %problem, "health poll answered without the value");
        }
        let changed = self.bank.update(&self.sim, |s| {
            if let Ok(signal) = &signal {
                s.signal_dbm = signal.dbm;
            }
            if let Ok(registration) = &registration {
                s.registration = Some(status_name(registration));
                s.roaming = registration.roaming;
                s.operator = registration.operator.clone();
                s.healthy = s.state == SimState::Up && registration.registered();
            } else {
                // Answering again, registration unread: as last known.
                s.healthy = s.state == SimState::Up
                    && matches!(s.registration.as_deref(), Some("home" | "roaming"));
            }
            if problem.is_some() {
                s.last_error = problem.clone();
            }
            if storage.is_some() {
                s.storage = storage.clone();
            }
            s.recoveries = 0;
        });
        if changed {
            self.emit(BankEvent::Health {
                sim: self.sim.clone(),
            })
            .await;
        }
        true
    }

    /// Reset, then power cycle; quarantine after too many failed tries.
    async fn recover(&mut self) {
        let config = &self.bank.shared.config;
        let reason = "modem stopped answering; resetting".to_string();
        self.bank.update(&self.sim, |s| {
            s.state = SimState::Resetting;
            s.healthy = false;
        });
        self.emit(BankEvent::SimDown {
            sim: self.sim.clone(),
            reason: reason.clone(),
        })
        .await;
        tracing::warn!("modem stopped answering: AT+CFUN=1,1");
        if let Err(error) = self.handle.reset().await {
            tracing::debug!(%error, "reset command failed");
        }
        let mut back = self.wait_until_answering().await;
        if !back && let Some(command) = config.power_cycle_command.clone() {
            let port = self.handle.identity().path;
            power_cycle(&command, &port).await;
            back = self.wait_until_answering().await;
        }
        if back {
            tracing::info!("modem answers again after recovery");
            self.bank.update(&self.sim, |s| {
                s.state = SimState::Up;
                s.healthy = true;
                s.last_error = None;
                s.recoveries = 0;
            });
            self.emit(BankEvent::SimUp {
                sim: self.sim.clone(),
            })
            .await;
            return;
        }
        let quarantine_after = config.quarantine_after.max(1);
        let mut quarantined = false;
        self.bank.update(&self.sim, |s| {
            s.recoveries += 1;
            if s.recoveries >= quarantine_after {
                quarantined = true;
                s.state = SimState::Quarantined;
                s.last_error = Some(format!(
                    "quarantined: no answer after {} reset(s){}",
                    s.recoveries,
                    if config.power_cycle_command.is_some() {
                        " and power cycle(s)"
                    } else {
                        ""
                    }
                ));
            } else {
                s.state = SimState::Up;
                s.last_error = Some("reset did not bring the modem back".into());
            }
        });
        if quarantined {
            tracing::error!("modem quarantined after repeated failed recoveries");
            self.emit(BankEvent::SimDown {
                sim: self.sim.clone(),
                reason: "quarantined after repeated failed recoveries".into(),
            })
            .await;
        }
    }

    /// Pings until the modem answers or its boot time (from the profile)
    /// and a grace period are over.
    async fn wait_until_answering(&self) -> bool {
        let profile = self.handle.identity().profile;
        let boot = self
            .bank
            .shared
            .config
            .profiles
            .get(&profile)
            .map(|p| Duration::from_millis(p.boot.reset_ms))
            .unwrap_or_default();
        let deadline = Instant::now() + boot + RECOVERY_GRACE;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.handle.ping().await.is_ok() {
                return true;
            }
        }
        false
    }
}

/// Runs the operator's power-cycle command with `{tty}`, `{hub}` and
/// `{port}` substituted (see [`super::usb`]).
async fn power_cycle(command: &str, tty: &str) {
    let usb = super::usb::locate(std::path::Path::new(tty), std::path::Path::new("/sys"));
    let Some(line) = super::usb::power_cycle_line(command, tty, usb.as_ref()) else {
        tracing::warn!(%tty, "power-cycle command not run: the modem's USB hub and port are unknown");
        return;
    };
    tracing::warn!(command = %line, "power cycling the modem");
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(POWER_CYCLE_LIMIT, run).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => tracing::warn!(%status, "power-cycle command failed"),
        Ok(Err(error)) => tracing::warn!(%error, "power-cycle command did not run"),
        Err(_) => tracing::warn!("power-cycle command timed out"),
    }
}

fn status_name(registration: &crate::modem::parse::Registration) -> String {
    serde_json::to_value(registration.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// TP-MTI `10` (3GPP TS 23.040 §9.2.3.1): an SMS-STATUS-REPORT.
fn is_status_report(pdu_hex: &str) -> bool {
    crate::pdu::decode_hex(pdu_hex, true)
        .map(|d| matches!(d.pdu.tpdu, crate::pdu::Tpdu::StatusReport(_)))
        .unwrap_or(false)
}
