//! The network's call service: the pure [`CallNetwork`] kept behind the
//! network's lock, asked by the modems' interpreters and the control API,
//! its notices delivered to the modems' ports as unsolicited output.
//!
//! [`CallNetwork`]: crate::sim::calls::CallNetwork

use std::collections::BTreeMap;
use std::time::Instant;

use crate::number::PhoneNumber;
use crate::sim::calls::{
    CallError, CallInfo, CallTiming, HandsetCall, ModemCallSettings, Notice, Party, Reach,
};

use super::{Handset, ModemSlot, Network, NetworkError, NetworkState};

/// What a USSD balance request (`AT+CUSD=1,"*100#",15`) gets back.
pub const USSD_BALANCE: &str = "Your balance is 12.34 EUR";

/// A call operation asked through the control API that failed.
#[derive(Debug, thiserror::Error)]
pub enum CallServiceError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Whether `party` can be called now: a modem plugged, registered and with
/// its radio on, a handset switched on and not barred (handsets never seen
/// are on).
fn reach(modems: &[ModemSlot], handsets: &BTreeMap<String, Handset>, party: &Party) -> Reach {
    match party {
        Party::Modem(index) => match modems.get(*index) {
            Some(slot)
                if slot.plugged
                    && slot.settings.radio_on
                    && slot.faults.registration.registered() =>
            {
                Reach::Reachable
            }
            _ => Reach::SwitchedOff,
        },
        Party::Handset(number) => match handsets.get(number) {
            Some(handset) if !handset.power_on => Reach::SwitchedOff,
            Some(handset) if handset.barred => Reach::Barred,
            _ => Reach::Reachable,
        },
    }
}

/// The number part of a V.250 dial string (`ATD+447700900123;`): dial
/// modifiers dropped; `None` when the string holds anything else.
fn dial_number(dial: &str) -> Option<String> {
    let number: String = dial
        .chars()
        .filter(|c| !matches!(c, 'T' | 'P' | 'W' | ',' | '@' | '!' | ' ' | 'I' | 'G'))
        .collect();
    let valid = !number.is_empty()
        && number
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || (c == '+' && i == 0));
    valid.then_some(number)
}

impl Network {
    /// Runs a call operation under the lock, then delivers its notices.
    fn with_calls<T>(
        &self,
        operation: impl FnOnce(&mut NetworkState) -> Result<(T, Vec<Notice>), CallError>,
    ) -> Result<T, CallError> {
        let result = operation(&mut self.lock());
        result.map(|(value, notices)| {
            self.deliver_call_notices(notices);
            value
        })
    }

    fn deliver_call_notices(&self, notices: Vec<Notice>) {
        for notice in notices {
            match notice {
                Notice::Modem { index, line } => {
                    self.push_urc(index, format!("\r\n{line}\r\n").into_bytes());
                }
                // Handset numbers in the simulator are fake: debug may show them.
                Notice::Handset { number, call } => {
                    tracing::debug!(%number, state = call.state, "handset call");
                }
            }
        }
    }

    /// Changes the ringing rhythm, no-answer timeout and set-up delay.
    pub fn set_call_timing(&self, timing: CallTiming) {
        self.lock().calls.set_timing(timing);
    }

    pub fn call_timing(&self) -> CallTiming {
        self.lock().calls.timing()
    }

    /// The `+CHLD` services modem `index`'s network offers.
    pub fn call_services(&self, index: usize) -> Result<Vec<String>, CallError> {
        self.lock().calls.services(index)
    }

    pub fn set_call_services(&self, index: usize, services: Vec<String>) -> Result<(), CallError> {
        self.lock().calls.set_services(index, services)
    }

    /// Periodic call work: alerting, no-answer timeouts, repeated `RING`s.
    pub fn call_tick(&self) {
        let notices = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let (modems, handsets) = (&state.modems, &state.handsets);
            state
                .calls
                .tick(Instant::now(), |party| reach(modems, handsets, party))
        };
        self.deliver_call_notices(notices);
    }

    /// A modem left the network: its calls end for everyone else.
    pub fn drop_modem_calls(&self, index: usize) {
        let notices = self.lock().calls.drop_party(&Party::Modem(index));
        self.deliver_call_notices(notices);
    }

    /// `ATZ` / `AT&F`: the call settings return to power-on values.
    pub fn reset_call_settings(&self, index: usize) {
        self.lock().calls.reset_settings(index);
    }

    /// A modem rebooted: its calls are gone and its call settings are back
    /// to power-on values.
    pub fn reboot_calls(&self, index: usize) {
        self.drop_modem_calls(index);
        self.lock().calls.reset_settings(index);
    }

    /// `ATD<dial>;` from modem `index`: the call is set up; the callee rings
    /// on the next tick (or the caller hears why not).
    pub fn modem_dial(&self, index: usize, dial: &str) -> Result<(), CallError> {
        let number = dial_number(dial).ok_or_else(|| CallError::Unroutable(dial.to_string()))?;
        let callee = match self.subscriber(&number) {
            Some(modem) => Party::Modem(modem),
            None => {
                let number = PhoneNumber::from_e164(&number)
                    .map_err(|_| CallError::Unroutable(number.clone()))?;
                Party::Handset(number.e164().to_string())
            }
        };
        self.with_calls(|state| {
            if reach(&state.modems, &state.handsets, &Party::Modem(index)) != Reach::Reachable {
                return Err(CallError::NoService);
            }
            if let Party::Handset(number) = &callee {
                state.handsets.entry(number.clone()).or_default();
            }
            let (_, notices) =
                state
                    .calls
                    .originate(&Party::Modem(index), &callee, &number, Instant::now())?;
            Ok(((), notices))
        })
    }

    /// `ATA` on modem `index`.
    pub fn modem_answer(&self, index: usize) -> Result<(), CallError> {
        self.with_calls(|state| Ok(((), state.calls.answer(&Party::Modem(index))?)))
    }

    /// `ATH` / `AT+CHUP` on modem `index`: every call of it ends.
    pub fn modem_hangup(&self, index: usize) -> Result<(), CallError> {
        self.with_calls(|state| Ok(((), state.calls.hangup(&Party::Modem(index))?)))
    }

    /// `AT+CHLD=<value>` on modem `index`.
    pub fn modem_chld(&self, index: usize, value: &str) -> Result<(), CallError> {
        self.with_calls(|state| Ok(((), state.calls.chld(index, value)?)))
    }

    /// The `+CLCC` lines of modem `index`.
    pub fn modem_calls(&self, index: usize) -> Vec<String> {
        self.lock().calls.clcc_lines(index)
    }

    /// Modem `index`'s calls as the network has them (what `AT+CLCC` shows).
    pub fn modem_call_list(&self, index: usize) -> Vec<CallInfo> {
        self.lock().calls.calls_of(&Party::Modem(index))
    }

    /// `AT+CHLD=?` of modem `index`.
    pub fn modem_chld_test(&self, index: usize) -> Result<String, CallError> {
        self.lock().calls.chld_test_line(index)
    }

    /// Modem `index`'s call settings (`+CLIP`, `+CRC`, `+CCWA`, `+CLCC`, `+CMUT`).
    pub fn call_settings(&self, index: usize) -> Result<ModemCallSettings, CallError> {
        self.lock().calls.settings(index).cloned()
    }

    pub fn update_call_settings(
        &self,
        index: usize,
        change: impl FnOnce(&mut ModemCallSettings),
    ) -> Result<(), CallError> {
        self.lock().calls.update_settings(index, change)
    }

    /// A handset dials `to` (a bank SIM or another handset).
    pub fn handset_dial(&self, from: &str, to: &str) -> Result<HandsetCall, CallServiceError> {
        let from = self.handset_number(from)?;
        let to = PhoneNumber::from_e164(to)
            .map_err(|_| NetworkError::InvalidNumber(to.to_string()))?
            .e164()
            .to_string();
        let callee = match self.subscriber(&to) {
            Some(modem) => Party::Modem(modem),
            None => Party::Handset(to.clone()),
        };
        let caller = from.clone();
        self.with_calls(|state| {
            state.handsets.entry(caller.clone()).or_default();
            if let Party::Handset(number) = &callee {
                state.handsets.entry(number.clone()).or_default();
            }
            let (_, notices) = state.calls.originate(
                &Party::Handset(caller.clone()),
                &callee,
                &to,
                Instant::now(),
            )?;
            Ok(((), notices))
        })?;
        Ok(self.lock().calls.handset_call(&from))
    }

    /// A handset answers its ringing phone.
    pub fn handset_answer(&self, number: &str) -> Result<HandsetCall, CallServiceError> {
        let number = self.handset_number(number)?;
        let party = Party::Handset(number.clone());
        self.with_calls(|state| Ok(((), state.calls.answer(&party)?)))?;
        Ok(self.lock().calls.handset_call(&number))
    }

    /// A handset hangs up (or rejects its ringing call).
    pub fn handset_hangup(&self, number: &str) -> Result<HandsetCall, CallServiceError> {
        let number = self.handset_number(number)?;
        let party = Party::Handset(number.clone());
        self.with_calls(|state| Ok(((), state.calls.hangup(&party)?)))?;
        Ok(self.lock().calls.handset_call(&number))
    }

    /// A handset presses `keys` during its call: the modems that hear it
    /// and detect keys report them.
    pub fn handset_keys(&self, number: &str, keys: &str) -> Result<(), CallServiceError> {
        let number = self.handset_number(number)?;
        let party = Party::Handset(number);
        self.with_calls(|state| Ok(((), state.calls.press_keys(&party, keys)?)))?;
        Ok(())
    }

    /// The DTMF detection of modem `index`'s model, if any.
    pub fn dtmf_detection(
        &self,
        index: usize,
    ) -> Result<Option<crate::profile::DtmfDetection>, CallError> {
        self.lock().calls.dtmf_detection(index)
    }

    /// Restricts (CLIR) or allows the presentation of a handset's number on
    /// the calls it makes from now on, and to the other side of a transfer.
    pub fn set_handset_clir(&self, number: &str, restricted: bool) -> Result<(), NetworkError> {
        let number = self.handset_number(number)?;
        let mut state = self.lock();
        state.handsets.entry(number.clone()).or_default();
        state.calls.set_clir(&number, restricted);
        Ok(())
    }

    /// Whether a handset restricts the presentation of its number.
    pub fn handset_clir(&self, number: &str) -> Result<bool, NetworkError> {
        let number = self.handset_number(number)?;
        Ok(self.lock().calls.clir(&number))
    }

    /// What a handset's screen shows.
    pub fn handset_call(&self, number: &str) -> Result<HandsetCall, NetworkError> {
        let number = self.handset_number(number)?;
        Ok(self.lock().calls.handset_call(&number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_strings() {
        assert_eq!(
            dial_number("+447700900123").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(
            dial_number("T+44 7700,900123I").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(dial_number("07700900123").as_deref(), Some("07700900123"));
        assert_eq!(dial_number(""), None);
        assert_eq!(dial_number("+44+1"), None);
        assert_eq!(dial_number(">SM1"), None);
        assert_eq!(dial_number("*100#"), None);
    }
}
