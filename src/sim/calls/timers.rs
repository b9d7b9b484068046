//! The network's clock on calls: callees alerted after the set-up delay,
//! `RING` repeated at ringing modems, unanswered calls released at the
//! ring timeout.

use std::time::Instant;

use super::links::{LinkId, Phase};
use super::{CallNetwork, EndReason, Notice, Party, Reach};

impl CallNetwork {
    /// Alerts the callees of calls past their set-up delay (`reach` says
    /// whether each can be reached), releases unanswered calls past the ring
    /// timeout, and repeats `RING` at ringing modems.
    pub fn tick(&mut self, now: Instant, reach: impl Fn(&Party) -> Reach) -> Vec<Notice> {
        let timing = self.timing;
        let due: Vec<(LinkId, Party)> = self
            .links
            .iter()
            .filter(|l| {
                matches!(l.phase, Phase::Dialing { since }
                    if now.saturating_duration_since(since) >= timing.setup_delay)
            })
            .map(|l| (LinkId(l.id), l.ends[1].party.clone()))
            .collect();
        let mut notices = Vec::new();
        for (link, callee) in due {
            notices.extend(self.alert(link, reach(&callee), now));
        }
        notices.extend(self.observe(|net, out| {
            let expired: Vec<u64> = net
                .links
                .iter()
                .filter(|l| {
                    matches!(l.phase, Phase::Alerting { since, .. }
                        if now.saturating_duration_since(since) >= timing.ring_timeout)
                })
                .map(|l| l.id)
                .collect();
            for id in expired {
                if let Some(position) = net.links.iter().position(|l| l.id == id) {
                    let link = net.links.remove(position);
                    net.ended(&link.ends[0].party, EndReason::NoAnswer, out);
                    net.ended(&link.ends[1].party, EndReason::RemoteHungUp, out);
                }
            }
            for position in 0..net.links.len() {
                let Phase::Alerting { since, last_ring } = net.links[position].phase else {
                    continue;
                };
                if now.saturating_duration_since(last_ring) < timing.ring_period {
                    continue;
                }
                net.links[position].phase = Phase::Alerting {
                    since,
                    last_ring: now,
                };
                let callee = net.links[position].ends[1].clone();
                if let Party::Modem(index) = callee.party
                    && net.classify(&callee.party).count() == 1
                {
                    net.ring_lines(index, &callee.sees, out);
                }
            }
        }));
        notices
    }
}
