//! Keys pressed during a call (DTMF, ITU-T Q.23). A party's keys are
//! heard by whoever hears its voice; a bank modem that hears them and has
//! its detection on reports each key as its vendor does: SIMCom `+DTMF:
//! <key>` after `AT+DDET=1` (`+DTMF: <key>,<ms>` in report mode 1),
//! Quectel `+QTONEDET: <ASCII code>` after `AT+QTONEDET=1`.
//!
//! ```text
//! +DTMF: 5           SIMCom, report mode 0
//! +DTMF: 5,100       SIMCom, report mode 1: the key lasted 100 ms
//! +QTONEDET: 53      Quectel: "5" is ASCII 53, "#" 35, "*" 42
//! ```

use crate::profile::DtmfDetection;

use super::notices::push_line;
use super::{CallError, CallNetwork, CallState, Notice, Party};

/// How long a key is held, as SIMCom's report mode 1 states it.
const KEY_MS: u32 = 100;

/// Whether `key` is one of the sixteen DTMF keys.
pub fn is_key(key: char) -> bool {
    key.is_ascii_digit() || matches!(key, '*' | '#' | 'A'..='D')
}

impl CallNetwork {
    /// `party` presses `keys` during its call; returns the reports of the
    /// modems that hear it.
    pub fn press_keys(&mut self, party: &Party, keys: &str) -> Result<Vec<Notice>, CallError> {
        if let Some(bad) = keys.chars().find(|k| !is_key(*k)) {
            return Err(CallError::NotAKey(bad));
        }
        let talking = self
            .calls_of(party)
            .iter()
            .any(|c| c.state == CallState::Active && !c.held_by_remote);
        let number = self.number_of(party).filter(|_| talking);
        let Some(number) = number else {
            return Err(CallError::NotInCall);
        };
        let mut out = Vec::new();
        for (index, modem) in &self.modems {
            let Some(detection) = modem.dtmf.filter(|_| modem.settings.dtmf) else {
                continue;
            };
            let listener = Party::Modem(*index);
            if &listener == party || !self.hears(&listener).contains(&number) {
                continue;
            }
            for key in keys.chars() {
                let line = match detection {
                    DtmfDetection::Ddet if modem.settings.dtmf_timed => {
                        format!("+DTMF: {key},{KEY_MS}")
                    }
                    DtmfDetection::Ddet => format!("+DTMF: {key}"),
                    DtmfDetection::Qtonedet => format!("+QTONEDET: {}", u32::from(key)),
                };
                push_line(&mut out, *index, line);
            }
        }
        Ok(out)
    }

    /// The DTMF detection modem `index`'s model has, if any.
    pub fn dtmf_detection(&self, index: usize) -> Result<Option<DtmfDetection>, CallError> {
        self.modems
            .get(&index)
            .map(|m| m.dtmf)
            .ok_or(CallError::UnknownModem(index))
    }
}
