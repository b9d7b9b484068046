//! Out-of-session traffic: a number with no open session on a proxy sends an
//! SMS or calls it. Never relay to a guessed session; do what the pool's
//! policy says.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::number::PhoneNumber;

use super::Traffic;

/// The policy for traffic from strangers, per pool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OutOfSessionPolicy {
    /// Calls are hung up, SMS dropped and logged.
    #[default]
    Reject,
    /// SMS get `text` back, at most once per sender per proxy per day; calls
    /// are hung up.
    AutoReply { text: String },
    /// SMS and calls go to an operator number (SMS prefixed with the
    /// sender, since the operator is staff and needs to know who wrote).
    Forward { to: PhoneNumber },
}

/// What to do with one piece of out-of-session traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop the SMS (it is logged as out-of-session).
    DropSms,
    /// Hang up the call.
    HangUp,
    /// Send `text` back to the sender from the proxy.
    Reply { text: String },
    /// Relay the SMS or bridge the call to the operator.
    Forward { to: PhoneNumber },
}

/// How often a sender may get the auto-reply on one proxy.
pub const AUTO_REPLY_INTERVAL: Duration = Duration::DAY;

/// Decides for traffic from a stranger. `last_auto_reply` is when this
/// sender last got the auto-reply on this proxy.
pub fn out_of_session_action(
    policy: &OutOfSessionPolicy,
    traffic: Traffic,
    from: &PhoneNumber,
    last_auto_reply: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Action {
    match (policy, traffic) {
        (OutOfSessionPolicy::Reject, Traffic::Sms) => Action::DropSms,
        (OutOfSessionPolicy::Reject | OutOfSessionPolicy::AutoReply { .. }, Traffic::Call) => {
            Action::HangUp
        }
        (OutOfSessionPolicy::AutoReply { text }, Traffic::Sms) => {
            let replied_recently = last_auto_reply.is_some_and(|at| now - at < AUTO_REPLY_INTERVAL);
            if replied_recently {
                Action::DropSms
            } else {
                Action::Reply { text: text.clone() }
            }
        }
        // The operator's own messages to the proxy must not loop back to them.
        (OutOfSessionPolicy::Forward { to }, Traffic::Sms) if to == from => Action::DropSms,
        (OutOfSessionPolicy::Forward { to }, Traffic::Call) if to == from => Action::HangUp,
        (OutOfSessionPolicy::Forward { to }, _) => Action::Forward { to: to.clone() },
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

    #[test]
    fn reject_drops_sms_and_hangs_up_calls() {
        let from = number("+447911000009");
        let policy = OutOfSessionPolicy::Reject;
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &from, None, NOW),
            Action::DropSms
        );
        assert_eq!(
            out_of_session_action(&policy, Traffic::Call, &from, None, NOW),
            Action::HangUp
        );
    }

    #[test]
    fn auto_reply_at_most_once_per_day() {
        let from = number("+447911000009");
        let policy = OutOfSessionPolicy::AutoReply {
            text: "This number is not in use.".into(),
        };
        let reply = Action::Reply {
            text: "This number is not in use.".into(),
        };
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &from, None, NOW),
            reply
        );
        let an_hour_ago = Some(NOW - Duration::HOUR);
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &from, an_hour_ago, NOW),
            Action::DropSms
        );
        let yesterday = Some(NOW - Duration::DAY);
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &from, yesterday, NOW),
            reply
        );
        assert_eq!(
            out_of_session_action(&policy, Traffic::Call, &from, None, NOW),
            Action::HangUp
        );
    }

    #[test]
    fn forward_goes_to_the_operator_but_never_loops() {
        let operator = number("+447911000100");
        let policy = OutOfSessionPolicy::Forward {
            to: operator.clone(),
        };
        let stranger = number("+447911000009");
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &stranger, None, NOW),
            Action::Forward {
                to: operator.clone()
            }
        );
        assert_eq!(
            out_of_session_action(&policy, Traffic::Call, &stranger, None, NOW),
            Action::Forward {
                to: operator.clone()
            }
        );
        assert_eq!(
            out_of_session_action(&policy, Traffic::Sms, &operator, None, NOW),
            Action::DropSms
        );
    }

    #[test]
    fn the_policy_reads_from_config() {
        let policy: OutOfSessionPolicy =
            toml::from_str("policy = \"auto-reply\"\ntext = \"Session over.\"").unwrap();
        assert_eq!(
            policy,
            OutOfSessionPolicy::AutoReply {
                text: "Session over.".into()
            }
        );
        let error = toml::from_str::<OutOfSessionPolicy>("policy = \"bounce\"").unwrap_err();
        assert!(error.to_string().contains("bounce"), "{error}");
    }
}
