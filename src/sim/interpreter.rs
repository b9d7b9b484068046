//! The AT command interpreter of one virtual modem (ITU-T V.250 framing,
//! 3GPP TS 27.007 identity and status commands). Pure: bytes in, bytes out,
//! no I/O, so it can be fed arbitrary input in tests.

use crate::modem::profile::Profile;
use crate::sim::identity::Identity;

/// V.250 §6.3.1: a command line may be at most this long; longer lines are
/// discarded (with ERROR) rather than buffered without bound.
const MAX_LINE: usize = 512;

/// One modem's command state.
#[derive(Debug, Clone)]
pub struct Interpreter {
    profile: Profile,
    identity: Identity,
    echo: bool,
    verbose: bool,
    cmee: u8,
    signal: u8,
    /// 3GPP TS 27.007 §8.2 functionality level (0 minimum, 1 full, 4 radio off).
    cfun: u8,
    /// 3GPP TS 27.007 §7.2 +CREG unsolicited mode.
    creg: u8,
    /// 3GPP TS 27.007 §5.5 character set.
    cscs: String,
    /// 3GPP TS 27.005 §3.2.3 message format (0 PDU, 1 text).
    cmgf: u8,
    /// 3GPP TS 27.005 §3.2.1 message service (1 requires +CNMA).
    csms: u8,
    /// 3GPP TS 27.005 §3.4.1 new message indication modes.
    cnmi: String,
    line: Vec<u8>,
    previous: Vec<u8>,
    overflowed: bool,
}

/// How one command of a line ended.
enum Outcome {
    Ok,
    Error,
    CmeError(u16, &'static str),
    CmsError(u16),
    Unknown,
}

impl Interpreter {
    /// A freshly booted modem with the profile's defaults.
    pub fn new(profile: Profile, identity: Identity) -> Self {
        let echo = profile.boot.echo;
        let cnmi = profile.sms.cnmi.clone();
        let mut interpreter = Interpreter {
            profile,
            identity,
            echo,
            verbose: true,
            cmee: 0,
            signal: 20,
            cfun: 1,
            creg: 0,
            cscs: "IRA".into(),
            cmgf: 0,
            csms: 0,
            cnmi: String::new(),
            line: Vec::new(),
            previous: Vec::new(),
            overflowed: false,
        };
        interpreter.cnmi = cnmi;
        interpreter
    }

    /// `+CPMS` memory triple: used/total for the default storage (reading,
    /// writing and receiving all use it here).
    fn cpms_triple(&self) -> String {
        let name = &self.profile.sms.default_storage;
        let total = self.profile.storage_capacity(name).unwrap_or(0);
        let one = format!("\"{name}\",0,{total}");
        format!("{one},{one},{one}")
    }

    /// Feeds bytes received on the port; returns the bytes the modem sends back.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in input {
            if self.echo {
                out.push(byte);
            }
            match byte {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if std::mem::take(&mut self.overflowed) {
                        self.final_result(&mut out, Outcome::Error);
                    } else {
                        self.execute_line(&line, &mut out);
                    }
                }
                b'\n' => {}
                // Backspace (V.250 S5) edits the line being typed.
                0x08 | 0x7f => {
                    self.line.pop();
                }
                b'/' if self.line.eq_ignore_ascii_case(b"A") => {
                    self.line.clear();
                    let previous = self.previous.clone();
                    self.execute_line(&previous, &mut out);
                }
                _ if self.line.len() >= MAX_LINE => self.overflowed = true,
                _ => self.line.push(byte),
            }
        }
        out
    }

    fn execute_line(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        // V.250 §5.2.1: characters before "AT" are ignored; a line without
        // the prefix gets no answer at all.
        let text = String::from_utf8_lossy(raw);
        let trimmed = text.trim();
        let Some(start) = trimmed.to_ascii_uppercase().find("AT") else {
            return;
        };
        let body = trimmed[start + 2..].to_string();
        self.previous = raw.to_vec();
        if let Some(vendor) = self
            .profile
            .commands
            .vendor
            .iter()
            .find(|v| v.command.eq_ignore_ascii_case(trimmed))
        {
            let lines = vendor.response.clone();
            for line in &lines {
                self.info(out, line);
            }
            self.final_result(out, Outcome::Ok);
            return;
        }
        let mut rest = body.as_str();
        while !rest.is_empty() {
            let (command, tail) = split_command(rest);
            rest = tail;
            match self.execute(command, out) {
                Outcome::Ok => {}
                failure => {
                    self.final_result(out, failure);
                    return;
                }
            }
        }
        self.final_result(out, Outcome::Ok);
    }

    fn execute(&mut self, command: &str, out: &mut Vec<u8>) -> Outcome {
        let upper = command.to_ascii_uppercase();
        let iccid_command = self.profile.commands.iccid.to_ascii_uppercase();
        if !iccid_command.is_empty() && Some(upper.as_str()) == iccid_command.strip_prefix("AT") {
            let iccid = if self.profile.commands.iccid_swapped {
                swap_nibbles(&self.identity.iccid)
            } else {
                self.identity.iccid.clone()
            };
            let line = format!("{}{}", self.profile.commands.iccid_prefix, iccid);
            self.info(out, &line);
            return Outcome::Ok;
        }
        let info = |this: &mut Self, out: &mut Vec<u8>, line: String| {
            this.info(out, &line);
            Outcome::Ok
        };
        match upper.as_str() {
            "" => Outcome::Ok,
            "E" | "E0" => self.set(|s| s.echo = false),
            "E1" => self.set(|s| s.echo = true),
            "V" | "V0" => self.set(|s| s.verbose = false),
            "V1" => self.set(|s| s.verbose = true),
            "Z" | "Z0" | "&F" | "&F0" => {
                self.echo = self.profile.boot.echo;
                self.verbose = true;
                self.cmee = 0;
                Outcome::Ok
            }
            "I" | "I0" => {
                let lines = self.profile.identity.ati.clone();
                for line in &lines {
                    self.info(out, line);
                }
                Outcome::Ok
            }
            "+CGMI" | "+GMI" => info(self, out, self.profile.identity.manufacturer.clone()),
            "+CGMM" | "+GMM" => info(self, out, self.profile.identity.model.clone()),
            "+CGMR" | "+GMR" => info(self, out, self.profile.identity.revision.clone()),
            "+CGSN" | "+GSN" => info(self, out, self.identity.imei.clone()),
            "+CIMI" => info(self, out, self.identity.imsi.clone()),
            "+CNUM" => info(
                self,
                out,
                format!("+CNUM: \"\",\"{}\",145", self.identity.msisdn),
            ),
            "+CPIN?" => info(self, out, "+CPIN: READY".into()),
            "+CSQ" => info(self, out, format!("+CSQ: {},99", self.signal)),
            "+CSQ=?" => info(self, out, "+CSQ: (0-31,99),(0-7,99)".into()),
            "+CFUN?" => info(self, out, format!("+CFUN: {}", self.cfun)),
            "+CFUN=?" => info(self, out, "+CFUN: (0,1,4),(0-1)".into()),
            "+CFUN=0" | "+CFUN=0,0" => self.set(|s| s.cfun = 0),
            "+CFUN=1" | "+CFUN=1,0" | "+CFUN=1,1" => self.set(|s| s.cfun = 1),
            "+CFUN=4" | "+CFUN=4,0" => self.set(|s| s.cfun = 4),
            "+CREG?" | "+CGREG?" | "+CEREG?" => {
                let name = &upper[..upper.len() - 1];
                // Stat 1: registered, home network; 0: not registered when
                // the radio is off.
                let stat = if self.cfun == 1 { 1 } else { 0 };
                info(self, out, format!("{name}: {},{stat}", self.creg))
            }
            "+CREG=?" | "+CGREG=?" | "+CEREG=?" => {
                let name = &upper[..upper.len() - 2];
                info(self, out, format!("{name}: (0-2)"))
            }
            "+CREG=0" | "+CREG=1" | "+CREG=2" => {
                let mode = upper.as_bytes()[6] - b'0';
                self.set(|s| s.creg = mode)
            }
            "+CGREG=0" | "+CGREG=1" | "+CGREG=2" | "+CEREG=0" | "+CEREG=1" | "+CEREG=2" => {
                Outcome::Ok
            }
            "+COPS?" => {
                let line = if self.cfun == 1 {
                    "+COPS: 0,0,\"SIMMASK TEST\",0".to_string()
                } else {
                    "+COPS: 0".to_string()
                };
                info(self, out, line)
            }
            "+COPS=?" => info(
                self,
                out,
                "+COPS: (2,\"SIMMASK TEST\",\"SIMMASK\",\"00101\",0),,(0-4),(0-2)".into(),
            ),
            "+COPS" | "+COPS=0" => Outcome::Ok,
            "+CSCS?" => info(self, out, format!("+CSCS: \"{}\"", self.cscs)),
            "+CSCS=?" => info(
                self,
                out,
                "+CSCS: (\"GSM\",\"IRA\",\"UCS2\",\"HEX\")".into(),
            ),
            _ if upper.starts_with("+CSCS=") => {
                let wanted = upper["+CSCS=".len()..].trim_matches('"').to_string();
                if ["GSM", "IRA", "UCS2", "HEX"].contains(&wanted.as_str()) {
                    self.set(|s| s.cscs = wanted)
                } else {
                    Outcome::CmeError(4, "operation not supported")
                }
            }
            "+CMGF?" => info(self, out, format!("+CMGF: {}", self.cmgf)),
            "+CMGF=?" => info(self, out, "+CMGF: (0,1)".into()),
            "+CMGF=0" | "+CMGF" => self.set(|s| s.cmgf = 0),
            "+CMGF=1" => self.set(|s| s.cmgf = 1),
            "+CSMS?" => info(self, out, format!("+CSMS: {},1,1,1", self.csms)),
            "+CSMS=?" => info(self, out, "+CSMS: (0,1)".into()),
            "+CSMS=0" | "+CSMS=1" => {
                let service = upper.as_bytes()[6] - b'0';
                info(self, out, "+CSMS: 1,1,1".into());
                self.set(|s| s.csms = service)
            }
            "+CPMS=?" => {
                let names: Vec<String> = self
                    .profile
                    .sms
                    .storages
                    .iter()
                    .map(|st| format!("\"{}\"", st.name))
                    .collect();
                let list = format!("({})", names.join(","));
                info(self, out, format!("+CPMS: {list},{list},{list}"))
            }
            "+CPMS?" => info(self, out, format!("+CPMS: {}", self.cpms_triple())),
            _ if upper.starts_with("+CPMS=") => {
                let known = upper["+CPMS=".len()..].split(',').all(|name| {
                    let name = name.trim_matches('"');
                    self.profile.storage_capacity(name).is_some()
                });
                if known {
                    let name = &self.profile.sms.default_storage;
                    let total = self.profile.storage_capacity(name).unwrap_or(0);
                    info(self, out, format!("+CPMS: 0,{total},0,{total},0,{total}"))
                } else {
                    // 3GPP TS 27.005 §3.2.5: 302 operation not allowed.
                    Outcome::CmsError(302)
                }
            }
            "+CNMI?" => info(self, out, format!("+CNMI: {}", self.cnmi)),
            "+CNMI=?" => info(
                self,
                out,
                format!("+CNMI: {}", self.profile.sms.cnmi_supported),
            ),
            _ if upper.starts_with("+CNMI=") => {
                let modes = upper["+CNMI=".len()..].to_string();
                self.set(|s| s.cnmi = modes)
            }
            "+CSCA?" => info(self, out, "+CSCA: \"+447700900999\",145".into()),
            _ if upper.starts_with("+CSCA=") => Outcome::Ok,
            "+CSDH?" => info(self, out, "+CSDH: 0".into()),
            "+CSDH=0" | "+CSDH=1" | "+CSDH" => Outcome::Ok,
            // Storage is empty until the network delivers messages.
            _ if upper.starts_with("+CMGL") => Outcome::Ok,
            "+CMEE?" => info(self, out, format!("+CMEE: {}", self.cmee)),
            "+CMEE=?" => info(self, out, "+CMEE: (0-2)".into()),
            "+CMEE=0" | "+CMEE" => self.set(|s| s.cmee = 0),
            "+CMEE=1" => self.set(|s| s.cmee = 1),
            "+CMEE=2" => self.set(|s| s.cmee = 2),
            // 3GPP TS 27.007 §9.2.1 code 3.
            _ if upper.starts_with("+CMEE=") => Outcome::CmeError(3, "operation not allowed"),
            _ => Outcome::Unknown,
        }
    }

    fn set(&mut self, change: impl FnOnce(&mut Self)) -> Outcome {
        change(self);
        Outcome::Ok
    }

    fn info(&self, out: &mut Vec<u8>, line: &str) {
        // V.250 §5.7.1: verbose responses are framed by CR LF on both sides,
        // numeric ones end with a single CR.
        if self.verbose {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    fn final_result(&self, out: &mut Vec<u8>, outcome: Outcome) {
        let (verbose, numeric) = match outcome {
            Outcome::Ok => ("OK".to_string(), "0"),
            Outcome::Error => ("ERROR".to_string(), "4"),
            Outcome::Unknown => (self.profile.commands.unknown_command.clone(), "4"),
            Outcome::CmeError(code, text) => match self.cmee {
                1 => (format!("+CME ERROR: {code}"), ""),
                2 => (format!("+CME ERROR: {text}"), ""),
                _ => ("ERROR".to_string(), "4"),
            },
            Outcome::CmsError(code) => (format!("+CMS ERROR: {code}"), ""),
        };
        if self.verbose || numeric.is_empty() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(verbose.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(numeric.as_bytes());
            out.extend_from_slice(b"\r");
        }
    }
}

/// Splits the first command off a command line body: a basic command (one
/// letter or `&` + letter, then digits) or an extended one (`+`/`^`/`$`
/// up to the next `;`).
fn split_command(body: &str) -> (&str, &str) {
    let bytes = body.as_bytes();
    match bytes.first() {
        Some(b'+' | b'^' | b'$' | b'%') => match body.find(';') {
            Some(end) => (&body[..end], &body[end + 1..]),
            None => (body, ""),
        },
        Some(b';') => ("", &body[1..]),
        Some(_) => {
            let mut end = body.chars().next().map_or(0, char::len_utf8);
            if bytes.first() == Some(&b'&') && bytes.len() > 1 && bytes[1].is_ascii() {
                end = 2;
            }
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'?') {
                end += 1;
            }
            (&body[..end], &body[end..])
        }
        None => ("", ""),
    }
}

/// EF_ICCID stores BCD with the digits of each octet swapped (3GPP TS 31.102
/// §4.2); a trailing odd digit is padded with `F`.
fn swap_nibbles(digits: &str) -> String {
    let chars: Vec<char> = digits.chars().collect();
    chars
        .chunks(2)
        .flat_map(|pair| match pair {
            [a, b] => [*b, *a],
            [a] => ['F', *a],
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::profile::Profiles;

    fn modem(profile: &str) -> Interpreter {
        let profiles = Profiles::builtin();
        let profile = profiles.get(profile).expect("builtin profile").clone();
        Interpreter::new(profile, Identity::generate(1, 0))
    }

    fn run(modem: &mut Interpreter, input: &str) -> String {
        String::from_utf8_lossy(&modem.feed(input.as_bytes())).into_owned()
    }

    #[test]
    fn echo_and_ok() {
        let mut m = modem("generic");
        let echo = m.profile.boot.echo;
        let out = run(&mut m, "AT\r");
        assert_eq!(out, if echo { "AT\r\r\nOK\r\n" } else { "\r\nOK\r\n" });
        assert_eq!(
            run(&mut m, "ATE0\r"),
            if echo {
                "ATE0\r\r\nOK\r\n"
            } else {
                "\r\nOK\r\n"
            }
        );
        assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
    }

    #[test]
    fn concatenated_and_chained_commands() {
        let mut m = modem("generic");
        run(&mut m, "ATE0\r");
        let out = run(&mut m, "ATE0V1+CMEE=1;+CGSN\r");
        assert_eq!(out, format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imei));
        assert_eq!(run(&mut m, "AT+CMEE?\r"), "\r\n+CMEE: 1\r\n\r\nOK\r\n");
        assert_eq!(run(&mut m, "AT+CMEE=9\r"), "\r\n+CME ERROR: 3\r\n");
    }

    #[test]
    fn numeric_results_and_repeat() {
        let mut m = modem("generic");
        run(&mut m, "ATE0V0\r");
        assert_eq!(run(&mut m, "AT\r"), "0\r");
        assert_eq!(run(&mut m, "ATXYZ\r"), "4\r");
        run(&mut m, "ATV1\r");
        assert_eq!(
            run(&mut m, "AT+CIMI\r"),
            format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imsi)
        );
        assert_eq!(
            run(&mut m, "A/"),
            format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imsi)
        );
    }

    #[test]
    fn iccid_in_each_vendor_spelling() {
        for name in ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"] {
            let mut m = modem(name);
            run(&mut m, "ATE0\r");
            let command = m.profile.commands.iccid.clone();
            let out = run(&mut m, &format!("{command}\r"));
            let expected_digits = if m.profile.commands.iccid_swapped {
                swap_nibbles(&m.identity.iccid)
            } else {
                m.identity.iccid.clone()
            };
            let expected = format!("{}{}", m.profile.commands.iccid_prefix, expected_digits);
            assert!(out.contains(&expected), "{name}: {out:?}");
            assert!(out.ends_with("OK\r\n"), "{name}: {out:?}");
        }
    }

    #[test]
    fn overlong_line_is_an_error_not_unbounded() {
        let mut m = modem("generic");
        run(&mut m, "ATE0\r");
        let long = format!("AT{}\r", "A".repeat(MAX_LINE * 2));
        assert_eq!(run(&mut m, &long), "\r\nERROR\r\n");
        assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
    }

    #[test]
    fn nibble_swap() {
        assert_eq!(swap_nibbles("8944"), "9844");
        assert_eq!(swap_nibbles("123"), "21F3");
    }

    proptest::proptest! {
        /// Any bytes on the port yield an answer without panicking, and the
        /// modem still answers a plain `AT` afterwards.
        #[test]
        fn arbitrary_bytes_never_break_the_modem(input in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let mut m = modem("generic");
            m.feed(&input);
            // A CR ends whatever line the noise left open.
            m.feed(b"\r");
            m.feed(b"ATE0V1\r");
            proptest::prop_assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
        }
    }
}
