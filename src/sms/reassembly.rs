//! Reassembly of concatenated SMS (3GPP TS 23.040 §9.2.3.24.1 and .8).
//!
//! Parts are keyed by (sender, reference, total). Real networks produce odd
//! concatenation headers, so a part whose total or sequence number is out of
//! range is treated as a single message rather than rejected.

use std::collections::BTreeMap;

/// The concatenation header of one part, as decoded from the UDH.
pub use crate::pdu::Concat;

/// One received part, as the pure rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub sender: String,
    /// SIM storage and index, absent for direct `+CMT` delivery.
    pub location: Option<(String, u32)>,
    pub pdu_hex: String,
    pub concat: Option<Concat>,
    pub text: String,
}

/// How a part is to be grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// A message on its own.
    Single,
    /// One part of a concatenated message.
    Multi { key: MessageKey, sequence: u8 },
    /// The header was malformed; the part stands alone (with a warning).
    SingleMalformed { reason: &'static str },
}

/// The identity of a concatenated message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey {
    pub sender: String,
    pub reference: u16,
    pub total: u8,
}

/// Decides how a part is grouped (3GPP TS 23.040 §9.2.3.24.1: total and
/// sequence numbers start at 1 and the sequence never exceeds the total).
pub fn grouping(part: &Part) -> Grouping {
    let Some(concat) = part.concat else {
        return Grouping::Single;
    };
    if concat.total == 0 {
        return Grouping::SingleMalformed {
            reason: "concatenation total is 0",
        };
    }
    if concat.sequence == 0 || concat.sequence > concat.total {
        return Grouping::SingleMalformed {
            reason: "concatenation sequence out of range",
        };
    }
    if concat.total == 1 {
        return Grouping::Single;
    }
    Grouping::Multi {
        key: MessageKey {
            sender: part.sender.clone(),
            reference: concat.reference,
            total: concat.total,
        },
        sequence: concat.sequence,
    }
}

/// Whether `candidate` is the same physical part as one already held:
/// the same SIM storage slot, or the identical PDU (a message read again
/// after a crash before its delete must not be relayed twice).
pub fn is_duplicate(held: &[Part], candidate: &Part) -> bool {
    held.iter().any(|part| {
        part.pdu_hex.eq_ignore_ascii_case(&candidate.pdu_hex)
            || (part.location.is_some() && part.location == candidate.location)
    })
}

/// The state of one concatenated message given the parts held for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembly {
    /// Every sequence number 1..=total is present: the text in order.
    Complete(String),
    /// Some parts are still missing.
    Waiting { missing: Vec<u8> },
}

/// Assembles the parts of one message (all sharing `key`), in sequence order.
/// A repeated sequence number keeps the first copy.
pub fn assemble(key: &MessageKey, parts: &[(u8, &str)]) -> Assembly {
    let mut by_sequence: BTreeMap<u8, &str> = BTreeMap::new();
    for (sequence, text) in parts {
        if (1..=key.total).contains(sequence) {
            by_sequence.entry(*sequence).or_insert(text);
        }
    }
    let missing: Vec<u8> = (1..=key.total)
        .filter(|sequence| !by_sequence.contains_key(sequence))
        .collect();
    if missing.is_empty() {
        Assembly::Complete(by_sequence.values().copied().collect())
    } else {
        Assembly::Waiting { missing }
    }
}

/// What the reassembly timeout sweep relays: the parts that did arrive, in
/// order, with a marker for each gap so the reader knows text is missing.
pub fn assemble_incomplete(key: &MessageKey, parts: &[(u8, &str)]) -> String {
    let mut by_sequence: BTreeMap<u8, &str> = BTreeMap::new();
    for (sequence, text) in parts {
        by_sequence.entry(*sequence).or_insert(text);
    }
    (1..=key.total)
        .map(|sequence| by_sequence.get(&sequence).copied().unwrap_or("[…]"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(pdu: &str, location: Option<u32>, concat: Option<(u16, u8, u8)>) -> Part {
        Part {
            sender: "+15550100".into(),
            location: location.map(|index| ("SM".to_string(), index)),
            pdu_hex: pdu.into(),
            concat: concat.map(|(reference, total, sequence)| Concat {
                reference,
                total,
                sequence,
            }),
            text: String::new(),
        }
    }

    fn key(total: u8) -> MessageKey {
        MessageKey {
            sender: "+15550100".into(),
            reference: 7,
            total,
        }
    }

    #[test]
    fn a_part_without_header_is_single() {
        assert_eq!(grouping(&part("00", None, None)), Grouping::Single);
        assert_eq!(
            grouping(&part("00", None, Some((7, 1, 1)))),
            Grouping::Single
        );
    }

    #[test]
    fn a_concatenated_part_is_keyed_by_sender_reference_total() {
        assert_eq!(
            grouping(&part("00", None, Some((7, 3, 2)))),
            Grouping::Multi {
                key: key(3),
                sequence: 2
            }
        );
    }

    #[test]
    fn odd_headers_are_single_messages() {
        for concat in [(7, 0, 1), (7, 3, 0), (7, 3, 4)] {
            assert!(matches!(
                grouping(&part("00", None, Some(concat))),
                Grouping::SingleMalformed { .. }
            ));
        }
    }

    #[test]
    fn duplicates_by_slot_or_identical_pdu() {
        let held = vec![part("0A0B", Some(3), None)];
        assert!(is_duplicate(&held, &part("0a0b", None, None)));
        assert!(is_duplicate(&held, &part("FFFF", Some(3), None)));
        assert!(!is_duplicate(&held, &part("FFFF", Some(4), None)));
        assert!(!is_duplicate(&held, &part("FFFF", None, None)));
    }

    #[test]
    fn parts_in_any_order_assemble_in_sequence_order() {
        let parts = [(3, "baz"), (1, "foo"), (2, "bar")];
        assert_eq!(
            assemble(&key(3), &parts),
            Assembly::Complete("foobarbaz".into())
        );
    }

    #[test]
    fn missing_parts_wait() {
        assert_eq!(
            assemble(&key(3), &[(3, "baz"), (1, "foo"), (1, "dup")]),
            Assembly::Waiting { missing: vec![2] }
        );
    }

    #[test]
    fn the_sweep_relays_what_arrived_with_gaps_marked() {
        assert_eq!(
            assemble_incomplete(&key(3), &[(3, "baz"), (1, "foo")]),
            "foo[…]baz"
        );
    }
}
