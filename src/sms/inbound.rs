//! What happens to one complete inbound SMS: the masking rules
//! ([`lifecycle::route`], [`policy::out_of_session_action`]) combined into
//! one decision that the store executes in the transaction that stored the
//! message.

use time::OffsetDateTime;

use crate::masking::Traffic;
use crate::masking::lifecycle::{self, CloseReason, Route, Session};
use crate::masking::policy::{self, Action, OutOfSessionPolicy};
use crate::number::PhoneNumber;

/// The decision for one complete inbound SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDecision {
    /// A session that ended by time just now, and why: mark it expired
    /// first.
    pub expire_session: Option<(String, CloseReason)>,
    /// The sender has no open session here (or it just expired): the
    /// action is the out-of-session policy's.
    pub out_of_session: bool,
    pub action: InboundAction,
}

/// What to write for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAction {
    /// Relay `body` to the other participant of the session.
    Relay {
        session_id: String,
        from_position: u8,
        to: PhoneNumber,
    },
    /// Out of session: send the auto-reply back to the sender.
    AutoReply { text: String },
    /// Out of session: forward to the operator, prefixed with the sender.
    Forward { to: PhoneNumber, body: String },
    /// Nothing is sent; the interaction records why.
    Drop { reason: &'static str },
}

/// Decides for an SMS from `from` with `body`, given the sessions open for
/// `from` on this proxy and when it last got the auto-reply here.
pub fn decide(
    sessions: &[Session],
    from: &PhoneNumber,
    body: &str,
    out_of_session: &OutOfSessionPolicy,
    last_auto_reply: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> InboundDecision {
    let mut expire_session = None;
    match lifecycle::route(sessions, from, Traffic::Sms, now) {
        Route::Relay { session, to } => {
            let from_position = if &session.participants[0] == from {
                0
            } else {
                1
            };
            return InboundDecision {
                expire_session,
                out_of_session: false,
                action: InboundAction::Relay {
                    session_id: session.id.clone(),
                    from_position,
                    to: to.clone(),
                },
            };
        }
        Route::WrongMode(_) => {
            return InboundDecision {
                expire_session,
                out_of_session: false,
                action: InboundAction::Drop {
                    reason: "the session does not carry SMS",
                },
            };
        }
        Route::Expired(session) => {
            expire_session = Some((session.id.clone(), session.expiry_reason(now)))
        }
        Route::OutOfSession => {}
    }
    let action = match policy::out_of_session_action(
        out_of_session,
        Traffic::Sms,
        from,
        last_auto_reply,
        now,
    ) {
        Action::Reply { text } => InboundAction::AutoReply { text },
        Action::Forward { to } => InboundAction::Forward {
            to,
            body: format!("From {}: {body}", from.e164()),
        },
        Action::DropSms | Action::HangUp => InboundAction::Drop {
            reason: "out of session",
        },
    };
    InboundDecision {
        expire_session,
        out_of_session: true,
        action,
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::masking::Mode;
    use crate::masking::lifecycle::SessionStatus;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
    const A: &str = "+447911000001";
    const B: &str = "+447911000002";
    const X: &str = "+447911000009";

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::from_e164(s).unwrap()
    }

    fn session(mode: Mode, expires_at: Option<OffsetDateTime>) -> Session {
        Session {
            id: "s1".into(),
            proxy_iccid: "8944000000000000001".into(),
            participants: [number(A), number(B)],
            mode,
            status: SessionStatus::Open,
            opened_at: NOW - Duration::hours(1),
            expires_at,
            idle_ttl: None,
            last_activity_at: NOW - Duration::minutes(10),
        }
    }

    fn auto_reply() -> OutOfSessionPolicy {
        OutOfSessionPolicy::AutoReply {
            text: "This number is no longer in use.".into(),
        }
    }

    #[test]
    fn a_participant_is_relayed_to_the_other() {
        let decision = decide(
            &[session(Mode::Both, None)],
            &number(B),
            "hi",
            &OutOfSessionPolicy::Reject,
            None,
            NOW,
        );
        assert_eq!(
            decision.action,
            InboundAction::Relay {
                session_id: "s1".into(),
                from_position: 1,
                to: number(A)
            }
        );
        assert_eq!(decision.expire_session, None);
    }

    #[test]
    fn an_expired_session_is_ended_and_the_message_is_out_of_session() {
        let decision = decide(
            &[session(Mode::Both, Some(NOW - Duration::seconds(1)))],
            &number(A),
            "hi",
            &auto_reply(),
            None,
            NOW,
        );
        assert_eq!(
            decision.expire_session,
            Some(("s1".into(), CloseReason::Ttl))
        );
        assert!(matches!(decision.action, InboundAction::AutoReply { .. }));
    }

    #[test]
    fn a_voice_only_session_does_not_carry_sms() {
        let decision = decide(
            &[session(Mode::Voice, None)],
            &number(A),
            "hi",
            &auto_reply(),
            None,
            NOW,
        );
        assert!(matches!(decision.action, InboundAction::Drop { .. }));
    }

    #[test]
    fn strangers_get_the_policy() {
        let reject = decide(
            &[],
            &number(X),
            "hi",
            &OutOfSessionPolicy::Reject,
            None,
            NOW,
        );
        assert!(matches!(reject.action, InboundAction::Drop { .. }));

        let replied_an_hour_ago = Some(NOW - Duration::hours(1));
        let again = decide(
            &[],
            &number(X),
            "hi",
            &auto_reply(),
            replied_an_hour_ago,
            NOW,
        );
        assert!(matches!(again.action, InboundAction::Drop { .. }));

        let forward = OutOfSessionPolicy::Forward { to: number(B) };
        let forwarded = decide(&[], &number(X), "hi", &forward, None, NOW);
        assert_eq!(
            forwarded.action,
            InboundAction::Forward {
                to: number(B),
                body: format!("From {X}: hi")
            }
        );
    }
}
