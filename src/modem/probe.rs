//! `simmask probe PORT`: identity, signal, registration and capabilities of
//! one modem, as a JSON-serialisable report.
//!
//! The probe brings the modem up exactly as the driver does
//! ([`init::bring_up`]), configuration included, and renders the report:
//! what it prints is what the driver would find. It types no PIN (it has
//! none configured), so a locked SIM shows as its `pin_state`. A field the
//! firmware cannot give is `null`, and `failures` says why: every command
//! that failed, with the step it served.

use serde::Serialize;

use super::error::AtError;
pub use super::init::StorageUse;
use super::init::{self, IdSource, InitReport, ModemOptions, SimId, Step};
use super::parse::RegistrationStatus;
use super::port::AtPort;
use crate::profile::Profiles;

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    /// What the bank would know the SIM by: its ICCID, else `imsi:<IMSI>`.
    pub sim_id: Option<SimId>,
    /// `iccid` or `imsi`: where `sim_id` comes from.
    pub id_source: Option<IdSource>,
    pub profile: String,
    pub signal_dbm: Option<i16>,
    pub registration: Option<RegistrationStatus>,
    pub operator: Option<String>,
    /// The storages selected now with their counts (`AT+CPMS?`).
    pub storages: Vec<StorageUse>,
    /// Every storage messages can be read from (`AT+CPMS=?`, first list):
    /// known even on firmware that does not answer `AT+CPMS?`.
    pub supported_storages: Vec<String>,
    /// The call services `AT+CHLD=?` listed; `null` when it did not answer.
    pub chld: Option<Vec<String>>,
    pub pin_state: Option<String>,
    /// The functionality level found (`AT+CFUN?`: 1 full, 0 minimum, 4
    /// radio off).
    pub functionality: Option<u8>,
    /// The radio was off (`+CFUN: 0` or `4`) and the probe switched it on.
    pub powered_on: bool,
    /// Every command that failed, in the order sent.
    pub failures: Vec<ProbeFailure>,
}

/// One command that failed during bring-up.
#[derive(Debug, Serialize)]
pub struct ProbeFailure {
    /// What the command was for (`manufacturer`, `iccid`, `storages` …).
    pub step: Step,
    pub command: String,
    pub error: String,
}

impl From<InitReport> for ProbeReport {
    fn from(report: InitReport) -> Self {
        let identity = report.identity;
        let registration = report.network.registration;
        let sim_id = identity.sim_id();
        ProbeReport {
            id_source: sim_id.as_ref().map(SimId::source),
            sim_id,
            manufacturer: identity.manufacturer,
            model: identity.model,
            revision: identity.revision,
            imei: identity.imei,
            imsi: identity.imsi,
            iccid: identity.iccid,
            msisdn: identity.msisdn,
            profile: report.profile.name,
            signal_dbm: report.network.signal_dbm,
            registration: registration.as_ref().map(|r| r.status),
            operator: registration.and_then(|r| r.operator),
            storages: report.storage_use,
            supported_storages: report.readable_storages,
            chld: report.capabilities.chld,
            pin_state: report.pin_state,
            functionality: report.functionality,
            powered_on: report.powered_on,
            failures: report
                .failures
                .into_iter()
                .map(|f| ProbeFailure {
                    step: f.step,
                    command: f.command,
                    error: f.error.to_string(),
                })
                .collect(),
        }
    }
}

/// Probes the modem on `path`. Fails when the port cannot be opened or
/// holds no modem (see [`init::bring_up`]).
pub async fn probe(path: &str, profiles: &Profiles) -> Result<ProbeReport, AtError> {
    let mut port = AtPort::open(path)?;
    let report = init::bring_up(&mut port, &ModemOptions::new(profiles.clone())).await?;
    Ok(report.into())
}
