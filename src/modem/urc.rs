//! Unsolicited result codes as typed events, parsed from the lines the
//! digester groups into `Digest::Urc`.

use super::error::AtError;
use super::parse::{Call, RegistrationStatus, fields, parse_clcc, parse_cmti, parse_creg};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: an SMS was stored (3GPP TS 27.005 §3.4.1).
    SmsStored {
        storage: String,
        index: u32,
    },
    /// `+CMT: [<alpha>],<length>` + PDU: an SMS routed directly (TS 27.005 §3.4.1).
    SmsDelivered {
        pdu_hex: String,
    },
    /// `+CDS: <length>` + PDU: a status report routed directly (TS 27.005 §3.4.1).
    StatusReport {
        pdu_hex: String,
    },
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    StatusReportStored {
        storage: String,
        index: u32,
    },
    /// `RING` or `+CRING: <type>` (3GPP TS 27.007 §6.11).
    Ring,
    /// `+CLIP: <number>,<type>` (3GPP TS 27.007 §7.6); the number may be withheld.
    CallerId {
        number: Option<String>,
    },
    /// `+CCWA: <number>,<type>,<class>` (3GPP TS 27.007 §7.12).
    CallWaiting {
        number: Option<String>,
    },
    Call(Call),
    /// A vendor call-progress report (Huawei `^ORIG`, `^CONF`, `^CONN`):
    /// the call list changed.
    CallProgress,
    /// `NO CARRIER` or `BUSY` with no command in flight: a call ended.
    CallEnded {
        busy: bool,
    },
    /// `+CUSD: <m>[,<str>,<dcs>]` (3GPP TS 27.007 §7.15).
    Ussd {
        status: u8,
        text: Option<String>,
    },
    Registration(RegistrationStatus),
    /// A key the other side of a call pressed (DTMF detection, a vendor
    /// report): SIMCom `+DTMF: <key>[,<last time>]` after `AT+DDET=1`,
    /// Quectel `+QTONEDET: <ASCII code>` after `AT+QTONEDET=1`.
    Dtmf(char),
    /// Vendor noise recognised and ignored (`^RSSI`, `RDY`, `+QIND`, …).
    Ignored,
}

/// The keys of a phone's keypad and the four more of DTMF (ITU-T Q.23).
fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn dtmf_error(command: &'static str, line: &str) -> AtError {
    AtError::Parse {
        command,
        line: line.to_string(),
        reason: "not a DTMF key".to_string(),
    }
}

fn quoted_number(line: &str, prefix: &str) -> Option<String> {
    fields(line, prefix)?
        .into_iter()
        .next()
        .filter(|n| !n.is_empty())
}

/// Types the URC in `lines` (one line, or two for `+CMT`/`+CDS`).
pub fn parse_urc(lines: &[String]) -> Result<Urc, AtError> {
    let Some(first) = lines.first() else {
        return Ok(Urc::Ignored);
    };
    let line = first.as_str();
    let pdu = || lines.get(1).cloned().unwrap_or_default();
    Ok(if line.starts_with("+CMTI:") {
        let (storage, index) = parse_cmti(line)?;
        Urc::SmsStored { storage, index }
    } else if line.starts_with("+CDSI:") {
        let (storage, index) = parse_cmti(&line.replacen("+CDSI:", "+CMTI:", 1))?;
        Urc::StatusReportStored { storage, index }
    } else if line.starts_with("+CMT:") {
        Urc::SmsDelivered { pdu_hex: pdu() }
    } else if line.starts_with("+CDS:") {
        Urc::StatusReport { pdu_hex: pdu() }
    } else if line == "RING" || line.starts_with("+CRING:") {
        Urc::Ring
    } else if line.starts_with("+CLIP:") {
        Urc::CallerId {
            number: quoted_number(line, "+CLIP:"),
        }
    } else if line.starts_with("+CCWA:") {
        Urc::CallWaiting {
            number: quoted_number(line, "+CCWA:"),
        }
    } else if line.starts_with("+CLCC:") {
        match parse_clcc(line)? {
            Some(call) => Urc::Call(call),
            None => Urc::CallProgress,
        }
    } else if line == "NO CARRIER" || line == "BUSY" || line == "NO ANSWER" {
        Urc::CallEnded {
            busy: line == "BUSY",
        }
    } else if line.starts_with("^CEND:") || line.starts_with("HANGUP:") {
        // Vendor call-end reports (Huawei ^CEND, ZTE HANGUP).
        Urc::CallEnded { busy: false }
    } else if line.starts_with("^ORIG:") || line.starts_with("^CONF:") || line.starts_with("^CONN:")
    {
        // Huawei call progress: dialled, alerting, connected.
        Urc::CallProgress
    } else if line.starts_with("+CUSD:") {
        let joined = lines.join("\n");
        let f = fields(&joined, "+CUSD:").unwrap_or_default();
        let status = f
            .first()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| AtError::Parse {
                command: "+CUSD",
                line: line.to_string(),
                reason: "missing status".to_string(),
            })?;
        Urc::Ussd {
            status,
            text: f.get(1).cloned(),
        }
    } else if let Some(rest) = line.strip_prefix("+DTMF:") {
        // +DTMF: 5  or  +DTMF: 5,160 (report mode 1: the key's length in ms)
        let key = rest.split(',').next().unwrap_or_default().trim();
        let key = key.trim_matches('"');
        let mut chars = key.chars();
        match (chars.next().filter(|c| is_dtmf_key(*c)), chars.next()) {
            (Some(key), None) => Urc::Dtmf(key.to_ascii_uppercase()),
            _ => return Err(dtmf_error("+DTMF", line)),
        }
    } else if let Some(rest) = line.strip_prefix("+QTONEDET:") {
        // +QTONEDET: 53  (the ASCII code of "5"; 35 is "#", 42 "*")
        let code = rest.split(',').next().unwrap_or_default().trim();
        match code.parse::<u8>().map(char::from) {
            Ok(key) if is_dtmf_key(key) => Urc::Dtmf(key),
            _ => return Err(dtmf_error("+QTONEDET", line)),
        }
    } else if line.starts_with("+CREG:")
        || line.starts_with("+CGREG:")
        || line.starts_with("+CEREG:")
    {
        Urc::Registration(parse_creg(line)?)
    } else {
        Urc::Ignored
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urc(lines: &[&str]) -> Urc {
        let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        parse_urc(&owned).unwrap()
    }

    // Formats from 3GPP TS 27.005 §3.4.1 and TS 27.007 §6.11, §7.6, §7.12, §7.15.
    #[test]
    fn typed_urcs() {
        assert_eq!(
            urc(&["+CMTI: \"ME\",7"]),
            Urc::SmsStored {
                storage: "ME".into(),
                index: 7
            }
        );
        assert_eq!(
            urc(&["+CDS: 25", "0006"]),
            Urc::StatusReport {
                pdu_hex: "0006".into()
            }
        );
        assert_eq!(urc(&["+CRING: VOICE"]), Urc::Ring);
        assert_eq!(
            urc(&["+CLIP: \"+15550001\",145,,,,0"]),
            Urc::CallerId {
                number: Some("+15550001".into())
            }
        );
        assert_eq!(
            urc(&["+CLIP: \"\",128,,,,1"]),
            Urc::CallerId { number: None }
        );
        assert_eq!(
            urc(&["+CUSD: 0,\"Balance: 5.00\",15"]),
            Urc::Ussd {
                status: 0,
                text: Some("Balance: 5.00".into())
            }
        );
        assert_eq!(urc(&["BUSY"]), Urc::CallEnded { busy: true });
        assert_eq!(urc(&["^RSSI: 17"]), Urc::Ignored);
        assert_eq!(
            urc(&["+CREG: 1"]),
            Urc::Registration(RegistrationStatus::Home)
        );
        assert!(parse_urc(&["+CMTI: \"SM\",x".to_string()]).is_err());
    }

    // SIMCom SIM800 Series AT Command Manual §16.2.1 (AT+DDET): report mode
    // 0 gives the key alone, mode 1 the key and its length; some firmware
    // leaves out the space. Quectel EC25 AT Commands Manual (AT+QTONEDET):
    // the key's ASCII code.
    #[test]
    fn keys_pressed_in_either_dialect() {
        assert_eq!(urc(&["+DTMF: 5"]), Urc::Dtmf('5'));
        assert_eq!(urc(&["+DTMF:#"]), Urc::Dtmf('#'));
        assert_eq!(urc(&["+DTMF: 7,160"]), Urc::Dtmf('7'));
        assert_eq!(urc(&["+QTONEDET: 53"]), Urc::Dtmf('5'));
        assert_eq!(urc(&["+QTONEDET: 35"]), Urc::Dtmf('#'));
        assert_eq!(urc(&["+QTONEDET: 42,100"]), Urc::Dtmf('*'));
        for bad in ["+DTMF: 55", "+DTMF: x", "+QTONEDET: 70", "+QTONEDET: x"] {
            assert!(parse_urc(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod never_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any line pair after any URC prefix types or errors, never panics.
        #[test]
        fn parse_urc_never_panics(
            prefix in prop::sample::select(vec![
                "+CMTI:", "+CDSI:", "+CMT:", "+CDS:", "+CLIP:", "+CCWA:", "+CLCC:",
                "+CUSD:", "+CREG:", "+CEREG:", "^CEND:", "RING", "+DTMF:", "+QTONEDET:", "",
            ]),
            rest in "\\PC{0,60}",
            second in "\\PC{0,60}",
        ) {
            let _ = parse_urc(&[format!("{prefix}{rest}"), second]);
            let _ = parse_urc(&[format!("{prefix}{rest}")]);
        }
    }
}
