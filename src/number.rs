//! Phone numbers: real numbers are personal data.
//!
//! [`PhoneNumber`] holds a number normalised to E.164 (`+` and digits). Its
//! `Debug` hides all but the last three digits, so `tracing` fields like
//! `?number` never leak a real number into the logs; the real value is only
//! reachable through the explicit [`PhoneNumber::e164`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a usable phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("empty phone number")]
    Empty,
    #[error("phone number has a character that is not a digit: {0:?}")]
    BadCharacter(char),
    #[error("unknown default region {0:?} (expected an ISO 3166 code such as \"GB\")")]
    UnknownRegion(String),
    #[error("national number {redacted} needs a region to become international")]
    NeedsRegion { redacted: String },
    #[error("not a valid phone number: {redacted} ({reason})")]
    Invalid { redacted: String, reason: String },
}

/// How much of the numbering plan a number must match to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberValidation {
    /// The number has a possible length for its country; a range the
    /// built-in plan does not know yet is accepted (and logged).
    #[default]
    Possible,
    /// The number is in a range of the built-in plan.
    Strict,
}

/// A phone number in E.164 form (`+4477009001234`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses and normalises `input` to E.164 with the phone-number metadata
    /// of libphonenumber. A number without `+` (or `00`) is read as national
    /// in `default_region` (ISO 3166 alpha-2, e.g. `"GB"`).
    ///
    /// A number outside the built-in plan but of a possible length for its
    /// country is accepted ([`NumberValidation::Possible`]): see
    /// [`PhoneNumber::parse_as`].
    pub fn parse(input: &str, default_region: Option<&str>) -> Result<Self, NumberError> {
        Self::parse_as(input, default_region, NumberValidation::default())
    }

    /// Like [`PhoneNumber::parse`], with the numbering-plan check
    /// `validation` asks for. Carriers open new ranges while an appliance
    /// runs offline for years, so by default a well-formed number of a
    /// possible length for its country is accepted, and logged as unknown
    /// to the plan; `Strict` refuses it.
    pub fn parse_as(
        input: &str,
        default_region: Option<&str>,
        validation: NumberValidation,
    ) -> Result<Self, NumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NumberError::Empty);
        }
        if let Some(bad) = trimmed
            .chars()
            .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')))
        {
            return Err(NumberError::BadCharacter(bad));
        }
        let region = match default_region {
            Some(code) => Some(
                phonenumber::country::Id::from_str(&code.to_ascii_uppercase())
                    .map_err(|_| NumberError::UnknownRegion(code.to_string()))?,
            ),
            None => None,
        };
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        if !international && region.is_none() {
            return Err(NumberError::NeedsRegion {
                redacted: redact(trimmed),
            });
        }
        let parsed = phonenumber::parse(region, trimmed).map_err(|error| NumberError::Invalid {
            redacted: redact(trimmed),
            reason: error.to_string(),
        })?;
        if !phonenumber::is_valid(&parsed) {
            if validation == NumberValidation::Strict {
                return Err(NumberError::Invalid {
                    redacted: redact(trimmed),
                    reason: "no such number in the numbering plan".into(),
                });
            }
            if !is_possible(&parsed) {
                return Err(NumberError::Invalid {
                    redacted: redact(trimmed),
                    reason: "not a possible length for a number of its country".into(),
                });
            }
            tracing::info!(
                number = %redact(trimmed),
                "number accepted though the built-in numbering plan does not know its range \
                 (possible for its country: [numbers] validation = \"strict\" refuses such)"
            );
        }
        Ok(Self(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Accepts a string already in E.164 syntax (`+` then 1 to 15 digits)
    /// without consulting numbering-plan metadata: for numbers the network or
    /// the store hands us that were validated when they came in.
    pub fn from_e164(input: &str) -> Result<Self, NumberError> {
        let digits = input
            .strip_prefix('+')
            .ok_or_else(|| NumberError::NeedsRegion {
                redacted: redact(input),
            })?;
        if digits.is_empty() {
            return Err(NumberError::Empty);
        }
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(NumberError::BadCharacter(bad));
        }
        if digits.len() > 15 || digits.starts_with('0') {
            return Err(NumberError::Invalid {
                redacted: redact(input),
                reason: "E.164 numbers have 1 to 15 digits and no leading zero".into(),
            });
        }
        Ok(Self(input.to_string()))
    }

    /// The ISO 3166 region the number belongs to (`"GB"`), when the
    /// numbering plan knows it: the home country of a SIM, used to read the
    /// national-format numbers its network delivers.
    pub fn region(&self) -> Option<String> {
        // The calling code's main country (GB for +44, not Guernsey), which
        // reads national numbers the same way as every region sharing it.
        let regions = phonenumber::metadata::DATABASE.region(&calling_code(&self.0)?)?;
        regions.first().map(|id| id.to_string())
    }

    /// The real number. Call sites that use it are the places where personal
    /// data leaves the process (the modem, the store, admin API responses).
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// The form shown to viewers: country code and last three digits
    /// (`+44******789`).
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let country_len = calling_code(&self.0)
            .map(|code| code.to_string().len())
            .unwrap_or(2)
            .min(digits.len().saturating_sub(3));
        let tail_start = digits.len().saturating_sub(3).max(country_len);
        format!(
            "+{}{}{}",
            &digits[..country_len],
            "*".repeat(tail_start - country_len),
            &digits[tail_start..]
        )
    }
}

/// The country calling code of the E.164 number `e164`: the first one to
/// three digits the numbering plan knows as a code (ITU assigns codes so
/// that none is the prefix of another; libphonenumber reads them the same
/// way). Found without the plan's regular expressions, which a full parse
/// compiles and which cost the daemon some 3 MB of memory for a SIM's
/// region alone.
fn calling_code(e164: &str) -> Option<u16> {
    let digits = e164.strip_prefix('+')?;
    (1..=digits.len().min(3)).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        phonenumber::metadata::DATABASE.by_code(&code).map(|_| code)
    })
}

/// Whether the national number has a length that numbers of its country
/// can have (libphonenumber's "possible number" check).
fn is_possible(parsed: &phonenumber::PhoneNumber) -> bool {
    let Some(regions) = phonenumber::metadata::DATABASE.by_code(&parsed.code().value()) else {
        return false;
    };
    let length = parsed.national().to_string().len();
    // The general description's lengths are often left empty in the
    // metadata: they are the union of the number types' lengths.
    regions.iter().any(|meta| {
        let d = meta.descriptors();
        [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .any(|desc| {
            desc.possible_length()
                .iter()
                .any(|&possible| usize::from(possible) == length)
        })
    })
}

/// Replaces every digit but the last three with `*` (keeps `+`).
pub fn redact(number: &str) -> String {
    let digit_count = number.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    number
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 3 <= digit_count { '*' } else { c }
            } else {
                c
            }
        })
        .collect()
}

/// Hides the phone numbers and PDUs inside free text from a modem (an AT
/// response line quoted in an error), so the text can be logged: a run of 7
/// or more digits is a number (see [`redact`]), and a run of 16 or more
/// hexadecimal digits is a PDU, which carries addresses and the message
/// itself, so only its length is kept. Shorter fields (indices, codes,
/// times) stay readable.
pub fn redact_text(text: &str) -> String {
    const NUMBER_DIGITS: usize = 7;
    const PDU_HEX_DIGITS: usize = 16;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        out.push_str(&rest[..start]);
        let run_len = rest[start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + run_len];
        if run_len >= PDU_HEX_DIGITS {
            out.push_str(&format!("<{run_len} hex digits>"));
        } else {
            // Digits glued to hex letters (`ATD4479…`) are still a number.
            for (is_digit, piece) in split_digits(run) {
                if is_digit && piece.len() >= NUMBER_DIGITS {
                    out.push_str(&redact(piece));
                } else {
                    out.push_str(piece);
                }
            }
        }
        rest = &rest[start + run_len..];
    }
    out.push_str(rest);
    out
}

/// `text` cut into its runs of digits and of other characters, in order.
fn split_digits(text: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let digit = rest.chars().next()?.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some((digit, piece))
    })
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", redact(&self.0))
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = NumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_e164(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

#[cfg(test)]
mod region_tests {
    use super::*;

    #[test]
    fn the_region_of_a_number_is_its_country() {
        let gb = PhoneNumber::from_e164("+447911123456").unwrap();
        assert_eq!(gb.region().as_deref(), Some("GB"));
        let de = PhoneNumber::from_e164("+4915123456789").unwrap();
        assert_eq!(de.region().as_deref(), Some("DE"));
        // One, two and three digits of calling code, and a code shared by
        // many regions: its main country, as a full parse would name it.
        for (number, region) in [
            ("+14155550123", "US"),
            ("+79161234567", "RU"),
            ("+2348031234567", "NG"),
            ("+8801712345678", "BD"),
            ("+441481712345", "GB"),
        ] {
            let n = PhoneNumber::from_e164(number).unwrap();
            assert_eq!(n.region().as_deref(), Some(region), "{number}");
            let parsed = phonenumber::parse(None, number).unwrap();
            assert_eq!(calling_code(number), Some(parsed.code().value()));
        }
        // No known code: neither the region nor a guess.
        assert_eq!(calling_code("+999123"), None);
        assert_eq!(PhoneNumber::from_e164("+999123").unwrap().region(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_all_but_last_three_digits() {
        let n = PhoneNumber::from_e164("+447700900123").unwrap();
        assert_eq!(format!("{n:?}"), "+*********123");
        assert!(!format!("{n:?}").contains("7700"));
    }

    #[test]
    fn masked_keeps_country_code() {
        let n = PhoneNumber::from_e164("+447700900789").unwrap();
        assert_eq!(n.masked(), "+44*******789");
        let us = PhoneNumber::from_e164("+14155550123").unwrap();
        assert_eq!(us.masked(), "+1*******123");
        let bd = PhoneNumber::from_e164("+8801712345678").unwrap();
        assert_eq!(bd.masked(), "+880*******678");
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        let n = PhoneNumber::parse("07911 123456", Some("GB")).unwrap();
        assert_eq!(n.e164(), "+447911123456");
        assert!(matches!(
            PhoneNumber::parse("07700900123", None),
            Err(NumberError::NeedsRegion { .. })
        ));
    }

    #[test]
    fn a_possible_number_outside_the_plan_is_accepted_unless_strict() {
        // +44 6 is a range the built-in plan does not know (yet); ten
        // national digits is a possible length in GB.
        let unknown = "+446000000123";
        assert_eq!(PhoneNumber::parse(unknown, None).unwrap().e164(), unknown);
        assert_eq!(
            PhoneNumber::parse("06000 000123", Some("GB"))
                .unwrap()
                .e164(),
            unknown
        );
        let strict = PhoneNumber::parse_as(unknown, None, NumberValidation::Strict).unwrap_err();
        assert!(
            strict
                .to_string()
                .contains("no such number in the numbering plan"),
            "{strict}"
        );
        assert!(
            !strict.to_string().contains("6000000"),
            "redacted: {strict}"
        );
        // A known number is fine either way; an impossible length never.
        assert!(PhoneNumber::parse_as("+447911123456", None, NumberValidation::Strict).is_ok());
        let short = PhoneNumber::parse("+4460001", None).unwrap_err();
        assert!(short.to_string().contains("possible length"), "{short}");
        let setting: NumberValidation = serde_json::from_str("\"strict\"").unwrap();
        assert_eq!(setting, NumberValidation::Strict);
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(PhoneNumber::parse("", None), Err(NumberError::Empty));
        assert_eq!(
            PhoneNumber::parse("+44abc", None),
            Err(NumberError::BadCharacter('a'))
        );
        assert!(PhoneNumber::parse("+999123", None).is_err());
        assert!(PhoneNumber::from_e164("+0123").is_err());
        assert!(PhoneNumber::from_e164("+1234567890123456").is_err());
    }

    #[test]
    fn numbers_and_pdus_in_modem_text_are_hidden_and_the_rest_kept() {
        // 3GPP TS 27.007 §7.18 (+CLCC) and §7.6 (+CLIP) carry the number.
        assert_eq!(
            redact_text(r#"+CLCC: 1,1,4,0,0,"+447911123456",145"#),
            r#"+CLCC: 1,1,4,0,0,"+*********456",145"#
        );
        assert_eq!(
            redact_text(r#"+CLIP: "07911123456",129,,,,0"#),
            r#"+CLIP: "********456",129,,,,0"#
        );
        // A received SMS PDU (3GPP TS 23.040 §9.2.2.1) from +27821234567
        // saying "Test2": python-gsmmodem test/test_pdu.py, test_decode[0].
        assert_eq!(
            redact_text(
                "+CMGR: 0,,24 | 06917228195339040B917228214365F700003130805120618005D4F29C2E03"
            ),
            "+CMGR: 0,,24 | <62 hex digits>"
        );
        // Glued to a hex letter, still a number.
        assert_eq!(redact_text("ATD447911123456;"), "ATD*********456;");
        // Short fields are not numbers.
        assert_eq!(
            redact_text("+CSQ: 99,99 | ERROR 500"),
            "+CSQ: 99,99 | ERROR 500"
        );
        assert_eq!(redact_text(""), "");
    }

    #[test]
    fn errors_do_not_leak_the_number() {
        let error = PhoneNumber::parse("07700900123", None).unwrap_err();
        assert!(!error.to_string().contains("7700900"), "{error}");
    }
}

#[cfg(test)]
mod redaction_properties {
    use proptest::prelude::*;

    use super::redact_text;

    proptest! {
        /// Wherever a number sits in modem text (digit-free around it, so
        /// the prefix cannot come from elsewhere), all but its last three
        /// digits are gone.
        #[test]
        fn no_number_survives_redaction(
            before in "[ -/:-~]{0,30}",
            digits in "[1-9][0-9]{6,14}",
            after in "[ -/:-~]{0,30}",
        ) {
            let text = format!("{before}{digits}{after}");
            let shown = redact_text(&text);
            let hidden = &digits[..digits.len() - 3];
            prop_assert!(!shown.contains(hidden), "{text:?} -> {shown:?}");
        }
    }
}
