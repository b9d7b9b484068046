//! The masking rules: pure functions over data, no I/O.
//!
//! - [`allocation`]: which proxy SIM a new session gets (README, "The
//!   masking rule, the relay and calls"), and the pool's rails: reserved
//!   and draining SIMs, budgets, opted-out participants.
//! - [`lifecycle`]: sessions, their expiry, why they end, whether one may
//!   reopen, and where inbound traffic on a proxy goes.
//! - [`policy`]: what happens to traffic from someone with no open session.
//! - [`hub`]: hubs, one participant in many sessions on one proxy: their
//!   session codes, how a hub's reply names its session, and where it goes.
//!
//! The router feeds these rules with rows from the store and carries out the
//! decisions; nothing here knows about SQLite, modems or time sources.

pub mod allocation;
pub mod hub;
pub mod lifecycle;
pub mod policy;

use serde::{Deserialize, Serialize};

/// What a session relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sms,
    Voice,
    #[default]
    Both,
}

impl Mode {
    pub fn carries_sms(self) -> bool {
        matches!(self, Mode::Sms | Mode::Both)
    }

    pub fn carries_voice(self) -> bool {
        matches!(self, Mode::Voice | Mode::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sms => "sms",
            Mode::Voice => "voice",
            Mode::Both => "both",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Mode::Sms),
            "voice" => Ok(Mode::Voice),
            "both" => Ok(Mode::Both),
            other => Err(format!(
                "unknown session mode {other:?} (expected sms, voice or both)"
            )),
        }
    }
}

/// The kind of traffic arriving on a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Traffic {
    Sms,
    Call,
}

impl Traffic {
    /// Whether a session of `mode` carries this traffic.
    pub fn carried_by(self, mode: Mode) -> bool {
        match self {
            Traffic::Sms => mode.carries_sms(),
            Traffic::Call => mode.carries_voice(),
        }
    }
}
