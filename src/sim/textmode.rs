//! Text-mode (`AT+CMGF=1`) renderings of stored and delivered messages,
//! 3GPP TS 27.005 §3.4.1 (`+CMT`, `+CDS`), §3.4.2 (`+CMGL`), §3.4.3 (`+CMGR`),
//! and the `+CSCS` character sets text-mode data travels in.

use crate::pdu::{Address, Decoded, Encoding, Timestamp, Tpdu, TypeOfNumber};

/// 3GPP TS 27.007 §5.5 `+CSCS`: how text-mode strings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// The GSM 7-bit default alphabet, shown here as its Unicode characters.
    Gsm,
    /// ITU-T T.50 (ASCII).
    Ira,
    /// UCS2 as four hex digits per UTF-16 unit.
    Ucs2,
    /// Octets as hex.
    Hex,
}

impl Charset {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim_matches('"').to_ascii_uppercase().as_str() {
            "GSM" => Some(Self::Gsm),
            "IRA" => Some(Self::Ira),
            "UCS2" => Some(Self::Ucs2),
            "HEX" => Some(Self::Hex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gsm => "GSM",
            Self::Ira => "IRA",
            Self::Ucs2 => "UCS2",
            Self::Hex => "HEX",
        }
    }

    /// A string (number or text) as the terminal writes it in this set.
    pub fn encode(self, text: &str) -> String {
        match self {
            Self::Ucs2 => text
                .encode_utf16()
                .map(|unit| format!("{unit:04X}"))
                .collect(),
            Self::Hex => text.bytes().map(|b| format!("{b:02X}")).collect(),
            Self::Gsm | Self::Ira => text.to_string(),
        }
    }

    /// A string the terminal typed in this set; `None` when it is not valid
    /// (odd hex, a lone surrogate).
    pub fn decode(self, typed: &str) -> Option<String> {
        match self {
            Self::Ucs2 => {
                let units = hex_groups(typed, 4)?;
                String::from_utf16(&units).ok()
            }
            Self::Hex => {
                let octets: Vec<u8> = hex_groups(typed, 2)?
                    .into_iter()
                    .map(|unit| unit as u8)
                    .collect();
                String::from_utf8(octets).ok()
            }
            Self::Gsm | Self::Ira => Some(typed.to_string()),
        }
    }
}

fn hex_groups(typed: &str, width: usize) -> Option<Vec<u16>> {
    let typed = typed.trim();
    if !typed.len().is_multiple_of(width) || !typed.is_ascii() {
        return None;
    }
    (0..typed.len())
        .step_by(width)
        .map(|i| u16::from_str_radix(&typed[i..i + width], 16).ok())
        .collect()
}

/// `"yy/MM/dd,hh:mm:ss±zz"`, the time zone in quarter hours (27.005 §3.3.2 `<scts>`).
pub fn scts(t: &Timestamp) -> String {
    let sign = if t.offset_minutes < 0 { '-' } else { '+' };
    format!(
        "\"{:02}/{:02}/{:02},{:02}:{:02}:{:02}{sign}{:02}\"",
        t.year % 100,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.offset_minutes.unsigned_abs() / 15
    )
}

/// `<toda>`/`<tooa>`: the type-of-address octet (145 international, 129 unknown).
pub fn type_of_address(address: &Address) -> u8 {
    let ton = match address.ton {
        TypeOfNumber::International => 1,
        TypeOfNumber::National => 2,
        TypeOfNumber::Alphanumeric => 5,
        _ => 0,
    };
    0x80 | (ton << 4) | (address.npi & 0x0F)
}

fn quoted(address: &Address, charset: Charset) -> String {
    format!("\"{}\"", charset.encode(&address.to_string()))
}

/// The data line: UCS2 and 8-bit messages travel as hex whatever `+CSCS`
/// says (27.005 §3.1 `<data>`), 7-bit ones in the terminal's set.
pub fn data(decoded: &Decoded, charset: Charset) -> String {
    let user_data = match &decoded.pdu.tpdu {
        Tpdu::Deliver(d) => &d.user_data,
        Tpdu::Submit(s) => &s.user_data,
        Tpdu::StatusReport(_) => return String::new(),
    };
    match user_data.encoding {
        Encoding::Gsm7 => charset.encode(&user_data.text),
        Encoding::Ucs2 => Charset::Ucs2.encode(&user_data.text),
        Encoding::EightBit => user_data.data.iter().map(|b| format!("{b:02X}")).collect(),
    }
}

/// The fields after `+CMT: ` (27.005 §3.4.1), `csdh` adding the details.
pub fn cmt_header(decoded: &Decoded, charset: Charset, csdh: bool) -> Option<String> {
    let Tpdu::Deliver(deliver) = &decoded.pdu.tpdu else {
        return None;
    };
    let mut header = format!(
        "{},,{}",
        quoted(&deliver.originator, charset),
        scts(&deliver.timestamp)
    );
    if csdh {
        header.push_str(&format!(
            ",{},{},{},{},{},{},{}",
            type_of_address(&deliver.originator),
            first_octet(decoded),
            deliver.pid,
            deliver.dcs,
            decoded
                .pdu
                .smsc
                .as_ref()
                .map_or("\"\"".to_string(), |a| quoted(a, charset)),
            decoded.pdu.smsc.as_ref().map_or(129, type_of_address),
            text_length(decoded)
        ));
    }
    Some(header)
}

/// The fields after `+CMGR: ` for a stored message (27.005 §3.4.3).
pub fn cmgr_header(decoded: &Decoded, stat: &str, charset: Charset, csdh: bool) -> String {
    match &decoded.pdu.tpdu {
        Tpdu::Deliver(_) => format!(
            "\"{stat}\",{}",
            cmt_header(decoded, charset, csdh).unwrap_or_default()
        ),
        Tpdu::Submit(submit) => {
            let mut header = format!("\"{stat}\",{},", quoted(&submit.destination, charset));
            if csdh {
                header.push_str(&format!(
                    ",{},{},{},{},{},\"\",,\"\",129,{}",
                    type_of_address(&submit.destination),
                    first_octet(decoded),
                    submit.pid,
                    submit.dcs,
                    submit.message_reference,
                    text_length(decoded)
                ));
            }
            header
        }
        Tpdu::StatusReport(report) => format!(
            "\"{stat}\",{}",
            cds_fields(decoded, report.message_reference, charset)
        ),
    }
}

/// The fields after `+CMGL: <index>,` (27.005 §3.4.2).
pub fn cmgl_header(decoded: &Decoded, stat: &str, charset: Charset, csdh: bool) -> String {
    match &decoded.pdu.tpdu {
        Tpdu::Deliver(deliver) => {
            let mut header = format!(
                "\"{stat}\",{},,{}",
                quoted(&deliver.originator, charset),
                scts(&deliver.timestamp)
            );
            if csdh {
                header.push_str(&format!(
                    ",{},{}",
                    type_of_address(&deliver.originator),
                    text_length(decoded)
                ));
            }
            header
        }
        Tpdu::Submit(submit) => {
            let mut header = format!("\"{stat}\",{},,", quoted(&submit.destination, charset));
            if csdh {
                header.push_str(&format!(
                    ",{},{}",
                    type_of_address(&submit.destination),
                    text_length(decoded)
                ));
            }
            header
        }
        Tpdu::StatusReport(report) => format!(
            "\"{stat}\",{}",
            cds_fields(decoded, report.message_reference, charset)
        ),
    }
}

/// `<fo>,<mr>,[<ra>],[<tora>],<scts>,<dt>,<st>` of a status report (27.005 §3.4.1 `+CDS`).
pub fn cds_fields(decoded: &Decoded, mr: u8, charset: Charset) -> String {
    let Tpdu::StatusReport(report) = &decoded.pdu.tpdu else {
        return String::new();
    };
    format!(
        "{},{mr},{},{},{},{},{}",
        first_octet(decoded),
        quoted(&report.recipient, charset),
        type_of_address(&report.recipient),
        scts(&report.service_centre_timestamp),
        scts(&report.discharge_time),
        report.status
    )
}

/// TP-MTI and the flags as the first octet carries them (TS 23.040 §9.2.3).
fn first_octet(decoded: &Decoded) -> u8 {
    match &decoded.pdu.tpdu {
        Tpdu::Deliver(d) => {
            let mut fo = 0x00;
            if !d.more_messages_to_send {
                fo |= 0x04;
            }
            if d.status_report_indication {
                fo |= 0x20;
            }
            if d.user_data.concat.is_some() {
                fo |= 0x40;
            }
            fo
        }
        Tpdu::Submit(s) => {
            let mut fo = 0x01;
            if s.validity.is_some() {
                fo |= 0x10;
            }
            if s.status_report_request {
                fo |= 0x20;
            }
            if s.user_data.concat.is_some() {
                fo |= 0x40;
            }
            fo
        }
        Tpdu::StatusReport(_) => 0x06,
    }
}

/// `<length>` in text mode: characters of the text (27.005 §3.1).
fn text_length(decoded: &Decoded) -> usize {
    match &decoded.pdu.tpdu {
        Tpdu::Deliver(d) => d.user_data.text.chars().count(),
        Tpdu::Submit(s) => s.user_data.text.chars().count(),
        Tpdu::StatusReport(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{decode_hex, encode_deliver};

    #[test]
    fn charsets_round_trip_and_reject_bad_hex() {
        assert_eq!(Charset::Ucs2.encode("Hé"), "004800E9");
        assert_eq!(Charset::Ucs2.decode("004800E9").as_deref(), Some("Hé"));
        assert_eq!(Charset::Ucs2.decode("04800E9"), None);
        assert_eq!(Charset::Ucs2.decode("D800"), None);
        assert_eq!(Charset::parse("\"ira\""), Some(Charset::Ira));
    }

    #[test]
    fn cmt_header_in_the_27005_shape() {
        let timestamp = Timestamp {
            year: 2024,
            month: 1,
            day: 2,
            hour: 10,
            minute: 11,
            second: 12,
            offset_minutes: 60,
        };
        let parts = encode_deliver(
            &Address::international("447700900123"),
            "hi",
            timestamp,
            0,
            Some(&Address::international("447700900999")),
        )
        .expect("encode");
        let decoded = decode_hex(&parts[0].hex, true).expect("decode");
        assert_eq!(
            cmt_header(&decoded, Charset::Ira, false).as_deref(),
            Some("\"+447700900123\",,\"24/01/02,10:11:12+04\"")
        );
        assert_eq!(
            cmt_header(&decoded, Charset::Ira, true).as_deref(),
            Some("\"+447700900123\",,\"24/01/02,10:11:12+04\",145,4,0,0,\"+447700900999\",145,2")
        );
        assert_eq!(data(&decoded, Charset::Ucs2), "00680069");
    }
}
