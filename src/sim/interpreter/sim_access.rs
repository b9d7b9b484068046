//! The SIM as the firmware reaches it: the vendor's ICCID command,
//! restricted SIM access (`+CRSM`, 3GPP TS 27.007 §8.18) to its elementary
//! files, and the SIM being powered only above minimum functionality.

use super::general::swap_nibbles;
use super::{Interpreter, Outcome};

/// 3GPP TS 27.007 §8.18 `<command>`: READ BINARY.
const READ_BINARY: u32 = 176;
/// 3GPP TS 31.102 §4.2.2 EF_ICCID (10 bytes) and §4.2.2 EF_IMSI (9 bytes).
const EF_ICCID: u32 = 0x2FE2;
const EF_IMSI: u32 = 0x6F07;

/// Commands answered without the SIM: the modem's own identity and state.
const WITHOUT_SIM: [&str; 13] = [
    "+CMEE", "+CFUN", "+CSQ", "+CREG", "+CEREG", "+CGREG", "+CGMI", "+CGMM", "+CGMR", "+CGSN",
    "+GM", "+GSN", "+CSCS",
];

/// 27.005 §3.2.5 message service commands (their errors are `+CMS`).
pub(super) const SMS: [&str; 9] = [
    "+CMG", "+CMS", "+CPMS", "+CNMI", "+CNMA", "+CSCA", "+CSMS", "+CSDH", "+CSMP",
];

impl Interpreter {
    /// At minimum functionality (`+CFUN: 0`) the SIM is not powered:
    /// whatever needs it fails with 27.007 §9.2.1 `+CME ERROR: 13` (SIM
    /// failure), or 27.005 §3.2.5 `+CMS ERROR: 313` for SMS commands,
    /// until `AT+CFUN=1`. `None` when the command may go on.
    pub(super) fn sim_off(&self, upper: &str) -> Option<Outcome> {
        if self.cfun != 0 {
            return None;
        }
        let basic = !upper.starts_with(['+', '^', '$', '%']) && !upper.starts_with('D');
        if basic || WITHOUT_SIM.iter().any(|p| upper.starts_with(p)) {
            return None;
        }
        Some(if SMS.iter().any(|p| upper.starts_with(p)) {
            Outcome::CmsError(313)
        } else {
            Outcome::CmeError(13, "SIM failure")
        })
    }

    /// The vendor's ICCID command and `+CRSM`; `None` for other commands.
    /// Both work on a PIN-locked SIM (EF_ICCID is always readable, 3GPP TS
    /// 31.102 §4.2.2). With the fault `iccid_unreadable` the firmware has
    /// neither.
    pub(super) fn sim_access(&mut self, upper: &str, out: &mut Vec<u8>) -> Option<Outcome> {
        let iccid_command = self.profile.commands.iccid.to_ascii_uppercase();
        let vendor = !iccid_command.is_empty() && Some(upper) == iccid_command.strip_prefix("AT");
        let crsm = upper.strip_prefix("+CRSM=");
        if !vendor && crsm.is_none() {
            return None;
        }
        let unreadable = self
            .network
            .with_modem(self.index, |slot| slot.faults.iccid_unreadable)
            .unwrap_or(false);
        if unreadable {
            return Some(Outcome::Unknown);
        }
        if vendor {
            let iccid = if self.profile.commands.iccid_swapped {
                swap_nibbles(&self.identity.iccid)
            } else {
                self.identity.iccid.clone()
            };
            let line = format!("{}{}", self.profile.commands.iccid_prefix, iccid);
            self.info(out, &line);
            return Some(Outcome::Ok);
        }
        let arguments = crsm.unwrap_or_default();
        if arguments == "?" {
            return Some(Outcome::Ok);
        }
        Some(match self.restricted_access(arguments) {
            Some(line) => {
                self.info(out, &line);
                Outcome::Ok
            }
            // 27.007 §9.2.1 code 50: incorrect parameters.
            None => Outcome::CmeError(50, "incorrect parameters"),
        })
    }

    /// `+CRSM=<command>,<fileid>,<P1>,<P2>,<P3>`: the `+CRSM:` answer, or
    /// `None` for arguments that are not numbers.
    fn restricted_access(&self, arguments: &str) -> Option<String> {
        let numbers: Vec<u32> = arguments
            .split(',')
            .take(5)
            .map(|f| f.trim().parse().ok())
            .collect::<Option<_>>()?;
        let (command, file) = (*numbers.first()?, numbers.get(1).copied().unwrap_or(0));
        if command != READ_BINARY {
            // ISO 7816-4 SW 6D00: instruction not supported.
            return Some("+CRSM: 109,0".into());
        }
        let content = match file {
            EF_ICCID => format!("{:F<20}", swap_nibbles(&self.identity.iccid)),
            // Length 8, then the digits with the odd-length parity nibble.
            EF_IMSI => format!("08{}", swap_nibbles(&format!("9{}", self.identity.imsi))),
            // 3GPP TS 51.011 §9.4.4 SW 9404: file ID not found.
            _ => return Some("+CRSM: 148,4".into()),
        };
        // P3 is the number of bytes wanted; 0 means the whole file.
        let wanted = numbers.get(4).copied().unwrap_or(0) as usize;
        let bytes = if wanted == 0 {
            content.len()
        } else {
            (wanted * 2).min(content.len())
        };
        Some(format!("+CRSM: 144,0,\"{}\"", &content[..bytes]))
    }
}
