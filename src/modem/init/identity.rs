//! Who the modem and its SIM are: what the modem says of itself, each field
//! through every command that can give it (`+CGMx`, then V.250's `+GMx`,
//! then `ATI`, as ModemManager asks), the ICCID under whichever command the
//! firmware knows, and what the SIM says once unlocked. Each field is found
//! or missing on its own.

use super::{BringUp, Identity, Step, no_value, value};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::parse::{
    iccid_from_ef, parse_ati, parse_cgmi, parse_cgmm, parse_cgmr, parse_cgsn, parse_cimi,
    parse_cnum, parse_crsm,
};
use crate::profile::Profile;

/// A text answer parsed into a value, or the answer as the step's failure.
fn text(
    parse: fn(&[String]) -> Option<String>,
) -> impl Fn(&Command, &[String]) -> Result<String, AtError> {
    move |command, lines| {
        parse(lines).ok_or_else(|| no_value(command, lines, "no value in the answer"))
    }
}

/// An answer checked by `parse`, its error naming the command asked.
fn checked(
    parse: fn(&[String]) -> Result<String, AtError>,
) -> impl Fn(&Command, &[String]) -> Result<String, AtError> {
    move |command, lines| {
        parse(lines).map_err(|error| match error {
            AtError::Parse { line, reason, .. } => AtError::Parse {
                command: command.prefix.trim_end_matches(':'),
                line,
                reason,
            },
            other => other,
        })
    }
}

/// Manufacturer, model, revision and IMEI: each from its 27.007 command,
/// then the V.250 one, then what `ATI` says (asked once, only when a field
/// is still missing).
pub(super) async fn read_modem(steps: &mut BringUp<'_>) -> Result<Identity, AtError> {
    let manufacturer = steps
        .first_of(
            Step::Manufacturer,
            &[
                Command::new("AT+CGMI", "+CGMI:"),
                Command::new("AT+GMI", "+GMI:"),
            ],
            text(parse_cgmi),
        )
        .await?;
    let model = steps
        .first_of(
            Step::Model,
            &[
                Command::new("AT+CGMM", "+CGMM:"),
                Command::new("AT+GMM", "+GMM:"),
            ],
            text(parse_cgmm),
        )
        .await?;
    // Some firmware (a recorded Wavecom) refuses +CGMR.
    let revision = steps
        .first_of(
            Step::Revision,
            &[
                Command::new("AT+CGMR", "+CGMR:"),
                Command::new("AT+GMR", "+GMR:"),
            ],
            text(parse_cgmr),
        )
        .await?;
    let imei = steps
        .first_of(
            Step::Imei,
            &[
                Command::new("AT+CGSN", "+CGSN:"),
                Command::new("AT+GSN", "+GSN:"),
            ],
            checked(parse_cgsn),
        )
        .await?;
    let mut identity = Identity {
        manufacturer,
        model,
        revision,
        imei,
        ..Identity::default()
    };
    if identity.manufacturer.is_none()
        || identity.model.is_none()
        || identity.revision.is_none()
        || identity.imei.is_none()
    {
        from_ati(steps, &mut identity).await?;
    }
    Ok(identity)
}

/// Fills what is still missing from `ATI` (ITU-T V.250 §6.1.3); each field
/// it does not give gets a failure of its own.
async fn from_ati(steps: &mut BringUp<'_>, identity: &mut Identity) -> Result<(), AtError> {
    let missing = [
        (Step::Manufacturer, identity.manufacturer.is_none()),
        (Step::Model, identity.model.is_none()),
        (Step::Revision, identity.revision.is_none()),
        (Step::Imei, identity.imei.is_none()),
    ];
    let ati = Command::new("ATI", "+NONE");
    // One answer serves every field: asked under the first one missing.
    let first = missing
        .iter()
        .find(|(_, missing)| *missing)
        .map_or(Step::Manufacturer, |(step, _)| *step);
    let Some(lines) = steps.ask(first, ati.clone()).await? else {
        // The same refusal stands for the other fields missing.
        let refusal = steps.failures.last().map(|f| f.error.clone());
        for (step, missing) in missing {
            if missing && step != first {
                steps.fail(step, &ati.line, refusal.clone().unwrap_or(AtError::Error));
            }
        }
        return Ok(());
    };
    let found = parse_ati(&lines);
    for (step, slot, value) in [
        (
            Step::Manufacturer,
            &mut identity.manufacturer,
            found.manufacturer,
        ),
        (Step::Model, &mut identity.model, found.model),
        (Step::Revision, &mut identity.revision, found.revision),
        (Step::Imei, &mut identity.imei, found.imei),
    ] {
        if slot.is_some() {
            continue;
        }
        match value {
            Some(value) => *slot = Some(value),
            None => steps.fail(
                step,
                &ati.line,
                AtError::Parse {
                    command: "ATI",
                    line: lines.join(" | "),
                    reason: "not in the answer".into(),
                },
            ),
        }
    }
    Ok(())
}

/// IMSI and MSISDN: what the SIM says once unlocked.
pub(super) async fn read_subscriber(
    steps: &mut BringUp<'_>,
    identity: &mut Identity,
) -> Result<(), AtError> {
    identity.imsi = steps
        .first_of(
            Step::Imsi,
            &[Command::new("AT+CIMI", "+CIMI:")],
            checked(parse_cimi),
        )
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
    // A profile without an ICCID command of its own names none.
    let mut tries: Vec<(String, &str, bool)> = Vec::new();
    if !profile.commands.iccid.trim().is_empty() {
        tries.push((
            profile.commands.iccid.clone(),
            prefix,
            profile.commands.iccid_swapped,
        ));
    }
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
        let iccid = if swapped {
            iccid_from_ef(&raw).unwrap_or_default()
        } else {
            raw
        };
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
        .and_then(|raw| iccid_from_ef(&raw));
    if iccid.is_none() {
        let error = no_value(&crsm, &lines, "no EF_ICCID in the answer");
        steps.fail(Step::Iccid, &crsm.line, error);
    }
    Ok(iccid)
}
