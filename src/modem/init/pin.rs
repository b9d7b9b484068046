//! The SIM: its state (`AT+CPIN?`), waited for while it wakes, and the
//! configured PIN typed when it asks for one. A refused PIN is remembered
//! and never sent again (three wrong ones block the SIM).

use std::time::Duration;

use tokio::time::Instant;

use super::{BringUp, ModemOptions, Step, value};
use crate::modem::command::Command;
use crate::modem::error::AtError;

/// How long a SIM may take to answer `AT+CPIN?` sensibly: busy after a
/// reset, or not up yet after the radio was switched on.
const SIM_WAKE: Duration = Duration::from_secs(10);
/// Between two `AT+CPIN?` while it wakes.
const SIM_POLL: Duration = Duration::from_millis(500);

/// The SIM's `+CPIN` state (`READY`, `SIM PIN` …), `None` when there is
/// none to read. A SIM that says it is busy (3GPP TS 27.007 §9.2.1 code
/// 14) is asked again for a while, as is one that the modem has just
/// powered (`waking`: it may report no SIM or a SIM failure until it is
/// up). A slow answer is waited for: `AT+CPIN?` has a long timeout.
pub(super) async fn sim_state(
    steps: &mut BringUp<'_>,
    waking: bool,
) -> Result<Option<String>, AtError> {
    let give_up = Instant::now() + SIM_WAKE;
    let command = Command::new("AT+CPIN?", "+CPIN:");
    loop {
        let error = match steps.port.run(&command).await {
            Ok(lines) if !value(&lines, "+CPIN:").is_empty() => {
                steps.timeouts = 0;
                return Ok(Some(value(&lines, "+CPIN:")));
            }
            Ok(lines) => no_state(&command, &lines),
            Err(AtError::Unplugged) => return Err(AtError::Unplugged),
            Err(error @ AtError::Timeout(_)) => {
                // Waited long already: counted like any unanswered command.
                steps.timeouts += 1;
                steps.fail(Step::PinState, &command.line, error.clone());
                if steps.timeouts >= super::TIMEOUTS_IN_A_ROW {
                    return Err(error);
                }
                return Ok(None);
            }
            Err(error) => error,
        };
        steps.timeouts = 0;
        let asleep = waking && matches!(error, AtError::Cme { .. } | AtError::Error);
        if !(busy(&error) || asleep) || Instant::now() >= give_up {
            steps.fail(Step::PinState, &command.line, error);
            return Ok(None);
        }
        tracing::debug!(%error, "the SIM is not ready yet; asking again");
        tokio::time::sleep(SIM_POLL).await;
    }
}

/// `+CME ERROR: 14` or its text, "SIM busy" (3GPP TS 27.007 §9.2.1).
fn busy(error: &AtError) -> bool {
    match error {
        AtError::Cme { code: Some(14), .. } => true,
        AtError::Cme { text, .. } => text.to_ascii_lowercase().contains("busy"),
        _ => false,
    }
}

fn no_state(command: &Command, lines: &[String]) -> AtError {
    super::no_value(command, lines, "no SIM state in the answer")
}

/// Unlocks the SIM with the configured PIN when `state` (from
/// [`sim_state`]) asks for one. Returns the `+CPIN` state last read; a SIM
/// left locked is a [`Step::Unlock`] failure (`PinRequired`, `PinRefused` …).
pub(super) async fn unlock(
    steps: &mut BringUp<'_>,
    state: Option<String>,
    iccid: Option<&str>,
    options: &ModemOptions,
) -> Result<Option<String>, AtError> {
    let Some(state) = state else {
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
        if let Some(state) = sim_state(steps, false).await?
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
