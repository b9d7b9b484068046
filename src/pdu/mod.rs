//! The SMS PDU codec (3GPP TS 23.040 for the TPDUs, TS 23.038 for the
//! alphabets). Pure: no I/O, no tokio. It handles one part; reassembly of
//! concatenated messages lives in the relay.
//!
//! Decoding is lenient where real modems and networks are odd (a user data
//! length longer than the data, a zero-length SMSC, a non-BCD time zone, a
//! broken header): it decodes what is readable and lists the oddities in
//! [`Decoded::warnings`]. What cannot be read is an error naming the octet.
//! No input makes it panic (a property test feeds it arbitrary bytes).

mod address;
mod decode;
mod encode;
pub mod gsm7;
mod indian;
mod json;
pub mod national;
mod segment;
#[cfg(test)]
mod tests;
mod udh;

pub use address::{Address, TypeOfNumber};
pub use decode::{decode, decode_hex};
pub use encode::{encode, encode_deliver, encode_status_report, encode_submit};
pub use json::{decoded_json, submit_json};
pub use segment::{ConcatReferences, Segmentation, segment};
pub use udh::InformationElement;

use serde::Serialize;

/// How the user data is coded (TS 23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// The GSM 7-bit default alphabet (or a national language table).
    #[serde(rename = "gsm7")]
    Gsm7,
    /// UCS2, read as UTF-16 so that surrogate pairs (emoji) survive.
    #[serde(rename = "ucs2")]
    Ucs2,
    /// 8-bit data.
    #[serde(rename = "8bit")]
    EightBit,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
            Encoding::EightBit => "8bit",
        }
    }
}

/// A concatenated message's part (TS 23.040 §9.2.3.24.1 and .8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    pub sequence: u8,
}

/// A service centre time stamp (TS 23.040 §9.2.3.11): local time and its
/// offset from UTC in minutes (quarters of an hour on the air).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub offset_minutes: i16,
}

impl Timestamp {
    /// The time as an `OffsetDateTime`, if the fields make a valid one.
    pub fn to_datetime(&self) -> Option<time::OffsetDateTime> {
        let month = time::Month::try_from(self.month).ok()?;
        let date = time::Date::from_calendar_date(i32::from(self.year), month, self.day).ok()?;
        let clock = time::Time::from_hms(self.hour, self.minute, self.second).ok()?;
        let offset =
            time::UtcOffset::from_whole_seconds(i32::from(self.offset_minutes) * 60).ok()?;
        Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
    }

    /// RFC 3339 with the PDU's own offset (`2013-03-08T15:02:16+02:00`).
    pub fn to_rfc3339(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let offset = self.offset_minutes.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            offset / 60,
            offset % 60
        )
    }

    /// The same instant in the given time's own offset, rounded down to the
    /// quarter hour the air interface can carry.
    pub fn from_datetime(t: time::OffsetDateTime) -> Self {
        let quarters = t.offset().whole_minutes() / 15;
        let offset = time::UtcOffset::from_whole_seconds(i32::from(quarters) * 15 * 60)
            .unwrap_or(time::UtcOffset::UTC);
        let t = t.to_offset(offset);
        Self {
            year: t.year().clamp(2000, 2099) as u16,
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            offset_minutes: quarters * 15,
        }
    }
}

/// TP-Validity-Period (TS 23.040 §9.2.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ValidityPeriod {
    /// The relative format's octet.
    Relative(u8),
    Absolute(Timestamp),
    /// The enhanced format's seven octets.
    Enhanced([u8; 7]),
}

impl ValidityPeriod {
    /// The relative octet closest to (not below) `seconds`, capped at 63 weeks.
    pub fn relative_from_seconds(seconds: u64) -> Self {
        let minutes = seconds.div_ceil(60);
        let octet = if minutes <= 12 * 60 {
            (minutes.div_ceil(5).max(1) - 1) as u8
        } else if minutes <= 24 * 60 {
            (143 + (minutes - 12 * 60).div_ceil(30)) as u8
        } else if minutes <= 30 * 24 * 60 {
            (166 + minutes.div_ceil(24 * 60)).min(196) as u8
        } else {
            (192 + minutes.div_ceil(7 * 24 * 60)).min(255) as u8
        };
        Self::Relative(octet)
    }

    /// The period in seconds, when it is relative (or enhanced relative).
    pub fn seconds(&self) -> Option<u64> {
        match *self {
            Self::Relative(v) => Some(relative_seconds(v)),
            Self::Absolute(_) => None,
            Self::Enhanced(octets) => match octets[0] & 0x07 {
                1 => Some(relative_seconds(octets[1])),
                2 => Some(u64::from(octets[1])),
                3 => {
                    let bcd = |o: u8| u64::from(o & 0x0F) * 10 + u64::from(o >> 4);
                    Some(bcd(octets[1]) * 3600 + bcd(octets[2]) * 60 + bcd(octets[3]))
                }
                _ => None,
            },
        }
    }
}

fn relative_seconds(v: u8) -> u64 {
    let v = u64::from(v);
    match v {
        0..=143 => (v + 1) * 5 * 60,
        144..=167 => 12 * 3600 + (v - 143) * 30 * 60,
        168..=196 => (v - 166) * 24 * 3600,
        _ => (v - 192) * 7 * 24 * 3600,
    }
}

/// TP-User-Data, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserData {
    pub encoding: Encoding,
    /// The text (for 8-bit data, the octets read as Latin-1 so nothing is lost).
    pub text: String,
    /// The raw octets for 8-bit data; empty otherwise.
    pub data: Vec<u8>,
    pub concat: Option<Concat>,
    /// Application ports (destination, originator).
    pub ports: Option<(u16, u16)>,
    /// Header elements other than concatenation and ports.
    pub header: Vec<InformationElement>,
}

impl UserData {
    /// Text user data in `encoding`, no header.
    pub fn text(encoding: Encoding, text: &str) -> Self {
        Self {
            encoding,
            text: text.to_string(),
            data: Vec::new(),
            concat: None,
            ports: None,
            header: Vec::new(),
        }
    }
}

/// SMS-DELIVER: a message to the mobile (TS 23.040 §9.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deliver {
    pub originator: Address,
    pub pid: u8,
    pub dcs: u8,
    pub class: Option<u8>,
    pub timestamp: Timestamp,
    pub more_messages_to_send: bool,
    pub status_report_indication: bool,
    pub reply_path: bool,
    pub user_data: UserData,
}

/// SMS-SUBMIT: a message from the mobile (TS 23.040 §9.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submit {
    pub message_reference: u8,
    pub destination: Address,
    pub pid: u8,
    pub dcs: u8,
    pub class: Option<u8>,
    pub validity: Option<ValidityPeriod>,
    pub status_report_request: bool,
    pub reject_duplicates: bool,
    pub reply_path: bool,
    pub user_data: UserData,
}

/// SMS-STATUS-REPORT: the fate of a submitted message (TS 23.040 §9.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub message_reference: u8,
    pub recipient: Address,
    pub service_centre_timestamp: Timestamp,
    pub discharge_time: Timestamp,
    /// TP-Status (TS 23.040 §9.2.3.15).
    pub status: u8,
    pub user_data: Option<UserData>,
}

impl StatusReport {
    /// The message reached the recipient (0x00-0x1F).
    pub fn delivered(&self) -> bool {
        self.status < 0x20
    }

    /// The network is still trying (0x20-0x3F: temporary error, SC still trying).
    pub fn still_trying(&self) -> bool {
        (0x20..0x40).contains(&self.status)
    }

    /// The network gave up (0x40-0x7F: permanent error or temporary error,
    /// SC no longer trying).
    pub fn failed(&self) -> bool {
        self.status >= 0x40
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Tpdu {
    Deliver(Deliver),
    Submit(Submit),
    StatusReport(StatusReport),
}

/// A whole PDU: the SMSC address (when present and not empty) and the TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pdu {
    pub smsc: Option<Address>,
    pub tpdu: Tpdu,
}

/// A decoded PDU and what was odd about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub pdu: Pdu,
    pub warnings: Vec<String>,
}

/// A PDU ready for the modem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodedPdu {
    /// Uppercase hex, starting with the SMSC field (`00` when none).
    pub hex: String,
    /// Octets after the SMSC field: what `AT+CMGS=<length>` takes.
    pub tpdu_length: usize,
}

/// Options of an SMS-SUBMIT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// The service centre; `None` uses the SIM's own.
    pub smsc: Option<Address>,
    /// Ask for a status report.
    pub status_report: bool,
    pub validity: Option<ValidityPeriod>,
    /// TP-MR; modems in PDU mode usually assign their own.
    pub message_reference: u8,
}

/// Why a PDU could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("empty PDU")]
    Empty,
    #[error("character {position}: {found:?} is not a hexadecimal digit")]
    NotHex { position: usize, found: char },
    #[error("odd number of hexadecimal digits ({0}): a PDU is whole octets")]
    OddHex(usize),
    /// A problem at an octet offset of the PDU (counting the SMSC field).
    #[error("octet {offset}: {problem}")]
    At { offset: usize, problem: String },
    #[error("cannot encode: {0}")]
    Encode(String),
}
