//! Errors of the AT engine.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AtError {
    #[error("at command timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// `+CME ERROR` (3GPP TS 27.007 §9.2): mobile equipment error.
    #[error("at command failed: +CME ERROR {code:?} {text}")]
    Cme { code: Option<u16>, text: String },
    /// `+CMS ERROR` (3GPP TS 27.005 §3.2.5): message service error.
    #[error("at command failed: +CMS ERROR {code:?} {text}")]
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

    pub fn cms(raw: &str) -> Self {
        let (code, text) = split_code(raw);
        AtError::Cms { code, text }
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
}
