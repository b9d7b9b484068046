//! The rails carried out in the inbound transaction: the facts the pure
//! rules ([`super::rails`]) need are read through [`InboundTx`], their
//! verdicts written back. Any error reading them fails the whole
//! transaction, so a rule that cannot be evaluated relays nothing and the
//! message stays on the SIM (fail closed, nothing lost).

use time::OffsetDateTime;

use super::accept::{InboundOutcome, Message};
use super::rails::{self, Keyword, RelayFacts, Rule, Rules, Verdict};
use crate::masking::Mode;
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;
use crate::store::{
    BlockedMessage, InboundTx, LiveSim, NewOutbound, NewSession, PARTICIPANT_WINDOW, SessionRecord,
    StoreError,
};

/// Where a message in a session goes.
pub(super) struct Target<'a> {
    pub(super) session_id: &'a str,
    pub(super) from_position: u8,
    pub(super) to: &'a PhoneNumber,
    /// What the rules read and the interaction records: the message, or a
    /// hub's reply without its code.
    pub(super) text: &'a str,
    /// What is sent, when it differs from `text` (a message to a hub goes
    /// with its session's code in front).
    pub(super) sent: Option<String>,
    /// The sender is a hub: it writes to many people by design, so the
    /// per-participant daily limit is not for it (each session's is).
    pub(super) from_hub: bool,
}

impl<'a> Target<'a> {
    /// `message` relayed as it is to `to` in the session.
    pub(super) fn plain(
        message: &'a Message<'_>,
        session_id: &'a str,
        from_position: u8,
        to: &'a PhoneNumber,
    ) -> Self {
        Target {
            session_id,
            from_position,
            to,
            text: &message.body,
            sent: None,
            from_hub: false,
        }
    }
}

/// STOP or START from the sender, carried out; `None` for any other
/// message (and for START from someone who never opted out: it is a
/// message like any other). The keyword itself is never relayed.
pub(super) fn opt_out_keyword(
    tx: &mut InboundTx<'_>,
    message: &Message<'_>,
    session: Option<&SessionRecord>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Option<InboundOutcome>, StoreError> {
    let Some(keyword) = rails::keyword(&message.body, &rules.opt_out) else {
        return Ok(None);
    };
    let sender = message.sender;
    let already_out = tx.is_opted_out(sender)?;
    let (reply, reason) = match &keyword {
        Keyword::Start(_) if !already_out => return Ok(None),
        Keyword::Start(_) => (&rules.opt_out.start_reply, "opt-in keyword: not relayed"),
        Keyword::Stop(_) => (&rules.opt_out.stop_reply, "opt-out keyword: not relayed"),
    };
    let from_position = session.and_then(|s| {
        s.participants
            .iter()
            .position(|p| p.as_ref() == Some(sender))
            .and_then(|p| u8::try_from(p).ok())
    });
    let interaction_id = tx.record_blocked(
        &BlockedMessage {
            proxy_iccid: message.proxy_iccid,
            session_id: session.map(|s| s.id.as_str()),
            from_position,
            sender,
            to: None,
            rule: Rule::OptOut.as_str(),
            reason,
            body: &message.body,
        },
        now,
    )?;
    let confirm = |tx: &mut InboundTx<'_>, text: &str| {
        tx.queue_sms(
            &NewOutbound {
                session_id: None,
                proxy_iccid: message.proxy_iccid.to_string(),
                from_position: None,
                to: sender.clone(),
                body: text.to_string(),
            },
            now,
        )
    };
    Ok(Some(match keyword {
        Keyword::Stop(word) => {
            let mut sessions_closed = Vec::new();
            for open in tx.open_sessions_of_number(sender)? {
                tx.end_session(&open.id, CloseReason::OptOut, now)?;
                sessions_closed.push(open.id);
            }
            // One confirmation: a second STOP changes nothing and says nothing.
            if !already_out {
                confirm(tx, reply)?;
            }
            tx.opt_out(sender, &word, now)?;
            InboundOutcome::OptedOut {
                interaction_id,
                sessions_closed,
                confirmed: !already_out,
            }
        }
        Keyword::Start(_) => {
            tx.opt_in(sender)?;
            confirm(tx, reply)?;
            InboundOutcome::OptedIn { interaction_id }
        }
    }))
}

/// Relays `message` to `target` unless an intercept rule or loop
/// protection objects; a loop also stops the session.
pub(super) fn relay_or_block(
    tx: &mut InboundTx<'_>,
    message: &Message<'_>,
    target: &Target<'_>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let (intercept, loops) = (&rules.intercept, &rules.loop_protection);
    let recipients_limit = rules.limits.of(message.proxy_iccid).recipients_per_month;
    let recipient_known = tx.recipient_known(message.proxy_iccid, target.to, now)?;
    let facts = RelayFacts {
        sender_blocked: tx.is_blocked(message.sender)?,
        recipient_blocked: tx.is_blocked(target.to)?,
        recipient_opted_out: tx.is_opted_out(target.to)?,
        // Each count is asked only when its limit is set: counting a
        // session's or a sender's history cost more than the rest of the
        // relay's transaction (0, the default, means no limit).
        session_messages: if intercept.max_messages_per_session > 0 {
            tx.session_messages(target.session_id)?
        } else {
            0
        },
        sender_messages_today: if target.from_hub
            || intercept.max_messages_per_participant_per_day == 0
        {
            0
        } else {
            tx.sender_messages_since(message.sender, now - PARTICIPANT_WINDOW)?
        },
        // Counting them reads every recipient of the month: only a new
        // recipient under a limit needs it.
        recipients_this_month: if recipients_limit.is_some() && !recipient_known {
            tx.recipients_this_month(message.proxy_iccid, now)?
        } else {
            0
        },
        recipient_known,
        recipients_limit,
        recent: if loops.max_similar_per_hour > 0 || loops.max_burst > 0 {
            tx.recent_messages(target.session_id, now - time::Duration::HOUR)?
        } else {
            Vec::new()
        },
        from_position: target.from_position,
        sent_ms: message.sent.map(unix_ms),
    };
    let now_ms = unix_ms(now);
    match rails::intercept(
        target.text,
        &facts,
        &rules.intercept,
        &rules.loop_protection,
        now_ms,
    ) {
        Verdict::Relay => {
            tx.touch_session(target.session_id, now)?;
            let new = NewOutbound {
                session_id: Some(target.session_id.to_string()),
                proxy_iccid: message.proxy_iccid.to_string(),
                from_position: Some(target.from_position),
                to: target.to.clone(),
                body: target
                    .sent
                    .clone()
                    .unwrap_or_else(|| target.text.to_string()),
            };
            let interaction_id = tx.queue_sms(&new, now)?;
            if target.sent.is_some() {
                tx.set_interaction_body(interaction_id, target.text)?;
            }
            if rules.twilio_intercept
                && tx.twilio_hold_intercept(interaction_id, message.proxy_iccid, now)?
            {
                return Ok(InboundOutcome::Held { interaction_id });
            }
            Ok(InboundOutcome::Relayed { interaction_id })
        }
        Verdict::Block { rule, reason } => {
            let interaction_id = tx.record_blocked(
                &BlockedMessage {
                    proxy_iccid: message.proxy_iccid,
                    session_id: Some(target.session_id),
                    from_position: Some(target.from_position),
                    sender: message.sender,
                    to: Some(target.to),
                    rule: rule.as_str(),
                    reason: &reason,
                    body: target.text,
                },
                now,
            )?;
            let stopped_session = if rule == Rule::Loop {
                tx.end_session(target.session_id, CloseReason::Loop, now)?;
                Some((target.session_id.to_string(), reason))
            } else {
                None
            };
            Ok(InboundOutcome::Blocked {
                interaction_id,
                rule: rule.as_str(),
                stopped_session,
            })
        }
    }
}

/// `at` in milliseconds since the epoch, as the store keeps times.
fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A stranger on a front desk: the session with its staff number, when
/// the proxy is one and allocation's rules allow it on this proxy (the
/// staff number has no other open session here, nobody opted out, the SIM
/// is not draining or reserved for someone else). Otherwise `None`, and the
/// out-of-session policy applies.
pub(super) fn front_desk(
    tx: &mut InboundTx<'_>,
    proxy_iccid: &str,
    sender: &PhoneNumber,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let Some(staff) = tx.front_desk_of(proxy_iccid)? else {
        return Ok(None);
    };
    if &staff == sender || tx.is_blocked(sender)? {
        return Ok(None);
    }
    let new = NewSession {
        participants: [sender.clone(), staff],
        mode: Mode::Both,
        ttl: rules.front_desk_ttl,
        idle_ttl: None,
        label: Some("front desk".into()),
        sticky: false,
        actor: "front-desk".into(),
        fallback_number: None,
        proxy: Some(proxy_iccid.to_string()),
        limits: rules.limits.clone(),
    };
    // The SIM just received the message: it is up.
    let live = LiveSim {
        iccid: proxy_iccid.to_string(),
        healthy: true,
        signal_dbm: None,
        voice_capable: true,
    };
    match tx.open_session_on(new, live, now) {
        Ok(session) => Ok(Some(session)),
        Err(error @ (StoreError::Allocation(_) | StoreError::Conflict { .. })) => {
            tracing::info!(proxy = %proxy_iccid, %error, "front desk cannot open a session; the out-of-session policy applies");
            Ok(None)
        }
        Err(other) => Err(other),
    }
}
