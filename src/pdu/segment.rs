//! Splitting a text into the parts of a concatenated message: GSM 7-bit
//! (160 septets alone, 153 with an 8-bit reference header) when every
//! character allows it, else UCS2 (70 UTF-16 units, 67 in parts). An escape
//! pair or a surrogate pair is never split across parts.

use std::collections::HashMap;

use super::{Encoding, gsm7};

/// A text's encoding and parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    pub encoding: Encoding,
    pub parts: Vec<String>,
}

/// The parts of `text` with an 8-bit concatenation reference.
pub fn segment(text: &str) -> Segmentation {
    segment_for_reference(text, 0)
}

/// The parts of `text` when the concatenation reference is `reference`
/// (one above 255 needs the 16-bit element, one octet longer).
pub(super) fn segment_for_reference(text: &str, reference: u16) -> Segmentation {
    let header_octets = if reference > 0xFF { 7 } else { 6 };
    if let Some(septets) = gsm7::septet_count(text) {
        let per_part = (140 - header_octets) * 8 / 7;
        return Segmentation {
            encoding: Encoding::Gsm7,
            parts: if septets <= 160 {
                vec![text.to_string()]
            } else {
                split(text, per_part, |c| gsm7::char_septet_count(c).unwrap_or(2))
            },
        };
    }
    let units = text.encode_utf16().count();
    let per_part = (140 - header_octets) / 2;
    Segmentation {
        encoding: Encoding::Ucs2,
        parts: if units <= 70 {
            vec![text.to_string()]
        } else {
            split(text, per_part, char::len_utf16)
        },
    }
}

/// Greedy split by character cost: minimal, since every character fits a part.
fn split(text: &str, capacity: usize, cost: impl Fn(char) -> usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for c in text.chars() {
        let c_cost = cost(c);
        if used + c_cost > capacity {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += c_cost;
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// Concatenation references, one counter per destination, so two long
/// messages to the same phone are never confused.
#[derive(Debug, Clone, Default)]
pub struct ConcatReferences {
    next: HashMap<String, u8>,
}

impl ConcatReferences {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next reference for `destination` (8-bit, wrapping).
    pub fn next(&mut self, destination: &str) -> u16 {
        let counter = self.next.entry(destination.to_string()).or_insert(0);
        *counter = counter.wrapping_add(1);
        u16::from(*counter)
    }
}
