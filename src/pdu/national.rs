//! National language shift tables of 3GPP TS 23.038 Annex A, selected by the
//! user data header's language shift elements (TS 23.040 §9.2.3.24.15-16).
//!
//! A locking shift table replaces the default alphabet for the whole
//! message; a single shift table replaces the extension table (reached by
//! the escape). Language ids are those of TS 23.038 §6.2.1.2.4.

use super::gsm7::{DEFAULT, EXTENSION};

/// A position a table does not assign.
pub const UNUSED: char = '\u{FFFF}';

/// Turkish locking shift (TS 23.038 A.3.1).
const TURKISH_LOCKING: [char; 128] = [
    '@', '£', '$', '¥', '€', 'é', 'ù', 'ı', 'ò', 'Ç', '\n', 'Ğ', 'ğ', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Ş', 'ş', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    'İ', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    'ç', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Portuguese locking shift (TS 23.038 A.3.3).
const PORTUGUESE_LOCKING: [char; 128] = [
    '@', '£', '$', '¥', 'ê', 'é', 'ú', 'í', 'ó', 'ç', '\n', 'Ô', 'ô', '\r', 'Á', 'á', //
    'Δ', '_', 'ª', 'Ç', 'À', '∞', '^', '\\', '€', 'Ó', '|', ' ', 'Â', 'â', 'Ê', 'É', //
    ' ', '!', '"', '#', 'º', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    'Í', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ã', 'Õ', 'Ú', 'Ü', '§', //
    '~', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ã', 'õ', '`', 'ü', 'à', //
];

/// Turkish single shift (TS 23.038 A.2.1).
const TURKISH_SINGLE: &[(u8, char)] = &[
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x47, 'Ğ'),
    (0x49, 'İ'),
    (0x53, 'Ş'),
    (0x63, 'ç'),
    (0x65, '€'),
    (0x67, 'ğ'),
    (0x69, 'ı'),
    (0x73, 'ş'),
];

/// Spanish single shift (TS 23.038 A.2.2); Spanish has no locking table.
const SPANISH_SINGLE: &[(u8, char)] = &[
    (0x09, 'ç'),
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x41, 'Á'),
    (0x49, 'Í'),
    (0x4F, 'Ó'),
    (0x55, 'Ú'),
    (0x61, 'á'),
    (0x65, '€'),
    (0x69, 'í'),
    (0x6F, 'ó'),
    (0x75, 'ú'),
];

/// Portuguese single shift (TS 23.038 A.2.3).
const PORTUGUESE_SINGLE: &[(u8, char)] = &[
    (0x05, 'ê'),
    (0x09, 'ç'),
    (0x0A, '\u{0C}'),
    (0x0B, 'Ô'),
    (0x0C, 'ô'),
    (0x0E, 'Á'),
    (0x0F, 'á'),
    (0x12, 'Φ'),
    (0x13, 'Γ'),
    (0x14, '^'),
    (0x15, 'Ω'),
    (0x16, 'Π'),
    (0x17, 'Ψ'),
    (0x18, 'Σ'),
    (0x19, 'Θ'),
    (0x1F, 'Ê'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x41, 'À'),
    (0x49, 'Í'),
    (0x4F, 'Ó'),
    (0x55, 'Ú'),
    (0x5B, 'Ã'),
    (0x5C, 'Õ'),
    (0x61, 'Â'),
    (0x65, '€'),
    (0x69, 'í'),
    (0x6F, 'ó'),
    (0x75, 'ú'),
    (0x7B, 'ã'),
    (0x7C, 'õ'),
    (0x7F, 'â'),
];

/// The names of the language ids, for warnings and JSON.
pub fn language_name(id: u8) -> &'static str {
    match id {
        0 => "default",
        1 => "turkish",
        2 => "spanish",
        3 => "portuguese",
        4 => "bengali",
        5 => "gujarati",
        6 => "hindi",
        7 => "kannada",
        8 => "malayalam",
        9 => "oriya",
        10 => "punjabi",
        11 => "tamil",
        12 => "telugu",
        13 => "urdu",
        _ => "reserved",
    }
}

/// Whether this codec has the tables of language `id`.
pub fn known(id: u8) -> bool {
    matches!(id, 0..=3) || super::indian::locking(id).is_some()
}

/// The locking shift table of language `id`; the default alphabet for the
/// default, for Spanish (which has none) and for unknown ids.
pub fn locking(id: u8) -> &'static [char; 128] {
    match id {
        1 => &TURKISH_LOCKING,
        3 => &PORTUGUESE_LOCKING,
        other => super::indian::locking(other).unwrap_or(&DEFAULT),
    }
}

/// The single shift table of language `id`; the default extension table for
/// the default and unknown ids.
pub fn single(id: u8) -> &'static [(u8, char)] {
    match id {
        1 => TURKISH_SINGLE,
        2 => SPANISH_SINGLE,
        3 => PORTUGUESE_SINGLE,
        other => super::indian::single(other).unwrap_or(EXTENSION),
    }
}
