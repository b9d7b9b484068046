//! Signal, registration and operator, read by the same functions at
//! bring-up (what `simmask probe` shows) and when the actor is asked.
//!
//! They run their commands through [`AtExec`]: a bare [`AtPort`] during
//! bring-up, the actor afterwards (which asks an idempotent command once more
//! after a timeout and notes a vanished port).

use super::command::Command;
use super::error::AtError;
use super::parse::{Registration, RegistrationStatus, Signal, parse_cops, parse_creg, parse_csq};
use super::port::AtPort;

/// Whatever runs one AT command and hands back its answer lines.
pub(crate) trait AtExec {
    async fn exec(&mut self, command: &Command) -> Result<Vec<String>, AtError>;
}

impl AtExec for AtPort {
    async fn exec(&mut self, command: &Command) -> Result<Vec<String>, AtError> {
        self.run(command).await
    }
}

/// `AT+CSQ` (3GPP TS 27.007 §8.5): signal in dBm.
pub(crate) async fn signal(at: &mut impl AtExec) -> Result<Signal, AtError> {
    let lines = at.exec(&Command::new("AT+CSQ", "+CSQ:")).await?;
    let line = lines
        .iter()
        .find(|l| l.starts_with("+CSQ:"))
        .ok_or_else(|| AtError::Parse {
            command: "+CSQ",
            line: lines.join(" | "),
            reason: "no +CSQ: line".into(),
        })?;
    parse_csq(line)
}

/// Registration with the operator when registered. The operator's own
/// failure comes back beside it: the registration stands without it.
pub(crate) async fn registration(
    at: &mut impl AtExec,
) -> Result<(Registration, Option<AtError>), AtError> {
    let mut registration = Registration::from_status(registration_status(at).await?);
    let mut operator_error = None;
    if registration.registered() {
        match operator(at).await {
            Ok(operator) => registration.operator = operator,
            Err(error) => operator_error = Some(error),
        }
    }
    Ok((registration, operator_error))
}

/// `AT+CREG?`, then `AT+CEREG?` when that shows no registration: an
/// LTE-only registration shows in +CEREG, not +CREG (27.007 §10.1.22).
async fn registration_status(at: &mut impl AtExec) -> Result<RegistrationStatus, AtError> {
    let status = status_of(at, "AT+CREG?", "+CREG:").await?;
    if matches!(
        status,
        RegistrationStatus::Home | RegistrationStatus::Roaming
    ) {
        return Ok(status);
    }
    match status_of(at, "AT+CEREG?", "+CEREG:").await {
        Ok(eps @ (RegistrationStatus::Home | RegistrationStatus::Roaming)) => Ok(eps),
        _ => Ok(status),
    }
}

async fn status_of(
    at: &mut impl AtExec,
    line: &str,
    prefix: &'static str,
) -> Result<RegistrationStatus, AtError> {
    let lines = at.exec(&Command::new(line, prefix)).await?;
    let answer = lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| AtError::Parse {
            command: "+CREG",
            line: lines.join(" | "),
            reason: format!("no {prefix} line"),
        })?;
    parse_creg(answer)
}

/// `AT+COPS?` (3GPP TS 27.007 §7.3): the operator, `None` when the modem
/// names none.
async fn operator(at: &mut impl AtExec) -> Result<Option<String>, AtError> {
    let lines = at.exec(&Command::new("AT+COPS?", "+COPS:")).await?;
    Ok(lines.iter().find_map(|l| parse_cops(l).ok().flatten()))
}
