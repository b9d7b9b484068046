//! Supplementary-service notifications as the network sends them to the
//! parties of a call (3GPP TS 24.083, 24.084, 24.091; their AT form is
//! 27.007 §7.17 `+CSSI`/`+CSSU` after `AT+CSSN=1,1`).
//!
//! The served party's own operations (hold, join, transfer) are reported to
//! the *remote* parties: the one put on hold hears `+CSSU: 2`, the one
//! taken back `+CSSU: 3`, every remote party of a new multiparty call
//! `+CSSU: 4`, and after an explicit call transfer each remote party gets
//! `+CSSU: 8` carrying the directory number of the other remote party
//! (23.091 §3, the "redirection number"), unless that party restricts the
//! presentation of its number (CLIR). That last one is how a call bridged by
//! transfer can unmask: it is modelled as the network sends it, and each
//! handset's call view keeps what it was shown.
//!
//! ```text
//! +CSSI: 3                          the call dialled is waiting at the callee
//! +CSSU: 2                          the other side put this call on hold
//! +CSSU: 3                          … and took it back
//! +CSSU: 4                          multiparty call entered
//! +CSSU: 8,,"+447911123456",145     transferred: now connected to this number
//! ```

use serde::Serialize;

use super::links::{End, Link};
use super::notices::push_line;
use super::{CallNetwork, Notice, Party, number_type};

/// What a notification says (27.007 §7.17 `<code1>` / `<code2>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SsKind {
    /// `+CSSI: 3`: the call this party dialled waits at the callee (22.083).
    Waiting,
    /// `+CSSU: 2`: the other side put this call on hold (22.083).
    Held,
    /// `+CSSU: 3`: the other side took this call off hold.
    Retrieved,
    /// `+CSSU: 4`: this call became part of a multiparty call (22.084).
    Multiparty,
    /// `+CSSU: 8`: the other side transferred this call (22.091); the number,
    /// when present, is the party this one is now connected to.
    Transferred,
}

impl SsKind {
    /// The result code and its `<code1>`/`<code2>` value.
    fn code(self) -> (&'static str, u8) {
        match self {
            SsKind::Waiting => ("+CSSI", 3),
            SsKind::Held => ("+CSSU", 2),
            SsKind::Retrieved => ("+CSSU", 3),
            SsKind::Multiparty => ("+CSSU", 4),
            SsKind::Transferred => ("+CSSU", 8),
        }
    }
}

/// One notification a party was sent, as its call view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsNotification {
    pub kind: SsKind,
    /// The 27.007 result code a modem prints for it (`+CSSU: 8`).
    pub code: String,
    /// A number it carried (after a transfer: the other remote party's, unless
    /// presentation is restricted).
    pub number: Option<String>,
}

impl SsNotification {
    pub fn new(kind: SsKind, number: Option<String>) -> Self {
        let (name, value) = kind.code();
        SsNotification {
            kind,
            code: format!("{name}: {value}"),
            number,
        }
    }

    /// The unsolicited line (`+CSSU: <code2>[,<index>[,<number>,<type>]]`).
    pub fn line(&self) -> String {
        match &self.number {
            Some(number) => format!("{},,\"{number}\",{}", self.code, number_type(number)),
            None => self.code.clone(),
        }
    }

    fn intermediate(&self) -> bool {
        self.code.starts_with("+CSSI")
    }
}

impl CallNetwork {
    /// Restricts (CLIR, 22.081) or allows the presentation of a handset's
    /// number to the parties it calls or is connected to.
    pub fn set_clir(&mut self, number: &str, restricted: bool) {
        if restricted {
            self.restricted.insert(number.to_string());
        } else {
            self.restricted.remove(number);
        }
    }

    /// Whether a handset restricts the presentation of its number.
    pub fn clir(&self, number: &str) -> bool {
        self.restricted.contains(number)
    }

    /// The number the network presents for `party` (caller ID, connected
    /// line, a transfer's redirection number): `None` when restricted.
    pub(super) fn presented(&self, party: &Party) -> Option<String> {
        match party {
            Party::Handset(number) if self.restricted.contains(number) => None,
            _ => self.number_of(party),
        }
    }

    /// Sends `notification` to `end`'s party: kept on the end (a handset's
    /// call view lists it) and, for a modem that asked with `AT+CSSN`, the
    /// `+CSSI`/`+CSSU` line.
    pub(super) fn notify(
        &self,
        end: &mut End,
        notification: SsNotification,
        out: &mut Vec<Notice>,
    ) {
        if end.call_id == 0 {
            return;
        }
        if let Party::Modem(index) = end.party
            && let Some(modem) = self.modems.get(&index)
        {
            let wanted = if notification.intermediate() {
                modem.settings.cssi
            } else {
                modem.settings.cssu
            };
            if wanted {
                push_line(out, index, notification.line());
            }
        }
        end.notifications.push(notification);
    }

    /// Notifies the remote end of every link in `ids` (the ends that are
    /// not `served`).
    pub(super) fn notify_remote(
        &mut self,
        ids: &[u64],
        served: &Party,
        kind: SsKind,
        out: &mut Vec<Notice>,
    ) {
        for id in ids {
            let Some(position) = self.links.iter().position(|l| l.id == *id) else {
                continue;
            };
            let Some(side) = self.links[position].end_of(served) else {
                continue;
            };
            let mut end = self.links[position].ends[1 - side].clone();
            self.notify(&mut end, SsNotification::new(kind, None), out);
            self.links[position].ends[1 - side] = end;
        }
    }

    /// After an explicit call transfer joined `link`'s two ends: each is
    /// told it is now connected to the other, with the other's number
    /// unless presentation is restricted (23.091 §3).
    pub(super) fn notify_transferred(&self, link: &mut Link, out: &mut Vec<Notice>) {
        let numbers = [
            self.presented(&link.ends[1].party),
            self.presented(&link.ends[0].party),
        ];
        for (end, number) in link.ends.iter_mut().zip(numbers) {
            let notification = SsNotification::new(SsKind::Transferred, number);
            self.notify(end, notification, out);
        }
    }
}
