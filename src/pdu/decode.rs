//! Decoding SMS-DELIVER, SMS-SUBMIT and SMS-STATUS-REPORT (TS 23.040 §9.2.2).

use super::address::{Reader, read_smsc, read_timestamp, read_tp_address};
use super::{
    Decoded, Deliver, Encoding, Pdu, PduError, StatusReport, Submit, Tpdu, UserData,
    ValidityPeriod, gsm7, national, udh,
};

/// Decodes a PDU given as hex (as `AT+CMGR`/`AT+CMGL` print it; whitespace
/// and lowercase are accepted).
pub fn decode_hex(hex: &str, with_smsc: bool) -> Result<Decoded, PduError> {
    decode(&parse_hex(hex)?, with_smsc)
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, PduError> {
    let mut nibbles = Vec::with_capacity(hex.len());
    for (position, c) in hex.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let value = c
            .to_digit(16)
            .ok_or(PduError::NotHex { position, found: c })?;
        nibbles.push(value as u8);
    }
    if nibbles.is_empty() {
        return Err(PduError::Empty);
    }
    if nibbles.len() % 2 == 1 {
        return Err(PduError::OddHex(nibbles.len()));
    }
    Ok(nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Decodes a PDU; `with_smsc` says whether it starts with the SMSC field.
pub fn decode(octets: &[u8], with_smsc: bool) -> Result<Decoded, PduError> {
    if octets.is_empty() {
        return Err(PduError::Empty);
    }
    let mut warnings = Vec::new();
    let mut reader = Reader::new(octets);
    let smsc = if with_smsc {
        read_smsc(&mut reader, &mut warnings)?
    } else {
        None
    };
    let first_at = reader.position;
    let first = reader.octet("first octet")?;
    let tpdu = match first & 0x03 {
        0 => Tpdu::Deliver(deliver(&mut reader, first, &mut warnings)?),
        1 => Tpdu::Submit(submit(&mut reader, first, &mut warnings)?),
        2 => Tpdu::StatusReport(status_report(&mut reader, first, &mut warnings)?),
        _ => {
            return Err(reader.error(
                first_at,
                format!(
                    "first octet 0x{first:02X} has the reserved message type 3 (TS 23.040 §9.2.3.1)"
                ),
            ));
        }
    };
    if reader.remaining() > 0 {
        warnings.push(format!(
            "octet {}: {} octets after the user data are ignored",
            reader.position,
            reader.remaining()
        ));
    }
    Ok(Decoded {
        pdu: Pdu { smsc, tpdu },
        warnings,
    })
}

fn deliver(
    reader: &mut Reader<'_>,
    first: u8,
    warnings: &mut Vec<String>,
) -> Result<Deliver, PduError> {
    let originator = read_tp_address(reader, "originator address", warnings)?;
    let pid = reader.octet("protocol identifier")?;
    let dcs_at = reader.position;
    let dcs = reader.octet("data coding scheme")?;
    let scheme = data_coding(dcs, dcs_at, warnings);
    let timestamp = read_timestamp(reader, "service centre time stamp", warnings)?;
    let user_data = user_data(reader, first & 0x40 != 0, scheme, warnings)?;
    Ok(Deliver {
        originator,
        pid,
        dcs,
        class: scheme.class,
        timestamp,
        // TP-MMS is set when there are *no* more messages.
        more_messages_to_send: first & 0x04 == 0,
        status_report_indication: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        user_data,
    })
}

fn submit(
    reader: &mut Reader<'_>,
    first: u8,
    warnings: &mut Vec<String>,
) -> Result<Submit, PduError> {
    let message_reference = reader.octet("message reference")?;
    let destination = read_tp_address(reader, "destination address", warnings)?;
    let pid = reader.octet("protocol identifier")?;
    let dcs_at = reader.position;
    let dcs = reader.octet("data coding scheme")?;
    let scheme = data_coding(dcs, dcs_at, warnings);
    let validity = match (first >> 3) & 0x03 {
        0 => None,
        2 => Some(ValidityPeriod::Relative(reader.octet("validity period")?)),
        1 => {
            let octets = reader.take(7, "enhanced validity period")?;
            let mut enhanced = [0u8; 7];
            enhanced.copy_from_slice(octets);
            Some(ValidityPeriod::Enhanced(enhanced))
        }
        _ => Some(ValidityPeriod::Absolute(read_timestamp(
            reader,
            "validity period",
            warnings,
        )?)),
    };
    let user_data = user_data(reader, first & 0x40 != 0, scheme, warnings)?;
    Ok(Submit {
        message_reference,
        destination,
        pid,
        dcs,
        class: scheme.class,
        validity,
        status_report_request: first & 0x20 != 0,
        reject_duplicates: first & 0x04 != 0,
        reply_path: first & 0x80 != 0,
        user_data,
    })
}

fn status_report(
    reader: &mut Reader<'_>,
    first: u8,
    warnings: &mut Vec<String>,
) -> Result<StatusReport, PduError> {
    let message_reference = reader.octet("message reference")?;
    let recipient = read_tp_address(reader, "recipient address", warnings)?;
    let service_centre_timestamp = read_timestamp(reader, "service centre time stamp", warnings)?;
    let discharge_time = read_timestamp(reader, "discharge time", warnings)?;
    let status = reader.octet("status")?;
    // Optional since Release 98: a parameter indicator, then PID, DCS and user data.
    let mut user_data = None;
    if reader.remaining() > 0 {
        let indicator_at = reader.position;
        let indicator = reader.octet("parameter indicator")?;
        if indicator & 0x78 != 0 {
            warnings.push(format!(
                "octet {indicator_at}: parameter indicator 0x{indicator:02X} has reserved bits set; the rest is ignored"
            ));
            reader.rest();
        } else {
            if indicator & 0x01 != 0 {
                reader.octet("protocol identifier")?;
            }
            let scheme = if indicator & 0x02 != 0 {
                let dcs_at = reader.position;
                let dcs = reader.octet("data coding scheme")?;
                data_coding(dcs, dcs_at, warnings)
            } else {
                Scheme::default()
            };
            if indicator & 0x04 != 0 {
                user_data = Some(self::user_data(
                    reader,
                    first & 0x40 != 0,
                    scheme,
                    warnings,
                )?);
            }
        }
    }
    Ok(StatusReport {
        message_reference,
        recipient,
        service_centre_timestamp,
        discharge_time,
        status,
        user_data,
    })
}

#[derive(Debug, Clone, Copy)]
struct Scheme {
    encoding: Encoding,
    class: Option<u8>,
    compressed: bool,
}

impl Default for Scheme {
    fn default() -> Self {
        Self {
            encoding: Encoding::Gsm7,
            class: None,
            compressed: false,
        }
    }
}

/// The data coding scheme (TS 23.038 §4).
fn data_coding(dcs: u8, at: usize, warnings: &mut Vec<String>) -> Scheme {
    let general = |dcs: u8, warnings: &mut Vec<String>| {
        let encoding = match (dcs >> 2) & 0x03 {
            0 => Encoding::Gsm7,
            1 => Encoding::EightBit,
            2 => Encoding::Ucs2,
            _ => {
                warnings.push(format!(
                    "octet {at}: data coding 0x{dcs:02X} names a reserved alphabet; read as GSM 7-bit"
                ));
                Encoding::Gsm7
            }
        };
        Scheme {
            encoding,
            class: (dcs & 0x10 != 0).then_some(dcs & 0x03),
            compressed: dcs & 0x20 != 0,
        }
    };
    match dcs >> 4 {
        // General data coding, and the same with automatic deletion.
        0x0..=0x7 => general(dcs, warnings),
        // Message waiting indication groups: discard or store, GSM 7-bit.
        0xC | 0xD => Scheme::default(),
        0xE => Scheme {
            encoding: Encoding::Ucs2,
            ..Scheme::default()
        },
        0xF => Scheme {
            encoding: if dcs & 0x04 != 0 {
                Encoding::EightBit
            } else {
                Encoding::Gsm7
            },
            class: Some(dcs & 0x03),
            compressed: false,
        },
        // 0x8-0xB: reserved coding groups, to be read as GSM 7-bit (§4).
        _ => {
            warnings.push(format!(
                "octet {at}: data coding 0x{dcs:02X} is a reserved group; read as GSM 7-bit"
            ));
            Scheme::default()
        }
    }
}

fn user_data(
    reader: &mut Reader<'_>,
    has_header: bool,
    scheme: Scheme,
    warnings: &mut Vec<String>,
) -> Result<UserData, PduError> {
    let length_at = reader.position;
    let length = usize::from(reader.octet("user data length")?);
    let start = reader.position;
    // Septets for GSM 7-bit, octets otherwise (§9.2.3.16).
    let octets_needed = match scheme.encoding {
        Encoding::Gsm7 if !scheme.compressed => (length * 7).div_ceil(8),
        _ => length,
    };
    let available = reader.remaining();
    let octets = if octets_needed > available {
        warnings.push(format!(
            "octet {length_at}: user data length {length} needs {octets_needed} octets but only {available} follow; decoded what is there"
        ));
        reader.rest()
    } else {
        reader.take(octets_needed, "user data")?
    };

    let mut header = udh::Header::default();
    let mut header_octets = 0;
    if has_header {
        match octets.first() {
            Some(&udhl) if usize::from(udhl) < octets.len() => {
                header = udh::parse(&octets[1..=usize::from(udhl)], start + 1, warnings);
                header_octets = usize::from(udhl) + 1;
            }
            Some(&udhl) => {
                warnings.push(format!(
                    "octet {start}: user data header length {udhl} exceeds the user data; header ignored"
                ));
            }
            None => warnings.push(format!(
                "octet {start}: the header indicator is set but there is no user data"
            )),
        }
    }
    let body = &octets[header_octets..];
    let mut data = Vec::new();
    let (encoding, text) = if scheme.compressed {
        warnings.push(format!(
            "octet {length_at}: the text is compressed (TS 23.042), which simmask does not read; kept as data"
        ));
        data = body.to_vec();
        (Encoding::EightBit, latin1(body))
    } else {
        match scheme.encoding {
            Encoding::Gsm7 => {
                let header_bits = header_octets * 8;
                let fill = ((7 - header_bits % 7) % 7) as u8;
                let header_septets = header_bits.div_ceil(7);
                let wanted = length.saturating_sub(header_septets);
                let septets = gsm7::unpack(body, wanted, fill);
                for language in [header.locking_shift, header.single_shift] {
                    if language != 0 && !national::known(language) {
                        warnings.push(format!(
                            "national language {language} is unknown; read with the default alphabet"
                        ));
                    }
                }
                let (text, odd) =
                    gsm7::decode_with_tables(&septets, header.locking_shift, header.single_shift);
                if odd {
                    warnings.push(
                        "the text has septets its alphabet does not assign; shown as spaces".into(),
                    );
                }
                (Encoding::Gsm7, text)
            }
            Encoding::Ucs2 => (Encoding::Ucs2, utf16(body, warnings)),
            Encoding::EightBit => {
                data = body.to_vec();
                (Encoding::EightBit, latin1(body))
            }
        }
    };
    Ok(UserData {
        encoding,
        text,
        data,
        concat: header.concat,
        ports: header.ports,
        header: header.others,
    })
}

fn latin1(octets: &[u8]) -> String {
    octets.iter().map(|&b| char::from(b)).collect()
}

/// UCS2 read as UTF-16BE, so surrogate pairs (emoji) decode.
fn utf16(octets: &[u8], warnings: &mut Vec<String>) -> String {
    if octets.len() % 2 == 1 {
        warnings.push("UCS2 text has an odd number of octets; the last is ignored".into());
    }
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let mut text = String::with_capacity(units.len());
    let mut unpaired = false;
    for c in char::decode_utf16(units) {
        text.push(c.unwrap_or_else(|_| {
            unpaired = true;
            char::REPLACEMENT_CHARACTER
        }));
    }
    if unpaired {
        warnings.push("UCS2 text has an unpaired surrogate; shown as U+FFFD".into());
    }
    text
}
