//! What observers learn from each change: `+CLCC` lines for modems that
//! asked for them (`+CLCC=1`) and the new screen of each handset involved.

use std::collections::{BTreeMap, BTreeSet};

use super::{CallInfo, CallNetwork, HandsetCall, Notice, Party, clcc_line};

impl CallNetwork {
    /// Runs a change and adds the notices every observer derives from it:
    /// `+CLCC` lines for modems with `+CLCC=1`, new states for handsets.
    pub(super) fn observe(
        &mut self,
        change: impl FnOnce(&mut Self, &mut Vec<Notice>),
    ) -> Vec<Notice> {
        let before = self.snapshot();
        let mut out = Vec::new();
        change(self, &mut out);
        self.normalise_multiparty();
        let after = self.snapshot();
        for (index, calls) in &after.modems {
            let old = before.modems.get(index).cloned().unwrap_or_default();
            // Only what a +CLCC line shows counts as a change (not the
            // other side's hold, which the modem does not see).
            let changed = |c: &&CallInfo| old.iter().all(|o| o.clcc_line() != c.clcc_line());
            for call in calls.iter().filter(changed) {
                push_line(&mut out, *index, call.clcc_line());
            }
            for gone in old.iter().filter(|o| calls.iter().all(|c| c.id != o.id)) {
                // SIMCom reports the released call once more with stat 6.
                let line = clcc_line(
                    gone.id,
                    gone.direction as u8,
                    6,
                    gone.multiparty,
                    &gone.number,
                );
                push_line(&mut out, *index, line);
            }
        }
        let numbers: BTreeSet<&String> = before
            .handsets
            .keys()
            .chain(after.handsets.keys())
            .collect();
        for number in numbers {
            if before.handsets.get(number) != after.handsets.get(number)
                && let Some(call) = after.handsets.get(number)
            {
                out.push(Notice::Handset {
                    number: number.clone(),
                    call: call.clone(),
                });
            }
        }
        out
    }

    fn snapshot(&self) -> Snapshot {
        let modems = self
            .modems
            .iter()
            .filter(|(_, m)| m.settings.clcc)
            .map(|(&index, _)| (index, self.calls_of(&Party::Modem(index))))
            .collect();
        let mut numbers: BTreeSet<String> = self.last_end.keys().cloned().collect();
        for link in &self.links {
            for end in &link.ends {
                if let Party::Handset(number) = &end.party {
                    numbers.insert(number.clone());
                }
            }
        }
        let handsets = numbers
            .into_iter()
            .map(|n| {
                let call = self.handset_call(&n);
                (n, call)
            })
            .collect();
        Snapshot { modems, handsets }
    }
}

/// What every observer sees, before and after a change.
struct Snapshot {
    modems: BTreeMap<usize, Vec<CallInfo>>,
    handsets: BTreeMap<String, HandsetCall>,
}

pub(super) fn push_line(out: &mut Vec<Notice>, index: usize, line: String) {
    out.push(Notice::Modem { index, line });
}
