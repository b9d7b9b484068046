//! Setting up a call: the caller dials, the network alerts the callee
//! (it rings, gets a waiting call, or the caller hears busy or no
//! carrier), and the callee answers.

use std::time::Instant;

use super::links::{End, Link, LinkId, Phase};
use super::notices::push_line;
use super::notifications::{SsKind, SsNotification};
use super::{
    CallError, CallNetwork, Direction, EndReason, MAX_CALLS, Notice, Party, Reach, number_type,
};

impl CallNetwork {
    /// The caller starts a call (`ATD<number>;` or a handset's dial). The
    /// callee is alerted by [`CallNetwork::alert`], which [`CallNetwork::tick`]
    /// calls after the set-up delay; [`CallNetwork::dial`] does both at once.
    ///
    /// A modem with an active call puts it on hold first (22.030 §6.5.5.1,
    /// "entering a number and SEND"), when its network offers hold.
    pub fn originate(
        &mut self,
        caller: &Party,
        callee: &Party,
        dialed: &str,
        now: Instant,
    ) -> Result<(LinkId, Vec<Notice>), CallError> {
        self.modem(caller)?;
        if caller == callee || self.number_of(caller).as_deref() == Some(dialed) {
            return Err(CallError::OwnNumber);
        }
        let calls = self.classify(caller);
        match caller {
            Party::Handset(_) if !calls.is_empty() => return Err(CallError::AlreadyInCall),
            Party::Handset(_) => {}
            Party::Modem(_) => {
                if calls.outgoing.is_some() || calls.incoming.is_some() {
                    return Err(CallError::NotAllowed("a call is already being set up"));
                }
                if !calls.active.is_empty() && !calls.held.is_empty() {
                    return Err(CallError::NotAllowed(
                        "an active and a held call already exist",
                    ));
                }
                if !calls.active.is_empty() && !self.offers(caller, "2") {
                    return Err(CallError::NotOffered("2".into()));
                }
                if calls.count() >= MAX_CALLS {
                    return Err(CallError::NotAllowed("too many calls"));
                }
            }
        }
        let caller_party = caller.clone();
        let callee_party = callee.clone();
        let dialed = dialed.to_string();
        let call_id = self.free_call_id(caller);
        let id = self.next_link;
        Ok((
            LinkId(id),
            self.observe(move |net, out| {
                // The active call goes on hold first; its other side is told.
                let active = net.ids(&calls.active);
                net.set_held(&active, &caller_party, true, out);
                net.next_link += 1;
                let presented = net.presented(&caller_party).unwrap_or_default();
                net.links.push(Link {
                    id,
                    phase: Phase::Dialing { since: now },
                    ends: [
                        End::new(caller_party, call_id, Direction::MobileOriginated, dialed),
                        End::new(callee_party, 0, Direction::MobileTerminated, presented),
                    ],
                });
            }),
        ))
    }

    /// The network reaches the callee of a call being set up: it rings, or
    /// the call fails at once (busy, switched off, barred).
    pub fn alert(&mut self, link: LinkId, reach: Reach, now: Instant) -> Vec<Notice> {
        self.observe(|net, out| {
            let Some(position) = net.links.iter().position(|l| l.id == link.0) else {
                return;
            };
            if !matches!(net.links[position].phase, Phase::Dialing { .. }) {
                return;
            }
            let callee = net.links[position].ends[1].party.clone();
            let failure = match (reach, net.modem(&callee)) {
                (Reach::SwitchedOff | Reach::Barred, _) | (_, Err(_)) => {
                    Some(EndReason::Unreachable)
                }
                (Reach::Reachable, Ok(_)) if net.busy(&callee) => Some(EndReason::Busy),
                (Reach::Reachable, Ok(_)) => None,
            };
            if let Some(reason) = failure {
                let link = net.links.remove(position);
                net.ended(&link.ends[0].party, reason, out);
                return;
            }
            let waiting = !net.classify(&callee).is_empty();
            let call_id = net.free_call_id(&callee);
            let l = &mut net.links[position];
            l.ends[1].call_id = call_id;
            l.phase = Phase::Alerting {
                since: now,
                last_ring: now,
            };
            let presented = l.ends[1].sees.clone();
            if let Party::Modem(index) = callee {
                if waiting {
                    net.waiting_lines(index, &presented, out);
                } else {
                    net.ring_lines(index, &presented, out);
                }
            }
            if waiting {
                // 22.083 §1.1: the caller is told its call is waiting.
                let mut caller = net.links[position].ends[0].clone();
                net.notify(&mut caller, SsNotification::new(SsKind::Waiting, None), out);
                net.links[position].ends[0] = caller;
            }
        })
    }

    /// Dials and alerts at once (a network without set-up delay).
    pub fn dial(
        &mut self,
        caller: &Party,
        callee: &Party,
        dialed: &str,
        reach: Reach,
        now: Instant,
    ) -> Result<Vec<Notice>, CallError> {
        let (link, mut notices) = self.originate(caller, callee, dialed, now)?;
        notices.extend(self.alert(link, reach, now));
        Ok(notices)
    }

    /// Whether a new call to `party` gets busy: a handset in a call, or a
    /// modem that already has a call ringing or is full. A modem in a call
    /// gets the new one as a waiting call (22.083).
    fn busy(&self, party: &Party) -> bool {
        let calls = self.classify(party);
        match party {
            Party::Handset(_) => !calls.is_empty(),
            Party::Modem(_) => {
                calls.incoming.is_some()
                    || calls.count() >= MAX_CALLS
                    || (!calls.is_empty() && !self.offers(party, "2"))
            }
        }
    }

    pub(super) fn ring_lines(&self, index: usize, caller_id: &str, out: &mut Vec<Notice>) {
        let Some(modem) = self.modems.get(&index) else {
            return;
        };
        let ring = if modem.settings.crc {
            "+CRING: VOICE"
        } else {
            "RING"
        };
        push_line(out, index, ring.to_string());
        if modem.settings.clip {
            // 27.007 §7.6: number, type, subaddr, satype, alpha, CLI validity
            // (1: withheld by the caller).
            push_line(out, index, format!("+CLIP: {}", presented(caller_id)));
        }
    }

    fn waiting_lines(&self, index: usize, caller_id: &str, out: &mut Vec<Notice>) {
        if self.modems.get(&index).is_some_and(|m| m.settings.ccwa) {
            // 27.007 §7.12: number, type, class (1 voice).
            let line = if caller_id.is_empty() {
                "+CCWA: \"\",128,1,,1".to_string()
            } else {
                format!("+CCWA: \"{caller_id}\",{},1", number_type(caller_id))
            };
            push_line(out, index, line);
        }
    }

    /// `ATA` or a handset's answer: the incoming call becomes active.
    pub fn answer(&mut self, party: &Party) -> Result<Vec<Notice>, CallError> {
        self.modem(party)?;
        let calls = self.classify(party);
        let Some(position) = calls.incoming else {
            return Err(CallError::NoIncomingCall);
        };
        if calls.count() > 1 {
            return Err(CallError::NotAllowed(
                "a waiting call is accepted with +CHLD=1 or +CHLD=2",
            ));
        }
        let id = self.links[position].id;
        Ok(self.observe(|net, _| net.connect(id)))
    }
}

/// A caller ID's number, type and the rest of `+CLIP`: the number with its
/// type and validity 0, or an empty number of type 128 with validity 1 when
/// the caller restricts its presentation.
fn presented(caller_id: &str) -> String {
    if caller_id.is_empty() {
        "\"\",128,,,,1".into()
    } else {
        format!("\"{caller_id}\",{},,,,0", number_type(caller_id))
    }
}
