//! Who the modem and its SIM are: what the modem says of itself, the ICCID
//! under whichever command the firmware knows, and what the SIM says once
//! unlocked. Each field is found or missing on its own.

use super::{BringUp, Identity, Step, no_value, value};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::parse::{parse_cnum, parse_crsm};
use crate::profile::Profile;

/// Manufacturer, model, revision and IMEI.
pub(super) async fn read_modem(steps: &mut BringUp<'_>) -> Result<Identity, AtError> {
    let manufacturer = steps
        .field(
            Step::Manufacturer,
            Command::new("AT+CGMI", "+CGMI:"),
            as_given,
        )
        .await?;
    let model = steps
        .field(Step::Model, Command::new("AT+CGMM", "+CGMM:"), as_given)
        .await?;
    // Some firmware (a recorded Wavecom) refuses +CGMR.
    let revision = steps
        .field(Step::Revision, Command::new("AT+CGMR", "+CGMR:"), as_given)
        .await?;
    let imei = steps
        .field(Step::Imei, Command::new("AT+CGSN", "+CGSN:"), unquoted)
        .await?;
    Ok(Identity {
        manufacturer,
        model,
        revision,
        imei,
        ..Identity::default()
    })
}

/// IMSI and MSISDN: what the SIM says once unlocked.
pub(super) async fn read_subscriber(
    steps: &mut BringUp<'_>,
    identity: &mut Identity,
) -> Result<(), AtError> {
    identity.imsi = steps
        .field(Step::Imsi, Command::new("AT+CIMI", "+CIMI:"), as_given)
        .await?;
    let cnum = Command::new("AT+CNUM", "+CNUM:");
    let Some(lines) = steps.ask(Step::Msisdn, cnum.clone()).await? else {
        return Ok(());
    };
    identity.msisdn = lines.iter().find_map(|l| parse_cnum(l).ok().flatten());
    if identity.msisdn.is_none() {
        let error = no_value(&cnum, &lines, "the SIM does not know its number");
        steps.fail(Step::Msisdn, &cnum.line, error);
    }
    Ok(())
}

/// The ICCID under whichever spelling the firmware uses: 3GPP has none, so
/// vendors answer `+CCID`, `+ICCID` (SIMCom), `+QCCID` (Quectel) or `^ICCID`
/// (Huawei). The profile's own command is tried first.
pub(super) async fn read_iccid(
    steps: &mut BringUp<'_>,
    profile: &Profile,
) -> Result<Option<String>, AtError> {
    // A bare-digits answer (some SIMCom firmware) has no prefix to strip.
    let prefix = match profile.commands.iccid_prefix.trim() {
        "+QCCID:" => "+QCCID:",
        "^ICCID:" => "^ICCID:",
        "+ICCID:" => "+ICCID:",
        _ => "+CCID:",
    };
    let mut tries = vec![(
        profile.commands.iccid.clone(),
        prefix,
        profile.commands.iccid_swapped,
    )];
    for (command, prefix, swapped) in [
        ("AT+CCID", "+CCID:", false),
        ("AT+QCCID", "+QCCID:", false),
        ("AT^ICCID?", "^ICCID:", true),
        ("AT+ICCID", "+ICCID:", false),
    ] {
        if !tries
            .iter()
            .any(|(c, _, _)| c.eq_ignore_ascii_case(command))
        {
            tries.push((command.to_string(), prefix, swapped));
        }
    }
    for (command, prefix, swapped) in tries {
        let command = Command::new(command, prefix);
        let Some(lines) = steps.ask(Step::Iccid, command.clone()).await? else {
            continue;
        };
        let raw = value(&lines, prefix).trim_matches('"').to_string();
        let iccid = if swapped { unswap_nibbles(&raw) } else { raw };
        if !iccid.is_empty() && iccid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(Some(iccid));
        }
        let error = no_value(&command, &lines, "no ICCID in the answer");
        steps.fail(Step::Iccid, &command.line, error);
    }
    // Last resort, standard on any 27.007 modem: read EF_ICCID (file 2FE2,
    // 10 bytes) through restricted SIM access (3GPP TS 27.007 §8.18).
    let crsm = Command::new("AT+CRSM=176,12258,0,0,10", "+CRSM:");
    let Some(lines) = steps.ask(Step::Iccid, crsm.clone()).await? else {
        return Ok(None);
    };
    let iccid = lines
        .iter()
        .find_map(|line| parse_crsm(line).ok().flatten())
        .map(|raw| unswap_nibbles(&raw))
        .filter(|iccid| !iccid.is_empty() && iccid.chars().all(|c| c.is_ascii_digit()));
    if iccid.is_none() {
        let error = no_value(&crsm, &lines, "no EF_ICCID in the answer");
        steps.fail(Step::Iccid, &crsm.line, error);
    }
    Ok(iccid)
}

fn as_given(value: &str) -> &str {
    value
}

fn unquoted(value: &str) -> &str {
    value.trim_matches('"')
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
