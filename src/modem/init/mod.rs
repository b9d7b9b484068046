//! Bringing a modem up, the one path of the driver and `simmask probe`:
//! identity, profile, SIM PIN, and the 27.005/27.007 initialisation the
//! profile asks for, with capabilities probed rather than assumed (storages
//! from `AT+CPMS=?`, `+CNMI` modes from `AT+CNMI=?`, supplementary services
//! from `AT+CHLD=?`, voice from `AT+CLCC`), then how full the storages are
//! and how the network looks.
//!
//! [`bring_up`] goes on past what fails: each field of its [`InitReport`]
//! is found or missing on its own, and [`InitReport::failures`] keeps why.
//! Only a modem that is not there (no answer to `AT`, the port gone) or a
//! step that [`Step::ends_bring_up`] stops it. Whether the driver can run
//! the modem is the driver's verdict on the report
//! ([`InitReport::into_driver`]); the probe prints the report as it is.
//!
//! - `identity.rs`: manufacturer, model, revision, IMEI; ICCID and its
//!   fallbacks; IMSI and MSISDN.
//! - `pin.rs`: the SIM PIN state, and unlocking with the configured PIN.
//! - `capabilities.rs`: PDU mode, storages, message routing, call services.
//! - `report.rs`: the report, its fields and what failed.

mod capabilities;
mod identity;
mod pin;
mod report;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use self::report::{Capabilities, Failure, Identity, InitReport, Network, Step, StorageUse};
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

/// The port during bring-up, and the failures met so far.
struct BringUp<'p> {
    port: &'p mut AtPort,
    failures: Vec<Failure>,
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
    /// failure kept. The port gone, or a step bring-up cannot go on
    /// without, ends bring-up instead.
    async fn ask(&mut self, step: Step, command: Command) -> Result<Option<Vec<String>>, AtError> {
        match self.port.run(&command).await {
            Ok(lines) => Ok(Some(lines)),
            Err(AtError::Unplugged) => Err(AtError::Unplugged),
            Err(error) if step.ends_bring_up() => Err(error),
            Err(error) => {
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

    /// Runs `command` for one identity field: the answer's value as
    /// `clean` leaves it, `None` with the failure kept when there is none.
    async fn field(
        &mut self,
        step: Step,
        command: Command,
        clean: impl Fn(&str) -> &str,
    ) -> Result<Option<String>, AtError> {
        let Some(lines) = self.ask(step, command.clone()).await? else {
            return Ok(None);
        };
        let value = clean(&value(&lines, command.prefix)).to_string();
        if value.is_empty() {
            self.fail(
                step,
                &command.line,
                no_value(&command, &lines, "no value in the answer"),
            );
            return Ok(None);
        }
        Ok(Some(value))
    }
}

/// Talks a freshly opened port into a known state: answers `AT`, echo off.
async fn wake(port: &mut AtPort) -> Result<(), AtError> {
    // A modem left mid-command or still booting may miss the first `AT`s.
    let mut last = AtError::Timeout(Duration::ZERO);
    for _ in 0..3 {
        match port.run(&Command::plain("AT")).await {
            Ok(_) => {
                port.run(&Command::plain("ATE0")).await?;
                return Ok(());
            }
            Err(AtError::Unplugged) => return Err(AtError::Unplugged),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Identifies the modem on `port`, picks its profile and initialises it,
/// then reads how full its storages are and how the network looks. Fails
/// only when there is no modem to speak of (see the module doc); what else
/// failed is in the report.
pub async fn bring_up(port: &mut AtPort, options: &ModemOptions) -> Result<InitReport, AtError> {
    wake(port).await?;
    let mut steps = BringUp {
        port,
        failures: Vec::new(),
    };
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
    let pin_state = pin::unlock(&mut steps, identity.iccid.as_deref(), options).await?;
    identity::read_subscriber(&mut steps, &mut identity).await?;
    let setup = capabilities::init_sms_and_voice(&mut steps, &profile).await?;
    let storage_use = capabilities::storage_use(&mut steps).await?;
    let network = read_network(&mut steps).await?;
    Ok(InitReport {
        identity,
        profile,
        pin_state,
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
