//! The commands every modem answers, whatever its SMS and call side: the
//! dispatch of one command, V.250 basic settings, 3GPP TS 27.007
//! identification, PIN (`+CPIN`), functionality (`+CFUN`), signal,
//! registration (`+CREG`/`+CEREG`), operator, character set and `+CMEE`.

use super::{Interpreter, Outcome, calls};

impl Interpreter {
    /// Runs one command of a line: what the firmware does not implement is
    /// refused first; then the SIM (powered, its ICCID and files, its
    /// lock), then USSD, the SMS and call commands, then the general ones.
    pub(super) fn execute(&mut self, command: &str, out: &mut Vec<u8>) -> Outcome {
        let upper = command.to_ascii_uppercase();
        if !self.profile.commands.implements(&upper) {
            return Outcome::Unknown;
        }
        if let Some(delay) = self.profile.commands.delay_of(&upper) {
            self.slow_ms = self.slow_ms.max(delay);
        }
        if let Some(off) = self.sim_off(&upper) {
            return off;
        }
        if let Some(outcome) = self.sim_access(&upper, out) {
            return outcome;
        }
        if let Some(locked) = self.locked_out(&upper) {
            return locked;
        }
        if let Some(outcome) = self.ussd_command(&upper, out) {
            return outcome;
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
            // Some firmware accepts ATE but never changes its echo.
            "E" | "E0" | "E1" if self.profile.commands.echo_fixed => Outcome::Ok,
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
            // 27.007 §8.41 and §8.15: with automatic time zone update the
            // network's time (NITZ) sets the clock; without, the modem's
            // own clock starts in 2004, as a SIM800's does.
            "+CTZU=0" | "+CTZU=1" => self.set(|s| s.ctzu = upper.ends_with('1')),
            "+CTZU?" => info(self, out, format!("+CTZU: {}", u8::from(self.ctzu))),
            "+CTZU=?" => info(self, out, "+CTZU: (0-1)".into()),
            "+CCLK?" => {
                let time = if self.ctzu {
                    self.network.time()
                } else {
                    time::macros::datetime!(2004-01-01 0:00 UTC) + self.network.uptime()
                };
                info(self, out, format!("+CCLK: \"{}\"", cclk(time)))
            }
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
        let puk = state == LockState::Puk;
        Some(
            if super::sim_access::SMS.iter().any(|p| upper.starts_with(p)) {
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
        // 27.007 §8.2 <rst>=1 restarts the modem: it boots as it always does.
        self.cfun = self.profile.boot.cfun;
        let on = self.cfun == 1;
        self.update_settings(|s| s.radio_on = on);
        self.network.reset_call_settings(self.index);
        self.csmp = [17, 167, 0, 0];
        self.ussd_pdu = self.profile.commands.ussd_pdu;
        self.periodic_noise = !self.profile.noise.periodic.is_empty();
        self.prompt = None;
    }
}

/// EF_ICCID stores BCD with the digits of each octet swapped (3GPP TS 31.102
/// §4.2); a trailing odd digit is padded with `F`.
pub(super) fn swap_nibbles(digits: &str) -> String {
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

/// A time as `+CCLK` gives it: `yy/MM/dd,hh:mm:ss±zz`, the zone in quarter
/// hours (27.007 §8.15).
fn cclk(time: time::OffsetDateTime) -> String {
    let quarters = time.offset().whole_minutes() / 15;
    format!(
        "{:02}/{:02}/{:02},{:02}:{:02}:{:02}{}{:02}",
        time.year() % 100,
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        if quarters < 0 { '-' } else { '+' },
        quarters.unsigned_abs()
    )
}
