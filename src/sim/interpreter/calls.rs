//! The interpreter's call commands, 3GPP TS 27.007 §6-§8 and V.250 §6.3:
//! dial, answer, hang up, `+CHLD` supplementary services, `+CLCC`, and the
//! call settings (`+CLIP`, `+CRC`, `+CCWA`, `+CMUT`, `+CSSN`), and the
//! vendors' DTMF detection (SIMCom `+DDET`, Quectel `+QTONEDET`). The calls
//! themselves live in the network's [`crate::sim::calls`] model; USSD is
//! `ussd.rs`.

use super::{Interpreter, Outcome};
use crate::profile::DtmfDetection;
use crate::sim::calls::{CallError, ModemCallSettings};

/// The commands the call side answers.
pub(super) fn is_call_command(upper: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "+CLCC",
        "+CHLD",
        "+CLIP",
        "+CRC",
        "+CCWA",
        "+CMUT",
        "+CHUP",
        "+CSSN",
        "+DDET",
        "+QTONEDET",
    ];
    upper == "A"
        || upper == "H"
        || upper == "H0"
        || upper.starts_with('D')
        || PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// A `0`/`1` setting value after `prefix` (`+CLIP=1`; `+CCWA=1,1` takes
/// the first field; a bare `+CLIP` means 0).
fn switch(upper: &str, prefix: &str) -> Option<bool> {
    let rest = upper.strip_prefix(prefix)?;
    let value = match rest.strip_prefix('=') {
        Some(value) => value.split(',').next().unwrap_or_default(),
        None if rest.is_empty() => "0",
        None => return None,
    };
    match value.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

impl Interpreter {
    pub(super) fn call_command(&mut self, upper: &str, out: &mut Vec<u8>) -> Outcome {
        let index = self.index;
        let settings = match self.network.call_settings(index) {
            Ok(settings) => settings,
            Err(error) => return self.call_error(error, out),
        };
        let query = |this: &Self, out: &mut Vec<u8>, line: String| {
            this.info(out, &line);
            Outcome::Ok
        };
        const SETTINGS: [&str; 5] = ["+CLIP", "+CRC", "+CCWA", "+CMUT", "+CLCC"];
        let setting = SETTINGS.into_iter().find(|prefix| {
            let assigns = upper
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('=') && rest != "=?");
            // A bare `AT+CLIP` sets 0; a bare `AT+CLCC` lists the calls.
            assigns || (upper == *prefix && *prefix != "+CLCC")
        });
        if let Some(prefix) = setting {
            let Some(on) = switch(upper, prefix) else {
                return Outcome::CmeError(4, "operation not supported");
            };
            let updated = self.network.update_call_settings(index, |s| match prefix {
                "+CLIP" => s.clip = on,
                "+CRC" => s.crc = on,
                "+CCWA" => s.ccwa = on,
                "+CMUT" => s.muted = on,
                _ => s.clcc = on,
            });
            return match updated {
                Ok(()) => Outcome::Ok,
                Err(error) => self.call_error(error, out),
            };
        }
        if upper.starts_with("+CSSN") {
            return self.cssn(upper, &settings, out);
        }
        if upper.starts_with("+DDET") || upper.starts_with("+QTONEDET") {
            return self.dtmf_detection(upper, &settings, out);
        }
        match upper {
            // 27.007 §7.6: <n> presentation, <m> 1 = CLIP provisioned.
            "+CLIP?" => query(self, out, format!("+CLIP: {},1", u8::from(settings.clip))),
            "+CRC?" => query(self, out, format!("+CRC: {}", u8::from(settings.crc))),
            "+CCWA?" => query(self, out, format!("+CCWA: {}", u8::from(settings.ccwa))),
            "+CMUT?" => query(self, out, format!("+CMUT: {}", u8::from(settings.muted))),
            "+CLCC?" if self.profile.voice.clcc_urc => {
                query(self, out, format!("+CLCC: {}", u8::from(settings.clcc)))
            }
            "+CLIP=?" | "+CRC=?" | "+CCWA=?" | "+CMUT=?" => {
                let name = &upper[..upper.len() - 2];
                query(self, out, format!("{name}: (0,1)"))
            }
            "+CLCC=?" | "+CHUP=?" => Outcome::Ok,
            "+CLCC" => {
                for line in self.network.modem_calls(index) {
                    self.info(out, &line);
                }
                Outcome::Ok
            }
            "+CHLD=?" => match self.network.modem_chld_test(index) {
                Ok(line) => query(self, out, line),
                Err(error) => self.call_error(error, out),
            },
            _ if upper == "+CHLD" || upper.starts_with("+CHLD=") => {
                let value = upper.strip_prefix("+CHLD=").unwrap_or("");
                match self.network.modem_chld(index, value) {
                    Ok(()) => Outcome::Ok,
                    Err(error) => self.call_error(error, out),
                }
            }
            "H" | "H0" | "+CHUP" => match self.network.modem_hangup(index) {
                Ok(()) => Outcome::Ok,
                Err(error) => self.call_error(error, out),
            },
            "A" => match self.network.modem_answer(index) {
                Ok(()) => Outcome::Ok,
                Err(error) => self.call_error(error, out),
            },
            // V.250 §6.3.1: a voice call ends its dial string with `;`; the
            // network has no data service, so a data call finds no carrier.
            _ if upper.starts_with('D') => {
                let Some(number) = upper[1..].strip_suffix(';') else {
                    return self.call_error(CallError::Unroutable(upper.into()), out);
                };
                if self.cfun != 1 {
                    return self.call_error(CallError::NoService, out);
                }
                match self.network.modem_dial(index, number) {
                    Ok(()) => Outcome::Ok,
                    Err(error) => self.call_error(error, out),
                }
            }
            // 27.007 §9.2.1 code 3: operation not allowed.
            _ => Outcome::CmeError(3, "operation not allowed"),
        }
    }

    /// `+CSSN=[<n>[,<m>]]` (27.007 §7.17): `<n>` turns `+CSSI` on, `<m>`
    /// `+CSSU`; an absent value is left as it is.
    fn cssn(&mut self, upper: &str, settings: &ModemCallSettings, out: &mut Vec<u8>) -> Outcome {
        match upper {
            "+CSSN?" => {
                let line = format!(
                    "+CSSN: {},{}",
                    u8::from(settings.cssi),
                    u8::from(settings.cssu)
                );
                self.info(out, &line);
                Outcome::Ok
            }
            "+CSSN=?" => {
                self.info(out, "+CSSN: (0,1),(0,1)");
                Outcome::Ok
            }
            _ => {
                let values = upper.strip_prefix("+CSSN=").unwrap_or("");
                let mut fields = values.split(',').map(str::trim);
                let parse = |field: Option<&str>| match field {
                    None | Some("") => Ok(None),
                    Some("0") => Ok(Some(false)),
                    Some("1") => Ok(Some(true)),
                    Some(_) => Err(()),
                };
                let (Ok(cssi), Ok(cssu), None) =
                    (parse(fields.next()), parse(fields.next()), fields.next())
                else {
                    return Outcome::CmeError(4, "operation not supported");
                };
                let updated = self.network.update_call_settings(self.index, |s| {
                    s.cssi = cssi.unwrap_or(s.cssi);
                    s.cssu = cssu.unwrap_or(s.cssu);
                });
                match updated {
                    Ok(()) => Outcome::Ok,
                    Err(error) => self.call_error(error, out),
                }
            }
        }
    }

    /// The vendor's DTMF detection, on the models that have it: SIMCom
    /// `AT+DDET=<mode>[,<interval>[,<reportMode>[,<ssdet>]]]` (SIM800 Series
    /// AT Command Manual §16.2.1), Quectel `AT+QTONEDET=<enable>`. Other
    /// models do not know the command.
    fn dtmf_detection(
        &mut self,
        upper: &str,
        settings: &ModemCallSettings,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let theirs = match self.network.dtmf_detection(self.index) {
            Ok(detection) => detection,
            Err(error) => return self.call_error(error, out),
        };
        let (name, detection) = if upper.starts_with("+DDET") {
            ("+DDET", DtmfDetection::Ddet)
        } else {
            ("+QTONEDET", DtmfDetection::Qtonedet)
        };
        if theirs != Some(detection) {
            return Outcome::Unknown;
        }
        let rest = &upper[name.len()..];
        let on = u8::from(settings.dtmf);
        let line = match (rest, detection) {
            ("?", DtmfDetection::Ddet) => {
                format!("+DDET: {on},0,{},0", u8::from(settings.dtmf_timed))
            }
            ("?", DtmfDetection::Qtonedet) => format!("+QTONEDET: {on}"),
            ("=?", DtmfDetection::Ddet) => "+DDET: (0,1),(0-10000),(0,1),(0,1)".into(),
            ("=?", DtmfDetection::Qtonedet) => "+QTONEDET: (0,1)".into(),
            _ => {
                let Some(values) = rest.strip_prefix('=') else {
                    return Outcome::Error;
                };
                let fields: Vec<&str> = values.split(',').map(str::trim).collect();
                let most = if detection == DtmfDetection::Ddet {
                    4
                } else {
                    1
                };
                let enable = match fields.first().copied() {
                    Some("0") => false,
                    Some("1") => true,
                    _ => return Outcome::CmeError(4, "operation not supported"),
                };
                if fields.len() > most {
                    return Outcome::CmeError(4, "operation not supported");
                }
                let timed = fields.get(2).is_some_and(|mode| *mode == "1");
                let updated = self.network.update_call_settings(self.index, |s| {
                    s.dtmf = enable;
                    s.dtmf_timed = timed;
                });
                return match updated {
                    Ok(()) => Outcome::Ok,
                    Err(error) => self.call_error(error, out),
                };
            }
        };
        self.info(out, &line);
        Outcome::Ok
    }

    /// A refused call operation as the modem reports it: `NO CARRIER`
    /// (nobody to connect to) or `+CME ERROR`.
    fn call_error(&mut self, error: CallError, out: &mut Vec<u8>) -> Outcome {
        match error.cme() {
            Some((code, text)) => Outcome::CmeError(code, text),
            None => {
                self.final_text(out, "NO CARRIER", "3");
                Outcome::Pending
            }
        }
    }
}
