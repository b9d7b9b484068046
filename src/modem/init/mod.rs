//! Bringing a modem up, the one path of the driver and `simmask probe`:
//! identity, profile, SIM PIN, and the 27.005/27.007 initialisation the
//! profile asks for, with capabilities probed rather than assumed (storages
//! from `AT+CPMS=?`, `+CNMI` modes from `AT+CNMI=?`, supplementary services
//! from `AT+CHLD=?`, voice from `AT+CLCC`), then how full the storages are
//! and how the network looks.
//!
//! [`bring_up`] goes on past what fails: each field of its [`InitReport`]
//! is found or missing on its own, through every command that can give it,
//! and [`InitReport::failures`] keeps why each command did not. Only a port
//! that is gone, or that does not speak AT (no result code of any kind to
//! `AT`, or a modem that stops answering altogether), stops it. Whether
//! the driver can run the modem is the driver's verdict on the report
//! ([`InitReport::into_driver`]); the probe prints the report as it is.
//!
//! - `power.rs`: a modem that boots with its radio off is switched on.
//! - `identity.rs`: manufacturer, model, revision, IMEI, each with its
//!   fallbacks (`+CGMx`, `+GMx`, `ATI`); ICCID (vendor commands, then
//!   EF_ICCID); IMSI and MSISDN.
//! - `pin.rs`: the SIM's state, waited for while it wakes, and unlocking
//!   with the configured PIN.
//! - `capabilities.rs`: PDU mode, storages, message routing, call services.
//! - `report.rs`: the report, its fields and what failed.

mod capabilities;
mod identity;
mod pin;
mod power;
mod report;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use self::report::{
    Capabilities, Failure, IdSource, Identity, InitReport, Network, SimId, Step, StorageUse,
};
use super::command::Command;
use super::error::AtError;
use super::network;
use super::port::AtPort;
use crate::profile::{Profile, Profiles};

/// What the actor learnt about its modem and SIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModemIdentity {
    /// The port path the actor opens (a link under `/dev/serial/by-id` or a tty).
    pub path: String,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    /// From `AT+CNUM` when the SIM knows its number.
    pub msisdn: Option<String>,
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    /// The profile chosen from manufacturer and model.
    pub profile: String,
    /// The `+CPIN` answer once initialised (`READY`), if the modem gave one.
    pub pin_state: Option<String>,
    pub capabilities: Capabilities,
}

impl ModemIdentity {
    /// What the pool knows the SIM by: its ICCID, else its IMSI.
    pub fn sim_id(&self) -> Option<SimId> {
        SimId::of(self.iccid.as_deref(), self.imsi.as_deref())
    }
}

/// How to open and initialise modems.
#[derive(Debug, Clone)]
pub struct ModemOptions {
    pub profiles: Profiles,
    /// SIM PINs by ICCID.
    pub pin_for_iccid: HashMap<String, String>,
    pub baud: u32,
    /// ICCIDs whose configured PIN was refused. Shared by every actor of
    /// the process (and kept across re-plugs) so a wrong PIN is sent once.
    pub refused_pins: Arc<Mutex<HashSet<String>>>,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl ModemOptions {
    pub fn new(profiles: Profiles) -> Self {
        ModemOptions {
            profiles,
            pin_for_iccid: HashMap::new(),
            baud: super::port::DEFAULT_BAUD,
            refused_pins: Arc::default(),
            event_capacity: 256,
        }
    }

    fn pin_refused(&self, iccid: &str) -> bool {
        self.refused_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(iccid)
    }

    fn refuse_pin(&self, iccid: &str) {
        self.refused_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(iccid.to_string());
    }
}

/// The first non-empty line of a response with `prefix` removed.
fn value(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim().to_string())
        .unwrap_or_default()
}

/// An answer that came without the value sought, as a step's failure.
fn no_value(command: &Command, lines: &[String], reason: &str) -> AtError {
    AtError::Parse {
        command: command.prefix.trim_end_matches(':'),
        line: lines.join(" | "),
        reason: reason.to_string(),
    }
}

/// Commands in a row that may time out before the modem is taken as gone
/// quiet (it answered `AT` a moment ago, so it is no port that never
/// spoke): bring-up ends then rather than wait out every command left.
const TIMEOUTS_IN_A_ROW: u32 = 3;

/// The port during bring-up, and the failures met so far.
struct BringUp<'p> {
    port: &'p mut AtPort,
    failures: Vec<Failure>,
    /// Commands in a row that timed out.
    timeouts: u32,
}

impl BringUp<'_> {
    fn fail(&mut self, step: Step, command: &str, error: AtError) {
        tracing::debug!(?step, command, %error, "bring-up step failed");
        self.failures.push(Failure {
            step,
            command: command.to_string(),
            error,
        });
    }

    /// Runs `command` for `step`: its answer lines, or `None` with the
    /// failure kept. Only the port gone, or a modem that stopped answering
    /// altogether, ends bring-up.
    async fn ask(&mut self, step: Step, command: Command) -> Result<Option<Vec<String>>, AtError> {
        match self.port.run(&command).await {
            Ok(lines) => {
                self.timeouts = 0;
                Ok(Some(lines))
            }
            Err(AtError::Unplugged) => Err(AtError::Unplugged),
            Err(error @ AtError::Timeout(_)) => {
                self.timeouts += 1;
                self.fail(step, &command.line, error.clone());
                if self.timeouts >= TIMEOUTS_IN_A_ROW {
                    tracing::warn!(
                        command = %command.line,
                        "{TIMEOUTS_IN_A_ROW} commands in a row unanswered: the modem went quiet"
                    );
                    return Err(error);
                }
                Ok(None)
            }
            Err(error) => {
                self.timeouts = 0;
                self.fail(step, &command.line, error);
                Ok(None)
            }
        }
    }

    /// Runs `command` and parses its first answer line; an answer that does
    /// not parse is the step's failure too.
    async fn ask_parsed<T>(
        &mut self,
        step: Step,
        command: Command,
        parse: impl Fn(&str) -> Result<T, AtError>,
    ) -> Result<Option<T>, AtError> {
        let Some(lines) = self.ask(step, command.clone()).await? else {
            return Ok(None);
        };
        let parsed = match lines.first() {
            Some(line) => parse(line),
            None => Err(no_value(&command, &lines, "no answer line")),
        };
        match parsed {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                self.fail(step, &command.line, error);
                Ok(None)
            }
        }
    }

    /// Tries `commands` in order for one value: the first answer `parse`
    /// accepts. Each command that fails, or answers without the value, is
    /// the step's failure; `None` when none gave it.
    async fn first_of<T>(
        &mut self,
        step: Step,
        commands: &[Command],
        parse: impl Fn(&Command, &[String]) -> Result<T, AtError>,
    ) -> Result<Option<T>, AtError> {
        for command in commands {
            let Some(lines) = self.ask(step, command.clone()).await? else {
                continue;
            };
            match parse(command, &lines) {
                Ok(value) => return Ok(Some(value)),
                Err(error) => self.fail(step, &command.line, error),
            }
        }
        Ok(None)
    }
}

/// How often and how long `AT` is tried before a port is taken as no AT
/// port, as ModemManager probes (src/mm-port-probe.c, `at_probing`: three
/// `AT`s of three seconds each).
const AT_PROBE_TRIES: u32 = 3;
const AT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a port must stay quiet after a late answer before the next
/// command, so that no answer is taken for the next command's.
const SETTLE: Duration = Duration::from_millis(300);

/// Whether anything on `port` speaks AT: any result code, verbose or
/// numeric, to a bare `AT`. An `ERROR` counts: some firmware refuses the
/// empty command line, and ModemManager's rule is the right one
/// (src/mm-port-probe-at.c: "if the modem returned a recognizable error,
/// it can do AT commands"). Silence, binary (QCDM) or NMEA sentences with
/// no result code after three tries do not.
async fn speaks_at(port: &mut AtPort) -> Result<(), AtError> {
    for attempt in 0..AT_PROBE_TRIES {
        match port.probe("AT", AT_PROBE_TIMEOUT).await {
            Ok(result) => {
                tracing::debug!(?result, attempt, "the port answers AT");
                if attempt > 0 {
                    // The answer to an earlier try may still be on its way.
                    port.settle(SETTLE).await?;
                }
                return Ok(());
            }
            Err(AtError::Timeout(_)) => {
                // A daemon stopped after a `> ` prompt (killed mid-send)
                // leaves the modem reading our `AT` as message text: Esc
                // ends that input without sending (3GPP TS 27.005 §3.5.1).
                port.cancel_input().await?;
            }
            Err(error) => return Err(error),
        }
    }
    Err(AtError::NotAt {
        tries: AT_PROBE_TRIES,
        timeout: AT_PROBE_TIMEOUT,
    })
}

/// Identifies the modem on `port`, picks its profile and initialises it,
/// then reads how full its storages are and how the network looks. Fails
/// only when there is no modem to speak of (see the module doc); what else
/// failed is in the report.
pub async fn bring_up(port: &mut AtPort, options: &ModemOptions) -> Result<InitReport, AtError> {
    speaks_at(port).await?;
    let mut steps = BringUp {
        port,
        failures: Vec::new(),
        timeouts: 0,
    };
    // Echo off and verbose result codes (V.250 §6.2.4, §6.2.6): the
    // digester copes with echo, but not every firmware lets it go.
    steps.ask(Step::Echo, Command::plain("ATE0")).await?;
    steps.ask(Step::Verbose, Command::plain("ATV1")).await?;
    // Verbose +CME errors (3GPP TS 27.007 §9.1); some firmware lacks mode 2.
    if steps
        .ask(Step::ErrorReports, Command::plain("AT+CMEE=2"))
        .await?
        .is_none()
    {
        steps
            .ask(Step::ErrorReports, Command::plain("AT+CMEE=1"))
            .await?;
    }
    let (functionality, powered_on) = power::radio_on(&mut steps).await?;
    let sim_state = pin::sim_state(&mut steps, powered_on).await?;
    let mut identity = identity::read_modem(&mut steps).await?;
    let profile = options
        .profiles
        .detect(
            identity.manufacturer.as_deref().unwrap_or_default(),
            identity.model.as_deref().unwrap_or_default(),
        )
        .clone();
    for line in &profile.driver.init {
        steps
            .ask(Step::ProfileInit, Command::plain(line.clone()))
            .await?;
    }
    identity.iccid = identity::read_iccid(&mut steps, &profile).await?;
    let pin_state = pin::unlock(&mut steps, sim_state, identity.iccid.as_deref(), options).await?;
    identity::read_subscriber(&mut steps, &mut identity).await?;
    let setup = capabilities::init_sms_and_voice(&mut steps, &profile).await?;
    let storage_use = capabilities::storage_use(&mut steps, &setup).await?;
    let network = read_network(&mut steps).await?;
    Ok(InitReport {
        identity,
        profile,
        pin_state,
        functionality,
        powered_on,
        capabilities: setup.capabilities,
        readable_storages: setup.readable_storages,
        storage_use,
        network,
        failures: steps.failures,
    })
}

/// Signal, then registration with its operator, as the actor reads them.
async fn read_network(steps: &mut BringUp<'_>) -> Result<Network, AtError> {
    let signal_dbm = match network::signal(steps.port).await {
        Ok(signal) => signal.dbm,
        Err(AtError::Unplugged) => return Err(AtError::Unplugged),
        Err(error) => {
            steps.fail(Step::Signal, "AT+CSQ", error);
            None
        }
    };
    let registration = match network::registration(steps.port).await {
        Ok((registration, operator_error)) => {
            match operator_error {
                Some(AtError::Unplugged) => return Err(AtError::Unplugged),
                Some(error) => steps.fail(Step::Operator, "AT+COPS?", error),
                None => {}
            }
            Some(registration)
        }
        Err(AtError::Unplugged) => return Err(AtError::Unplugged),
        Err(error) => {
            steps.fail(Step::Registration, "AT+CREG?", error);
            None
        }
    };
    Ok(Network {
        signal_dbm,
        registration,
    })
}

/// Brings the modem up for the driver: its identity and profile, unless
/// something the driver cannot run without failed.
pub(crate) async fn initialise(
    port: &mut AtPort,
    path: &str,
    options: &ModemOptions,
) -> Result<(ModemIdentity, Profile), AtError> {
    let report = bring_up(port, options).await?;
    tracing::debug!(
        signal_dbm = ?report.network.signal_dbm,
        registration = ?report.network.registration.as_ref().map(|r| r.status),
        storages = ?report.storage_use,
        failed_steps = report.failures.len(),
        "brought up"
    );
    report.into_driver(path)
}

#[cfg(test)]
mod tests;
