//! USSD (3GPP TS 27.007 §7.15 `+CUSD`): a request gets `OK`, then the
//! network's answer as `+CUSD: 0,<str>,<dcs>`. Firmware with the profile's
//! `ussd_pdu` (Huawei sticks) takes and gives `<str>` as GSM 7-bit packed
//! hex (3GPP TS 23.038 §6.1.2.3) until `AT^USSDMODE=0` switches it to text;
//! `AT^USSDMODE=1` switches back.

use super::{Interpreter, Outcome};
use crate::pdu::gsm7;
use crate::sim::network::USSD_BALANCE;

impl Interpreter {
    /// Answers `+CUSD` and, where the firmware has it, `^USSDMODE`; `None`
    /// for other commands.
    pub(super) fn ussd_command(&mut self, upper: &str, out: &mut Vec<u8>) -> Option<Outcome> {
        if self.profile.commands.ussd_pdu && upper.starts_with("^USSDMODE") {
            return Some(match upper {
                "^USSDMODE?" => {
                    let mode = u8::from(self.ussd_pdu);
                    self.info(out, &format!("^USSDMODE: {mode}"));
                    Outcome::Ok
                }
                "^USSDMODE=?" => {
                    self.info(out, "^USSDMODE: (0-1)");
                    Outcome::Ok
                }
                "^USSDMODE=0" => self.set(|s| s.ussd_pdu = false),
                "^USSDMODE=1" => self.set(|s| s.ussd_pdu = true),
                _ => Outcome::Error,
            });
        }
        if !upper.starts_with("+CUSD") {
            return None;
        }
        Some(match upper {
            "+CUSD?" => {
                self.info(out, "+CUSD: 0");
                Outcome::Ok
            }
            "+CUSD=?" => {
                self.info(out, "+CUSD: (0-2)");
                Outcome::Ok
            }
            _ => match upper.strip_prefix("+CUSD=") {
                Some(arguments) => self.ussd(arguments, out),
                None => Outcome::CmeError(4, "operation not supported"),
            },
        })
    }

    /// `+CUSD=<n>[,<str>[,<dcs>]]`.
    fn ussd(&mut self, arguments: &str, out: &mut Vec<u8>) -> Outcome {
        let mut fields = arguments.splitn(3, ',');
        let mode = fields.next().unwrap_or_default().trim();
        let request = fields.next().map(|s| s.trim().trim_matches('"'));
        let code = match (mode, request) {
            ("0" | "1" | "2", None) => return Outcome::Ok,
            ("0" | "1", Some(code)) if !code.is_empty() => code,
            _ => return Outcome::CmeError(4, "operation not supported"),
        };
        let code = if self.ussd_pdu {
            // A text request in PDU mode is refused, as these sticks do.
            match unpack_hex(code) {
                Some(code) => code,
                None => return Outcome::Error,
            }
        } else {
            code.to_string()
        };
        self.final_text(out, "OK", "0");
        let answer = if code == "*100#" {
            USSD_BALANCE
        } else {
            "Unknown service code"
        };
        let answer = if self.ussd_pdu {
            pack_hex(answer)
        } else {
            answer.to_string()
        };
        self.info(out, &format!("+CUSD: 0,\"{answer}\",15"));
        Outcome::Pending
    }
}

/// Text as USSD packs it: GSM 7-bit septets, eight to seven octets, hex.
fn pack_hex(text: &str) -> String {
    let septets = gsm7::encode_septets(text).unwrap_or_default();
    gsm7::pack(&septets, 0)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The text of packed hex; `None` unless it is hex of packed GSM 7-bit.
fn unpack_hex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let octets: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut septets = gsm7::unpack(&octets, octets.len() * 8 / 7, 0);
    // 23.038 §6.1.2.3: seven spare bits at the end are a CR, not a character.
    if octets.len().is_multiple_of(7) && septets.last() == Some(&0x0D) {
        septets.pop();
    }
    Some(gsm7::decode_septets(&septets))
}

#[cfg(test)]
mod tests {
    use super::{pack_hex, unpack_hex};

    // 3GPP TS 23.038 §6.1.2.3 packing, as a Huawei stick in ^USSDMODE=1
    // wants the request: "*100#" is AA180C3602.
    #[test]
    fn ussd_strings_pack_to_hex_and_back() {
        assert_eq!(pack_hex("*100#"), "AA180C3602");
        assert_eq!(unpack_hex("AA180C3602").as_deref(), Some("*100#"));
        assert_eq!(unpack_hex("*100#"), None);
        assert_eq!(
            unpack_hex(&pack_hex("Your balance is 12.34 EUR")).as_deref(),
            Some("Your balance is 12.34 EUR")
        );
    }
}
