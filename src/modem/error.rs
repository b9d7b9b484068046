//! Errors of the AT engine.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AtError {
    #[error("at command timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// `+CME ERROR` (3GPP TS 27.007 §9.2): mobile equipment error.
    #[error("at command failed: +CME ERROR: {}", code_or_text(.code, .text))]
    Cme { code: Option<u16>, text: String },
    /// `+CMS ERROR` (3GPP TS 27.005 §3.2.5): message service error.
    #[error("at command failed: +CMS ERROR: {}", code_or_text(.code, .text))]
    Cms { code: Option<u16>, text: String },
    #[error("at command failed: ERROR")]
    Error,
    #[error("at command not supported by the modem")]
    NotSupported,
    /// The port is gone (read error, EOF, device removed): retryable once
    /// the modem is back.
    #[error("modem unplugged")]
    Unplugged,
    /// A call attempt ended with `NO CARRIER`, `BUSY`, `NO ANSWER` or
    /// `NO DIALTONE` (ITU-T V.250 §5.7.1).
    #[error("call ended: {0}")]
    CallEnded(&'static str),
    /// The request itself is unusable (a number, code or storage name that
    /// cannot be sent to a modem).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The SIM wants a PIN (or PUK) the configuration does not give.
    #[error("sim locked: +CPIN: {state}, no usable pin configured")]
    PinRequired {
        iccid: Option<String>,
        state: String,
    },
    /// The configured PIN was refused once; it is never tried again, since
    /// three wrong tries block the SIM (3GPP TS 31.101 §9.5).
    #[error("sim pin refused; not retried (three wrong pins block the sim)")]
    PinRefused { iccid: String },
    /// The modem actor has stopped (shut down or its task ended).
    #[error("modem actor stopped")]
    Stopped,
    #[error("modem port i/o: {0}")]
    Io(String),
    /// Nothing on the port answers like an AT command interpreter: no
    /// result code at all, verbose or numeric (ITU-T V.250 §5.7), to
    /// repeated `AT`s. A silent interface, or one sending binary (QCDM)
    /// or NMEA sentences.
    #[error("no AT result code to {tries} tries of AT, {timeout:?} each")]
    NotAt {
        tries: u32,
        timeout: std::time::Duration,
    },
    // The line may hold a caller's number or a whole PDU: shown redacted.
    #[error("parsing {command} response {:?}: {reason}", crate::number::redact_text(.line))]
    Parse {
        command: &'static str,
        line: String,
        reason: String,
    },
}

impl AtError {
    /// Worth retrying later: the modem is gone or slow, not refusing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AtError::Unplugged | AtError::Timeout(_))
    }

    /// Builds a CME/CMS error from the text after `ERROR:`, numeric or verbose.
    pub fn cme(raw: &str) -> Self {
        let (code, text) = split_code(raw);
        AtError::Cme { code, text }
    }

    /// A verbose `+CMS ERROR` text gets its 27.005 code too, so callers can
    /// classify it either way.
    pub fn cms(raw: &str) -> Self {
        let (code, text) = split_code(raw);
        let code = code.or_else(|| cms_code_of(&text));
        AtError::Cms { code, text }
    }
}

/// The codes of 3GPP TS 27.005 §3.2.5 by their verbose text.
const CMS_TEXTS: &[(u16, &str)] = &[
    (300, "ME failure"),
    (301, "SMS service of ME reserved"),
    (302, "operation not allowed"),
    (303, "operation not supported"),
    (304, "invalid PDU mode parameter"),
    (305, "invalid text mode parameter"),
    (310, "(U)SIM not inserted"),
    (310, "SIM not inserted"),
    (311, "(U)SIM PIN required"),
    (311, "SIM PIN required"),
    (312, "PH-(U)SIM PIN required"),
    (312, "PH-SIM PIN required"),
    (313, "(U)SIM failure"),
    (313, "SIM failure"),
    (314, "(U)SIM busy"),
    (314, "SIM busy"),
    (315, "(U)SIM wrong"),
    (315, "SIM wrong"),
    (316, "(U)SIM PUK required"),
    (316, "SIM PUK required"),
    (317, "(U)SIM PIN2 required"),
    (317, "SIM PIN2 required"),
    (318, "(U)SIM PUK2 required"),
    (318, "SIM PUK2 required"),
    (320, "memory failure"),
    (321, "invalid memory index"),
    (322, "memory full"),
    (330, "SMSC address unknown"),
    (331, "no network service"),
    (332, "network timeout"),
    (340, "no +CNMA acknowledgement expected"),
    (500, "unknown error"),
];

fn cms_code_of(text: &str) -> Option<u16> {
    CMS_TEXTS
        .iter()
        .find(|(_, known)| known.eq_ignore_ascii_case(text))
        .map(|(code, _)| *code)
}

/// The code as the modem gave it: the number and the verbose text.
fn code_or_text(code: &Option<u16>, text: &str) -> String {
    match code {
        Some(code) if text.is_empty() => code.to_string(),
        Some(code) => format!("{code} ({text})"),
        None => text.to_string(),
    }
}

fn split_code(raw: &str) -> (Option<u16>, String) {
    match raw.trim().parse::<u16>() {
        Ok(code) => (Some(code), String::new()),
        Err(_) => (None, raw.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_the_command_but_not_the_caller() {
        let error = AtError::Parse {
            command: "+CLCC",
            line: r#"+CLCC: 1,1,4,0,0,"+447911123456",145"#.into(),
            reason: "bad state".into(),
        };
        assert_eq!(
            error.to_string(),
            r#"parsing +CLCC response "+CLCC: 1,1,4,0,0,\"+*********456\",145": bad state"#
        );
    }

    #[test]
    fn errors_read_as_the_modem_said_them() {
        assert_eq!(
            AtError::cms("500").to_string(),
            "at command failed: +CMS ERROR: 500"
        );
        assert_eq!(
            AtError::cms("memory full"),
            AtError::Cms {
                code: Some(322),
                text: "memory full".into()
            }
        );
        assert_eq!(
            AtError::cme("SIM PIN required").to_string(),
            "at command failed: +CME ERROR: SIM PIN required"
        );
    }
}
