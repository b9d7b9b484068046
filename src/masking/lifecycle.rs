//! Sessions: open → closed (by the operator) or expired (absolute TTL, or
//! idle TTL since the last interaction), and where traffic on a proxy goes.
//!
//! Expiry is decided here, at the moment traffic arrives, so a session past
//! its time never relays even if the periodic sweep has not run yet.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::number::PhoneNumber;

use super::{Mode, Traffic};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Open,
    Closed,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Closed => "closed",
            SessionStatus::Expired => "expired",
        }
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(SessionStatus::Open),
            "closed" => Ok(SessionStatus::Closed),
            "expired" => Ok(SessionStatus::Expired),
            other => Err(format!(
                "unknown session status {other:?} (expected open, closed or expired)"
            )),
        }
    }
}

/// Why a session ended. Every closed or expired session has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Closed by an operator (API, dashboard, CLI).
    Operator,
    /// Its absolute lifetime (`ttl_seconds`) ran out.
    Ttl,
    /// Nothing happened for `idle_ttl_seconds`.
    Idle,
    /// A participant sent STOP (or a configured equivalent).
    OptOut,
    /// A participant was erased on request (`simmask erase`).
    Erased,
    /// Its proxy SIM was retired.
    SimRetired,
    /// Loop protection stopped it: auto-responders answering each other.
    Loop,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::Operator,
        CloseReason::Ttl,
        CloseReason::Idle,
        CloseReason::OptOut,
        CloseReason::Erased,
        CloseReason::SimRetired,
        CloseReason::Loop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Operator => "operator",
            CloseReason::Ttl => "ttl",
            CloseReason::Idle => "idle",
            CloseReason::OptOut => "opt_out",
            CloseReason::Erased => "erased",
            CloseReason::SimRetired => "sim_retired",
            CloseReason::Loop => "loop",
        }
    }

    /// The status a session ending for this reason takes: time ends it
    /// as `expired`, everything else as `closed`.
    pub fn status(self) -> SessionStatus {
        match self {
            CloseReason::Ttl | CloseReason::Idle => SessionStatus::Expired,
            _ => SessionStatus::Closed,
        }
    }
}

impl std::str::FromStr for CloseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CloseReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown close reason {s:?}"))
    }
}

/// A session as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    /// The proxy SIM (ICCID).
    pub proxy_iccid: String,
    pub participants: [PhoneNumber; 2],
    pub mode: Mode,
    pub status: SessionStatus,
    pub opened_at: OffsetDateTime,
    /// Absolute expiry (`ttl_seconds` after opening), if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Idle expiry: the session ends this long after its last interaction
    /// (or its opening, before any).
    pub idle_ttl: Option<Duration>,
    pub last_activity_at: OffsetDateTime,
}

impl Session {
    /// The moment the session stops relaying, if it has a limit: the earlier
    /// of its absolute and idle expiry.
    pub fn deadline(&self) -> Option<OffsetDateTime> {
        let idle = self.idle_ttl.map(|ttl| self.last_activity_at + ttl);
        match (self.expires_at, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why a session past its deadline at `now` ends: its absolute expiry
    /// when that has come, else its idle timer.
    pub fn expiry_reason(&self, now: OffsetDateTime) -> CloseReason {
        if self.expires_at.is_some_and(|at| at <= now) {
            CloseReason::Ttl
        } else {
            CloseReason::Idle
        }
    }

    /// Whether an open session is past its deadline at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.status == SessionStatus::Open && self.deadline().is_some_and(|d| d <= now)
    }

    /// The participant that is not `from`, when `from` takes part.
    pub fn other_participant(&self, from: &PhoneNumber) -> Option<&PhoneNumber> {
        match &self.participants {
            [a, b] if a == from => Some(b),
            [a, b] if b == from => Some(a),
            _ => None,
        }
    }
}

/// Why a session cannot be reopened: a 409's `error` code and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReopenRefusal {
    #[error("the session is open")]
    StillOpen,
    #[error("a participant of the session was erased")]
    Erased,
    #[error("participant {0:?} has another open session on this proxy (the masking rule)")]
    ParticipantBusy(PhoneNumber),
    #[error("participant {0:?} opted out (sent STOP) and has not sent START since")]
    OptedOut(PhoneNumber),
    #[error("the proxy is draining: it takes no new sessions")]
    Draining,
    #[error("the proxy is reserved for another participant")]
    Reserved,
}

impl ReopenRefusal {
    /// The API's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ReopenRefusal::StillOpen => "session_open",
            ReopenRefusal::Erased => "erased",
            ReopenRefusal::ParticipantBusy(_) => "participant_busy",
            ReopenRefusal::OptedOut(_) => "opted_out",
            ReopenRefusal::Draining => "draining",
            ReopenRefusal::Reserved => "reserved",
        }
    }
}

/// The proxy of a session to reopen, as the rules need it.
#[derive(Debug, Clone, Default)]
pub struct ReopenProxy {
    pub draining: bool,
    pub reserved_for: Option<PhoneNumber>,
    /// Participants of the other open sessions on the proxy (of those
    /// asked about: the session's own two).
    pub busy: Vec<PhoneNumber>,
}

/// Whether a closed or expired session may take its proxy again: the
/// masking rule must still hold on it, and the rails of a new session too.
/// `participants` is `None` once a participant was erased.
pub fn may_reopen(
    status: SessionStatus,
    participants: Option<&[PhoneNumber; 2]>,
    proxy: &ReopenProxy,
    opted_out: &[PhoneNumber],
) -> Result<(), ReopenRefusal> {
    if status == SessionStatus::Open {
        return Err(ReopenRefusal::StillOpen);
    }
    let participants = participants.ok_or(ReopenRefusal::Erased)?;
    if let Some(busy) = participants.iter().find(|p| proxy.busy.contains(p)) {
        return Err(ReopenRefusal::ParticipantBusy(busy.clone()));
    }
    if let Some(out) = participants.iter().find(|p| opted_out.contains(p)) {
        return Err(ReopenRefusal::OptedOut(out.clone()));
    }
    if proxy.draining {
        return Err(ReopenRefusal::Draining);
    }
    if proxy
        .reserved_for
        .as_ref()
        .is_some_and(|owner| !participants.contains(owner))
    {
        return Err(ReopenRefusal::Reserved);
    }
    Ok(())
}

/// Where traffic from `from` on a proxy goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route<'a> {
    /// Relay to `to` within `session`.
    Relay {
        session: &'a Session,
        to: &'a PhoneNumber,
    },
    /// The sender's session on this proxy ended by time just now: the caller
    /// marks it expired, then applies the out-of-session policy.
    Expired(&'a Session),
    /// The sender has a session on this proxy but of a mode that does not
    /// carry this traffic (an SMS in a voice-only session).
    WrongMode(&'a Session),
    /// No open session of the sender on this proxy.
    OutOfSession,
}

/// Routes traffic on one proxy. `sessions` are the sessions on that proxy
/// that the store found open for `from`; by the masking rule there is at most
/// one, and if a bug ever left two the first by id wins rather than guessing.
pub fn route<'a>(
    sessions: &'a [Session],
    from: &PhoneNumber,
    traffic: Traffic,
    now: OffsetDateTime,
) -> Route<'a> {
    let Some(session) = sessions
        .iter()
        .filter(|s| s.status == SessionStatus::Open)
        .filter(|s| s.other_participant(from).is_some())
        .min_by(|a, b| a.id.cmp(&b.id))
    else {
        return Route::OutOfSession;
    };
    if session.is_expired_at(now) {
        return Route::Expired(session);
    }
    if !traffic.carried_by(session.mode) {
        return Route::WrongMode(session);
    }
    match session.other_participant(from) {
        Some(to) => Route::Relay { session, to },
        None => Route::OutOfSession,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::from_e164(s).unwrap()
    }

    fn session(id: &str, a: &str, b: &str) -> Session {
        Session {
            id: id.into(),
            proxy_iccid: "8944000000000000001".into(),
            participants: [number(a), number(b)],
            mode: Mode::Both,
            status: SessionStatus::Open,
            opened_at: NOW - Duration::hours(1),
            expires_at: None,
            idle_ttl: None,
            last_activity_at: NOW - Duration::minutes(10),
        }
    }

    const A: &str = "+447911000001";
    const B: &str = "+447911000002";
    const X: &str = "+447911000009";

    #[test]
    fn traffic_goes_to_the_other_participant() {
        let sessions = [session("s1", A, B)];
        match route(&sessions, &number(A), Traffic::Sms, NOW) {
            Route::Relay { to, .. } => assert_eq!(to, &number(B)),
            other => panic!("{other:?}"),
        }
        match route(&sessions, &number(B), Traffic::Call, NOW) {
            Route::Relay { to, .. } => assert_eq!(to, &number(A)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stranger_is_out_of_session() {
        let sessions = [session("s1", A, B)];
        assert_eq!(
            route(&sessions, &number(X), Traffic::Sms, NOW),
            Route::OutOfSession
        );
        assert_eq!(
            route(&[], &number(A), Traffic::Sms, NOW),
            Route::OutOfSession
        );
    }

    #[test]
    fn closed_sessions_do_not_route() {
        let mut s = session("s1", A, B);
        s.status = SessionStatus::Closed;
        assert_eq!(
            route(&[s], &number(A), Traffic::Sms, NOW),
            Route::OutOfSession
        );
    }

    #[test]
    fn expiry_is_enforced_when_traffic_arrives() {
        let mut absolute = session("s1", A, B);
        absolute.expires_at = Some(NOW);
        assert!(matches!(
            route(&[absolute.clone()], &number(A), Traffic::Sms, NOW),
            Route::Expired(_)
        ));
        absolute.expires_at = Some(NOW + Duration::SECOND);
        assert!(matches!(
            route(&[absolute], &number(A), Traffic::Sms, NOW),
            Route::Relay { .. }
        ));

        let mut idle = session("s2", A, B);
        idle.idle_ttl = Some(Duration::minutes(10));
        assert!(matches!(
            route(&[idle.clone()], &number(A), Traffic::Sms, NOW),
            Route::Expired(_)
        ));
        idle.last_activity_at = NOW - Duration::minutes(9);
        assert!(matches!(
            route(&[idle], &number(A), Traffic::Sms, NOW),
            Route::Relay { .. }
        ));
    }

    #[test]
    fn expiry_says_whether_time_or_idleness_ended_it() {
        let mut s = session("s1", A, B);
        s.expires_at = Some(NOW);
        s.idle_ttl = Some(Duration::minutes(5));
        assert_eq!(s.expiry_reason(NOW), CloseReason::Ttl);
        s.expires_at = Some(NOW + Duration::hours(1));
        assert_eq!(s.expiry_reason(NOW), CloseReason::Idle);
        for reason in CloseReason::ALL {
            assert_eq!(reason.as_str().parse::<CloseReason>(), Ok(reason));
        }
        assert_eq!(CloseReason::Ttl.status(), SessionStatus::Expired);
        assert_eq!(CloseReason::OptOut.status(), SessionStatus::Closed);
    }

    #[test]
    fn reopening_keeps_the_masking_rule_and_the_rails() {
        let pair = [number(A), number(B)];
        let free = ReopenProxy::default();
        assert_eq!(
            may_reopen(SessionStatus::Closed, Some(&pair), &free, &[]),
            Ok(())
        );
        assert_eq!(
            may_reopen(SessionStatus::Open, Some(&pair), &free, &[]),
            Err(ReopenRefusal::StillOpen)
        );
        assert_eq!(
            may_reopen(SessionStatus::Expired, None, &free, &[]),
            Err(ReopenRefusal::Erased)
        );
        let busy = ReopenProxy {
            busy: vec![number(B)],
            ..ReopenProxy::default()
        };
        assert_eq!(
            may_reopen(SessionStatus::Expired, Some(&pair), &busy, &[]),
            Err(ReopenRefusal::ParticipantBusy(number(B)))
        );
        assert_eq!(
            may_reopen(SessionStatus::Closed, Some(&pair), &free, &[number(A)])
                .unwrap_err()
                .code(),
            "opted_out"
        );
        let draining = ReopenProxy {
            draining: true,
            ..ReopenProxy::default()
        };
        assert_eq!(
            may_reopen(SessionStatus::Closed, Some(&pair), &draining, &[]),
            Err(ReopenRefusal::Draining)
        );
        let reserved = |owner: &str| ReopenProxy {
            reserved_for: Some(number(owner)),
            ..ReopenProxy::default()
        };
        assert_eq!(
            may_reopen(SessionStatus::Closed, Some(&pair), &reserved(X), &[]),
            Err(ReopenRefusal::Reserved)
        );
        assert_eq!(
            may_reopen(SessionStatus::Closed, Some(&pair), &reserved(A), &[]),
            Ok(())
        );
    }

    #[test]
    fn the_earlier_deadline_counts() {
        let mut s = session("s1", A, B);
        s.expires_at = Some(NOW + Duration::hours(2));
        s.idle_ttl = Some(Duration::minutes(30));
        assert_eq!(s.deadline(), Some(NOW + Duration::minutes(20)));
        s.idle_ttl = None;
        assert_eq!(s.deadline(), Some(NOW + Duration::hours(2)));
    }

    #[test]
    fn modes_filter_traffic() {
        let mut sms_only = session("s1", A, B);
        sms_only.mode = Mode::Sms;
        assert!(matches!(
            route(&[sms_only.clone()], &number(A), Traffic::Call, NOW),
            Route::WrongMode(_)
        ));
        assert!(matches!(
            route(&[sms_only], &number(A), Traffic::Sms, NOW),
            Route::Relay { .. }
        ));
        let mut voice_only = session("s2", A, B);
        voice_only.mode = Mode::Voice;
        assert!(matches!(
            route(&[voice_only], &number(B), Traffic::Sms, NOW),
            Route::WrongMode(_)
        ));
    }
}
