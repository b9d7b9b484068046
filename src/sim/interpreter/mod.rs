//! The AT command interpreter of one virtual modem: ITU-T V.250 framing
//! and result codes in `v250`, the 3GPP TS 27.007 identity, status and
//! registration commands in `general` (which also refuses what a profile's
//! firmware does not implement), the SIM's ICCID, `+CRSM` and power in
//! `sim_access`, TS 27.005 SMS commands in `sms`, call commands in `calls`,
//! USSD (and Huawei's `^USSDMODE`) in `ussd`. Bytes in, bytes out, no
//! I/O: it reaches the rest of the world only through the [`Network`]
//! handle, so tests feed it arbitrary input.

mod calls;
mod general;
mod sim_access;
mod sms;
mod ussd;
mod v250;

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
    /// `AT+CTZU=1`: the network sets the modem's clock (NITZ).
    ctzu: bool,
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
    /// How long the firmware takes over the line just run (the profile's
    /// slow commands): the port task holds the answer back that long.
    slow_ms: u64,
    /// USSD strings are 7-bit packed hex (`^USSDMODE=1` on Huawei) rather
    /// than text.
    ussd_pdu: bool,
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
    ///
    /// # Panics
    ///
    /// If `network` has no modem `index`: a caller's bug.
    pub fn new(network: Network, index: usize) -> Self {
        // Cannot fail from the port task: it runs only for modems the network has.
        let (profile, identity) = network
            .with_modem(index, |slot| (slot.profile.clone(), slot.identity.clone()))
            .unwrap_or_else(|_| panic!("modem {index} is not part of the network"));
        Interpreter {
            echo: profile.boot.echo,
            periodic_noise: !profile.noise.periodic.is_empty(),
            cfun: profile.boot.cfun,
            ussd_pdu: profile.commands.ussd_pdu,
            network,
            index,
            profile,
            identity,
            verbose: true,
            cmee: 0,
            ctzu: false,
            slow_ms: 0,
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

    /// How long to hold back the answer to what was just fed (once).
    pub fn take_slowness(&mut self) -> u64 {
        std::mem::take(&mut self.slow_ms)
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
}

#[cfg(test)]
mod tests;
