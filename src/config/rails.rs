//! The safety rails' settings: opt-out keywords, intercept rules, loop
//! protection. Each has a default that suits a deployment that never heard
//! of them; `simmask.example.toml` states every one.

use serde::Deserialize;

/// `[opt_out]`: what a participant sends to stop (and restart) messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    /// Messages that opt the sender out, matched case-insensitively on the
    /// whole trimmed message. Default `["STOP"]`.
    #[serde(default = "default_stop")]
    pub stop_keywords: Vec<String>,
    /// Messages that opt the sender back in. Default `["START"]`.
    #[serde(default = "default_start")]
    pub start_keywords: Vec<String>,
    /// The confirmation of an opt-out, sent once from the proxy.
    #[serde(default = "default_stop_reply")]
    pub stop_reply: String,
    /// The confirmation of an opt-in.
    #[serde(default = "default_start_reply")]
    pub start_reply: String,
}

impl Default for OptOut {
    fn default() -> Self {
        Self {
            stop_keywords: default_stop(),
            start_keywords: default_start(),
            stop_reply: default_stop_reply(),
            start_reply: default_start_reply(),
        }
    }
}

/// `[intercept]`: rules evaluated before every relay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intercept {
    /// Messages one session may relay in all; 0: no limit. Default 0.
    #[serde(default)]
    pub max_messages_per_session: u32,
    /// Messages one participant may have relayed per 24 hours, over all
    /// their sessions; 0: no limit. Default 0.
    #[serde(default)]
    pub max_messages_per_participant_per_day: u32,
    /// Messages containing one of these (case-insensitive) are not
    /// relayed. Default none.
    #[serde(default)]
    pub block_keywords: Vec<String>,
    /// Days after which an opt-out or a block-list entry is forgotten;
    /// absent: kept until lifted (START, removal) or erased.
    #[serde(default)]
    pub forget_after_days: Option<u32>,
}

/// `[loop_protection]`: auto-responders answering each other.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopProtection {
    /// Near-identical messages (case, spacing, digits and punctuation
    /// aside), from both sides, one session may carry within an hour before
    /// it is stopped; 0: never. Default 5.
    #[serde(default = "default_similar")]
    pub max_similar_per_hour: u32,
    /// Replies back and forth (the sender changes) one session may carry
    /// within `burst_seconds`, faster than people read and type; 0: never.
    /// Default 8. Both rules place each message when the sender's SMSC took
    /// it, not when it reached us (see `crate::sms::rails::loop_reason`).
    #[serde(default = "default_burst")]
    pub max_burst: u32,
    /// Default 10.
    #[serde(default = "default_burst_seconds")]
    pub burst_seconds: u32,
}

impl Default for LoopProtection {
    fn default() -> Self {
        Self {
            max_similar_per_hour: default_similar(),
            max_burst: default_burst(),
            burst_seconds: default_burst_seconds(),
        }
    }
}

fn default_stop() -> Vec<String> {
    vec!["STOP".into()]
}
fn default_start() -> Vec<String> {
    vec!["START".into()]
}
fn default_stop_reply() -> String {
    "You will get no more messages from this number. Send START to undo.".into()
}
fn default_start_reply() -> String {
    "Messages from this number are back on. Send STOP to stop them.".into()
}
fn default_similar() -> u32 {
    5
}
fn default_burst() -> u32 {
    8
}
fn default_burst_seconds() -> u32 {
    10
}

impl OptOut {
    /// What is wrong with these settings, if anything.
    pub fn validate(&self) -> Result<(), String> {
        let empty = |list: &[String]| list.iter().any(|k| k.trim().is_empty());
        if empty(&self.stop_keywords) || empty(&self.start_keywords) {
            return Err("a keyword is empty".into());
        }
        if self.stop_keywords.is_empty() {
            return Err("stop_keywords is empty: people must be able to opt out".into());
        }
        let upper = |k: &String| k.trim().to_uppercase();
        if self
            .stop_keywords
            .iter()
            .any(|s| self.start_keywords.iter().any(|t| upper(s) == upper(t)))
        {
            return Err("a keyword is both a stop and a start keyword".into());
        }
        if self.stop_reply.trim().is_empty() || self.start_reply.trim().is_empty() {
            return Err("a confirmation text is empty".into());
        }
        Ok(())
    }
}

impl Intercept {
    pub fn validate(&self) -> Result<(), String> {
        if self.block_keywords.iter().any(|k| k.trim().is_empty()) {
            return Err("block_keywords has an empty keyword (it would block everything)".into());
        }
        Ok(())
    }
}

impl LoopProtection {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_burst > 0 && self.burst_seconds == 0 {
            return Err("burst_seconds must be at least 1".into());
        }
        if self.max_similar_per_hour == 1 || self.max_burst == 1 {
            return Err("a limit of 1 stops every conversation: use 0 (off) or at least 2".into());
        }
        Ok(())
    }
}
