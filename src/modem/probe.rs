//! `simmask probe PORT`: identity, signal, registration and capabilities of
//! one modem, as a JSON-serialisable report.
//!
//! The probe brings the modem up exactly as the driver does
//! ([`init::bring_up`]) and renders the report: what it prints is what the
//! driver would find. It types no PIN (it has none configured), so a locked
//! SIM shows as its `pin_state`.

use serde::Serialize;

use super::error::AtError;
pub use super::init::StorageUse;
use super::init::{self, InitReport, ModemOptions};
use super::parse::RegistrationStatus;
use super::port::AtPort;
use crate::profile::Profiles;

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    /// Empty when the modem gave none.
    pub imei: String,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    pub msisdn: Option<String>,
    pub profile: String,
    pub signal_dbm: Option<i16>,
    pub registration: Option<RegistrationStatus>,
    pub operator: Option<String>,
    /// The storages selected now with their counts (`AT+CPMS?`).
    pub storages: Vec<StorageUse>,
    /// Every storage messages can be read from (`AT+CPMS=?`, first list):
    /// known even on firmware that does not answer `AT+CPMS?`.
    pub supported_storages: Vec<String>,
    pub chld: Vec<String>,
    pub pin_state: Option<String>,
}

impl From<InitReport> for ProbeReport {
    fn from(report: InitReport) -> Self {
        let identity = report.identity;
        let registration = report.network.registration;
        ProbeReport {
            manufacturer: identity.manufacturer.unwrap_or_default(),
            model: identity.model.unwrap_or_default(),
            revision: identity.revision.unwrap_or_default(),
            imei: identity.imei.unwrap_or_default(),
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
