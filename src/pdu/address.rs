//! Addresses (TS 23.040 §9.1.2.5, TS 24.008 §10.5.4.7 for the SMSC) and
//! the semi-octet fields they and the time stamps use.

use std::fmt;

use serde::Serialize;

use super::{PduError, Timestamp, gsm7};

/// Type of number, bits 6-4 of the type-of-address octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeOfNumber {
    Unknown,
    International,
    National,
    NetworkSpecific,
    Subscriber,
    Alphanumeric,
    Abbreviated,
    Reserved,
}

impl TypeOfNumber {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x07 {
            0 => Self::Unknown,
            1 => Self::International,
            2 => Self::National,
            3 => Self::NetworkSpecific,
            4 => Self::Subscriber,
            5 => Self::Alphanumeric,
            6 => Self::Abbreviated,
            _ => Self::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::International => 1,
            Self::National => 2,
            Self::NetworkSpecific => 3,
            Self::Subscriber => 4,
            Self::Alphanumeric => 5,
            Self::Abbreviated => 6,
            Self::Reserved => 7,
        }
    }
}

/// An originator, destination, recipient or SMSC address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    pub ton: TypeOfNumber,
    /// Numbering plan identification (1: ISDN/E.164).
    pub npi: u8,
    /// Digits (with `*`, `#`, `a`, `b`, `c`) without `+`, or the text of an
    /// alphanumeric address.
    pub value: String,
}

/// The semi-octet digits of TS 23.040 §9.1.2.3.
const DIGITS: [char; 15] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'a', 'b', 'c',
];

impl Address {
    /// Reads a number as a user writes it: `+` and digits is international,
    /// anything else of digits, `*` and `#` is of unknown type.
    pub fn from_number(number: &str) -> Result<Self, PduError> {
        let (ton, digits) = match number.strip_prefix('+') {
            Some(rest) => (TypeOfNumber::International, rest),
            None => (TypeOfNumber::Unknown, number),
        };
        if digits.is_empty() {
            return Err(PduError::Encode(format!("number {number:?} has no digits")));
        }
        if digits.len() > 20 {
            return Err(PduError::Encode(format!(
                "number has {} digits; an address holds at most 20 (TS 23.040 §9.1.2.5)",
                digits.len()
            )));
        }
        if let Some(bad) = digits.chars().find(|c| !matches!(c, '0'..='9' | '*' | '#')) {
            return Err(PduError::Encode(format!(
                "number has {bad:?}: only digits, '*' and '#' (and a leading '+') are allowed"
            )));
        }
        Ok(Self {
            ton,
            npi: 1,
            value: digits.to_string(),
        })
    }

    /// An international (E.164) number from its digits.
    pub fn international(digits: &str) -> Self {
        Self {
            ton: TypeOfNumber::International,
            npi: 1,
            value: digits.trim_start_matches('+').to_string(),
        }
    }

    /// An alphanumeric sender such as `MyBank`.
    pub fn alphanumeric(text: &str) -> Self {
        Self {
            ton: TypeOfNumber::Alphanumeric,
            npi: 0,
            value: text.to_string(),
        }
    }

    fn type_octet(&self) -> u8 {
        0x80 | (self.ton.bits() << 4) | (self.npi & 0x0F)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ton == TypeOfNumber::International && !self.value.is_empty() {
            write!(f, "+{}", self.value)
        } else {
            f.write_str(&self.value)
        }
    }
}

fn semi_octet_digits(octets: &[u8], count: usize) -> (String, bool) {
    let mut digits = String::with_capacity(count);
    let mut odd = false;
    for i in 0..count {
        let octet = octets[i / 2];
        let nibble = if i % 2 == 0 { octet & 0x0F } else { octet >> 4 };
        match DIGITS.get(usize::from(nibble)) {
            Some(&d) => digits.push(d),
            // A filler where a digit should be: the length said one too many.
            None => odd = true,
        }
    }
    (digits, odd)
}

fn digits_to_semi_octets(digits: &str) -> Result<Vec<u8>, PduError> {
    let mut nibbles = Vec::with_capacity(digits.len() + 1);
    for c in digits.chars() {
        let nibble = DIGITS
            .iter()
            .position(|&d| d == c)
            .ok_or_else(|| PduError::Encode(format!("{c:?} cannot be a semi-octet digit")))?;
        nibbles.push(nibble as u8);
    }
    if nibbles.len() % 2 == 1 {
        nibbles.push(0x0F);
    }
    Ok(nibbles
        .chunks(2)
        .map(|pair| pair[0] | (pair[1] << 4))
        .collect())
}

/// A cursor over a PDU's octets that names the offset of what it cannot read.
pub(super) struct Reader<'a> {
    octets: &'a [u8],
    pub position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(octets: &'a [u8]) -> Self {
        Self {
            octets,
            position: 0,
        }
    }

    pub fn error(&self, offset: usize, problem: impl Into<String>) -> PduError {
        PduError::At {
            offset,
            problem: problem.into(),
        }
    }

    pub fn octet(&mut self, what: &str) -> Result<u8, PduError> {
        let octet =
            self.octets.get(self.position).copied().ok_or_else(|| {
                self.error(self.position, format!("the PDU ends before the {what}"))
            })?;
        self.position += 1;
        Ok(octet)
    }

    pub fn take(&mut self, count: usize, what: &str) -> Result<&'a [u8], PduError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|&e| e <= self.octets.len());
        let Some(end) = end else {
            return Err(self.error(
                self.position,
                format!(
                    "the {what} needs {count} octets but only {} remain",
                    self.octets.len() - self.position
                ),
            ));
        };
        let slice = &self.octets[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let slice = &self.octets[self.position..];
        self.position = self.octets.len();
        slice
    }

    pub fn remaining(&self) -> usize {
        self.octets.len() - self.position
    }
}

/// Reads a TP address (originator, destination, recipient): its length counts
/// semi-octets (TS 23.040 §9.1.2.5).
pub(super) fn read_tp_address(
    reader: &mut Reader<'_>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Address, PduError> {
    let start = reader.position;
    let length = usize::from(reader.octet(&format!("{what} length"))?);
    if length > 20 {
        return Err(reader.error(
            start,
            format!("{what} length {length} exceeds the 20 digits of TS 23.040 §9.1.2.5"),
        ));
    }
    let type_octet = reader.octet(&format!("{what} type of address"))?;
    let ton = TypeOfNumber::from_bits(type_octet >> 4);
    let octets = reader.take(length.div_ceil(2), &format!("{what} digits"))?;
    let value = if ton == TypeOfNumber::Alphanumeric {
        // Packed GSM 7-bit: `length` semi-octets carry length*4/7 septets.
        let septets = gsm7::unpack(octets, length * 4 / 7, 0);
        gsm7::decode_septets(&septets)
    } else {
        let (digits, odd) = semi_octet_digits(octets, length);
        if odd {
            warnings.push(format!(
                "octet {start}: {what} holds a filler where its length promised a digit"
            ));
        }
        digits
    };
    Ok(Address {
        ton,
        npi: type_octet & 0x0F,
        value,
    })
}

/// Reads the SMSC field in front of a TPDU: its length counts octets, and
/// zero means "the SIM's own".
pub(super) fn read_smsc(
    reader: &mut Reader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Address>, PduError> {
    let length = usize::from(reader.octet("SMSC length")?);
    if length == 0 {
        return Ok(None);
    }
    if length > 11 {
        return Err(reader.error(
            0,
            format!(
                "SMSC length {length} exceeds the 11 octets of an RP address (TS 24.011 §8.2.5.1)"
            ),
        ));
    }
    let type_octet = reader.octet("SMSC type of address")?;
    let octets = reader.take(length - 1, "SMSC digits")?;
    let (value, odd) = semi_octet_digits(octets, (length - 1) * 2);
    if odd && !value.is_empty() && octets.last().is_some_and(|o| o >> 4 != 0x0F) {
        warnings.push("octet 1: SMSC digits contain a filler before their end".into());
    }
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(Address {
        ton: TypeOfNumber::from_bits(type_octet >> 4),
        npi: type_octet & 0x0F,
        value,
    }))
}

pub(super) fn write_tp_address(out: &mut Vec<u8>, address: &Address) -> Result<(), PduError> {
    if address.ton == TypeOfNumber::Alphanumeric {
        let septets = gsm7::encode_septets(&address.value).ok_or_else(|| {
            PduError::Encode(format!(
                "alphanumeric address {:?} is not in the GSM alphabet",
                address.value
            ))
        })?;
        if septets.len() > 11 {
            return Err(PduError::Encode(format!(
                "alphanumeric address {:?} is longer than 11 characters",
                address.value
            )));
        }
        let packed = gsm7::pack(&septets, 0);
        out.push((septets.len() * 7).div_ceil(4) as u8);
        out.push(address.type_octet());
        out.extend(packed);
    } else {
        if address.value.len() > 20 {
            return Err(PduError::Encode(format!(
                "address has {} digits; at most 20 fit",
                address.value.len()
            )));
        }
        out.push(address.value.len() as u8);
        out.push(address.type_octet());
        out.extend(digits_to_semi_octets(&address.value)?);
    }
    Ok(())
}

pub(super) fn write_smsc(out: &mut Vec<u8>, smsc: Option<&Address>) -> Result<(), PduError> {
    match smsc {
        None => out.push(0),
        Some(address) => {
            let digits = digits_to_semi_octets(&address.value)?;
            if digits.len() + 1 > 11 {
                return Err(PduError::Encode("SMSC number is too long".into()));
            }
            out.push((digits.len() + 1) as u8);
            out.push(address.type_octet());
            out.extend(digits);
        }
    }
    Ok(())
}

/// Reads a 7-octet time stamp (TS 23.040 §9.2.3.11).
pub(super) fn read_timestamp(
    reader: &mut Reader<'_>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Timestamp, PduError> {
    let start = reader.position;
    let octets = reader.take(7, what)?;
    let mut non_bcd = false;
    let mut field = |octet: u8| {
        let (tens, units) = (octet & 0x0F, octet >> 4);
        non_bcd |= tens > 9 || units > 9;
        tens * 10 + units
    };
    let year = 2000 + u16::from(field(octets[0]));
    let (month, day, hour, minute, second) = (
        field(octets[1]),
        field(octets[2]),
        field(octets[3]),
        field(octets[4]),
        field(octets[5]),
    );
    // The time zone: quarters of an hour, sign in bit 3 of the first semi-octet.
    let zone = octets[6];
    let tens = zone & 0x07;
    let units = zone >> 4;
    let zone_non_bcd = units > 9;
    let quarters = i16::from(tens) * 10 + i16::from(units);
    let offset_minutes = if zone & 0x08 != 0 {
        -quarters * 15
    } else {
        quarters * 15
    };
    if non_bcd || zone_non_bcd {
        warnings.push(format!(
            "octet {start}: {what} has semi-octets that are not decimal digits"
        ));
    }
    let timestamp = Timestamp {
        year,
        month,
        day,
        hour,
        minute,
        second,
        offset_minutes,
    };
    if timestamp.to_datetime().is_none() {
        warnings.push(format!(
            "octet {start}: {what} is not a valid date and time"
        ));
    }
    Ok(timestamp)
}

pub(super) fn write_timestamp(out: &mut Vec<u8>, t: &Timestamp) {
    let bcd = |v: u8| (v % 10) << 4 | (v / 10 % 10);
    out.push(bcd((t.year % 100) as u8));
    out.extend([t.month, t.day, t.hour, t.minute, t.second].map(bcd));
    let quarters = (t.offset_minutes.unsigned_abs() / 15).min(79) as u8;
    let sign = if t.offset_minutes < 0 { 0x08 } else { 0 };
    out.push(bcd(quarters) | sign);
}
