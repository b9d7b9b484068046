//! The user data header (TS 23.040 §9.2.3.24): concatenation, application
//! ports, national language shifts; other elements are kept as they came.

use serde::Serialize;

use super::Concat;

/// Concatenated short messages, 8-bit reference (§9.2.3.24.1).
pub const CONCAT_8: u8 = 0x00;
/// Application port addressing, 8-bit (§9.2.3.24.3).
pub const PORTS_8: u8 = 0x04;
/// Application port addressing, 16-bit (§9.2.3.24.4).
pub const PORTS_16: u8 = 0x05;
/// Concatenated short messages, 16-bit reference (§9.2.3.24.8).
pub const CONCAT_16: u8 = 0x08;
/// National language single shift (§9.2.3.24.15).
pub const SINGLE_SHIFT: u8 = 0x24;
/// National language locking shift (§9.2.3.24.16).
pub const LOCKING_SHIFT: u8 = 0x25;

/// One header element as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct InformationElement {
    pub id: u8,
    pub data: Vec<u8>,
}

/// What a header says.
#[derive(Debug, Default)]
pub(super) struct Header {
    pub concat: Option<Concat>,
    pub ports: Option<(u16, u16)>,
    pub single_shift: u8,
    pub locking_shift: u8,
    pub others: Vec<InformationElement>,
}

/// Parses the header's elements (the octets after the UDHL). Oddities go to
/// `warnings`; nothing here fails, because the text after the header is
/// still readable when an element is broken.
pub(super) fn parse(octets: &[u8], offset: usize, warnings: &mut Vec<String>) -> Header {
    let mut header = Header::default();
    let mut i = 0;
    while i < octets.len() {
        let id = octets[i];
        let Some(&length) = octets.get(i + 1) else {
            warnings.push(format!(
                "octet {}: header element 0x{id:02X} has no length",
                offset + i
            ));
            break;
        };
        let length = usize::from(length);
        let Some(data) = octets.get(i + 2..i + 2 + length) else {
            warnings.push(format!(
                "octet {}: header element 0x{id:02X} claims {length} octets, more than the header holds",
                offset + i
            ));
            break;
        };
        let at = offset + i;
        match (id, data) {
            (CONCAT_8, &[reference, total, sequence]) => set_concat(
                &mut header,
                u16::from(reference),
                total,
                sequence,
                at,
                warnings,
            ),
            (CONCAT_16, &[high, low, total, sequence]) => set_concat(
                &mut header,
                u16::from_be_bytes([high, low]),
                total,
                sequence,
                at,
                warnings,
            ),
            (PORTS_8, &[destination, originator]) => {
                header.ports = Some((u16::from(destination), u16::from(originator)))
            }
            (PORTS_16, &[d1, d2, o1, o2]) => {
                header.ports = Some((u16::from_be_bytes([d1, d2]), u16::from_be_bytes([o1, o2])))
            }
            (SINGLE_SHIFT, &[language]) => header.single_shift = language,
            (LOCKING_SHIFT, &[language]) => header.locking_shift = language,
            (CONCAT_8 | CONCAT_16 | PORTS_8 | PORTS_16 | SINGLE_SHIFT | LOCKING_SHIFT, _) => {
                warnings.push(format!(
                    "octet {at}: header element 0x{id:02X} has the wrong length {length}"
                ));
            }
            _ => header.others.push(InformationElement {
                id,
                data: data.to_vec(),
            }),
        }
        i += 2 + length;
    }
    header
}

fn set_concat(
    header: &mut Header,
    reference: u16,
    total: u8,
    sequence: u8,
    at: usize,
    warnings: &mut Vec<String>,
) {
    // §9.2.3.24.1: a zero total or a sequence of zero or beyond the total
    // means the element is to be ignored; the text is still a message.
    if total == 0 || sequence == 0 || sequence > total {
        warnings.push(format!(
            "octet {at}: concatenation element says part {sequence} of {total}; ignored"
        ));
        return;
    }
    header.concat = Some(Concat {
        reference,
        total,
        sequence,
    });
}

/// The header octets (without the UDHL) for these elements.
pub(super) fn build(
    concat: Option<Concat>,
    ports: Option<(u16, u16)>,
    others: &[InformationElement],
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(concat) = concat {
        if concat.reference <= 0xFF {
            out.extend([
                CONCAT_8,
                3,
                concat.reference as u8,
                concat.total,
                concat.sequence,
            ]);
        } else {
            let [high, low] = concat.reference.to_be_bytes();
            out.extend([CONCAT_16, 4, high, low, concat.total, concat.sequence]);
        }
    }
    if let Some((destination, originator)) = ports {
        if destination <= 0xFF && originator <= 0xFF {
            out.extend([PORTS_8, 2, destination as u8, originator as u8]);
        } else {
            out.extend([PORTS_16, 4]);
            out.extend(destination.to_be_bytes());
            out.extend(originator.to_be_bytes());
        }
    }
    for element in others {
        out.push(element.id);
        out.push(element.data.len() as u8);
        out.extend(&element.data);
    }
    out
}
