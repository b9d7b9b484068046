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
    #[error("modem unplugged while a command was in flight")]
    Unplugged,
    #[error("modem port i/o: {0}")]
    Io(String),
    #[error("parsing {command} response {line:?}: {reason}")]
    Parse {
        command: &'static str,
        line: String,
        reason: String,
    },
}

impl AtError {
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
