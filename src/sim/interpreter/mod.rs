//! The AT command interpreter of one virtual modem (ITU-T V.250 framing,
//! 3GPP TS 27.007 identity and status commands, TS 27.005 SMS commands in
//! `sms`). Bytes in, bytes out, no I/O: it reaches the rest of the world
//! only through the [`Network`] handle, so tests feed it arbitrary input.

mod calls;
mod sms;

use crate::profile::Profile;
use crate::sim::identity::Identity;
use crate::sim::network::{ModemSettings, Network};

/// V.250 §6.3.1: a command line may be at most this long; longer lines are
/// discarded (with ERROR) rather than buffered without bound.
const MAX_LINE: usize = 512;

/// Ctrl-Z ends the text after the `> ` prompt and sends it; Esc cancels
/// (27.005 §3.5.1).
const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// One modem's command state. SMS routing settings (`+CNMI`, `+CSMS`,
/// `+CMGF`…) live in the network's record of the modem, since the network
/// needs them to deliver; the rest of the V.250 state lives here.
#[derive(Debug)]
pub struct Interpreter {
    network: Network,
    index: usize,
    profile: Profile,
    identity: Identity,
    echo: bool,
    verbose: bool,
    cmee: u8,
    /// 3GPP TS 27.007 §8.2 functionality level (0 minimum, 1 full, 4 radio off).
    cfun: u8,
    /// 27.005 §3.3.1 `+CSCA` as set by the host.
    csca: String,
    /// 27.005 §3.3.2 `+CSMP=<fo>,<vp>,<pid>,<dcs>` for text-mode submits.
    csmp: [u8; 4],
    /// The periodic vendor noise is on until the profile's off command.
    periodic_noise: bool,
    /// Set by `AT+CFUN=1,1`: the port task reboots the modem.
    reset_requested: bool,
    /// Set when a message went to the network: the port task applies the
    /// network's submit delay.
    submitted: bool,
    prompt: Option<sms::Prompt>,
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
    /// The command printed its own ending (the `> ` prompt, `NO CARRIER`).
    Pending,
}

impl Interpreter {
    /// A freshly booted modem `index` of `network`.
    pub fn new(network: Network, index: usize) -> Self {
        let (profile, identity) = network
            .with_modem(index, |slot| (slot.profile.clone(), slot.identity.clone()))
            .unwrap_or_else(|_| panic!("modem {index} is not part of the network"));
        Interpreter {
            echo: profile.boot.echo,
            periodic_noise: !profile.noise.periodic.is_empty(),
            network,
            index,
            profile,
            identity,
            verbose: true,
            cmee: 0,
            cfun: 1,
            csca: crate::sim::network::SMSC.to_string(),
            csmp: [17, 167, 0, 0],
            reset_requested: false,
            submitted: false,
            prompt: None,
            line: Vec::new(),
            previous: Vec::new(),
            overflowed: false,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The lines the model prints when it powers on, as they arrive on the port.
    pub fn boot_output(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in &self.profile.boot.urcs {
            out.extend_from_slice(format!("\r\n{line}\r\n").as_bytes());
        }
        out
    }

    /// One round of the profile's periodic noise, if it is on.
    pub fn periodic_output(&self) -> Option<Vec<u8>> {
        if !self.periodic_noise || self.profile.noise.periodic.is_empty() {
            return None;
        }
        let rssi = self
            .network
            .with_modem(self.index, |slot| slot.signal)
            .unwrap_or(0);
        let mut out = Vec::new();
        for line in &self.profile.noise.periodic {
            let line = line.replace("{rssi}", &rssi.to_string());
            out.extend_from_slice(format!("\r\n{line}\r\n").as_bytes());
        }
        Some(out)
    }

    /// Whether unsolicited output may be written now: not while the host is
    /// typing a message after `> ` (27.005 §3.4.1: the TA buffers them), nor
    /// while a command line has arrived only in part. A URC between two
    /// halves of a line's echo splits the echo, which gammu cannot read
    /// (it gave up on a Huawei `AT+CSCS` echo cut by `^RSSI`).
    pub fn accepts_urcs(&self) -> bool {
        self.prompt.is_none() && !self.typing_command()
    }

    /// A command line has begun: its `A` (or `AT`) has arrived. Stray bytes
    /// without it (V.250 ignores them) do not hold URCs back, or a client
    /// that sent one would never hear of a new message.
    fn typing_command(&self) -> bool {
        self.line
            .last()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'))
            || self.line.windows(2).any(|w| w.eq_ignore_ascii_case(b"AT"))
    }

    /// True once after a message was submitted to the network.
    pub fn take_submitted(&mut self) -> bool {
        std::mem::take(&mut self.submitted)
    }

    /// True once after `AT+CFUN=1,1`: the caller reboots the modem.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_requested)
    }

    fn settings(&self) -> ModemSettings {
        self.network
            .with_modem(self.index, |slot| slot.settings.clone())
            .unwrap_or_else(|_| ModemSettings::from_profile(&self.profile))
    }

    fn update_settings(&self, change: impl FnOnce(&mut ModemSettings)) {
        let _ = self
            .network
            .with_modem(self.index, |slot| change(&mut slot.settings));
    }

    /// Feeds bytes received on the port; returns the bytes the modem sends back.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in input {
            if self.prompt.is_some() {
                self.prompt_byte(byte, &mut out);
                continue;
            }
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
        let command_line = &trimmed[start..];
        if let Some(vendor) = self
            .profile
            .commands
            .vendor
            .iter()
            .find(|v| v.command.eq_ignore_ascii_case(command_line))
        {
            if self
                .profile
                .noise
                .off_command
                .as_deref()
                .is_some_and(|off| off.eq_ignore_ascii_case(command_line))
            {
                self.periodic_noise = false;
            }
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
                Outcome::Pending => return,
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
        if let Some(locked) = self.locked_out(&upper) {
            return locked;
        }
        if let Some(outcome) = self.sms_command(command, &upper, out) {
            return outcome;
        }
        if calls::is_call_command(&upper) {
            return self.call_command(&upper, out);
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
                let lines: Vec<String> = self
                    .profile
                    .identity
                    .ati
                    .iter()
                    .map(|line| line.replace("{imei}", &self.identity.imei))
                    .collect();
                for line in &lines {
                    self.info(out, line);
                }
                Outcome::Ok
            }
            "+CGMI" | "+GMI" => info(self, out, self.profile.identity.manufacturer.clone()),
            "+CGMM" | "+GMM" => info(self, out, self.profile.identity.model.clone()),
            "+CGMR" | "+GMR" => info(self, out, self.profile.identity.revision.clone()),
            "+CGSN" | "+GSN" => info(self, out, self.identity.imei.clone()),
            "+CGMI=?" | "+CGMM=?" | "+CGMR=?" | "+CGSN=?" | "+CIMI=?" | "+CNUM=?" => Outcome::Ok,
            "+CIMI" => info(self, out, self.identity.imsi.clone()),
            "+CNUM" => info(
                self,
                out,
                format!("+CNUM: \"\",\"{}\",145", self.identity.msisdn),
            ),
            "+CPIN?" => {
                let state = self
                    .network
                    .with_modem(self.index, |slot| slot.lock.state)
                    .unwrap_or_default();
                info(self, out, format!("+CPIN: {}", state.code()))
            }
            "+CPIN=?" => Outcome::Ok,
            _ if upper.starts_with("+CPIN=") => self.enter_pin(&command["+CPIN=".len()..]),
            "+CSQ" => {
                let rssi = self
                    .network
                    .with_modem(self.index, |slot| slot.signal)
                    .unwrap_or(99);
                let rssi = if self.cfun == 1 { rssi } else { 99 };
                info(self, out, format!("+CSQ: {rssi},99"))
            }
            "+CSQ=?" => info(self, out, "+CSQ: (0-31,99),(0-7,99)".into()),
            "+CFUN?" => info(self, out, format!("+CFUN: {}", self.cfun)),
            "+CFUN=?" => info(self, out, "+CFUN: (0,1,4),(0-1)".into()),
            "+CFUN=0" | "+CFUN=0,0" => self.set_functionality(0),
            "+CFUN=1" | "+CFUN=1,0" => self.set_functionality(1),
            "+CFUN=4" | "+CFUN=4,0" => self.set_functionality(4),
            // 27.007 §8.2 <rst>=1: reset the MT before setting the level;
            // the port task reboots it (boot noise, defaults) after the OK.
            "+CFUN=1,1" => {
                self.reset();
                self.reset_requested = true;
                Outcome::Ok
            }
            "+CREG?" | "+CGREG?" | "+CEREG?" => {
                let name = upper[..upper.len() - 1].to_string();
                let settings = self.settings();
                let mode = match name.as_str() {
                    "+CREG" => settings.creg,
                    "+CEREG" => settings.cereg,
                    _ => 0,
                };
                let stat = self.registration_stat();
                // Mode 2 adds the location area and cell (27.007 §7.2).
                let line = if mode == 2 && (stat == 1 || stat == 5) {
                    format!("{name}: {mode},{stat},\"1A2B\",\"00C3\"")
                } else {
                    format!("{name}: {mode},{stat}")
                };
                info(self, out, line)
            }
            "+CREG=?" | "+CGREG=?" | "+CEREG=?" => {
                let name = &upper[..upper.len() - 2];
                info(self, out, format!("{name}: (0-2)"))
            }
            "+CREG" | "+CREG=0" | "+CREG=1" | "+CREG=2" => {
                let mode = upper.as_bytes().get(6).map_or(0, |b| b - b'0');
                self.update_settings(|s| s.creg = mode);
                Outcome::Ok
            }
            "+CEREG" | "+CEREG=0" | "+CEREG=1" | "+CEREG=2" => {
                let mode = upper.as_bytes().get(7).map_or(0, |b| b - b'0');
                self.update_settings(|s| s.cereg = mode);
                Outcome::Ok
            }
            "+CGREG" | "+CGREG=0" | "+CGREG=1" | "+CGREG=2" => Outcome::Ok,
            "+COPS?" => {
                let line = if self.registration_stat() == 1 || self.registration_stat() == 5 {
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
            "+COPS" | "+COPS=0" | "+COPS=3,0" | "+COPS=3,1" | "+COPS=3,2" => Outcome::Ok,
            "+CSCS?" => {
                let charset = self.settings().charset;
                info(self, out, format!("+CSCS: \"{}\"", charset.name()))
            }
            "+CSCS=?" => info(
                self,
                out,
                "+CSCS: (\"GSM\",\"IRA\",\"UCS2\",\"HEX\")".into(),
            ),
            _ if upper.starts_with("+CSCS=") => {
                match crate::sim::textmode::Charset::parse(&upper["+CSCS=".len()..]) {
                    Some(charset) => {
                        self.update_settings(|s| s.charset = charset);
                        Outcome::Ok
                    }
                    None => Outcome::CmeError(4, "operation not supported"),
                }
            }
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

    /// `<stat>` of `+CREG?` (27.007 §7.2): the network's registration, or
    /// not registered while the radio is off or the SIM locked.
    fn registration_stat(&self) -> u8 {
        if self.cfun != 1 {
            return 0;
        }
        self.network
            .with_modem(self.index, |slot| {
                if slot.lock.ready() {
                    slot.faults.registration.stat()
                } else {
                    0
                }
            })
            .unwrap_or(0)
    }

    /// The answer to a command that needs the SIM while it waits for its
    /// PIN or PUK: 27.005 §3.2.5 `+CMS ERROR: 311`/`316` for SMS commands,
    /// 27.007 §9.2.1 `+CME ERROR: 11`/`12` for the rest. `None` when the
    /// SIM is ready or the command works without it.
    fn locked_out(&self, upper: &str) -> Option<Outcome> {
        use crate::sim::network::LockState;
        let state = self
            .network
            .with_modem(self.index, |slot| slot.lock.state)
            .ok()?;
        if state == LockState::Ready {
            return None;
        }
        const WITHOUT_SIM: [&str; 14] = [
            "+CPIN", "+CMEE", "+CFUN", "+CSQ", "+CREG", "+CEREG", "+CGREG", "+CGMI", "+CGMM",
            "+CGMR", "+CGSN", "+GM", "+GSN", "+CSCS",
        ];
        let basic = !upper.starts_with(['+', '^', '$', '%']) && !upper.starts_with('D');
        if basic || WITHOUT_SIM.iter().any(|p| upper.starts_with(p)) {
            return None;
        }
        const SMS: [&str; 8] = [
            "+CMG", "+CMS", "+CPMS", "+CNMI", "+CNMA", "+CSCA", "+CSMS", "+CSDH",
        ];
        let puk = state == LockState::Puk;
        Some(
            if SMS.iter().any(|p| upper.starts_with(p)) || upper.starts_with("+CSMP") {
                Outcome::CmsError(if puk { 316 } else { 311 })
            } else if puk {
                Outcome::CmeError(12, "SIM PUK required")
            } else {
                Outcome::CmeError(11, "SIM PIN required")
            },
        )
    }

    /// `+CPIN=<pin>` or `+CPIN=<puk>,<newpin>` (27.007 §8.3).
    fn enter_pin(&mut self, arguments: &str) -> Outcome {
        let mut fields = arguments.split(',').map(|f| f.trim().trim_matches('"'));
        let code = fields.next().unwrap_or("");
        let new_pin = fields.next();
        let unlocked = self
            .network
            .with_modem(self.index, |slot| {
                let was_ready = slot.lock.ready();
                (was_ready, slot.lock.enter(code, new_pin))
            })
            .unwrap_or((false, false));
        match unlocked {
            // 27.007 §9.2.1 code 3: no PIN is being asked for.
            (true, _) => Outcome::CmeError(3, "operation not allowed"),
            (false, true) => {
                // Attached now: what the network held can come.
                self.network.retry_held();
                Outcome::Ok
            }
            // 27.007 §9.2.1 code 16: incorrect password.
            (false, false) => Outcome::CmeError(16, "incorrect password"),
        }
    }

    /// 27.007 §8.2: levels 0 and 4 switch the radio off; back at 1 the
    /// network delivers what it held meanwhile.
    fn set_functionality(&mut self, level: u8) -> Outcome {
        self.cfun = level;
        let on = level == 1;
        self.update_settings(|s| s.radio_on = on);
        if on {
            self.network.retry_held();
        } else {
            // The calls end; the network finds the modem unreachable.
            self.network.drop_modem_calls(self.index);
        }
        Outcome::Ok
    }

    /// Back to power-on state (V.250 settings and the network's record).
    fn reset(&mut self) {
        self.echo = self.profile.boot.echo;
        self.verbose = true;
        self.cmee = 0;
        self.cfun = 1;
        self.update_settings(|s| s.radio_on = true);
        self.network.reset_call_settings(self.index);
        self.csmp = [17, 167, 0, 0];
        self.periodic_noise = !self.profile.noise.periodic.is_empty();
        self.prompt = None;
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

    /// A final result in verbose or numeric form (V.250 §5.7.1).
    fn final_text(&self, out: &mut Vec<u8>, verbose: &str, numeric: &str) {
        if self.verbose || numeric.is_empty() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(verbose.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(numeric.as_bytes());
            out.extend_from_slice(b"\r");
        }
    }

    fn final_result(&mut self, out: &mut Vec<u8>, outcome: Outcome) {
        // With the fault flag set, URCs waiting in the network come out
        // between the information lines and the final result, as they can
        // on real hardware.
        let mid_response = self
            .network
            .with_modem(self.index, |slot| slot.faults.urc_mid_response)
            .unwrap_or(false);
        if mid_response {
            out.extend_from_slice(&self.network.take_urcs(self.index));
        }
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
            Outcome::Pending => return,
        };
        self.final_text(out, &verbose, numeric);
    }
}

/// Splits the first command off a command line body: a basic command (one
/// letter or `&` + letter, then digits), `D` with the rest of the line
/// (V.250 §6.3.1: the dial string runs to the end), or an extended one
/// (`+`/`^`/`$` up to the next `;` outside quotes).
fn split_command(body: &str) -> (&str, &str) {
    let bytes = body.as_bytes();
    match bytes.first() {
        Some(b'+' | b'^' | b'$' | b'%') => {
            let mut quoted = false;
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'"' => quoted = !quoted,
                    b';' if !quoted => return (&body[..i], &body[i + 1..]),
                    _ => {}
                }
            }
            (body, "")
        }
        Some(b';') => ("", &body[1..]),
        Some(b'D' | b'd') => (body, ""),
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
    use crate::profile::Profiles;
    use crate::sim::textmode;

    fn modem(profile: &str) -> Interpreter {
        let profiles = Profiles::builtin();
        let profile = profiles.get(profile).expect("builtin profile").clone();
        let network = Network::new(vec![(profile, Identity::generate(1, 0))]);
        network.set_plugged(0, Some("/dev/null".into()), None);
        network.boot(0);
        Interpreter::new(network, 0)
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

    fn sim_number(m: &Interpreter) -> String {
        m.identity.msisdn.clone()
    }

    #[test]
    fn pdu_submit_reaches_the_handset_with_the_modems_reference() {
        let mut m = modem("generic");
        run(&mut m, "ATE0\r");
        let pdus = crate::pdu::encode_submit(
            &crate::pdu::Address::international("447700900777"),
            "hello handset",
            0,
            &crate::pdu::SubmitOptions::default(),
        )
        .expect("encode");
        let pdu = &pdus[0];
        assert_eq!(
            run(&mut m, &format!("AT+CMGS={}\r", pdu.tpdu_length)),
            "\r\n> "
        );
        assert!(!m.accepts_urcs());
        let out = run(&mut m, &format!("{}\x1a", pdu.hex));
        assert_eq!(out, "\r\n+CMGS: 1\r\n\r\nOK\r\n");
        let received = m
            .network
            .handset_messages("+447700900777")
            .expect("handset");
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].text, "hello handset");
        assert_eq!(received[0].from, sim_number(&m));
        // A wrong length or a DELIVER instead of a SUBMIT is refused.
        run(&mut m, &format!("AT+CMGS={}\r", pdu.tpdu_length + 1));
        assert_eq!(
            run(&mut m, &format!("{}\x1a", pdu.hex)),
            "\r\n+CMS ERROR: 304\r\n"
        );
        // Esc cancels.
        run(&mut m, "AT+CMGS=5\r");
        assert_eq!(run(&mut m, "0011\x1b"), "\r\nOK\r\n");
        assert!(m.accepts_urcs());
        // Half a command line holds them back until its end.
        run(&mut m, "AT+CS");
        assert!(!m.accepts_urcs());
        run(&mut m, "Q\r");
        assert!(m.accepts_urcs());
        // A stray byte without "AT" does not.
        run(&mut m, "\x1b");
        assert!(m.accepts_urcs());
        run(&mut m, "\r");
    }

    #[test]
    fn stored_message_is_listed_read_and_deleted() {
        let mut m = modem("simcom-sim800");
        run(&mut m, "ATE0\r");
        let sim = sim_number(&m);
        m.network
            .handset_sms("+447700900321", &sim, "stored one")
            .expect("sms");
        let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
        assert_eq!(urc, "\r\n+CMTI: \"SM\",1\r\n");
        assert_eq!(
            run(&mut m, "AT+CPMS?\r"),
            "\r\n+CPMS: \"SM\",1,50,\"SM\",1,50,\"SM\",1,50\r\n\r\nOK\r\n"
        );
        let listed = run(&mut m, "AT+CMGL=4\r");
        let lines: Vec<&str> = listed.split("\r\n").collect();
        assert!(lines[1].starts_with("+CMGL: 1,0,,"), "{listed:?}");
        let decoded = crate::pdu::decode_hex(lines[2], true).expect("pdu");
        let crate::pdu::Tpdu::Deliver(deliver) = decoded.pdu.tpdu else {
            panic!("not a deliver");
        };
        assert_eq!(deliver.user_data.text, "stored one");
        assert_eq!(deliver.originator.to_string(), "+447700900321");
        // Listing marked it read.
        assert!(run(&mut m, "AT+CMGR=1\r").starts_with("\r\n+CMGR: 1,,"));
        run(&mut m, "AT+CMGF=1\r");
        let text = run(&mut m, "AT+CMGR=1\r");
        assert!(
            text.starts_with("\r\n+CMGR: \"REC READ\",\"+447700900321\",,\""),
            "{text:?}"
        );
        assert!(text.contains("\r\nstored one\r\n"), "{text:?}");
        assert_eq!(run(&mut m, "AT+CMGD=1\r"), "\r\nOK\r\n");
        assert_eq!(run(&mut m, "AT+CMGR=1\r"), "\r\nOK\r\n");
        assert_eq!(run(&mut m, "AT+CMGR=51\r"), "\r\n+CMS ERROR: 321\r\n");
    }

    #[test]
    fn text_mode_submit_in_ucs2_charset() {
        let mut m = modem("quectel-ec25");
        run(&mut m, "ATE0\r");
        run(&mut m, "AT+CMGF=1\r");
        run(&mut m, "AT+CSCS=\"UCS2\"\r");
        let to = textmode::Charset::Ucs2.encode("+447700900778");
        assert_eq!(run(&mut m, &format!("AT+CMGS=\"{to}\"\r")), "\r\n> ");
        let text = textmode::Charset::Ucs2.encode("Grüße 👋");
        let out = run(&mut m, &format!("{text}\x1a"));
        assert_eq!(out, "\r\n+CMGS: 1\r\n\r\nOK\r\n");
        let received = m
            .network
            .handset_messages("+447700900778")
            .expect("handset");
        assert_eq!(received[0].text, "Grüße 👋");
    }

    #[test]
    fn every_query_form_answers() {
        for name in ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"] {
            let mut m = modem(name);
            run(&mut m, "ATE0\r");
            for query in [
                "AT+CREG?",
                "AT+CREG=?",
                "AT+CEREG?",
                "AT+COPS?",
                "AT+COPS=?",
                "AT+CPMS?",
                "AT+CPMS=?",
                "AT+CNMI?",
                "AT+CNMI=?",
                "AT+CMGF?",
                "AT+CMGF=?",
                "AT+CSMS?",
                "AT+CSMS=?",
                "AT+CSCA?",
                "AT+CSDH?",
                "AT+CSDH=?",
                "AT+CSMP?",
                "AT+CMGL=?",
                "AT+CMGD=?",
                "AT+CMGS=?",
                "AT+CMGR=?",
                "AT+CNMA=?",
                "AT+CHLD=?",
                "AT+CLIP?",
                "AT+CLIP=?",
                "AT+CRC?",
                "AT+CUSD=?",
                "AT+CMUT?",
                "AT+CSCS?",
                "AT+CSCS=?",
                "AT+CSQ",
                "AT+CSQ=?",
                "AT+CFUN?",
                "AT+CMEE?",
                "AT+CPIN?",
                "AT+CLCC",
            ] {
                let out = run(&mut m, &format!("{query}\r"));
                assert!(out.ends_with("\r\nOK\r\n"), "{name} {query}: {out:?}");
            }
        }
    }

    #[test]
    fn urc_between_information_lines_and_ok_when_asked() {
        let mut m = modem("generic");
        run(&mut m, "ATE0\r");
        let sim = sim_number(&m);
        m.network
            .update_faults(
                0,
                crate::sim::network::FaultsUpdate {
                    urc_mid_response: Some(true),
                    ..Default::default()
                },
            )
            .expect("faults");
        m.network
            .handset_sms("+447700900321", &sim, "one")
            .expect("sms");
        m.network.take_urcs(0);
        m.network
            .handset_sms("+447700900321", &sim, "two")
            .expect("sms");
        let out = run(&mut m, "AT+CMGL=4\r");
        let urc = out
            .find("+CMTI: \"SM\",2")
            .expect("urc inside the response");
        let last_info = out.rfind("+CMGL: 2").expect("second message listed");
        let ok = out.rfind("OK").expect("final result");
        assert!(last_info < urc && urc < ok, "{out:?}");
    }

    #[test]
    fn written_drafts_are_sent_from_storage_and_a_full_storage_says_so() {
        let mut m = modem("generic");
        run(&mut m, "ATE0\r");
        run(&mut m, "AT+CMGF=1\r");
        assert_eq!(run(&mut m, "AT+CMGW=\"+447700900779\"\r"), "\r\n> ");
        assert_eq!(run(&mut m, "draft\x1a"), "\r\n+CMGW: 1\r\n\r\nOK\r\n");
        let listed = run(&mut m, "AT+CMGL=\"STO UNSENT\"\r");
        assert!(
            listed.contains("+CMGL: 1,\"STO UNSENT\",\"+447700900779\""),
            "{listed:?}"
        );
        assert_eq!(run(&mut m, "AT+CMSS=1\r"), "\r\n+CMSS: 1\r\n\r\nOK\r\n");
        let received = m
            .network
            .handset_messages("+447700900779")
            .expect("handset");
        assert_eq!(received[0].text, "draft");
        assert!(run(&mut m, "AT+CMGR=1\r").contains("\"STO SENT\""));
        // Fill the rest of SM: the profile's memory-full code answers.
        let capacity = m.profile.storage_capacity("SM").expect("SM");
        for _ in 1..capacity {
            run(&mut m, "AT+CMGW=\"+447700900779\"\r");
            run(&mut m, "x\x1a");
        }
        let code = m.profile.sms.storage_full_error;
        assert_eq!(
            run(&mut m, "AT+CMGW=\"+447700900779\"\r"),
            format!("\r\n+CMS ERROR: {code}\r\n")
        );
    }

    #[test]
    fn a_sim_with_a_pin_asks_for_it_and_blocks_after_three_wrong_ones() {
        let mut m = modem("simcom-sim800");
        m.network
            .update_faults(
                0,
                crate::sim::network::FaultsUpdate {
                    sim_pin: Some(Some("1234".into())),
                    ..Default::default()
                },
            )
            .expect("faults");
        // The PIN takes effect at the next power-on.
        assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: READY"));
        m.network.boot(0);
        run(&mut m, "ATE0\r");
        run(&mut m, "AT+CMEE=1\r");
        assert_eq!(
            run(&mut m, "AT+CPIN?\r"),
            "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
        );
        assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 11\r\n");
        assert_eq!(run(&mut m, "AT+CMGL=4\r"), "\r\n+CMS ERROR: 311\r\n");
        assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,0"));
        let sim = sim_number(&m);
        m.network
            .handset_sms("+447700900321", &sim, "held while locked")
            .expect("sms");
        assert!(m.network.take_urcs(0).is_empty());
        for _ in 0..3 {
            assert_eq!(run(&mut m, "AT+CPIN=\"0000\"\r"), "\r\n+CME ERROR: 16\r\n");
        }
        assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: SIM PUK"));
        assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 12\r\n");
        assert_eq!(run(&mut m, "AT+CPIN=\"1234\"\r"), "\r\n+CME ERROR: 16\r\n");
        let puk = crate::sim::network::PUK;
        assert_eq!(
            run(&mut m, &format!("AT+CPIN=\"{puk}\",\"4321\"\r")),
            "\r\nOK\r\n"
        );
        assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: READY"));
        let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
        assert_eq!(urc, "\r\n+CMTI: \"SM\",1\r\n");
        assert_eq!(run(&mut m, "AT+CPIN=\"4321\"\r"), "\r\n+CME ERROR: 3\r\n");
    }

    #[test]
    fn with_the_radio_off_nothing_is_sent_or_received() {
        let mut m = modem("quectel-ec25");
        run(&mut m, "ATE0\r");
        run(&mut m, "AT+CFUN=4\r");
        assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,0"));
        run(&mut m, "AT+CMGF=1\r");
        run(&mut m, "AT+CMGS=\"+447700900780\"\r");
        assert_eq!(run(&mut m, "x\x1a"), "\r\n+CMS ERROR: 331\r\n");
        let sim = sim_number(&m);
        m.network
            .handset_sms("+447700900780", &sim, "wait for the radio")
            .expect("sms");
        assert!(m.network.take_urcs(0).is_empty());
        run(&mut m, "AT+CFUN=1\r");
        let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
        assert_eq!(urc, "\r\n+CMTI: \"ME\",1\r\n");
    }

    /// Pieces of input a host (or line noise) produces: whole and half
    /// commands, the prompt's Ctrl-Z and Esc with and without a prompt,
    /// PDUs good and bad, huge lines and raw bytes.
    fn fragment() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let words: Vec<&'static str> = vec![
            "AT",
            "AT\r",
            "ATE1\r",
            "ATV0\r",
            "AT+CMGF=1\r",
            "AT+CMGF=0\r",
            "AT+CMGS=",
            "AT+CMGS=23\r",
            "AT+CMGS=\"+447700900123\"\r",
            "AT+CMGL=4\r",
            "AT+CMGL=\"ALL\"\r",
            "AT+CMGR=1\r",
            "AT+CMGD=1,4\r",
            "AT+CNMI=2,2,0,1,0\r",
            "AT+CSMS=1\r",
            "AT+CNMA\r",
            "AT+CPMS=\"ME\",\"SM\"\r",
            "AT+CSCS=\"UCS2\"\r",
            "AT+CSCS=\"HEX\"\r",
            "AT+CFUN=1,1\r",
            "ATD+447700900123;\r",
            "AT+CHLD=?\r",
            "AT+CLIP=1\r",
            "A/",
            "0011000B914477009001F20000AA05E8329BFD06",
            "\x1a",
            "\x1b",
            "\r",
            "\n",
            ";",
            "\"",
        ];
        prop_oneof![
            4 => proptest::sample::select(words).prop_map(|w| w.as_bytes().to_vec()),
            2 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => (0usize..3000).prop_map(|n| vec![b'A'; n]),
        ]
    }

    proptest::proptest! {
        /// Any bytes on the port yield modem-like answers without
        /// panicking: every byte written is printable ASCII, CR or LF, or an
        /// echo of a byte received; the output stays bounded; and after an
        /// Esc (leaving any prompt) and a CR, the modem answers a plain `AT`.
        #[test]
        fn arbitrary_input_never_breaks_the_modem(
            profile in proptest::sample::select(vec!["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"]),
            fragments in proptest::collection::vec(fragment(), 0..40),
        ) {
            let mut m = modem(profile);
            let input: Vec<u8> = fragments.concat();
            let out = m.feed(&input);
            for byte in &out {
                let modem_like = byte.is_ascii_graphic() || matches!(byte, b' ' | b'\r' | b'\n');
                proptest::prop_assert!(modem_like || input.contains(byte), "byte {byte:#04x} from nowhere");
            }
            proptest::prop_assert!(out.len() <= input.len() * 8 + 4096, "{} bytes out for {} in", out.len(), input.len());
            m.feed(b"\x1b\r");
            m.feed(b"ATE0V1\r");
            proptest::prop_assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
        }
    }
}
