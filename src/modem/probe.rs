//! `simmask probe PORT`: identity, signal, registration and capabilities of
//! one modem, as a JSON-serialisable report.

use std::time::Duration;

use serde::Serialize;

use super::error::AtError;
use super::parse::{Registration, fields, parse_chld_test, parse_cpms, parse_creg, parse_csq};
use super::port::AtPort;
use super::profile::Profiles;

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
    pub registration: Option<Registration>,
    pub operator: Option<String>,
    pub storages: Vec<(String, u32, u32)>,
    pub chld: Vec<String>,
    pub pin_state: Option<String>,
}

/// The first line of a response with its `prefix` removed, or the first line.
fn value(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim().to_string())
        .unwrap_or_default()
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
    let profile = profiles.detect(&manufacturer, &model).name.clone();
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
    let iccid = read_iccid(&mut port).await;
    let msisdn = port
        .command("AT+CNUM", "+CNUM:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| fields(l, "+CNUM:")))
        .and_then(|f| f.get(1).cloned())
        .filter(|n| !n.is_empty());
    let signal_dbm = match port.command("AT+CSQ", "+CSQ:", SHORT).await {
        Ok(l) => l
            .first()
            .and_then(|l| parse_csq(l).ok())
            .and_then(|s| s.dbm),
        Err(_) => None,
    };
    let registration = port
        .command("AT+CREG?", "+CREG:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| parse_creg(l).ok()));
    let operator = port
        .command("AT+COPS?", "+COPS:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| fields(l, "+COPS:")))
        .and_then(|f| f.get(2).cloned());
    let storages = port
        .command("AT+CPMS?", "+CPMS:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| parse_cpms(l).ok()))
        .unwrap_or_default();
    let chld = port
        .command("AT+CHLD=?", "+CHLD:", SHORT)
        .await
        .ok()
        .and_then(|l| l.first().and_then(|l| parse_chld_test(l).ok()))
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
        chld,
        pin_state,
    })
}

/// The ICCID under whichever spelling the firmware uses: 3GPP has none, so
/// vendors answer `+CCID`, `+ICCID` (SIMCom), `+QCCID` (Quectel) or `^ICCID`
/// (Huawei).
async fn read_iccid(port: &mut AtPort) -> Option<String> {
    for (command, prefix) in [
        ("AT+CCID", "+CCID:"),
        ("AT+QCCID", "+QCCID:"),
        ("AT^ICCID?", "^ICCID:"),
        ("AT+ICCID", "+ICCID:"),
    ] {
        if let Ok(lines) = port.command(command, prefix, SHORT).await {
            let raw = value(&lines, prefix).trim_matches('"').to_string();
            let iccid = if prefix == "^ICCID:" {
                unswap_nibbles(&raw)
            } else {
                raw
            };
            if !iccid.is_empty() {
                return Some(iccid);
            }
        }
    }
    None
}

/// Huawei's `^ICCID` gives the ICCID as stored on the SIM: BCD with the digits
/// of each byte swapped and `F` padding (3GPP TS 31.102 §4.2.2 EF_ICCID).
fn unswap_nibbles(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    chars
        .chunks(2)
        .flat_map(|pair| pair.iter().rev())
        .filter(|c| !c.eq_ignore_ascii_case(&'f'))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn huawei_iccid_is_nibble_swapped() {
        assert_eq!(
            super::unswap_nibbles("984411663647862149F7"),
            "8944116663746812947"
        );
        assert_eq!(super::unswap_nibbles("98"), "89");
    }
}
