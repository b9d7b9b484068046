//! What a party sees of its calls: the `+CLCC` lines of a modem, the
//! screen of a handset, and whose voice it hears.

use std::collections::BTreeSet;

use super::links::Phase;
use super::{CallInfo, CallNetwork, CallState, Direction, HandsetCall, Party};

impl CallNetwork {
    /// A party's calls, ordered by call id (the lines of `AT+CLCC`).
    pub fn calls_of(&self, party: &Party) -> Vec<CallInfo> {
        let mut calls: Vec<CallInfo> = Vec::new();
        let others = self.presented_count(party);
        for link in &self.links {
            let Some(side) = link.end_of(party) else {
                continue;
            };
            if !link.presented_to(side) {
                continue;
            }
            let end = &link.ends[side];
            let state = match link.phase {
                Phase::Dialing { .. } => CallState::Dialing,
                Phase::Alerting { .. } if end.direction == Direction::MobileOriginated => {
                    CallState::Alerting
                }
                Phase::Alerting { .. } if others > 1 => CallState::Waiting,
                Phase::Alerting { .. } => CallState::Incoming,
                Phase::Connected if end.held => CallState::Held,
                Phase::Connected => CallState::Active,
            };
            calls.push(CallInfo {
                id: end.call_id,
                direction: end.direction,
                state,
                multiparty: end.multiparty,
                number: end.sees.clone(),
                held_by_remote: link.ends[1 - side].held,
            });
        }
        calls.sort_by_key(|c| c.id);
        calls
    }

    fn presented_count(&self, party: &Party) -> usize {
        self.links
            .iter()
            .filter(|l| l.end_of(party).is_some_and(|side| l.presented_to(side)))
            .count()
    }

    /// The `AT+CLCC` answer lines of a modem.
    pub fn clcc_lines(&self, index: usize) -> Vec<String> {
        self.calls_of(&Party::Modem(index))
            .iter()
            .map(CallInfo::clcc_line)
            .collect()
    }

    /// What a handset shows (`GET /handsets/{n}/call`).
    pub fn handset_call(&self, number: &str) -> HandsetCall {
        let party = Party::Handset(number.to_string());
        let last_end = self.last_end.get(number).copied();
        let calls = self.calls_of(&party);
        let Some(call) = calls.first() else {
            return HandsetCall {
                state: "idle",
                caller_id: None,
                connected_line: None,
                notifications: Vec::new(),
                connected_to: Vec::new(),
                last_end,
            };
        };
        // A handset has one call: the end of it that is this handset's.
        let end = self
            .links
            .iter()
            .filter_map(|l| l.end_of(&party).map(|side| &l.ends[side]))
            .find(|e| e.call_id == call.id);
        let state = match call.state {
            CallState::Dialing => "dialing",
            CallState::Alerting => "alerting",
            CallState::Incoming | CallState::Waiting => "ringing",
            CallState::Held => "held",
            CallState::Active if call.held_by_remote => "held",
            CallState::Active => "active",
        };
        HandsetCall {
            state,
            caller_id: Some(call.number.clone()).filter(|n| !n.is_empty()),
            connected_line: end.and_then(|e| e.connected_line.clone()),
            notifications: end.map(|e| e.notifications.clone()).unwrap_or_default(),
            connected_to: self.hears(&party),
            last_end,
        }
    }

    /// Everyone whose voice `listener` hears: the parties on its talking
    /// links, and through a modem hosting a multiparty call everyone in it.
    /// A muted modem is heard by no one.
    pub fn hears(&self, listener: &Party) -> Vec<String> {
        let mut seen: BTreeSet<Party> = BTreeSet::from([listener.clone()]);
        let mut queue = vec![listener.clone()];
        let mut heard = BTreeSet::new();
        while let Some(party) = queue.pop() {
            for link in self.links.iter().filter(|l| l.carries_voice()) {
                let Some(side) = link.end_of(&party) else {
                    continue;
                };
                let other = &link.ends[1 - side].party;
                if !seen.insert(other.clone()) {
                    continue;
                }
                let muted = match other {
                    Party::Modem(index) => self.modems.get(index).is_some_and(|m| m.settings.muted),
                    Party::Handset(_) => false,
                };
                if !muted && let Some(number) = self.number_of(other) {
                    heard.insert(number);
                }
                // A modem mixes its active calls when they form a multiparty.
                if matches!(other, Party::Modem(_)) && self.talking_links(other) > 1 {
                    queue.push(other.clone());
                }
            }
        }
        heard.into_iter().collect()
    }

    fn talking_links(&self, party: &Party) -> usize {
        self.links
            .iter()
            .filter(|l| l.carries_voice() && l.end_of(party).is_some())
            .count()
    }
}
