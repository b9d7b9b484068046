//! The SIM PIN: `AT+CPIN?`, and the configured PIN typed when the SIM asks
//! for one. A refused PIN is remembered and never sent again (three wrong
//! ones block the SIM).

use std::time::Duration;

use super::{BringUp, ModemOptions, Step, value};
use crate::modem::command::Command;
use crate::modem::error::AtError;

/// Unlocks the SIM with the configured PIN when it asks for one. Returns
/// the `+CPIN` state last read; a SIM left locked is a [`Step::Unlock`]
/// failure (`PinRequired`, `PinRefused` …).
pub(super) async fn unlock(
    steps: &mut BringUp<'_>,
    iccid: Option<&str>,
    options: &ModemOptions,
) -> Result<Option<String>, AtError> {
    let Some(state) = pin_state(steps).await? else {
        // No SIM or no answer: the identity shows it (no ICCID, no IMSI).
        return Ok(None);
    };
    if state.eq_ignore_ascii_case("READY") {
        return Ok(Some(state));
    }
    match type_pin(steps, &state, iccid, options).await {
        Ok(ready) => Ok(Some(ready)),
        Err(AtError::Unplugged) => Err(AtError::Unplugged),
        Err(error) => {
            steps.fail(Step::Unlock, "AT+CPIN", error);
            Ok(Some(state))
        }
    }
}

async fn pin_state(steps: &mut BringUp<'_>) -> Result<Option<String>, AtError> {
    let lines = steps
        .ask(Step::PinState, Command::new("AT+CPIN?", "+CPIN:"))
        .await?;
    Ok(lines.map(|lines| value(&lines, "+CPIN:")))
}

/// Sends the configured PIN for a SIM in `state` and waits until it is
/// ready; the state it reached, or why it stays locked.
async fn type_pin(
    steps: &mut BringUp<'_>,
    state: &str,
    iccid: Option<&str>,
    options: &ModemOptions,
) -> Result<String, AtError> {
    let locked = |iccid: Option<&str>| AtError::PinRequired {
        iccid: iccid.map(str::to_string),
        state: state.to_string(),
    };
    if !state.eq_ignore_ascii_case("SIM PIN") {
        // PUK, PH-SIM PIN …: nothing the driver may type on its own.
        return Err(locked(iccid));
    }
    let Some(iccid) = iccid else {
        return Err(locked(None));
    };
    if options.pin_refused(iccid) {
        return Err(AtError::PinRefused {
            iccid: iccid.to_string(),
        });
    }
    let Some(pin) = options.pin_for_iccid.get(iccid) else {
        return Err(locked(Some(iccid)));
    };
    if pin.is_empty() || pin.len() > 8 || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(AtError::Invalid(
            "configured pin must be 1 to 8 digits".into(),
        ));
    }
    // The line holds the PIN: run on the port itself, so that no failure
    // keeps it and no log line shows it.
    match steps
        .port
        .run(&Command::plain(format!("AT+CPIN=\"{pin}\"")))
        .await
    {
        Ok(_) => {}
        Err(error @ (AtError::Unplugged | AtError::Timeout(_))) => return Err(error),
        Err(error) => {
            tracing::warn!(%error, "sim pin refused; it will not be sent again");
            options.refuse_pin(iccid);
            return Err(AtError::PinRefused {
                iccid: iccid.to_string(),
            });
        }
    }
    // The SIM takes a moment to become ready after the PIN.
    for _ in 0..10 {
        if let Some(state) = pin_state(steps).await?
            && state.eq_ignore_ascii_case("READY")
        {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(AtError::PinRequired {
        iccid: Some(iccid.to_string()),
        state: "SIM PIN (not ready after unlocking)".into(),
    })
}
