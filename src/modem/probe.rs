//! `simmask probe PORT`: identity, signal, registration and capabilities of
//! one modem, as a JSON-serialisable report.

use std::time::Duration;

use serde::Serialize;

use super::error::AtError;
use super::init::{read_iccid, value};
use super::parse::{
    RegistrationStatus, fields, parse_chld_test, parse_cpms, parse_cpms_test, parse_creg, parse_csq,
};
use super::port::AtPort;
use crate::profile::Profiles;

const SHORT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
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

/// One message storage and how full it is.
#[derive(Debug, Serialize)]
pub struct StorageUse {
    pub name: String,
    pub used: u32,
    pub total: u32,
}

/// Probes the modem on `path`. Fails when the port cannot be opened or does
/// not answer `AT`.
pub async fn probe(path: &str, profiles: &Profiles) -> Result<ProbeReport, AtError> {
    let mut port = AtPort::open(path)?;
    // A modem left mid-command may need one retry of the first `AT`.
    if port.command("AT", "+NONE", SHORT).await.is_err() {
        port.command("AT", "+NONE", SHORT).await?;
    }
    port.command("ATE0", "+NONE", SHORT).await?;
    let _ = port.command("AT+CMEE=2", "+NONE", SHORT).await;
    let manufacturer = value(&port.command("AT+CGMI", "+CGMI:", SHORT).await?, "+CGMI:");
    let model = value(&port.command("AT+CGMM", "+CGMM:", SHORT).await?, "+CGMM:");
    // Some firmware (a recorded Wavecom) refuses +CGMR; the revision is
    // informative only, so its absence does not fail the probe.
    let revision = port
        .command("AT+CGMR", "+CGMR:", SHORT)
        .await
        .map(|l| value(&l, "+CGMR:"))
        .unwrap_or_default();
    let imei = value(&port.command("AT+CGSN", "+CGSN:", SHORT).await?, "+CGSN:");
    let detected = profiles.detect(&manufacturer, &model);
    let profile = detected.name.clone();
    let pin_state = port
        .command("AT+CPIN?", "+CPIN:", SHORT)
        .await
        .ok()
        .map(|l| value(&l, "+CPIN:"));
    let imsi = port
        .command("AT+CIMI", "+CIMI:", SHORT)
        .await
        .ok()
        .map(|l| value(&l, "+CIMI:"));
    let iccid = read_iccid(&mut port, Some(detected)).await?;
    let msisdn = port
        .command("AT+CNUM", "+CNUM:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| fields(l, "+CNUM:")))
        .and_then(|f| f.get(1).cloned())
        .filter(|n| !n.is_empty());
    let signal_dbm = answer(&mut port, "AT+CSQ", "+CSQ:", parse_csq)
        .await
        .and_then(|s| s.dbm);
    let registration = answer(&mut port, "AT+CREG?", "+CREG:", parse_creg).await;
    let operator = port
        .command("AT+COPS?", "+COPS:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| fields(l, "+COPS:")))
        .and_then(|f| f.get(2).cloned());
    let storages = answer(&mut port, "AT+CPMS?", "+CPMS:", parse_cpms)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(name, used, total)| StorageUse { name, used, total })
        .collect();
    let supported_storages = answer(&mut port, "AT+CPMS=?", "+CPMS:", parse_cpms_test)
        .await
        .map(|[readable, _, _]| readable)
        .unwrap_or_default();
    let chld = answer(&mut port, "AT+CHLD=?", "+CHLD:", parse_chld_test)
        .await
        .unwrap_or_default();
    Ok(ProbeReport {
        manufacturer,
        model,
        revision,
        imei,
        imsi,
        iccid,
        msisdn,
        profile,
        signal_dbm,
        registration,
        operator,
        storages,
        supported_storages,
        chld,
        pin_state,
    })
}

/// The first answer line of `command`, parsed: `None` when the modem
/// refuses the command or answers something unreadable (a probe reports
/// what it can).
async fn answer<T>(
    port: &mut AtPort,
    command: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, AtError>,
) -> Option<T> {
    let lines = port.command(command, prefix, SHORT).await.ok()?;
    lines.first().and_then(|line| parse(line).ok())
}
