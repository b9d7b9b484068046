//! A call is a *link* between two parties; each side of it (an *end*)
//! has the call id, direction, hold and multiparty flags and number that
//! party sees. Here: links and ends, their phases, and the classification
//! of one party's calls (active, held, being set up, ringing) that every
//! operation starts from.

use std::collections::BTreeSet;
use std::time::Instant;

use super::notifications::{SsKind, SsNotification};
use super::{CallError, CallNetwork, Direction, MAX_CALLS, Notice, Party};

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The caller dialled; the callee is not alerted yet.
    Dialing {
        since: Instant,
    },
    Alerting {
        since: Instant,
        last_ring: Instant,
    },
    Connected,
}

/// One side of a link, as its party sees it.
#[derive(Debug, Clone)]
pub(super) struct End {
    pub(super) party: Party,
    /// 0 until the call is presented to this party.
    pub(super) call_id: u8,
    pub(super) direction: Direction,
    /// This end put the call on hold.
    pub(super) held: bool,
    pub(super) multiparty: bool,
    /// The other side's number as this party sees it (empty when its
    /// presentation is restricted).
    pub(super) sees: String,
    /// The connected line presented when the callee answered (22.081
    /// COLP), for the calling end.
    pub(super) connected_line: Option<String>,
    /// The supplementary-service notifications this party was sent.
    pub(super) notifications: Vec<SsNotification>,
}

impl End {
    /// A new end of a call being set up.
    pub(super) fn new(party: Party, call_id: u8, direction: Direction, sees: String) -> Self {
        End {
            party,
            call_id,
            direction,
            held: false,
            multiparty: false,
            sees,
            connected_line: None,
            notifications: Vec::new(),
        }
    }
}

/// One call between two parties.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) id: u64,
    pub(super) phase: Phase,
    /// During set-up, `ends[0]` is the caller and `ends[1]` the callee.
    pub(super) ends: [End; 2],
}

impl Link {
    pub(super) fn end_of(&self, party: &Party) -> Option<usize> {
        self.ends.iter().position(|e| &e.party == party)
    }

    pub(super) fn presented_to(&self, side: usize) -> bool {
        self.ends[side].call_id != 0
    }

    pub(super) fn carries_voice(&self) -> bool {
        self.phase == Phase::Connected && !self.ends[0].held && !self.ends[1].held
    }
}

/// A handle on a call being set up, to alert its callee later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkId(pub(super) u64);

/// Classification of one party's calls, by position in `links`.
#[derive(Debug, Default)]
pub(super) struct Calls {
    pub(super) active: Vec<usize>,
    pub(super) held: Vec<usize>,
    /// A call this party dialled that is not answered yet.
    pub(super) outgoing: Option<usize>,
    /// A call ringing at this party (incoming or waiting).
    pub(super) incoming: Option<usize>,
}

impl Calls {
    pub(super) fn is_empty(&self) -> bool {
        self.active.is_empty()
            && self.held.is_empty()
            && self.outgoing.is_none()
            && self.incoming.is_none()
    }

    pub(super) fn count(&self) -> usize {
        self.active.len()
            + self.held.len()
            + usize::from(self.outgoing.is_some())
            + usize::from(self.incoming.is_some())
    }
}

impl CallNetwork {
    pub(super) fn classify(&self, party: &Party) -> Calls {
        let mut calls = Calls::default();
        for (position, link) in self.links.iter().enumerate() {
            let Some(side) = link.end_of(party) else {
                continue;
            };
            if !link.presented_to(side) {
                continue;
            }
            let end = &link.ends[side];
            match (link.phase, end.direction) {
                (Phase::Connected, _) if end.held => calls.held.push(position),
                (Phase::Connected, _) => calls.active.push(position),
                (_, Direction::MobileOriginated) => calls.outgoing = Some(position),
                (_, Direction::MobileTerminated) => calls.incoming = Some(position),
            }
        }
        calls
    }

    pub(super) fn free_call_id(&self, party: &Party) -> u8 {
        let used: BTreeSet<u8> = self
            .links
            .iter()
            .filter_map(|l| l.end_of(party).map(|side| l.ends[side].call_id))
            .collect();
        (1..=MAX_CALLS as u8)
            .find(|id| !used.contains(id))
            .unwrap_or(0)
    }

    pub(super) fn ids(&self, positions: &[usize]) -> Vec<u64> {
        positions.iter().map(|&p| self.links[p].id).collect()
    }

    pub(super) fn link_of_call(&self, party: &Party, call: u8) -> Result<u64, CallError> {
        self.links
            .iter()
            .find(|l| {
                l.end_of(party)
                    .is_some_and(|side| l.ends[side].call_id == call)
            })
            .map(|l| l.id)
            .ok_or(CallError::NoSuchCall(call))
    }

    /// The callee answered: the call is connected, and the caller is shown
    /// the line it is connected to (the callee's number, unless restricted).
    pub(super) fn connect(&mut self, id: u64) {
        let Some(position) = self.links.iter().position(|l| l.id == id) else {
            return;
        };
        let answering = self.presented(&self.links[position].ends[1].party);
        let link = &mut self.links[position];
        link.phase = Phase::Connected;
        link.ends[0].connected_line = answering;
    }

    /// `party` puts these calls on hold or takes them back; the other side
    /// of each call that changes is notified (22.083).
    pub(super) fn set_held(
        &mut self,
        ids: &[u64],
        party: &Party,
        held: bool,
        out: &mut Vec<Notice>,
    ) {
        let mut changed = Vec::new();
        for link in self.links.iter_mut().filter(|l| ids.contains(&l.id)) {
            if let Some(side) = link.end_of(party)
                && link.ends[side].held != held
            {
                link.ends[side].held = held;
                changed.push(link.id);
            }
        }
        let kind = if held {
            SsKind::Held
        } else {
            SsKind::Retrieved
        };
        self.notify_remote(&changed, party, kind, out);
    }
}
