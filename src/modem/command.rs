//! AT commands as values: the line to send, the prefix of its answer lines
//! and how long the modem may take. The builders validate what they put on
//! the line, so no caller input can end a command early or start another
//! (`\r`, `;`, quotes).
//!
//! Lines are built with `format!` rather than `at-commands`' builder: that
//! builder writes into a fixed caller buffer and does not escape quotes,
//! so it would add a length guess and still need the same
//! validation; every value here is a digit string or a checked name.

use std::time::Duration;

use super::error::AtError;

/// A command line ready for the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The line without its terminating `\r`.
    pub line: String,
    /// The prefix of the answer lines (`+CSQ:`). Lines without it still
    /// count as the answer when they are no URC (`AT+CGSN` prints bare digits).
    pub prefix: &'static str,
    pub timeout: Duration,
    /// Reading it twice does no harm, so a timeout may be retried.
    pub idempotent: bool,
}

/// How long each kind of command may take. Sending an SMS waits for the
/// network (27.005 allows it minutes; modems answer within a minute),
/// listing a full storage takes seconds at 9600 baud, a status query is
/// answered at once.
pub fn timeout_for(line: &str) -> Duration {
    let upper = line.to_ascii_uppercase();
    let secs = if upper.starts_with("AT+CMGS") || upper.starts_with("AT+CMSS") {
        60
    } else if ["AT+CUSD", "AT+COPS=", "AT+CMGL"]
        .iter()
        .any(|p| upper.starts_with(p))
    {
        30
    } else if upper.starts_with("ATD") || upper.starts_with("AT+CHLD") || upper.starts_with("ATA") {
        20
    } else if upper.starts_with("AT+CMGR")
        || upper.starts_with("AT+CMGD")
        // A SIM may take seconds to say how it is (`AT+CPIN?`).
        || upper.starts_with("AT+CPIN")
        || upper.starts_with("AT+CPMS")
        || upper.starts_with("AT+CNMA")
        || upper.starts_with("AT+CFUN")
    {
        10
    } else if upper.starts_with("AT+CSQ") || upper == "AT" {
        2
    } else {
        5
    };
    Duration::from_secs(secs)
}

impl Command {
    /// A command whose answer lines start with `prefix`.
    pub fn new(line: impl Into<String>, prefix: &'static str) -> Self {
        let line = line.into();
        let upper = line.to_ascii_uppercase();
        // An empty prefix would claim every line, final results included.
        let prefix = if prefix.is_empty() { "+NONE" } else { prefix };
        // Queries and identity reads change nothing in the modem.
        let idempotent = upper.ends_with('?')
            || upper.ends_with("=?")
            || matches!(
                upper.as_str(),
                "AT" | "AT+CSQ"
                    | "AT+CGMI"
                    | "AT+CGMM"
                    | "AT+CGMR"
                    | "AT+CGSN"
                    | "AT+CIMI"
                    | "AT+CNUM"
                    | "AT+CLCC"
            );
        Command {
            timeout: timeout_for(&line),
            line,
            prefix,
            idempotent,
        }
    }

    /// A command with no answer lines of its own (`ATE0`, `AT+CMGF=0`).
    pub fn plain(line: impl Into<String>) -> Self {
        Self::new(line, "+NONE")
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `ATD<number>;`: a voice call (ITU-T V.250 §6.3.1, the `;` makes it
    /// voice). Digits, `+`, `*`, `#` only.
    pub fn dial(number: &str) -> Result<Self, AtError> {
        let valid = !number.is_empty()
            && number.len() <= 32
            && number
                .char_indices()
                .all(|(i, c)| c.is_ascii_digit() || c == '*' || c == '#' || (c == '+' && i == 0));
        if !valid {
            return Err(AtError::Invalid(format!(
                "cannot dial {:?}: only digits, a leading +, * and # are allowed",
                crate::number::redact(number)
            )));
        }
        Ok(Self::plain(format!("ATD{number};")))
    }

    /// `AT+CUSD=1,"<code>",15` (3GPP TS 27.007 §7.15): a USSD request in
    /// the GSM default alphabet (DCS 15).
    pub fn ussd(code: &str) -> Result<Self, AtError> {
        let valid = !code.is_empty()
            && code.len() <= 160
            && code
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
        if !valid {
            return Err(AtError::Invalid(format!(
                "ussd code {code:?}: only digits, * and # are allowed"
            )));
        }
        Ok(Self::plain(format!("AT+CUSD=1,\"{code}\",15")))
    }

    /// `AT+CPMS="<mem1>"`: selects the storage read and deleted from
    /// (3GPP TS 27.005 §3.2.2).
    pub fn select_storage(storage: &str) -> Result<Self, AtError> {
        Ok(Self::new(
            format!("AT+CPMS=\"{}\"", storage_name(storage)?),
            "+CPMS:",
        ))
    }

    /// `AT+CMGS=<length>`, then the PDU after the prompt (3GPP TS 27.005 §3.5.1).
    pub fn send_pdu(tpdu_length: usize) -> Self {
        Self::new(format!("AT+CMGS={tpdu_length}"), "+CMGS:")
    }
}

/// A storage name as 27.005 §3.2.2 spells them: two or three letters.
pub fn storage_name(storage: &str) -> Result<&str, AtError> {
    if (2..=3).contains(&storage.len()) && storage.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(storage)
    } else {
        Err(AtError::Invalid(format!(
            "storage {storage:?}: expected a name like SM, ME or MT"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_the_command_kind() {
        assert_eq!(timeout_for("AT+CMGS=23"), Duration::from_secs(60));
        assert_eq!(timeout_for("AT+CSQ"), Duration::from_secs(2));
        assert_eq!(timeout_for("AT+CGMI"), Duration::from_secs(5));
        assert!(Command::new("AT+CREG?", "+CREG:").idempotent);
        assert!(!Command::plain("AT+CMGD=3").idempotent);
    }

    #[test]
    fn builders_refuse_what_would_break_the_line() {
        assert_eq!(Command::dial("+15550001").unwrap().line, "ATD+15550001;");
        assert!(Command::dial("123;ATH").is_err());
        assert!(Command::dial("1+2").is_err());
        assert!(Command::dial("").is_err());
        assert_eq!(
            Command::ussd("*100#").unwrap().line,
            "AT+CUSD=1,\"*100#\",15"
        );
        assert!(Command::ussd("*1\"00#").is_err());
        assert_eq!(
            Command::select_storage("ME").unwrap().line,
            "AT+CPMS=\"ME\""
        );
        assert!(Command::select_storage("M\"E").is_err());
    }
}
