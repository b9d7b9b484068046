//! Choosing the proxy SIM for a new session.
//!
//! The rule (README, "The masking rule, the relay and calls"): a session
//! between A and B gets a proxy P such that no other open session on P
//! contains A or B. Then traffic on P from X has at most one open session
//! and its other participant is the destination. Among the SIMs that are
//! enabled, healthy and able to serve the session's mode, the least loaded
//! wins, ties broken by signal; a preferred proxy (one a participant used
//! before, so people recognise the number) wins when it is eligible.
//!
//! Beyond the rule, the pool's own rails:
//! - a SIM *reserved* for a participant (a caseworker's own public number)
//!   is never given to a session without that participant, and a session
//!   with them takes it first;
//! - a *draining* SIM gets no new sessions (its open ones run to their end);
//! - a SIM close to a *budget* (distinct recipients this month, messages
//!   today) is avoided: the last `reserve_percent` of each budget is kept
//!   for the traffic of the sessions it already has;
//! - a participant who *opted out* (sent STOP) is put in no new session.
//!
//! A hub (one participant in many open sessions on one proxy, see
//! [`super::hub`]) relaxes only the `busy_participants` check, for the hub
//! alone: its counterpart must still be free on the proxy, so that the
//! counterpart's traffic there has one destination. Every other check is
//! per SIM or per request and stays as it is; two hubs are never paired.

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
    /// The participant this SIM is pinned to, if any: nobody else gets it.
    pub reserved_for: Option<PhoneNumber>,
    /// Being emptied before retirement: no new sessions.
    pub draining: bool,
    /// Distinct numbers this SIM sent to this calendar month.
    pub recipients: Budget,
    /// Messages this SIM sent in the last 24 hours.
    pub sent_today: Budget,
    /// Which of the request's participants this SIM already sent to this
    /// month (they cost nothing more of the recipients budget).
    pub known_recipients: HashSet<PhoneNumber>,
}

/// The use of one budget of a SIM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub used: u32,
    /// `None`: no limit.
    pub limit: Option<u32>,
}

impl Budget {
    /// Whether `more` would leave less than `reserve_percent` of the limit.
    pub fn too_close(&self, more: u32, reserve_percent: u8) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let reserve = (u64::from(limit) * u64::from(reserve_percent.min(100))).div_ceil(100);
        let after = u64::from(self.used) + u64::from(more);
        after > u64::from(limit) || u64::from(limit) - after < reserve
    }
}

/// The budgets of the pool's SIMs, as configured: pool-wide limits and
/// per-SIM overrides (by ICCID), and the share allocation leaves unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolLimits {
    /// Messages a SIM may send per day; `None`: no limit.
    pub per_day: Option<u32>,
    /// Distinct recipients a SIM may send to per calendar month.
    pub recipients_per_month: Option<u32>,
    /// Per-SIM overrides of the two, by ICCID.
    pub per_sim: std::collections::HashMap<String, SimLimits>,
    /// Percent of each budget that allocation leaves for the traffic of
    /// the sessions a SIM already has.
    pub reserve_percent: u8,
}

/// One SIM's own limits; `None` fields take the pool's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimLimits {
    pub per_day: Option<u32>,
    pub recipients_per_month: Option<u32>,
}

impl PoolLimits {
    /// The limits of `iccid`: its own where set, else the pool's.
    pub fn of(&self, iccid: &str) -> SimLimits {
        let own = self.per_sim.get(iccid).copied().unwrap_or_default();
        SimLimits {
            per_day: own.per_day.or(self.per_day),
            recipients_per_month: own.recipients_per_month.or(self.recipients_per_month),
        }
    }
}

/// What a new session needs.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    pub participants: [PhoneNumber; 2],
    pub mode: Mode,
    /// Proxies a participant used before, most recent first: the first
    /// eligible one is taken before load balancing.
    pub preferred: Vec<String>,
    /// Participants who opted out (sent STOP) and not back in (START).
    pub opted_out: Vec<PhoneNumber>,
    /// The share of each SIM budget (percent) that allocation leaves for
    /// the sessions a SIM already has.
    pub reserve_percent: u8,
    /// Participants that are hubs: they may have other open sessions on
    /// the proxy chosen.
    pub hubs: Vec<PhoneNumber>,
}

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("the two participants are the same number")]
    SameParticipants,
    #[error("participant {0:?} is a proxy number of this appliance")]
    ParticipantIsProxy(PhoneNumber),
    #[error("participant {0:?} opted out (sent STOP) and has not sent START since")]
    OptedOut(PhoneNumber),
    #[error("both participants are hubs: a hub's sessions are with people, not with another hub")]
    TwoHubs,
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
    pub reserved: usize,
    pub draining: usize,
    pub near_budget: usize,
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
            (self.reserved, "are reserved for another participant"),
            (
                self.draining,
                "are draining (no new sessions before retirement)",
            ),
            (
                self.near_budget,
                "are close to a budget (recipients this month or messages today)",
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
    Reserved,
    Draining,
    Unhealthy,
    NotVoiceCapable,
    ParticipantBusy,
    NearBudget,
}

fn refusal(candidate: &ProxyCandidate, request: &AllocationRequest) -> Option<Refusal> {
    let new_recipients = request
        .participants
        .iter()
        .filter(|p| !candidate.known_recipients.contains(*p))
        .count();
    if !candidate.enabled {
        Some(Refusal::Disabled)
    } else if candidate
        .reserved_for
        .as_ref()
        .is_some_and(|owner| !request.participants.contains(owner))
    {
        Some(Refusal::Reserved)
    } else if candidate.draining {
        Some(Refusal::Draining)
    } else if !candidate.healthy {
        Some(Refusal::Unhealthy)
    } else if request.mode.carries_voice() && !candidate.voice_capable {
        Some(Refusal::NotVoiceCapable)
    } else if request
        .participants
        .iter()
        .filter(|p| !request.hubs.contains(p))
        .any(|p| candidate.busy_participants.contains(p))
    {
        Some(Refusal::ParticipantBusy)
    } else if candidate.recipients.too_close(
        u32::try_from(new_recipients).unwrap_or(u32::MAX),
        request.reserve_percent,
    ) || candidate.sent_today.too_close(1, request.reserve_percent)
    {
        Some(Refusal::NearBudget)
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
    if let Some(opted_out) = request
        .participants
        .iter()
        .find(|p| request.opted_out.contains(p))
    {
        return Err(AllocationError::OptedOut(opted_out.clone()));
    }
    if request
        .participants
        .iter()
        .all(|p| request.hubs.contains(p))
    {
        return Err(AllocationError::TwoHubs);
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
            Some(Refusal::Reserved) => why.reserved += 1,
            Some(Refusal::Draining) => why.draining += 1,
            Some(Refusal::NearBudget) => why.near_budget += 1,
        }
    }

    // A participant's own reserved number comes first: that is what it is for.
    if let Some(own) = eligible.iter().find(|c| {
        c.reserved_for
            .as_ref()
            .is_some_and(|owner| request.participants.contains(owner))
    }) {
        return Ok(own);
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
            reserved_for: None,
            draining: false,
            recipients: Budget::default(),
            sent_today: Budget::default(),
            known_recipients: HashSet::new(),
        }
    }

    fn request(a: &str, b: &str, mode: Mode) -> AllocationRequest {
        AllocationRequest {
            participants: [number(a), number(b)],
            mode,
            preferred: vec![],
            opted_out: vec![],
            reserve_percent: 10,
            hubs: vec![],
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

    #[test]
    fn a_reserved_sim_serves_only_its_owner_and_is_their_first_choice() {
        let mut own = candidate("own", "+447000000001");
        own.reserved_for = Some(number(A));
        own.open_sessions = 4;
        own.signal_dbm = Some(-110);
        let free = candidate("free", "+447000000002");
        let pool = [own, free];
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &pool).unwrap().iccid,
            "own",
            "the owner's number first, however loaded"
        );
        assert_eq!(
            allocate(&request(B, C, Mode::Sms), &pool).unwrap().iccid,
            "free"
        );
        let error = allocate(&request(B, C, Mode::Sms), &pool[..1]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("1 are reserved for another participant"),
            "{error}"
        );
    }

    #[test]
    fn a_draining_sim_gets_no_new_session() {
        let mut draining = candidate("1", "+447000000001");
        draining.draining = true;
        let pool = [draining];
        let error = allocate(&request(A, B, Mode::Sms), &pool).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no free proxy: of 1 SIMs, 1 are draining (no new sessions before retirement)"
        );
    }

    #[test]
    fn a_sim_close_to_a_budget_is_avoided() {
        let mut near = candidate("near", "+447000000001");
        near.recipients = Budget {
            used: 90,
            limit: Some(100),
        };
        let mut roomy = candidate("roomy", "+447000000002");
        roomy.open_sessions = 9;
        roomy.recipients = Budget {
            used: 10,
            limit: Some(100),
        };
        let pool = [near.clone(), roomy];
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &pool).unwrap().iccid,
            "roomy"
        );
        // Participants it already sent to this month cost nothing more.
        near.recipients.used = 88;
        near.known_recipients = [number(A), number(B)].into();
        assert_eq!(
            allocate(&request(A, B, Mode::Sms), &[near.clone()])
                .unwrap()
                .iccid,
            "near"
        );
        let mut busy_today = candidate("today", "+447000000003");
        busy_today.sent_today = Budget {
            used: 995,
            limit: Some(1000),
        };
        let error = allocate(&request(A, B, Mode::Sms), &[busy_today]).unwrap_err();
        assert!(
            error.to_string().contains("1 are close to a budget"),
            "{error}"
        );
        assert!(!Budget::default().too_close(u32::MAX, 100), "no limit");
    }

    #[test]
    fn an_opted_out_participant_gets_no_session() {
        let pool = [candidate("1", "+447000000001")];
        let mut req = request(A, B, Mode::Sms);
        req.opted_out = vec![number(B)];
        assert_eq!(
            allocate(&req, &pool).unwrap_err(),
            AllocationError::OptedOut(number(B))
        );
    }

    #[test]
    fn a_hub_holds_many_sessions_on_one_proxy_its_counterparts_one() {
        // The hub A talks to B on the only SIM; C may join it there, B may not
        // hold a second session there, and two hubs are never paired.
        let mut sim = candidate("1", "+447000000001");
        sim.busy_participants = [number(A), number(B)].into();
        sim.open_sessions = 1;
        let pool = [sim];
        let mut req = request(A, C, Mode::Sms);
        assert!(allocate(&req, &pool).is_err(), "A is no hub yet");
        req.hubs = vec![number(A)];
        assert_eq!(allocate(&req, &pool).unwrap().iccid, "1");
        let mut busy = request(A, B, Mode::Sms);
        busy.hubs = vec![number(A)];
        let error = allocate(&busy, &pool).unwrap_err();
        assert!(error.to_string().contains("1 already carry"), "{error}");
        let mut both = request(A, C, Mode::Sms);
        both.hubs = vec![number(A), number(C)];
        assert_eq!(
            allocate(&both, &pool).unwrap_err(),
            AllocationError::TwoHubs
        );
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        const PEOPLE: [&str; 6] = [
            "+447911000001",
            "+447911000002",
            "+447911000003",
            "+447911000004",
            "+447911000005",
            "+447911000006",
        ];

        fn person() -> impl Strategy<Value = PhoneNumber> {
            (0..PEOPLE.len()).prop_map(|i| number(PEOPLE[i]))
        }

        fn sim(i: usize) -> impl Strategy<Value = ProxyCandidate> {
            (
                any::<(bool, bool, bool, bool)>(),
                proptest::option::weighted(0.4, person()),
                proptest::collection::hash_set(person(), 0..4),
                0usize..5,
                proptest::option::of(-110i32..-50),
                (0u32..120, proptest::option::of(1u32..120)),
            )
                .prop_map(
                    move |(
                        (enabled, healthy, voice, draining),
                        reserved_for,
                        busy,
                        load,
                        signal,
                        (used, limit),
                    )| {
                        let mut c = candidate(&i.to_string(), &format!("+44700000{i:04}"));
                        c.enabled = enabled;
                        c.healthy = healthy;
                        c.voice_capable = voice;
                        c.draining = draining;
                        c.reserved_for = reserved_for;
                        c.busy_participants = busy;
                        c.open_sessions = load;
                        c.signal_dbm = signal;
                        c.recipients = Budget { used, limit };
                        c
                    },
                )
        }

        fn pool() -> impl Strategy<Value = Vec<ProxyCandidate>> {
            (0usize..8).prop_flat_map(|n| (0..n).map(sim).collect::<Vec<_>>())
        }

        proptest! {
            #[test]
            fn reserved_and_draining_sims_never_go_to_anyone_else(
                pool in pool(),
                a in person(),
                b in person(),
                sticky in proptest::collection::vec(0usize..8, 0..3),
                mode in prop_oneof![Just(Mode::Sms), Just(Mode::Voice), Just(Mode::Both)],
            ) {
                let request = AllocationRequest {
                    participants: [a.clone(), b.clone()],
                    mode,
                    preferred: sticky.iter().map(|i| i.to_string()).collect(),
                    opted_out: vec![],
                    reserve_percent: 10,
                    hubs: vec![],
                };
                if let Ok(chosen) = allocate(&request, &pool) {
                    prop_assert!(!chosen.draining, "a draining SIM was chosen");
                    if let Some(owner) = &chosen.reserved_for {
                        prop_assert!(
                            owner == &a || owner == &b,
                            "a SIM reserved for someone else was chosen"
                        );
                    }
                    prop_assert!(chosen.enabled && chosen.healthy);
                    prop_assert!(!chosen.busy_participants.contains(&a));
                    prop_assert!(!chosen.busy_participants.contains(&b));
                    prop_assert!(!mode.carries_voice() || chosen.voice_capable);
                } else {
                    // Refused only when no SIM could take it.
                    let any_fits = a != b && pool.iter().any(|c| refusal(c, &request).is_none());
                    prop_assert!(!any_fits, "refused although a SIM was eligible");
                }
            }
        }
    }
}
