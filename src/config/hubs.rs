//! `[hubs]`: how hubs (one number in many sessions on one proxy) read and
//! write. The hubs themselves are data (`/api/v1/hubs`); this is only how
//! their messages look and how long a hub calling its proxy has to key a
//! code. The texts are sent to the hub; write them in its language.

use serde::Deserialize;

/// `[hubs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hubs {
    /// How a counterpart's message reaches the hub, with `{code}` (the
    /// session's code) and `{text}`. Default `"[{code}] {text}"`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Sent to the hub when its reply had no code and went to the last
    /// counterpart it heard from (`{code}`, `{codes}`); `""` sends none.
    #[serde(default = "default_sent_to_last")]
    pub sent_to_last: String,
    /// Sent to the hub when its reply named a code it has no open
    /// conversation with on that number (`{code}`, `{codes}`); nothing is
    /// relayed.
    #[serde(default = "default_unknown_code")]
    pub unknown_code: String,
    /// Sent to the hub when its reply had no code and it heard from nobody
    /// yet on that number (`{codes}`); nothing is relayed.
    #[serde(default = "default_no_code")]
    pub no_code: String,
    /// Sent to the hub when its reply was a code alone (`{code}`).
    #[serde(default = "default_empty")]
    pub empty: String,
    /// Sent to the hub when the conversation named carries calls only
    /// (`{code}`).
    #[serde(default = "default_calls_only")]
    pub calls_only: String,
    /// Seconds a hub that called its proxy has, from the answer (or its
    /// last key), to key a code; then the call goes to the counterpart it
    /// last heard from. Default 10.
    #[serde(default = "default_dtmf_timeout")]
    pub dtmf_timeout_seconds: u64,
}

impl Default for Hubs {
    fn default() -> Self {
        Self {
            format: default_format(),
            sent_to_last: default_sent_to_last(),
            unknown_code: default_unknown_code(),
            no_code: default_no_code(),
            empty: default_empty(),
            calls_only: default_calls_only(),
            dtmf_timeout_seconds: default_dtmf_timeout(),
        }
    }
}

impl Hubs {
    /// Why these settings cannot be used, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        for needed in ["{code}", "{text}"] {
            if !self.format.contains(needed) {
                return Err(format!(
                    "format {:?} lacks {needed}: the hub must see the code and the text",
                    self.format
                ));
            }
        }
        for (key, text) in [
            ("unknown_code", &self.unknown_code),
            ("no_code", &self.no_code),
            ("empty", &self.empty),
            ("calls_only", &self.calls_only),
        ] {
            if text.trim().is_empty() {
                return Err(format!(
                    "{key} is empty: a hub whose message was not sent must be told"
                ));
            }
        }
        if !(1..=120).contains(&self.dtmf_timeout_seconds) {
            return Err("dtmf_timeout_seconds: 1 to 120".into());
        }
        Ok(())
    }
}

fn default_format() -> String {
    "[{code}] {text}".into()
}
fn default_sent_to_last() -> String {
    "Sent to {code}. Start a reply with a code to choose: {codes}".into()
}
fn default_unknown_code() -> String {
    "No conversation {code} on this number; nothing was sent. Codes: {codes}".into()
}
fn default_no_code() -> String {
    "Start your reply with a code; nothing was sent. Codes: {codes}".into()
}
fn default_empty() -> String {
    "Nothing to send to {code}: write the text after the code.".into()
}
fn default_calls_only() -> String {
    "Conversation {code} is for calls only; nothing was sent.".into()
}
fn default_dtmf_timeout() -> u64 {
    10
}

/// Fills `{code}` and `{codes}` in one of the hub's notices.
pub fn fill(text: &str, code: &str, codes: &[&str]) -> String {
    text.replace("{codes}", &codes.join(" "))
        .replace("{code}", code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_fill_in() {
        assert_eq!(Hubs::default().validate(), Ok(()));
        assert_eq!(
            fill(&Hubs::default().sent_to_last, "K7", &["K7", "W3"]),
            "Sent to K7. Start a reply with a code to choose: K7 W3"
        );
        let bad = Hubs {
            format: "{text}".into(),
            ..Hubs::default()
        };
        assert!(bad.validate().unwrap_err().contains("{code}"));
        let bad = Hubs {
            dtmf_timeout_seconds: 0,
            ..Hubs::default()
        };
        assert!(bad.validate().is_err());
    }
}
