//! A bank modem as the network knows it: its SIM and storages, its
//! faults, and the settings (`+CNMI`, `+CSMS`, `+CMGF` …) that decide how
//! the network reaches it.

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::profile::Profile;
use crate::sim::identity::Identity;
use crate::sim::storage::Storages;
use crate::sim::textmode::Charset;

use super::{AwaitingAck, Faults, SimLock, Trace};

/// 3GPP TS 27.005 §3.4.1 `+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cnmi {
    pub mode: u8,
    pub mt: u8,
    pub bm: u8,
    pub ds: u8,
    pub bfr: u8,
}

impl Cnmi {
    /// Parses `mode[,mt[,bm[,ds[,bfr]]]]`; omitted values are 0.
    pub fn parse(text: &str) -> Option<Self> {
        let mut values = [0u8; 5];
        let fields: Vec<&str> = text.split(',').collect();
        if fields.is_empty() || fields.len() > 5 {
            return None;
        }
        for (slot, field) in values.iter_mut().zip(&fields) {
            let field = field.trim();
            if !field.is_empty() {
                *slot = field.parse().ok()?;
            }
        }
        let [mode, mt, bm, ds, bfr] = values;
        Some(Self {
            mode,
            mt,
            bm,
            ds,
            bfr,
        })
    }

    pub fn render(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.mode, self.mt, self.bm, self.ds, self.bfr
        )
    }
}

/// The settings of one modem that decide how the network reaches it.
/// The interpreter changes them; they return to the profile's defaults on
/// every boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemSettings {
    pub cnmi: Cnmi,
    /// 27.005 §3.2.1 `+CSMS`: 1 makes `+CMT` need `+CNMA`.
    pub csms: u8,
    /// 27.005 §3.2.3 `+CMGF`: text mode.
    pub text_mode: bool,
    /// 27.005 §3.3.3 `+CSDH`: text-mode header details.
    pub csdh: bool,
    pub charset: Charset,
    /// 27.007 §7.2 `+CREG` and §10.1.22 `+CEREG` unsolicited modes.
    pub creg: u8,
    pub cereg: u8,
    /// 27.007 §8.2 `+CFUN=1`: the radio is on (off at levels 0 and 4, when
    /// the modem neither sends nor receives).
    pub radio_on: bool,
}

impl ModemSettings {
    pub fn from_profile(profile: &Profile) -> Self {
        let mut cnmi = Cnmi::parse(&profile.sms.cnmi).unwrap_or(Cnmi {
            mode: 0,
            mt: 0,
            bm: 0,
            ds: 0,
            bfr: 0,
        });
        // After power-on new messages are stored (+CMTI) even where the
        // profile's driver asks for direct delivery: a +CMT before the host
        // chose phase 2+ service (+CSMS=1) is not kept for a retry.
        if cnmi.mt == 2 {
            cnmi.mt = 1;
        }
        ModemSettings {
            cnmi,
            csms: 0,
            text_mode: false,
            csdh: false,
            charset: Charset::Ira,
            creg: 0,
            cereg: 0,
            radio_on: profile.boot.cfun == 1,
        }
    }
}

/// What the port task of a modem is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortCommand {
    /// Close the pty: the client sees EOF/EIO and the link disappears.
    Unplug,
    /// Open a fresh pty and boot again, under `link` if given.
    Plug { link: Option<String> },
}

/// A bank modem as the network knows it.
#[derive(Debug)]
pub struct ModemSlot {
    pub profile: Profile,
    pub identity: Identity,
    /// The SIM's storages and the modem's own; both keep their messages
    /// across unplug and reset, as a SIM card and flash memory do.
    pub storages: Storages,
    pub settings: ModemSettings,
    pub faults: Faults,
    /// The SIM's PIN lock (27.007 §8.3 `+CPIN`).
    pub lock: SimLock,
    /// `+CSQ` rssi.
    pub signal: u8,
    pub plugged: bool,
    /// Power-ons so far (start, plug, `AT+CFUN=1,1`): tells a client that
    /// the modem has booted again.
    pub boots: u64,
    /// The pty slave path and the link to it, while plugged.
    pub path: Option<PathBuf>,
    pub link: Option<PathBuf>,
    pub(super) next_mr: u8,
    pub(super) urcs: VecDeque<Vec<u8>>,
    /// How many URCs were ever queued: a mark to tell later ones apart.
    pub(super) urcs_queued: u64,
    pub(super) awaiting_ack: VecDeque<AwaitingAck>,
    pub(super) trace: Trace,
    pub(super) port: Option<tokio::sync::mpsc::UnboundedSender<PortCommand>>,
}

impl ModemSlot {
    /// A modem of `profile` with the SIM of `identity`, as it comes from
    /// the factory: unplugged, never booted, nothing queued.
    pub(super) fn new(profile: Profile, identity: Identity) -> Self {
        ModemSlot {
            storages: Storages::from_profile(&profile),
            settings: ModemSettings::from_profile(&profile),
            faults: Faults::default(),
            lock: SimLock::default(),
            signal: 20,
            plugged: false,
            boots: 0,
            path: None,
            link: None,
            next_mr: 0,
            urcs: VecDeque::new(),
            urcs_queued: 0,
            awaiting_ack: VecDeque::new(),
            trace: Trace::default(),
            port: None,
            profile,
            identity,
        }
    }

    pub(super) fn queue_urc(&mut self, bytes: Vec<u8>) {
        self.urcs.push_back(bytes);
        self.urcs_queued += 1;
    }
}
