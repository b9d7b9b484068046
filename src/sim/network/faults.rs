//! What the control API can do to one modem and its SIM: registration
//! (announced with `+CREG`/`+CEREG` when it changes), injected faults, and
//! the SIM's PIN lock.

use serde::{Deserialize, Serialize};

use super::{Network, NetworkError};

/// Registration as `+CREG?` reports it (27.007 §7.2 `<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Home,
    Roaming,
    Searching,
    Denied,
}

impl Registration {
    pub fn stat(self) -> u8 {
        match self {
            Self::Home => 1,
            Self::Searching => 2,
            Self::Denied => 3,
            Self::Roaming => 5,
        }
    }

    pub fn registered(self) -> bool {
        matches!(self, Self::Home | Self::Roaming)
    }
}

/// The PUK that unblocks every simulated SIM after three wrong PINs.
pub const PUK: &str = "12345678";

/// A SIM's PIN lock. The PIN is the SIM's: it survives unplugging, and a
/// newly set PIN takes effect at the next power-on, as on a real SIM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimLock {
    pub pin: Option<String>,
    pub state: LockState,
    /// Wrong PINs left before the SIM wants its PUK.
    pub attempts_left: u8,
}

/// 27.007 §8.3 `<code>` of `+CPIN?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockState {
    #[default]
    Ready,
    Pin,
    Puk,
}

impl LockState {
    pub fn code(self) -> &'static str {
        match self {
            Self::Ready => "READY",
            Self::Pin => "SIM PIN",
            Self::Puk => "SIM PUK",
        }
    }
}

impl SimLock {
    /// Power-on: a SIM with a PIN asks for it (a blocked one stays blocked).
    pub fn power_on(&mut self) {
        if self.state == LockState::Puk {
            return;
        }
        self.attempts_left = 3;
        self.state = if self.pin.is_some() {
            LockState::Pin
        } else {
            LockState::Ready
        };
    }

    /// `+CPIN=<pin>[,<newpin>]`: true when the SIM is unlocked by it.
    pub fn enter(&mut self, code: &str, new_pin: Option<&str>) -> bool {
        match self.state {
            LockState::Ready => true,
            LockState::Pin => {
                if self.pin.as_deref() == Some(code) {
                    self.state = LockState::Ready;
                    return true;
                }
                self.attempts_left = self.attempts_left.saturating_sub(1);
                if self.attempts_left == 0 {
                    self.state = LockState::Puk;
                }
                false
            }
            LockState::Puk => match new_pin {
                Some(new_pin) if code == PUK && !new_pin.is_empty() => {
                    self.pin = Some(new_pin.to_string());
                    self.attempts_left = 3;
                    self.state = LockState::Ready;
                    true
                }
                _ => false,
            },
        }
    }

    pub fn ready(&self) -> bool {
        self.state == LockState::Ready
    }
}

/// Faults injected into one modem through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Faults {
    /// Garbage bytes between responses, as a noisy USB serial line gives.
    pub noise: bool,
    /// The next this many responses are swallowed (the command still runs).
    pub drop_responses: u32,
    /// Every response is held back this long.
    pub delay_ms: u64,
    /// The network takes this long to accept a submit (`+CMGS` answers late).
    pub submit_delay_ms: u64,
    /// Every submit fails with this `+CMS ERROR` code.
    pub cms_error_on_submit: Option<u16>,
    /// How many submits `cms_error_on_submit` refuses before it clears
    /// itself, as congestion or a passing network fault does; `None`: every
    /// submit until it is cleared.
    pub cms_error_submits: Option<u32>,
    pub registration: Registration,
    /// Pending URCs come out between a command's information lines and its
    /// final result code, as real hardware sometimes interleaves them.
    pub urc_mid_response: bool,
    /// The firmware cannot read the SIM's ICCID: its vendor ICCID command
    /// and `AT+CRSM` answer as unknown commands.
    pub iccid_unreadable: bool,
    /// At the next `> ` prompt (`AT+CMGS`, `AT+CMGW`) the firmware locks up:
    /// the message typed after it is never submitted and the modem is
    /// [`Faults::hung`] from then on.
    pub hang_after_prompt: bool,
    /// The firmware has locked up: it reads what it is sent and answers
    /// nothing (no echo, no result codes, no URCs, `AT+CFUN=1,1` included)
    /// until it is powered off and on again (an unplug, or a plug that
    /// re-enumerates it).
    pub hung: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            noise: false,
            drop_responses: 0,
            delay_ms: 0,
            submit_delay_ms: 0,
            cms_error_on_submit: None,
            cms_error_submits: None,
            registration: Registration::Home,
            urc_mid_response: false,
            iccid_unreadable: false,
            hang_after_prompt: false,
            hung: false,
        }
    }
}

/// A partial change of [`Faults`]; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    pub noise: Option<bool>,
    pub drop_responses: Option<u32>,
    pub delay_ms: Option<u64>,
    pub submit_delay_ms: Option<u64>,
    /// `null` clears it, a number sets it, absent leaves it.
    #[serde(default, with = "double_option")]
    pub cms_error_on_submit: Option<Option<u16>>,
    /// `null` (every submit) or a count; absent leaves it.
    #[serde(default, with = "double_option_u32")]
    pub cms_error_submits: Option<Option<u32>>,
    pub registration: Option<Registration>,
    pub urc_mid_response: Option<bool>,
    pub iccid_unreadable: Option<bool>,
    pub hang_after_prompt: Option<bool>,
    pub hung: Option<bool>,
    /// Stores this many sent messages (`STO SENT`, as firmware that keeps a
    /// copy of what it sends does) in the storage where received messages
    /// go, up to its capacity: the storage fills without any message for
    /// the host to relay.
    pub fill_storage: Option<u16>,
    /// The SIM's PIN (`null` removes it); it asks for it from the next boot.
    #[serde(default, with = "double_option_string")]
    pub sim_pin: Option<Option<String>>,
    /// The radio's `+CSQ` rssi: 0..31, or 99 (not known).
    pub signal: Option<u8>,
}

impl Network {
    /// Applies a fault change; returns the faults now in force.
    pub fn update_faults(
        &self,
        index: usize,
        update: FaultsUpdate,
    ) -> Result<Faults, NetworkError> {
        // 27.007 §8.5: rssi is 0..31, or 99 when not known.
        if let Some(signal) = update.signal
            && signal > 31
            && signal != 99
        {
            return Err(NetworkError::InvalidFault(format!(
                "signal {signal}: +CSQ rssi is 0 to 31, or 99"
            )));
        }
        // A longer delay would only wedge the port (unplug and stop wait
        // for the answer to go out).
        const MAX_DELAY_MS: u64 = 60_000;
        if update.delay_ms.max(update.submit_delay_ms) > Some(MAX_DELAY_MS) {
            return Err(NetworkError::InvalidFault(format!(
                "delays are at most {MAX_DELAY_MS} ms"
            )));
        }
        let bad_pin = matches!(&update.sim_pin, Some(Some(pin))
            if !(4..=8).contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()));
        if bad_pin {
            return Err(NetworkError::InvalidFault(
                "sim_pin: a PIN is 4 to 8 digits (3GPP TS 31.101 §9.5)".into(),
            ));
        }
        let (faults, registration_changed) = self.with_modem(index, |slot| {
            if let Some(signal) = update.signal {
                slot.signal = signal;
            }
            let before = slot.faults.registration;
            let faults = &mut slot.faults;
            if let Some(noise) = update.noise {
                faults.noise = noise;
            }
            if let Some(n) = update.drop_responses {
                faults.drop_responses = n;
            }
            if let Some(ms) = update.delay_ms {
                faults.delay_ms = ms;
            }
            if let Some(ms) = update.submit_delay_ms {
                faults.submit_delay_ms = ms;
            }
            if let Some(code) = update.cms_error_on_submit {
                faults.cms_error_on_submit = code;
            }
            if let Some(count) = update.cms_error_submits {
                faults.cms_error_submits = count;
            }
            if let Some(registration) = update.registration {
                faults.registration = registration;
            }
            if let Some(flag) = update.urc_mid_response {
                faults.urc_mid_response = flag;
            }
            if let Some(flag) = update.iccid_unreadable {
                faults.iccid_unreadable = flag;
            }
            if let Some(flag) = update.hang_after_prompt {
                faults.hang_after_prompt = flag;
            }
            if let Some(flag) = update.hung {
                faults.hung = flag;
            }
            if let Some(count) = update.fill_storage {
                fill_storage(slot, count);
            }
            if let Some(pin) = update.sim_pin {
                slot.lock.pin = pin;
            }
            let faults = &slot.faults;
            (faults.clone(), before != faults.registration)
        })?;
        if registration_changed {
            self.announce_registration(index);
            if faults.registration.registered() {
                self.retry_held();
            }
        }
        Ok(faults)
    }

    /// `+CREG: <stat>` / `+CEREG: <stat>` when the modem asked for them.
    fn announce_registration(&self, index: usize) {
        let Ok((creg, cereg, stat)) = self.with_modem(index, |slot| {
            (
                slot.settings.creg,
                slot.settings.cereg,
                slot.faults.registration.stat(),
            )
        }) else {
            return;
        };
        let mut urc = Vec::new();
        if creg > 0 {
            urc.extend_from_slice(format!("\r\n+CREG: {stat}\r\n").as_bytes());
        }
        if cereg > 0 {
            urc.extend_from_slice(format!("\r\n+CEREG: {stat}\r\n").as_bytes());
        }
        if !urc.is_empty() {
            self.push_urc(index, urc);
        }
    }
}

mod double_option_string {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// Stores up to `count` sent messages (`STO SENT`) in the storage where
/// received messages go, as far as it has room.
fn fill_storage(slot: &mut super::modem::ModemSlot, count: u16) {
    use crate::pdu::{Address, SubmitOptions, encode_submit};
    use crate::sim::storage::{Stat, StoredMessage};
    let Ok(to) = Address::from_number("+447700900000") else {
        return;
    };
    let storage = slot.storages.receive_storage();
    for n in 0..count {
        let text = format!("sent copy {n}");
        let Ok(parts) = encode_submit(&to, &text, 0, &SubmitOptions::default()) else {
            return;
        };
        for part in parts {
            let stored = StoredMessage {
                stat: Stat::StoSent,
                pdu: part.hex,
                tpdu_length: part.tpdu_length,
            };
            if storage.insert(stored).is_none() {
                return;
            }
        }
    }
}

mod double_option_u32 {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u16>>, D::Error> {
        Option::<u16>::deserialize(d).map(Some)
    }
}
