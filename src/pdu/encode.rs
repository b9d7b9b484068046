//! Encoding PDUs, and whole texts into the parts of a concatenated message.

use super::address::{write_smsc, write_timestamp, write_tp_address};
use super::segment::segment_for_reference;
use super::{
    Address, Concat, Deliver, EncodedPdu, Encoding, Pdu, PduError, StatusReport, Submit,
    SubmitOptions, Timestamp, Tpdu, UserData, ValidityPeriod, gsm7, udh,
};

/// Encodes one PDU as given (its user data must fit one part).
pub fn encode(pdu: &Pdu) -> Result<EncodedPdu, PduError> {
    let mut out = Vec::with_capacity(176);
    write_smsc(&mut out, pdu.smsc.as_ref())?;
    let smsc_length = out.len();
    match &pdu.tpdu {
        Tpdu::Deliver(deliver) => write_deliver(&mut out, deliver)?,
        Tpdu::Submit(submit) => write_submit(&mut out, submit)?,
        Tpdu::StatusReport(report) => write_status_report(&mut out, report)?,
    }
    Ok(EncodedPdu {
        hex: hex(&out),
        tpdu_length: out.len() - smsc_length,
    })
}

fn hex(octets: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(octets.len() * 2);
    for &b in octets {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}

fn has_header(user_data: &UserData) -> bool {
    user_data.concat.is_some() || user_data.ports.is_some() || !user_data.header.is_empty()
}

fn write_deliver(out: &mut Vec<u8>, deliver: &Deliver) -> Result<(), PduError> {
    let mut first = 0x00;
    if !deliver.more_messages_to_send {
        first |= 0x04;
    }
    if deliver.status_report_indication {
        first |= 0x20;
    }
    if has_header(&deliver.user_data) {
        first |= 0x40;
    }
    if deliver.reply_path {
        first |= 0x80;
    }
    out.push(first);
    write_tp_address(out, &deliver.originator)?;
    out.push(deliver.pid);
    out.push(deliver.dcs);
    write_timestamp(out, &deliver.timestamp);
    write_user_data(out, &deliver.user_data)
}

fn write_submit(out: &mut Vec<u8>, submit: &Submit) -> Result<(), PduError> {
    let mut first = 0x01;
    if submit.reject_duplicates {
        first |= 0x04;
    }
    first |= match submit.validity {
        None => 0,
        Some(ValidityPeriod::Enhanced(_)) => 0x08,
        Some(ValidityPeriod::Relative(_)) => 0x10,
        Some(ValidityPeriod::Absolute(_)) => 0x18,
    };
    if submit.status_report_request {
        first |= 0x20;
    }
    if has_header(&submit.user_data) {
        first |= 0x40;
    }
    if submit.reply_path {
        first |= 0x80;
    }
    out.push(first);
    out.push(submit.message_reference);
    write_tp_address(out, &submit.destination)?;
    out.push(submit.pid);
    out.push(submit.dcs);
    match &submit.validity {
        None => {}
        Some(ValidityPeriod::Relative(v)) => out.push(*v),
        Some(ValidityPeriod::Enhanced(octets)) => out.extend(octets),
        Some(ValidityPeriod::Absolute(t)) => write_timestamp(out, t),
    }
    write_user_data(out, &submit.user_data)
}

fn write_status_report(out: &mut Vec<u8>, report: &StatusReport) -> Result<(), PduError> {
    let mut first = 0x02 | 0x04;
    if report.user_data.as_ref().is_some_and(has_header) {
        first |= 0x40;
    }
    out.push(first);
    out.push(report.message_reference);
    write_tp_address(out, &report.recipient)?;
    write_timestamp(out, &report.service_centre_timestamp);
    write_timestamp(out, &report.discharge_time);
    out.push(report.status);
    if let Some(user_data) = &report.user_data {
        // Parameter indicator: DCS and user data present (TS 23.040 §9.2.3.27).
        out.extend([0x06, dcs_of(user_data.encoding)]);
        write_user_data(out, user_data)?;
    }
    Ok(())
}

/// Writes TP-UDL and TP-UD, header included.
fn write_user_data(out: &mut Vec<u8>, user_data: &UserData) -> Result<(), PduError> {
    let header = udh::build(user_data.concat, user_data.ports, &user_data.header);
    let header_octets = if header.is_empty() {
        0
    } else {
        header.len() + 1
    };
    match user_data.encoding {
        Encoding::Gsm7 => {
            let septets = gsm7::encode_septets(&user_data.text).ok_or_else(|| {
                PduError::Encode("the text has characters outside the GSM alphabet".into())
            })?;
            let header_septets = (header_octets * 8).div_ceil(7);
            let length = header_septets + septets.len();
            if length > 160 {
                return Err(PduError::Encode(format!(
                    "{length} septets do not fit one part (160)"
                )));
            }
            out.push(length as u8);
            if header_octets > 0 {
                out.push(header.len() as u8);
                out.extend(&header);
            }
            let fill = ((7 - (header_octets * 8) % 7) % 7) as u8;
            out.extend(gsm7::pack(&septets, fill));
        }
        Encoding::Ucs2 | Encoding::EightBit => {
            let body: Vec<u8> = if user_data.encoding == Encoding::Ucs2 {
                user_data
                    .text
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect()
            } else {
                user_data.data.clone()
            };
            let length = header_octets + body.len();
            if length > 140 {
                return Err(PduError::Encode(format!(
                    "{length} octets do not fit one part (140)"
                )));
            }
            out.push(length as u8);
            if header_octets > 0 {
                out.push(header.len() as u8);
                out.extend(&header);
            }
            out.extend(body);
        }
    }
    Ok(())
}

fn dcs_of(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Gsm7 => 0x00,
        Encoding::EightBit => 0x04,
        Encoding::Ucs2 => 0x08,
    }
}

/// The user data of each part of `text`, with concatenation headers when
/// there is more than one.
fn parts(text: &str, concat_reference: u16) -> Result<Vec<UserData>, PduError> {
    let segmentation = segment_for_reference(text, concat_reference);
    let total = segmentation.parts.len();
    if total > 255 {
        return Err(PduError::Encode(format!(
            "the text needs {total} parts; a concatenated message has at most 255"
        )));
    }
    Ok(segmentation
        .parts
        .iter()
        .enumerate()
        .map(|(i, part)| UserData {
            concat: (total > 1).then_some(Concat {
                reference: concat_reference,
                total: total as u8,
                sequence: (i + 1) as u8,
            }),
            ..UserData::text(segmentation.encoding, part)
        })
        .collect())
}

/// The SMS-SUBMIT PDUs that send `text` to `destination`, split as needed
/// (GSM 7-bit when the text allows, else UCS2).
pub fn encode_submit(
    destination: &Address,
    text: &str,
    concat_reference: u16,
    options: &SubmitOptions,
) -> Result<Vec<EncodedPdu>, PduError> {
    parts(text, concat_reference)?
        .into_iter()
        .map(|user_data| {
            encode(&Pdu {
                smsc: options.smsc.clone(),
                tpdu: Tpdu::Submit(Submit {
                    message_reference: options.message_reference,
                    destination: destination.clone(),
                    pid: 0,
                    dcs: dcs_of(user_data.encoding),
                    class: None,
                    validity: options.validity,
                    status_report_request: options.status_report,
                    reject_duplicates: false,
                    reply_path: false,
                    user_data,
                }),
            })
        })
        .collect()
}

/// The SMS-DELIVER PDUs a network hands a mobile for `text` from
/// `originator` (the simulator's side).
pub fn encode_deliver(
    originator: &Address,
    text: &str,
    timestamp: Timestamp,
    concat_reference: u16,
    smsc: Option<&Address>,
) -> Result<Vec<EncodedPdu>, PduError> {
    let parts = parts(text, concat_reference)?;
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, user_data)| {
            encode(&Pdu {
                smsc: smsc.cloned(),
                tpdu: Tpdu::Deliver(Deliver {
                    originator: originator.clone(),
                    pid: 0,
                    dcs: dcs_of(user_data.encoding),
                    class: None,
                    timestamp,
                    more_messages_to_send: i + 1 < total,
                    status_report_indication: false,
                    reply_path: false,
                    user_data,
                }),
            })
        })
        .collect()
}

/// An SMS-STATUS-REPORT PDU (the simulator's side).
pub fn encode_status_report(
    report: &StatusReport,
    smsc: Option<&Address>,
) -> Result<EncodedPdu, PduError> {
    encode(&Pdu {
        smsc: smsc.cloned(),
        tpdu: Tpdu::StatusReport(report.clone()),
    })
}
