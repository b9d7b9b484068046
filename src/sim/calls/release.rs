//! Ending calls: a hang-up, a party leaving the network, and how the other
//! side learns why (`NO CARRIER`, `BUSY`, `NO ANSWER`, a handset's last end).

use super::links::Phase;
use super::notices::push_line;
use super::{CallError, CallNetwork, Direction, EndReason, Notice, Party};

impl CallNetwork {
    /// `ATH`, `AT+CHUP` or a handset's hang-up: every call of the party ends
    /// (a ringing one is rejected: its caller gets busy).
    pub fn hangup(&mut self, party: &Party) -> Result<Vec<Notice>, CallError> {
        self.modem(party)?;
        let party = party.clone();
        Ok(self.observe(|net, out| {
            let ids: Vec<u64> = net
                .links
                .iter()
                .filter(|l| l.end_of(&party).is_some())
                .map(|l| l.id)
                .collect();
            let any = !ids.is_empty();
            for id in ids {
                net.release(id, &party, out);
            }
            if any && let Party::Handset(number) = &party {
                net.last_end.insert(number.clone(), EndReason::HungUp);
            }
        }))
    }

    /// A modem leaves the network (unplugged, reset, radio off): its calls
    /// end as if it had hung up, and the other parties hear `NO CARRIER`.
    pub fn drop_party(&mut self, party: &Party) -> Vec<Notice> {
        let party = party.clone();
        self.observe(|net, out| {
            let ids: Vec<u64> = net
                .links
                .iter()
                .filter(|l| l.end_of(&party).is_some())
                .map(|l| l.id)
                .collect();
            for id in ids {
                net.release(id, &party, out);
            }
        })
    }

    pub(super) fn release_all(&mut self, ids: &[u64], by: &Party, out: &mut Vec<Notice>) {
        for &id in ids {
            self.release(id, by, out);
        }
    }

    /// Ends one link because `by` released it; tells the other side why.
    pub(super) fn release(&mut self, id: u64, by: &Party, out: &mut Vec<Notice>) {
        let Some(position) = self.links.iter().position(|l| l.id == id) else {
            return;
        };
        let link = self.links.remove(position);
        let Some(side) = link.end_of(by) else {
            return;
        };
        let other = &link.ends[1 - side];
        let reason = match link.phase {
            // The callee rejected the call (22.030 UDUB): the caller hears busy.
            Phase::Alerting { .. } if other.direction == Direction::MobileOriginated => {
                EndReason::Busy
            }
            _ => EndReason::RemoteHungUp,
        };
        // A callee never alerted has nothing to end.
        if link.presented_to(1 - side) {
            self.ended(&other.party.clone(), reason, out);
        }
    }

    /// Tells a party one of its calls ended.
    pub(super) fn ended(&mut self, party: &Party, reason: EndReason, out: &mut Vec<Notice>) {
        match party {
            Party::Modem(index) => {
                let line = match reason {
                    EndReason::Busy => "BUSY",
                    EndReason::NoAnswer => "NO ANSWER",
                    _ => "NO CARRIER",
                };
                push_line(out, *index, line.into());
            }
            Party::Handset(number) => {
                self.last_end.insert(number.clone(), reason);
            }
        }
    }
}
