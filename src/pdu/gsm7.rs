//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038
//! §6.2.1), the national language shift tables (Annex A), and septet packing
//! (§6.1.2.1.1).

use super::national;

/// The escape to the extension (single shift) table.
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, by septet value (TS 23.038 §6.2.1). 0x1B is the
/// escape, shown here as a space as the standard's note allows.
pub const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The default extension table (TS 23.038 §6.2.1.1): reached by the escape,
/// each of these costs two septets.
pub const EXTENSION: &[(u8, char)] = &[
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// ASCII characters to their septet (0xFF: not in the alphabet), built from
/// [`DEFAULT`] at compile time: most texts are ASCII, and a table beats a
/// search of the alphabet per character.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [0xFF; 128];
    let mut septet = 0;
    while septet < 128 {
        let c = DEFAULT[septet] as usize;
        if septet != ESCAPE as usize && c < 128 && table[c] == 0xFF {
            table[c] = septet as u8;
        }
        septet += 1;
    }
    table
};

/// The septet of `c` in the default alphabet.
fn default_septet(c: char) -> Option<u8> {
    if c.is_ascii() {
        let septet = ASCII_SEPTETS[c as usize];
        return (septet != 0xFF).then_some(septet);
    }
    DEFAULT.iter().position(|&d| d == c).map(|i| i as u8)
}

fn extension_septet(c: char) -> Option<u8> {
    EXTENSION.iter().find(|(_, e)| *e == c).map(|(s, _)| *s)
}

/// The septets of one character: one, or the escape and one.
fn char_septets(c: char) -> Option<(u8, Option<u8>)> {
    default_septet(c)
        .map(|s| (s, None))
        .or_else(|| extension_septet(c).map(|s| (ESCAPE, Some(s))))
}

/// Whether every character of `text` is in the default alphabet or its
/// extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| char_septets(c).is_some())
}

/// Septets `text` takes in the default alphabet (extension characters count
/// two), or `None` if some character is not in it.
pub fn septet_count(text: &str) -> Option<usize> {
    text.chars()
        .map(|c| char_septets(c).map(|(_, second)| 1 + usize::from(second.is_some())))
        .sum()
}

/// Septets a character takes (1 or 2), if it has any.
pub fn char_septet_count(c: char) -> Option<usize> {
    char_septets(c).map(|(_, second)| 1 + usize::from(second.is_some()))
}

/// The unpacked septets of `text`, escapes included.
pub fn encode_septets(text: &str) -> Option<Vec<u8>> {
    let mut septets = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (first, second) = char_septets(c)?;
        septets.push(first);
        septets.extend(second);
    }
    Some(septets)
}

/// Decodes unpacked septets with the default tables.
pub fn decode_septets(septets: &[u8]) -> String {
    decode_with_tables(septets, 0, 0).0
}

/// Decodes septets with a national locking shift table and a national single
/// shift table (language ids of TS 23.038 §6.2.1.2.4; 0 is the default).
/// Returns the text and whether something could not be mapped.
pub fn decode_with_tables(septets: &[u8], locking: u8, single: u8) -> (String, bool) {
    let locking_table = national::locking(locking);
    let single_table = national::single(single);
    let mut text = String::with_capacity(septets.len());
    let mut odd = false;
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(septet) = iter.next() {
        if septet == ESCAPE {
            match iter.next() {
                // TS 23.038 §6.2.1.1: an escape followed by a code the extension
                // table lacks shows the default alphabet's character.
                Some(next) => match single_table.iter().find(|(s, _)| *s == next) {
                    Some((_, c)) => text.push(*c),
                    None => {
                        odd = true;
                        text.push(locking_char(locking_table, next, &mut odd));
                    }
                },
                // A lone escape at the end: a space, as the standard suggests.
                None => {
                    odd = true;
                    text.push(' ');
                }
            }
        } else {
            text.push(locking_char(locking_table, septet, &mut odd));
        }
    }
    (text, odd)
}

fn locking_char(table: &[char; 128], septet: u8, odd: &mut bool) -> char {
    let c = table[usize::from(septet & 0x7F)];
    if c == national::UNUSED {
        *odd = true;
        ' '
    } else {
        c
    }
}

/// Packs septets into octets after `fill_bits` zero bits (the fill that aligns
/// the text after a user data header to a septet boundary).
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let total_bits = usize::from(fill_bits) + septets.len() * 7;
    let mut octets = vec![0u8; total_bits.div_ceil(8)];
    let mut bit = usize::from(fill_bits);
    for &septet in septets {
        let value = u16::from(septet & 0x7F) << (bit % 8);
        octets[bit / 8] |= value as u8;
        if bit % 8 > 1 {
            octets[bit / 8 + 1] |= (value >> 8) as u8;
        }
        bit += 7;
    }
    octets
}

/// Unpacks `count` septets from `octets`, skipping `fill_bits` first. Stops
/// early if the octets run out.
pub fn unpack(octets: &[u8], count: usize, fill_bits: u8) -> Vec<u8> {
    let mut septets = Vec::with_capacity(count);
    let mut bit = usize::from(fill_bits);
    while septets.len() < count && bit + 7 <= octets.len() * 8 {
        let index = bit / 8;
        let low = u16::from(octets[index]);
        let high = u16::from(octets.get(index + 1).copied().unwrap_or(0));
        septets.push((((high << 8) | low) >> (bit % 8)) as u8 & 0x7F);
        bit += 7;
    }
    septets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellohello_packs_as_in_the_dreamfabric_tutorial() {
        // "hellohello" -> E8329BFD4697D9EC37 (dreamfabric.com/sms/hello.html).
        let packed = pack(&encode_septets("hellohello").unwrap(), 0);
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(decode_septets(&unpack(&packed, 10, 0)), "hellohello");
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(septet_count("€[]{}\\~^|"), Some(18));
        assert_eq!(septet_count("abc"), Some(3));
        assert_eq!(septet_count("aé€"), Some(4));
        assert_eq!(
            septet_count("ç"),
            None,
            "ç is not in the default alphabet (Ç is)"
        );
        assert!(!is_gsm7("日本"));
        let septets = encode_septets("a€").unwrap();
        assert_eq!(septets, [0x61, 0x1B, 0x65]);
        assert_eq!(decode_septets(&septets), "a€");
    }

    #[test]
    fn every_default_character_round_trips() {
        for (i, &c) in DEFAULT.iter().enumerate() {
            if i == usize::from(ESCAPE) {
                continue;
            }
            let septets = encode_septets(&c.to_string()).unwrap();
            assert_eq!(septets, [i as u8], "{c:?}");
        }
    }

    #[test]
    fn fill_bits_shift_the_packing() {
        for fill in 0..7 {
            let septets = encode_septets("The quick brown fox").unwrap();
            let packed = pack(&septets, fill);
            assert_eq!(unpack(&packed, septets.len(), fill), septets, "fill {fill}");
        }
    }

    #[test]
    fn an_unknown_escape_shows_the_default_character() {
        let (text, odd) = decode_with_tables(&[0x1B, 0x41], 0, 0);
        assert_eq!(text, "A");
        assert!(odd);
    }
}
