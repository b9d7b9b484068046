//! Each bank modem's line: its SIM's number, whether its model has voice,
//! the supplementary services (`+CHLD` values) its network offers, and the
//! call settings its AT commands set (`+CLIP`, `+CRC`, `+CCWA`, `+CLCC`,
//! `+CMUT`).

use crate::profile::{DtmfDetection, Voice};

use super::{CallError, CallNetwork, Chld, Party};

/// A modem's call settings, as its AT commands set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModemCallSettings {
    /// `+CLIP=1`: `+CLIP` after each `RING`.
    pub clip: bool,
    /// `+CRC=1`: `+CRING: VOICE` instead of `RING`.
    pub crc: bool,
    /// `+CCWA=1`: `+CCWA` for a waiting call.
    pub ccwa: bool,
    /// `+CLCC=1`: a `+CLCC` line for every call that changes (SIMCom).
    pub clcc: bool,
    /// `+CMUT=1`: the uplink is muted; the modem hears but is not heard.
    pub muted: bool,
    /// `+CSSN=1,…`: `+CSSI` for supplementary services met by a call it
    /// places (27.007 §7.17).
    pub cssi: bool,
    /// `+CSSN=…,1`: `+CSSU` for supplementary services the network applies
    /// to its calls (held, multiparty, transferred by the other side).
    pub cssu: bool,
    /// `+DDET=1` / `+QTONEDET=1`: keys the other side presses are reported.
    pub dtmf: bool,
    /// `+DDET=1,<interval>,1`: SIMCom reports each key with its length.
    pub dtmf_timed: bool,
}

/// One bank modem as the call side knows it.
#[derive(Debug, Clone)]
pub(super) struct ModemLine {
    pub(super) msisdn: String,
    pub(super) voice: bool,
    pub(super) services: Vec<String>,
    pub(super) clcc_urc: bool,
    /// How the model reports keys pressed by the other side, if it can.
    pub(super) dtmf: Option<DtmfDetection>,
    pub(super) settings: ModemCallSettings,
}

impl CallNetwork {
    /// Adds (or replaces) a bank modem with its SIM's number and the voice
    /// services of its profile.
    pub fn add_modem(&mut self, index: usize, msisdn: &str, voice: &Voice) {
        self.modems.insert(
            index,
            ModemLine {
                msisdn: msisdn.to_string(),
                voice: voice.supported,
                services: voice.chld.clone(),
                clcc_urc: voice.clcc_urc,
                dtmf: voice.dtmf,
                settings: ModemCallSettings::default(),
            },
        );
    }

    /// The number a party presents when it calls.
    pub fn number_of(&self, party: &Party) -> Option<String> {
        match party {
            Party::Modem(index) => self.modems.get(index).map(|m| m.msisdn.clone()),
            Party::Handset(number) => Some(number.clone()),
        }
    }

    /// A modem's call settings.
    pub fn settings(&self, index: usize) -> Result<&ModemCallSettings, CallError> {
        self.modems
            .get(&index)
            .map(|m| &m.settings)
            .ok_or(CallError::UnknownModem(index))
    }

    /// Changes a modem's call settings (`+CLIP`, `+CRC`, `+CCWA`, `+CLCC`,
    /// `+CMUT`). `+CLCC=1` is refused on models that do not report changes.
    pub fn update_settings(
        &mut self,
        index: usize,
        change: impl FnOnce(&mut ModemCallSettings),
    ) -> Result<(), CallError> {
        let modem = self
            .modems
            .get_mut(&index)
            .ok_or(CallError::UnknownModem(index))?;
        let mut settings = modem.settings.clone();
        change(&mut settings);
        if settings.clcc && !modem.clcc_urc {
            return Err(CallError::ClccUrcUnsupported);
        }
        modem.settings = settings;
        Ok(())
    }

    /// Changes the supplementary services (`+CHLD` values) the SIM's
    /// network offers, as a different operator or subscription would.
    pub fn set_services(&mut self, index: usize, services: Vec<String>) -> Result<(), CallError> {
        let modem = self
            .modems
            .get_mut(&index)
            .ok_or(CallError::UnknownModem(index))?;
        if let Some(bad) = services.iter().find(|s| Chld::parse_service(s).is_none()) {
            return Err(CallError::InvalidChld(bad.clone()));
        }
        modem.services = services;
        Ok(())
    }

    /// The services modem `index`'s network offers.
    pub fn services(&self, index: usize) -> Result<Vec<String>, CallError> {
        self.modems
            .get(&index)
            .map(|m| m.services.clone())
            .ok_or(CallError::UnknownModem(index))
    }

    /// Back to power-on settings (after `ATZ`, a reset or a re-plug).
    pub fn reset_settings(&mut self, index: usize) {
        if let Some(modem) = self.modems.get_mut(&index) {
            modem.settings = ModemCallSettings::default();
        }
    }

    /// The answer to `AT+CHLD=?`.
    pub fn chld_test_line(&self, index: usize) -> Result<String, CallError> {
        let modem = self
            .modems
            .get(&index)
            .ok_or(CallError::UnknownModem(index))?;
        Ok(format!("+CHLD: ({})", modem.services.join(",")))
    }

    pub(super) fn modem(&self, party: &Party) -> Result<Option<&ModemLine>, CallError> {
        match party {
            Party::Modem(index) => {
                let modem = self
                    .modems
                    .get(index)
                    .ok_or(CallError::UnknownModem(*index))?;
                if modem.voice {
                    Ok(Some(modem))
                } else {
                    Err(CallError::NoVoice(*index))
                }
            }
            Party::Handset(_) => Ok(None),
        }
    }

    pub(super) fn offers(&self, party: &Party, service: &str) -> bool {
        match party {
            Party::Modem(index) => self
                .modems
                .get(index)
                .is_some_and(|m| m.services.iter().any(|s| s == service)),
            // Handsets only dial, answer and hang up.
            Party::Handset(_) => false,
        }
    }
}
