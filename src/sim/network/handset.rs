//! A phone outside the bank: switched on or off, barred or not, and the
//! messages it received, concatenated parts put back together; the
//! network's handsets are known by their E.164 number.

use std::collections::HashMap;

use serde::Serialize;

use crate::number::PhoneNumber;
use crate::pdu::UserData;

use super::{Network, NetworkError};

/// The current time in RFC 3339, as `at` is reported.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A message a handset received, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandsetMessage {
    pub from: String,
    pub text: String,
    /// RFC 3339.
    pub at: String,
}

/// A phone outside the bank.
#[derive(Debug, Clone)]
pub struct Handset {
    pub power_on: bool,
    pub barred: bool,
    pub messages: Vec<HandsetMessage>,
    /// Concatenated parts by (sender, reference, total): the texts so far.
    partial: HashMap<(String, u16, u8), Vec<Option<String>>>,
}

impl Default for Handset {
    fn default() -> Self {
        Handset {
            power_on: true,
            barred: false,
            messages: Vec::new(),
            partial: HashMap::new(),
        }
    }
}

impl Handset {
    /// Takes one part; a message is added once all its parts are in.
    pub(crate) fn receive(&mut self, from: &str, user_data: &UserData) {
        let at = now_rfc3339();
        let Some(concat) = user_data.concat else {
            self.messages.push(HandsetMessage {
                from: from.to_string(),
                text: user_data.text.clone(),
                at,
            });
            return;
        };
        let total = concat.total.max(1);
        let key = (from.to_string(), concat.reference, total);
        let parts = self
            .partial
            .entry(key.clone())
            .or_insert_with(|| vec![None; usize::from(total)]);
        let slot = usize::from(concat.sequence.max(1) - 1);
        if let Some(part) = parts.get_mut(slot) {
            *part = Some(user_data.text.clone());
        }
        if parts.iter().all(Option::is_some) {
            let text = parts.iter().flatten().cloned().collect::<String>();
            self.partial.remove(&key);
            self.messages.push(HandsetMessage {
                from: from.to_string(),
                text,
                at,
            });
        }
    }
}

impl Network {
    /// A handset's number, checked: E.164 and not a bank SIM.
    pub(crate) fn handset_number(&self, number: &str) -> Result<String, NetworkError> {
        let parsed = PhoneNumber::from_e164(number)
            .map_err(|_| NetworkError::InvalidNumber(number.to_string()))?;
        if self.subscriber(parsed.e164()).is_some() {
            return Err(NetworkError::NotAHandset(number.to_string()));
        }
        Ok(parsed.e164().to_string())
    }

    /// Switches a handset on or off and bars or unbars it; switching on
    /// delivers what the SMSC held.
    pub fn set_handset_state(
        &self,
        number: &str,
        power_on: Option<bool>,
        barred: Option<bool>,
    ) -> Result<(bool, bool), NetworkError> {
        let number = self.handset_number(number)?;
        let state = {
            let mut state = self.lock();
            let handset = state.handsets.entry(number).or_default();
            if let Some(on) = power_on {
                handset.power_on = on;
            }
            if let Some(barred) = barred {
                handset.barred = barred;
            }
            (handset.power_on, handset.barred)
        };
        self.retry_held();
        Ok(state)
    }

    /// What a handset has received, oldest first.
    pub fn handset_messages(&self, number: &str) -> Result<Vec<HandsetMessage>, NetworkError> {
        let number = self.handset_number(number)?;
        Ok(self
            .lock()
            .handsets
            .get(&number)
            .map(|h| h.messages.clone())
            .unwrap_or_default())
    }

    /// A handset's power and barring, if it has used the network.
    pub fn handset_state(&self, number: &str) -> Result<(bool, bool), NetworkError> {
        let number = self.handset_number(number)?;
        self.lock()
            .handsets
            .get(&number)
            .map(|h| (h.power_on, h.barred))
            .ok_or(NetworkError::UnknownHandset(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{self, Encoding};

    #[test]
    fn concatenated_parts_reassemble_at_the_handset() {
        let mut handset = Handset::default();
        let part = |seq: u8, text: &str| UserData {
            concat: Some(pdu::Concat {
                reference: 7,
                total: 2,
                sequence: seq,
            }),
            ..UserData::text(Encoding::Gsm7, text)
        };
        handset.receive("+447700900001", &part(2, "world"));
        assert!(handset.messages.is_empty());
        handset.receive("+447700900001", &part(1, "hello "));
        assert_eq!(handset.messages.len(), 1);
        assert_eq!(handset.messages[0].text, "hello world");
    }
}
