//! What the control API can do to one modem and its SIM: registration,
//! injected faults, and the SIM's PIN lock.

use serde::{Deserialize, Serialize};

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
    pub registration: Registration,
    /// Pending URCs come out between a command's information lines and its
    /// final result code, as real hardware sometimes interleaves them.
    pub urc_mid_response: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            noise: false,
            drop_responses: 0,
            delay_ms: 0,
            submit_delay_ms: 0,
            cms_error_on_submit: None,
            registration: Registration::Home,
            urc_mid_response: false,
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
    pub registration: Option<Registration>,
    pub urc_mid_response: Option<bool>,
    /// The SIM's PIN (`null` removes it); it asks for it from the next boot.
    #[serde(default, with = "double_option_string")]
    pub sim_pin: Option<Option<String>>,
    /// The radio's `+CSQ` rssi: 0..31, or 99 (not known).
    pub signal: Option<u8>,
}

mod double_option_string {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u16>>, D::Error> {
        Option::<u16>::deserialize(d).map(Some)
    }
}
