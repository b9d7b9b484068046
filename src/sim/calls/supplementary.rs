//! Supplementary services on a modem's calls (3GPP TS 22.030 §6.5.5.1,
//! 27.007 §7.13 `+CHLD`): hold and waiting (22.083), multiparty (22.084)
//! and explicit call transfer (22.091).

use super::links::{End, Link, Phase};
use super::notifications::SsKind;
use super::{CallError, CallNetwork, MAX_CALLS, MAX_MULTIPARTY, Notice, Party};

/// The `+CHLD` operations of 27.007 §7.13 / 22.030 §6.5.5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chld {
    /// 0: release held calls, or reject (UDUB) a waiting call.
    ReleaseHeldOrWaiting,
    /// 1: release active calls and accept the waiting or held call.
    ReleaseActiveAcceptOther,
    /// 1x: release call x.
    Release(u8),
    /// 2: hold active calls and accept the waiting or held call.
    HoldActiveAcceptOther,
    /// 2x: hold all calls but x (private communication with x).
    Private(u8),
    /// 3: add the held call to the conversation.
    Join,
    /// 4: explicit call transfer; the modem leaves.
    Transfer,
}

impl Chld {
    /// Parses the value after `AT+CHLD=` (`AT+CHLD` alone means 0).
    pub fn parse(value: &str) -> Result<Chld, CallError> {
        let invalid = || CallError::InvalidChld(value.to_string());
        let digits = value.trim();
        let call = |rest: &str| -> Result<u8, CallError> {
            let id: u8 = rest.parse().map_err(|_| invalid())?;
            if (1..=MAX_CALLS as u8).contains(&id) {
                Ok(id)
            } else {
                Err(invalid())
            }
        };
        match digits {
            "" | "0" => Ok(Chld::ReleaseHeldOrWaiting),
            "1" => Ok(Chld::ReleaseActiveAcceptOther),
            "2" => Ok(Chld::HoldActiveAcceptOther),
            "3" => Ok(Chld::Join),
            "4" => Ok(Chld::Transfer),
            _ if digits.len() == 2 && digits.starts_with('1') => {
                Ok(Chld::Release(call(&digits[1..])?))
            }
            _ if digits.len() == 2 && digits.starts_with('2') => {
                Ok(Chld::Private(call(&digits[1..])?))
            }
            _ => Err(invalid()),
        }
    }

    /// Checks a service name as `AT+CHLD=?` lists it (`1x`, `3` …).
    pub fn parse_service(name: &str) -> Option<&str> {
        ["0", "1", "1x", "2", "2x", "3", "4"]
            .into_iter()
            .find(|s| *s == name)
    }

    /// The service name as `AT+CHLD=?` and the profiles list it.
    pub fn service(self) -> &'static str {
        match self {
            Chld::ReleaseHeldOrWaiting => "0",
            Chld::ReleaseActiveAcceptOther => "1",
            Chld::Release(_) => "1x",
            Chld::HoldActiveAcceptOther => "2",
            Chld::Private(_) => "2x",
            Chld::Join => "3",
            Chld::Transfer => "4",
        }
    }
}

impl CallNetwork {
    /// `AT+CHLD=<value>` on a modem.
    pub fn chld(&mut self, index: usize, value: &str) -> Result<Vec<Notice>, CallError> {
        let party = Party::Modem(index);
        self.modem(&party)?;
        let op = Chld::parse(value)?;
        if !self.offers(&party, op.service()) {
            return Err(CallError::NotOffered(op.service().into()));
        }
        let calls = self.classify(&party);
        let not_allowed = CallError::NotAllowed;
        match op {
            Chld::ReleaseHeldOrWaiting => {
                if let Some(ringing) = calls.incoming {
                    let id = self.links[ringing].id;
                    Ok(self.observe(|net, out| net.release(id, &party, out)))
                } else if !calls.held.is_empty() {
                    let ids = self.ids(&calls.held);
                    Ok(self.observe(|net, out| net.release_all(&ids, &party, out)))
                } else {
                    Err(not_allowed("no held or waiting call"))
                }
            }
            Chld::ReleaseActiveAcceptOther => {
                let mut release = calls.active.clone();
                release.extend(calls.outgoing);
                if release.is_empty() && calls.incoming.is_none() && calls.held.is_empty() {
                    return Err(not_allowed("no call"));
                }
                let release = self.ids(&release);
                let accept = calls.incoming.map(|p| self.links[p].id);
                let retrieve = self.ids(&calls.held);
                Ok(self.observe(|net, out| {
                    net.release_all(&release, &party, out);
                    if let Some(id) = accept {
                        net.connect(id);
                    } else {
                        net.set_held(&retrieve, &party, false, out);
                    }
                }))
            }
            Chld::Release(call) => {
                let id = self.link_of_call(&party, call)?;
                Ok(self.observe(|net, out| net.release(id, &party, out)))
            }
            Chld::HoldActiveAcceptOther => {
                if calls.outgoing.is_some() {
                    return Err(not_allowed("a call is being set up"));
                }
                if calls.is_empty() {
                    return Err(not_allowed("no call"));
                }
                if calls.incoming.is_some() && !calls.active.is_empty() && !calls.held.is_empty() {
                    return Err(not_allowed("an active and a held call already exist"));
                }
                let hold = self.ids(&calls.active);
                let retrieve = self.ids(&calls.held);
                let accept = calls.incoming.map(|p| self.links[p].id);
                Ok(self.observe(|net, out| {
                    net.set_held(&hold, &party, true, out);
                    if let Some(id) = accept {
                        net.connect(id);
                    } else {
                        net.set_held(&retrieve, &party, false, out);
                    }
                }))
            }
            Chld::Private(call) => {
                let id = self.link_of_call(&party, call)?;
                let in_conference = calls
                    .active
                    .iter()
                    .any(|&p| self.links[p].id == id && calls.active.len() > 1);
                if !in_conference {
                    return Err(not_allowed("private communication needs a multiparty call"));
                }
                if !calls.held.is_empty() {
                    return Err(not_allowed("a held call already exists"));
                }
                let others: Vec<u64> = self
                    .ids(&calls.active)
                    .into_iter()
                    .filter(|&other| other != id)
                    .collect();
                Ok(self.observe(|net, out| net.set_held(&others, &party, true, out)))
            }
            Chld::Join => {
                if calls.active.is_empty() || calls.held.is_empty() {
                    return Err(not_allowed("multiparty needs an active and a held call"));
                }
                if calls.active.len() + calls.held.len() > MAX_MULTIPARTY {
                    return Err(not_allowed("a multiparty call has at most five parties"));
                }
                let held = self.ids(&calls.held);
                let mut joined = self.ids(&calls.active);
                joined.extend(&held);
                // 24.084 §1.3: the held side is taken back, and every remote
                // party learns it is in a multiparty call.
                Ok(self.observe(|net, out| {
                    net.set_held(&held, &party, false, out);
                    net.notify_remote(&joined, &party, SsKind::Multiparty, out);
                }))
            }
            Chld::Transfer => {
                if calls.active.len() != 1 || calls.held.len() != 1 || calls.outgoing.is_some() {
                    return Err(not_allowed("transfer needs one active and one held call"));
                }
                let active = self.links[calls.active[0]].id;
                let held = self.links[calls.held[0]].id;
                Ok(self.observe(|net, out| net.transfer(&party, held, active, out)))
            }
        }
    }

    /// 22.091 explicit call transfer: the remote ends of the modem's held
    /// and active calls are joined into one call and the modem leaves it.
    /// Each remote party keeps the number it saw (its caller ID or the
    /// number it dialled) but is notified of the transfer with the other's
    /// number (23.091 §3), unless the other restricts its presentation.
    fn transfer(&mut self, modem: &Party, held: u64, active: u64, out: &mut Vec<Notice>) {
        let take = |net: &mut Self, id: u64| -> Option<End> {
            let position = net.links.iter().position(|l| l.id == id)?;
            let link = net.links.remove(position);
            let side = link.end_of(modem)?;
            let [a, b] = link.ends;
            Some(if side == 0 { b } else { a })
        };
        let (Some(mut first), Some(mut second)) = (take(self, held), take(self, active)) else {
            return;
        };
        first.multiparty = false;
        second.multiparty = false;
        let id = self.next_link;
        self.next_link += 1;
        let mut link = Link {
            id,
            phase: Phase::Connected,
            ends: [first, second],
        };
        self.notify_transferred(&mut link, out);
        self.links.push(link);
    }

    /// After any change: a modem's multiparty flag is set on its calls when
    /// two or more of them are active together, or held together
    /// (22.084: a multiparty call of one remote party is an ordinary call).
    pub(super) fn normalise_multiparty(&mut self) {
        let modems: Vec<usize> = self.modems.keys().copied().collect();
        for index in modems {
            let party = Party::Modem(index);
            let calls = self.classify(&party);
            for group in [&calls.active, &calls.held] {
                let joined = group.len() > 1;
                for &position in group {
                    if let Some(side) = self.links[position].end_of(&party) {
                        self.links[position].ends[side].multiparty = joined;
                    }
                }
            }
        }
    }
}
