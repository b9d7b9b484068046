//! Choosing the proxy SIM for a new session.
//!
//! The rule (DESIGN.md): a session between A and B gets a proxy P such that
//! no other open session on P contains A or B. Then traffic on P from X has at
//! most one open session and its other participant is the destination. Among
//! the SIMs that are enabled, healthy and able to serve the session's mode,
//! the least loaded wins, ties broken by signal; a preferred proxy (one a
//! participant used before, so people recognise the number) wins when it is
//! eligible.

use std::collections::HashSet;
use std::fmt;

use crate::number::PhoneNumber;

use super::Mode;

/// One SIM of the pool as allocation sees it.
#[derive(Debug, Clone)]
pub struct ProxyCandidate {
    /// The SIM's identity (ICCID): the unit of the pool.
    pub iccid: String,
    /// The proxy number (the SIM's MSISDN).
    pub number: PhoneNumber,
    /// Enabled by the operator.
    pub enabled: bool,
    /// Its modem is present, registered and not quarantined.
    pub healthy: bool,
    /// The SIM's network can bridge calls (multiparty or explicit transfer).
    pub voice_capable: bool,
    /// Open sessions on this proxy.
    pub open_sessions: usize,
    /// Signal strength in dBm, if known.
    pub signal_dbm: Option<i32>,
    /// Every participant of an open session on this proxy.
    pub busy_participants: HashSet<PhoneNumber>,
}

/// What a new session needs.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    pub participants: [PhoneNumber; 2],
    pub mode: Mode,
    /// Proxies a participant used before, most recent first: the first
    /// eligible one is taken before load balancing.
    pub preferred: Vec<String>,
}

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("the two participants are the same number")]
    SameParticipants,
    #[error("participant {0:?} is a proxy number of this appliance")]
    ParticipantIsProxy(PhoneNumber),
    #[error("no free proxy: {0}")]
    NoFreeProxy(Ineligibility),
}

/// How many SIMs were passed over, and why: the 409's reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ineligibility {
    pub total: usize,
    pub disabled: usize,
    pub unhealthy: usize,
    pub not_voice_capable: usize,
    pub participant_busy: usize,
}

impl fmt::Display for Ineligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total == 0 {
            return write!(f, "the pool has no SIMs");
        }
        let reasons: Vec<String> = [
            (
                self.participant_busy,
                "already carry an open session with one of these participants",
            ),
            (self.disabled, "are disabled"),
            (self.unhealthy, "are unhealthy or unplugged"),
            (
                self.not_voice_capable,
                "cannot bridge calls (no multiparty or call transfer)",
            ),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, why)| format!("{count} {why}"))
        .collect();
        write!(f, "of {} SIMs, {}", self.total, reasons.join(", "))
    }
}

/// Why one candidate is not eligible, in the order the checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Disabled,
    Unhealthy,
    NotVoiceCapable,
    ParticipantBusy,
}

fn refusal(candidate: &ProxyCandidate, request: &AllocationRequest) -> Option<Refusal> {
    if !candidate.enabled {
        Some(Refusal::Disabled)
    } else if !candidate.healthy {
        Some(Refusal::Unhealthy)
    } else if request.mode.carries_voice() && !candidate.voice_capable {
        Some(Refusal::NotVoiceCapable)
    } else if request
        .participants
        .iter()
        .any(|p| candidate.busy_participants.contains(p))
    {
        Some(Refusal::ParticipantBusy)
    } else {
        None
    }
}

/// Picks the proxy for `request` among `candidates`.
pub fn allocate<'a>(
    request: &AllocationRequest,
    candidates: &'a [ProxyCandidate],
) -> Result<&'a ProxyCandidate, AllocationError> {
    let [a, b] = &request.participants;
    if a == b {
        return Err(AllocationError::SameParticipants);
    }
    if let Some(proxy) = request
        .participants
        .iter()
        .find(|p| candidates.iter().any(|c| &c.number == *p))
    {
        return Err(AllocationError::ParticipantIsProxy(proxy.clone()));
    }

    let mut why = Ineligibility {
        total: candidates.len(),
        ..Ineligibility::default()
    };
    let mut eligible = Vec::new();
    for candidate in candidates {
        match refusal(candidate, request) {
            None => eligible.push(candidate),
            Some(Refusal::Disabled) => why.disabled += 1,
            Some(Refusal::Unhealthy) => why.unhealthy += 1,
            Some(Refusal::NotVoiceCapable) => why.not_voice_capable += 1,
            Some(Refusal::ParticipantBusy) => why.participant_busy += 1,
        }
    }

    if let Some(sticky) = request
        .preferred
        .iter()
        .find_map(|iccid| eligible.iter().find(|c| &c.iccid == iccid))
    {
        return Ok(sticky);
    }
    eligible
        .into_iter()
        // Least loaded first, then the strongest signal (unknown signal last),
        // then the ICCID so that equal SIMs are chosen deterministically.
        .min_by(|x, y| {
            x.open_sessions
                .cmp(&y.open_sessions)
                .then_with(|| {
                    y.signal_dbm
                        .unwrap_or(i32::MIN)
                        .cmp(&x.signal_dbm.unwrap_or(i32::MIN))
                })
                .then_with(|| x.iccid.cmp(&y.iccid))
        })
        .ok_or(AllocationError::NoFreeProxy(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::from_e164(s).unwrap()
    }

    fn candidate(iccid: &str, msisdn: &str) -> ProxyCandidate {
        ProxyCandidate {
            iccid: iccid.into(),
            number: number(msisdn),
            enabled: true,
            healthy: true,
            voice_capable: true,
            open_sessions: 0,
            signal_dbm: Some(-70),
            busy_participants: HashSet::new(),
        }
    }

    fn request(a: &str, b: &str, mode: Mode) -> AllocationRequest {
        AllocationRequest {
            participants: [number(a), number(b)],
            mode,
            preferred: vec![],
        }
    }

    const A: &str = "+447911000001";
    const B: &str = "+447911000002";
    const C: &str = "+447911000003";

    #[test]
    fn a_proxy_holding_either_participant_is_skipped() {
        let mut p1 = candidate("1", "+447000000001");
        p1.busy_participants.insert(number(A));
        let mut p2 = candidate("2", "+447000000002");
        p2.busy_participants.insert(number(B));
        p2.open_sessions = 0;
        let mut p3 = candidate("3", "+447000000003");
        p3.open_sessions = 5;
        p3.busy_participants.insert(number(C));
        let pool = [p1, p2, p3];
        let chosen = allocate(&request(A, B, Mode::Sms), &pool).unwrap();
        assert_eq!(chosen.iccid, "3", "the only proxy free of A and B");
    }

    #[test]
    fn least_loaded_wins_then_signal_then_iccid() {
        let mut p1 = candidate("1", "+447000000001");
        p1.open_sessions = 2;
        let mut p2 = candidate("2", "+447000000002");
        p2.open_sessions = 1;
        p2.signal_dbm = Some(-90);
        let mut p3 = candidate("3", "+447000000003");
        p3.open_sessions = 1;
        p3.signal_dbm = Some(-60);
        let pool = [p1, p2, p3];
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &pool).unwrap().iccid,
            "3"
        );

        let p4 = candidate("4", "+447000000004");
        let mut p5 = candidate("5", "+447000000005");
        p5.signal_dbm = None;
        let p0 = candidate("0", "+447000000000");
        let pool = [p5, p4, p0];
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &pool).unwrap().iccid,
            "0"
        );
    }

    #[test]
    fn the_preferred_proxy_wins_when_eligible() {
        let mut used_before = candidate("old", "+447000000001");
        used_before.open_sessions = 3;
        let idle = candidate("idle", "+447000000002");
        let pool = [used_before, idle];
        let mut req = request(A, B, Mode::Both);
        req.preferred = vec!["gone".into(), "old".into()];
        assert_eq!(allocate(&req, &pool).unwrap().iccid, "old");

        let mut busy = pool.clone();
        busy[0].busy_participants.insert(number(B));
        assert_eq!(allocate(&req, &busy).unwrap().iccid, "idle");
    }

    #[test]
    fn voice_sessions_need_a_bridging_sim() {
        let mut sms_only = candidate("1", "+447000000001");
        sms_only.voice_capable = false;
        let pool = [sms_only];
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &pool).unwrap().iccid,
            "1"
        );
        let error = allocate(&request(A, B, Mode::Voice), &pool).unwrap_err();
        assert!(
            error.to_string().contains("1 cannot bridge calls"),
            "{error}"
        );
        assert!(allocate(&request(A, B, Mode::Both), &pool).is_err());
    }

    #[test]
    fn no_free_proxy_says_why_for_each_sim() {
        let mut disabled = candidate("1", "+447000000001");
        disabled.enabled = false;
        let mut unhealthy = candidate("2", "+447000000002");
        unhealthy.healthy = false;
        let mut busy = candidate("3", "+447000000003");
        busy.busy_participants.insert(number(A));
        let pool = [disabled, unhealthy, busy];
        let error = allocate(&request(A, B, Mode::Sms), &pool).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no free proxy: of 3 SIMs, 1 already carry an open session with one of \
             these participants, 1 are disabled, 1 are unhealthy or unplugged"
        );
        let error = allocate(&request(A, B, Mode::Sms), &[]).unwrap_err();
        assert_eq!(error.to_string(), "no free proxy: the pool has no SIMs");
    }

    #[test]
    fn participants_must_differ_and_not_be_proxies() {
        let pool = [candidate("1", "+447000000001")];
        assert_eq!(
            allocate(&request(A, A, Mode::Sms), &pool).unwrap_err(),
            AllocationError::SameParticipants
        );
        assert!(matches!(
            allocate(&request(A, "+447000000001", Mode::Sms), &pool).unwrap_err(),
            AllocationError::ParticipantIsProxy(_)
        ));
    }

    #[test]
    fn a_number_can_hold_one_session_per_sim() {
        // A talks to B, C and D at once: three sessions need three proxies.
        let mut pool: Vec<ProxyCandidate> = (1..=3)
            .map(|i| candidate(&i.to_string(), &format!("+44700000000{i}")))
            .collect();
        for other in ["+447911000002", "+447911000003", "+447911000004"] {
            let req = request(A, other, Mode::Sms);
            let iccid = allocate(&req, &pool).unwrap().iccid.clone();
            let chosen = pool.iter_mut().find(|c| c.iccid == iccid).unwrap();
            chosen.open_sessions += 1;
            chosen.busy_participants.insert(number(A));
            chosen.busy_participants.insert(number(other));
        }
        assert!(pool.iter().all(|c| c.open_sessions == 1));
        assert!(allocate(&request(A, "+447911000005", Mode::Sms), &pool).is_err());
        // B sits on proxy 1 and C on proxy 2: only proxy 3 can pair them.
        assert_eq!(
            allocate(&request(B, C, Mode::Sms), &pool).unwrap().iccid,
            "3"
        );
    }
}
