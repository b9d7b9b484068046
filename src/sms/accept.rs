//! Accepting what a SIM received: each part kept and deduplicated, the
//! parts of a long message reassembled, the complete message routed by the
//! masking rules and its relay queued, all in one store transaction, so
//! that once the caller hears back it may delete the message from the SIM.
//!
//! The decisions are made here ([`super::reassembly`], [`super::inbound`]);
//! the store only reads and writes the rows ([`InboundTx`]).

use time::OffsetDateTime;

use std::sync::Arc;

use super::guard;
use super::inbound::{InboundAction, decide};
use super::intake::network_time;
use super::rails::Rules;
use super::reassembly::{
    Assembly, Concat, Grouping, MessageKey, Part, assemble, assemble_incomplete, grouping,
};
use crate::masking::policy::OutOfSessionPolicy;
use crate::number::PhoneNumber;
use crate::store::{InboundTx, NewOutbound, ReceivedPart, Store, StoreError};

/// One received part, decoded by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPart {
    pub proxy_iccid: String,
    pub sender: PhoneNumber,
    /// SIM storage and index; `None` for direct `+CMT` delivery.
    pub location: Option<(String, u32)>,
    pub pdu_hex: String,
    pub concat: Option<Concat>,
    pub text: String,
}

/// What accepting a part did. In every case the part is durably stored (or
/// was already), so the caller may delete it from the SIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// The same PDU was already stored for this SIM: nothing new.
    Duplicate,
    /// A part of a longer message; waiting for the rest.
    Waiting { missing: usize },
    /// Complete and queued for the other participant.
    Relayed { interaction_id: i64 },
    /// Out of session: the auto-reply was queued to the sender.
    AutoReplied { interaction_id: i64 },
    /// Out of session: forwarded to the operator.
    Forwarded { interaction_id: i64 },
    /// Complete, recorded, not sent.
    Dropped {
        interaction_id: i64,
        reason: &'static str,
    },
    /// An intercept rule stopped it; loop protection also stopped its
    /// session (`stopped_session`).
    Blocked {
        interaction_id: i64,
        rule: &'static str,
        stopped_session: Option<(String, String)>,
    },
    /// STOP: the sender's open sessions were closed (their ids) and the
    /// confirmation queued (`None` when they had opted out already).
    OptedOut {
        interaction_id: i64,
        sessions_closed: Vec<String>,
        confirmed: bool,
    },
    /// START from a number that had opted out: confirmed.
    OptedIn { interaction_id: i64 },
    /// A stranger reached a front desk: a session with its staff number
    /// was opened and the message relayed in it.
    FrontDesk {
        interaction_id: i64,
        session_id: String,
    },
    /// Stored and held for a Twilio service's callback (its intercept
    /// callback before the relay goes, its out-of-session callback before
    /// a stranger's message is routed); the facade decides it.
    Held { interaction_id: i64 },
    /// A hub's message named no conversation it could go to (an unknown
    /// code, no code and nobody to fall back on, a code alone): recorded,
    /// not sent; the hub was told why (`notice`, queued to it).
    HubRefused {
        interaction_id: i64,
        reason: &'static str,
    },
}

impl InboundOutcome {
    /// The interaction written, if any.
    pub fn interaction_id(&self) -> Option<i64> {
        match self {
            InboundOutcome::Duplicate | InboundOutcome::Waiting { .. } => None,
            InboundOutcome::Relayed { interaction_id }
            | InboundOutcome::AutoReplied { interaction_id }
            | InboundOutcome::Forwarded { interaction_id }
            | InboundOutcome::Dropped { interaction_id, .. }
            | InboundOutcome::Blocked { interaction_id, .. }
            | InboundOutcome::OptedOut { interaction_id, .. }
            | InboundOutcome::OptedIn { interaction_id }
            | InboundOutcome::FrontDesk { interaction_id, .. }
            | InboundOutcome::Held { interaction_id }
            | InboundOutcome::HubRefused { interaction_id, .. } => Some(*interaction_id),
        }
    }
}

/// Accepts one inbound part (see the module docs). Queued at the call, so
/// parts accepted one after another are stored in that order; the answer
/// comes once the part is on disk.
pub fn accept_inbound(
    store: &Store,
    part: InboundPart,
    rules: Arc<Rules>,
    now: OffsetDateTime,
) -> impl Future<Output = Result<InboundOutcome, StoreError>> + use<> {
    store.inbound_durable(move |tx| accept(tx, &part, &rules, now))
}

/// Accepts one part inside a transaction the caller drives ([`accept_inbound`]
/// is this in a transaction of its own); the relay adds its own work to the
/// same transaction.
pub fn accept_in(
    tx: &mut InboundTx<'_>,
    part: &InboundPart,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    accept(tx, part, rules, now)
}

/// Relays what arrived of every message whose first part is older than
/// `cutoff` and is still incomplete (the reassembly timeout); the
/// interactions are flagged incomplete.
pub async fn sweep_incomplete(
    store: &Store,
    cutoff: OffsetDateTime,
    rules: Arc<Rules>,
    now: OffsetDateTime,
) -> Result<Vec<InboundOutcome>, StoreError> {
    store
        .inbound(move |tx| {
            let mut outcomes = Vec::new();
            for waiting in tx.waiting_since(cutoff)? {
                let key = MessageKey {
                    sender: waiting.sender.e164().to_string(),
                    reference: waiting.reference,
                    total: waiting.total,
                };
                let held = tx.held_parts(
                    &waiting.proxy_iccid,
                    &waiting.sender,
                    waiting.reference,
                    waiting.total,
                )?;
                let texts: Vec<(u8, &str)> = held
                    .iter()
                    .map(|part| (part.sequence, part.text.as_str()))
                    .collect();
                let body = assemble_incomplete(&key, &texts);
                let message = Message {
                    proxy_iccid: &waiting.proxy_iccid,
                    sender: &waiting.sender,
                    body,
                    part_ids: held.iter().map(|part| part.id).collect(),
                    incomplete: true,
                    sent: earliest_sent(held.iter().filter_map(|part| part.pdu_hex.as_deref())),
                };
                outcomes.push(route_message(tx, message, &rules, now)?);
            }
            Ok(outcomes)
        })
        .await
}

fn accept(
    tx: &mut InboundTx<'_>,
    part: &InboundPart,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let rules_part = Part {
        sender: part.sender.e164().to_string(),
        location: part.location.clone(),
        pdu_hex: part.pdu_hex.to_ascii_uppercase(),
        concat: part.concat,
        text: part.text.clone(),
    };
    let group = grouping(&rules_part);
    if let Grouping::SingleMalformed { reason } = &group {
        tracing::warn!(proxy = %part.proxy_iccid, reason, "odd concatenation header; treated as one message");
    }
    let kept = ReceivedPart {
        proxy_iccid: part.proxy_iccid.clone(),
        sender: part.sender.clone(),
        location: part.location.clone(),
        pdu_hex: rules_part.pdu_hex,
        concat: match &group {
            Grouping::Multi { .. } => part.concat,
            _ => None,
        },
        text: part.text.clone(),
    };
    let Some(part_id) = tx.keep_part(&kept, now)? else {
        return Ok(InboundOutcome::Duplicate);
    };
    let (part_ids, body, sent) = match group {
        Grouping::Multi { key, .. } => {
            let held = tx.held_parts(&part.proxy_iccid, &part.sender, key.reference, key.total)?;
            let texts: Vec<(u8, &str)> = held
                .iter()
                .map(|part| (part.sequence, part.text.as_str()))
                .collect();
            match assemble(&key, &texts) {
                Assembly::Waiting { missing } => {
                    return Ok(InboundOutcome::Waiting {
                        missing: missing.len(),
                    });
                }
                Assembly::Complete(body) => (
                    held.iter().map(|part| part.id).collect(),
                    body,
                    earliest_sent(held.iter().filter_map(|part| part.pdu_hex.as_deref())),
                ),
            }
        }
        _ => (
            vec![part_id],
            part.text.clone(),
            earliest_sent([part.pdu_hex.as_str()]),
        ),
    };
    let message = Message {
        proxy_iccid: &part.proxy_iccid,
        sender: &part.sender,
        body,
        part_ids,
        incomplete: false,
        sent,
    };
    route_message(tx, message, rules, now)
}

/// When the sender's SMSC took a message: the SMSC timestamp of its
/// earliest part (each part of a long text is stamped on its own, seconds
/// apart at most). `None` when no part has a valid one.
pub(super) fn earliest_sent<'p>(pdus: impl IntoIterator<Item = &'p str>) -> Option<OffsetDateTime> {
    pdus.into_iter().filter_map(network_time).min()
}

/// One complete (or swept) message to route.
pub(super) struct Message<'a> {
    pub(super) proxy_iccid: &'a str,
    pub(super) sender: &'a PhoneNumber,
    pub(super) body: String,
    /// The received parts that made it.
    pub(super) part_ids: Vec<i64>,
    /// Parts were missing when the reassembly timeout swept it.
    pub(super) incomplete: bool,
    /// When the sender's SMSC took it (TP-SCTS, its earliest part's), not
    /// when it reached us: loop protection orders messages by it.
    pub(super) sent: Option<OffsetDateTime>,
}

/// Routes one message: opt-out keywords first, then the masking rules;
/// a relay passes the intercept rules, a stranger on a front desk gets a
/// session, anyone else the out-of-session policy. Writes its interaction
/// (and its outbox row when something is sent) and links the parts to it.
pub(super) fn route_message(
    tx: &mut InboundTx<'_>,
    message: Message<'_>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let outcome = decide_and_write(tx, &message, rules, now)?;
    let Some(interaction) = outcome.interaction_id() else {
        return Ok(outcome);
    };
    if matches!(
        outcome,
        InboundOutcome::AutoReplied { .. } | InboundOutcome::Forwarded { .. }
    ) {
        // The interaction is the sent reply or forward; it came from the stranger.
        tx.set_interaction_sender(interaction, message.sender)?;
    }
    let parts = u32::try_from(message.part_ids.len()).unwrap_or(u32::MAX);
    tx.link_parts(
        interaction,
        &message.part_ids,
        parts,
        message.incomplete,
        message.sent,
    )?;
    Ok(outcome)
}

fn decide_and_write(
    tx: &mut InboundTx<'_>,
    message: &Message<'_>,
    rules: &Rules,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let Message {
        proxy_iccid,
        sender,
        body,
        ..
    } = message;
    let (proxy_iccid, sender) = (*proxy_iccid, *sender);
    let session = tx.open_session_of(proxy_iccid, sender)?;
    // A hub's messages name their session by its code. Its STOP is no
    // opt-out: a hub is staff an admin set up, and one stray "stop" must
    // not end all its conversations (an admin removes a hub).
    let from_hub = session.is_none() && tx.is_hub(sender)?;
    if from_hub && let Some(outcome) = super::hub::from_hub(tx, message, rules, now)? {
        return Ok(outcome);
    }
    if !from_hub
        && let Some(outcome) = guard::opt_out_keyword(tx, message, session.as_ref(), rules, now)?
    {
        return Ok(outcome);
    }
    let sessions: Vec<_> = session.iter().filter_map(|s| s.rules_view()).collect();
    let mut decision = decide(&sessions, sender, body, &rules.out_of_session, None, now);
    // The auto-reply ledger matters only to a stranger's message under the
    // auto-reply policy: the relay's transactions do not read it.
    if decision.out_of_session
        && matches!(rules.out_of_session, OutOfSessionPolicy::AutoReply { .. })
    {
        let last_auto_reply = tx.last_auto_reply(proxy_iccid, sender)?;
        decision = decide(
            &sessions,
            sender,
            body,
            &rules.out_of_session,
            last_auto_reply,
            now,
        );
    }
    if let Some((id, reason)) = &decision.expire_session {
        tx.end_session(id, *reason, now)?;
    }
    if decision.out_of_session
        && rules.twilio_out_of_session
        && let Some(interaction_id) =
            tx.twilio_hold_out_of_session(proxy_iccid, sender, body, now)?
    {
        return Ok(InboundOutcome::Held { interaction_id });
    }
    if decision.out_of_session
        && let Some(session) = guard::front_desk(tx, proxy_iccid, sender, rules, now)?
    {
        let staff = session.participants[1].as_ref().unwrap_or(sender);
        let mut target = guard::Target::plain(message, &session.id, 0, staff);
        // A front desk whose staff number is a hub: each stranger gets a
        // session of their own with it, and a code.
        if let Some(side) = &session.hub {
            target.sent = Some(hub_format(rules, &side.code, &message.body));
        }
        let outcome = guard::relay_or_block(tx, message, &target, rules, now)?;
        return Ok(match outcome {
            InboundOutcome::Relayed { interaction_id } => InboundOutcome::FrontDesk {
                interaction_id,
                session_id: session.id,
            },
            other => other,
        });
    }
    let queue = |tx: &mut InboundTx<'_>, to: PhoneNumber, body: String| {
        let new = NewOutbound {
            session_id: None,
            proxy_iccid: proxy_iccid.to_string(),
            from_position: None,
            to,
            body,
        };
        tx.queue_sms(&new, now)
    };
    Ok(match decision.action {
        InboundAction::Relay {
            session_id,
            from_position,
            to,
        } => {
            let mut target = guard::Target::plain(message, &session_id, from_position, &to);
            // To a hub: with the session's code in front.
            if let Some(side) = session.as_ref().and_then(|s| s.hub.as_ref())
                && side.position != from_position
            {
                target.sent = Some(hub_format(rules, &side.code, &message.body));
            }
            guard::relay_or_block(tx, message, &target, rules, now)?
        }
        InboundAction::AutoReply { .. } if tx.is_opted_out(sender)? => {
            let reason = "out of session; the sender opted out, so no auto-reply";
            let id = tx.record_dropped(proxy_iccid, sender, reason, body, now)?;
            InboundOutcome::Dropped {
                interaction_id: id,
                reason,
            }
        }
        InboundAction::AutoReply { text } => {
            tx.note_auto_reply(proxy_iccid, sender, now)?;
            let id = queue(tx, sender.clone(), text)?;
            InboundOutcome::AutoReplied { interaction_id: id }
        }
        InboundAction::Forward { to, body } => {
            let id = queue(tx, to, body)?;
            InboundOutcome::Forwarded { interaction_id: id }
        }
        InboundAction::Drop { reason } => {
            let id = tx.record_dropped(proxy_iccid, sender, reason, body, now)?;
            InboundOutcome::Dropped {
                interaction_id: id,
                reason,
            }
        }
    })
}

/// A message to a hub as `[hubs] format` has it.
fn hub_format(rules: &Rules, code: &str, text: &str) -> String {
    crate::masking::hub::to_hub(&rules.hubs.format, code, text)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::masking::lifecycle::{CloseReason, SessionStatus};
    use crate::masking::policy::OutOfSessionPolicy;
    use crate::store::fixtures::{A, B, NOW, PROXY, number, store_with_session};

    const X: &str = "+447911000009";

    fn part(from: &str, pdu: &str, concat: Option<(u16, u8, u8)>, text: &str) -> InboundPart {
        InboundPart {
            proxy_iccid: PROXY.into(),
            sender: number(from),
            location: None,
            pdu_hex: pdu.into(),
            concat: concat.map(|(reference, total, sequence)| Concat {
                reference,
                total,
                sequence,
            }),
            text: text.into(),
        }
    }

    fn reject() -> Arc<Rules> {
        Arc::new(Rules::default())
    }

    fn rules(policy: OutOfSessionPolicy) -> Arc<Rules> {
        Arc::new(Rules::with_policy(policy))
    }

    #[tokio::test]
    async fn a_message_is_relayed_once_even_when_read_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let first = accept_inbound(&store, part(A, "01AA", None, "hi"), reject(), NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::Relayed { .. }));
        let again = accept_inbound(&store, part(A, "01aa", None, "hi"), reject(), NOW)
            .await
            .unwrap();
        assert_eq!(again, InboundOutcome::Duplicate);
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 1);
        assert_eq!(interactions[0].from_position, Some(0));
        let item = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((item.to_number.as_str(), item.body.as_str()), (B, "hi"));
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn parts_in_any_order_make_one_message_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let outcome = accept_inbound(&store, part(B, "03", Some((9, 3, 3)), "baz"), reject(), NOW)
            .await
            .unwrap();
        assert_eq!(outcome, InboundOutcome::Waiting { missing: 2 });
        accept_inbound(&store, part(B, "01", Some((9, 3, 1)), "foo"), reject(), NOW)
            .await
            .unwrap();
        let last = accept_inbound(&store, part(B, "02", Some((9, 3, 2)), "bar"), reject(), NOW)
            .await
            .unwrap();
        assert!(matches!(last, InboundOutcome::Relayed { .. }));
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 1);
        assert_eq!(interactions[0].body.as_deref(), Some("foobarbaz"));
        assert_eq!(interactions[0].parts, 3);
    }

    #[tokio::test]
    async fn strangers_are_dropped_or_auto_replied_once_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let dropped = accept_inbound(&store, part(X, "10", None, "hi"), reject(), NOW)
            .await
            .unwrap();
        assert!(matches!(dropped, InboundOutcome::Dropped { .. }));
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);

        let policy = OutOfSessionPolicy::AutoReply {
            text: "closed".into(),
        };
        let first = accept_inbound(
            &store,
            part(X, "11", None, "hi"),
            rules(policy.clone()),
            NOW,
        )
        .await
        .unwrap();
        assert!(matches!(first, InboundOutcome::AutoReplied { .. }));
        let second = accept_inbound(&store, part(X, "12", None, "hi"), rules(policy), NOW)
            .await
            .unwrap();
        assert!(matches!(second, InboundOutcome::Dropped { .. }));
        let reply = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (reply.to_number.as_str(), reply.body.as_str()),
            (X, "closed")
        );
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_expired_session_does_not_relay() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, Some(time::Duration::minutes(5))).await;
        let later = NOW + time::Duration::minutes(6);
        let outcome = accept_inbound(&store, part(A, "20", None, "hi"), reject(), later)
            .await
            .unwrap();
        assert!(matches!(outcome, InboundOutcome::Dropped { .. }));
        assert_eq!(
            store.session(session).await.unwrap().status,
            SessionStatus::Expired
        );
        assert_eq!(
            store.claim_next_due(PROXY.into(), later).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn the_sweep_relays_an_incomplete_message_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        accept_inbound(&store, part(B, "01", Some((4, 3, 1)), "foo"), reject(), NOW)
            .await
            .unwrap();
        accept_inbound(&store, part(B, "03", Some((4, 3, 3)), "baz"), reject(), NOW)
            .await
            .unwrap();
        let too_early = sweep_incomplete(&store, NOW, reject(), NOW).await.unwrap();
        assert!(too_early.is_empty());
        let later = NOW + time::Duration::minutes(10);
        let swept = sweep_incomplete(&store, later, reject(), later)
            .await
            .unwrap();
        assert!(matches!(swept[..], [InboundOutcome::Relayed { .. }]));
        assert!(
            sweep_incomplete(&store, later, reject(), later)
                .await
                .unwrap()
                .is_empty()
        );
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 1);
        assert!(interactions[0].incomplete);
        assert_eq!(interactions[0].body.as_deref(), Some("foo[…]baz"));
    }

    fn settings(f: impl FnOnce(&mut Rules)) -> Arc<Rules> {
        let mut rules = Rules::default();
        f(&mut rules);
        Arc::new(rules)
    }

    async fn queued(store: &Store, at: OffsetDateTime) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(item) = store.claim_next_due(PROXY.into(), at).await.unwrap() {
            out.push((item.to_number, item.body));
        }
        out
    }

    #[tokio::test]
    async fn stop_ends_the_senders_sessions_confirms_once_and_start_undoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let rules = settings(|r| r.opt_out.stop_keywords.push("ARRET".into()));
        let stop = accept_inbound(&store, part(B, "30", None, " arret "), rules.clone(), NOW)
            .await
            .unwrap();
        let InboundOutcome::OptedOut {
            sessions_closed,
            confirmed,
            ..
        } = stop
        else {
            panic!("{stop:?}");
        };
        assert_eq!((sessions_closed, confirmed), (vec![session.clone()], true));
        let closed = store.session(session.clone()).await.unwrap();
        assert_eq!(closed.close_reason, Some(CloseReason::OptOut));
        // The keyword is not relayed; the confirmation goes to B only.
        let sent = queued(&store, NOW).await;
        assert_eq!(sent, [(B.to_string(), rules.opt_out.stop_reply.clone())]);
        let again = accept_inbound(&store, part(B, "31", None, "STOP"), rules.clone(), NOW)
            .await
            .unwrap();
        assert!(matches!(
            again,
            InboundOutcome::OptedOut {
                confirmed: false,
                ..
            }
        ));
        assert!(queued(&store, NOW).await.is_empty(), "one confirmation");
        assert!(store.is_opted_out(number(B)).await.unwrap());
        let start = accept_inbound(&store, part(B, "32", None, "Start"), rules.clone(), NOW)
            .await
            .unwrap();
        assert!(matches!(start, InboundOutcome::OptedIn { .. }));
        assert_eq!(
            queued(&store, NOW).await,
            [(B.to_string(), rules.opt_out.start_reply.clone())]
        );
        assert!(!store.is_opted_out(number(B)).await.unwrap());
    }

    #[tokio::test]
    async fn intercept_rules_block_and_record_their_rule() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        store
            .block_number(number(A), "spam".into(), "test".into(), NOW)
            .await
            .unwrap();
        let blocked = accept_inbound(&store, part(A, "40", None, "hi"), reject(), NOW)
            .await
            .unwrap();
        assert!(matches!(
            blocked,
            InboundOutcome::Blocked {
                rule: "block_list",
                ..
            }
        ));
        store
            .unblock_number(number(A), "test".into(), NOW)
            .await
            .unwrap();
        let rules = settings(|r| r.intercept.max_messages_per_session = 1);
        let first = accept_inbound(&store, part(A, "41", None, "one"), rules.clone(), NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::Relayed { .. }));
        let second = accept_inbound(&store, part(B, "42", None, "two"), rules, NOW)
            .await
            .unwrap();
        assert!(matches!(
            second,
            InboundOutcome::Blocked {
                rule: "session_limit",
                ..
            }
        ));
        let history = store.interactions(session).await.unwrap();
        let rules: Vec<_> = history.iter().map(|i| i.rule.as_deref()).collect();
        assert_eq!(rules, [Some("block_list"), None, Some("session_limit")]);
        assert_eq!(queued(&store, NOW).await.len(), 1);
    }

    #[tokio::test]
    async fn a_ping_pong_of_auto_replies_stops_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let rules = settings(|r| r.loop_protection.max_similar_per_hour = 3);
        for (i, from) in [A, B, A].into_iter().enumerate() {
            let at = NOW + time::Duration::seconds(30 * i as i64);
            let pdu = format!("5{i}");
            let outcome = accept_inbound(
                &store,
                part(from, &pdu, None, "I'm driving, reply later"),
                rules.clone(),
                at,
            )
            .await
            .unwrap();
            assert!(
                matches!(outcome, InboundOutcome::Relayed { .. }),
                "{i}: {outcome:?}"
            );
        }
        let later = NOW + time::Duration::seconds(120);
        let fourth = accept_inbound(
            &store,
            part(B, "59", None, "I'm DRIVING, reply later!"),
            rules,
            later,
        )
        .await
        .unwrap();
        let InboundOutcome::Blocked {
            rule: "loop",
            stopped_session: Some((stopped, reason)),
            ..
        } = fourth
        else {
            panic!("{fourth:?}");
        };
        assert_eq!(stopped, session);
        assert!(reason.contains("near-identical"), "{reason}");
        let record = store.session(session).await.unwrap();
        assert_eq!(record.close_reason, Some(CloseReason::Loop));
    }

    #[tokio::test]
    async fn a_stranger_on_a_front_desk_gets_a_session_with_the_staff() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        const STAFF: &str = "+447911000100";
        const Y: &str = "+447911000010";
        store
            .update_sim(
                PROXY.into(),
                crate::store::SimChange {
                    front_desk: Some(Some(number(STAFF))),
                    ..Default::default()
                },
                "test".into(),
                NOW,
            )
            .await
            .unwrap();
        let first = accept_inbound(&store, part(X, "60", None, "hello desk"), reject(), NOW)
            .await
            .unwrap();
        let InboundOutcome::FrontDesk { session_id, .. } = first else {
            panic!("{first:?}");
        };
        let session = store.session(session_id).await.unwrap();
        assert_eq!(session.participants, [Some(number(X)), Some(number(STAFF))]);
        assert_eq!(
            queued(&store, NOW).await,
            [(STAFF.to_string(), "hello desk".to_string())]
        );
        // The staff number is busy on this proxy now: a second stranger
        // gets the out-of-session policy (hubs will lift this).
        let second = accept_inbound(&store, part(Y, "61", None, "me too"), reject(), NOW)
            .await
            .unwrap();
        assert!(
            matches!(second, InboundOutcome::Dropped { .. }),
            "{second:?}"
        );
    }

    fn ms(t: OffsetDateTime) -> i64 {
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
    }

    /// The session's messages as loop protection reads them.
    async fn recent(store: &Store, session: &str) -> Vec<crate::store::RecentMessage> {
        let session = session.to_string();
        store
            .inbound(move |tx| tx.recent_messages(&session, NOW - time::Duration::DAY))
            .await
            .unwrap()
    }

    /// `text` from `from` as the network delivers it, stamped `written`
    /// by the sender's SMSC: its parts, decoded as the modem driver does.
    fn delivered(
        from: &str,
        text: &str,
        written: OffsetDateTime,
        reference: u16,
    ) -> Vec<InboundPart> {
        use crate::pdu::{Address, Timestamp, encode_deliver};
        use crate::sms::intake::{Intake, intake};
        let pdus = encode_deliver(
            &Address::international(from.trim_start_matches('+')),
            text,
            Timestamp::from_datetime(written),
            reference,
            None,
        )
        .unwrap();
        pdus.iter()
            .map(|pdu| match intake(PROXY, None, &pdu.hex, None).unwrap() {
                Intake::Part(part) => part,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    const LINES: [&str; 12] = [
        "are you on the train yet",
        "just got on, it's packed",
        "which carriage are you in",
        "the fourth one, near the doors",
        "ok I'm coming through",
        "wait, the doors are closing",
        "made it, see you in a minute",
        "found a seat by the window",
        "I can see you now",
        "waving at you",
        "what a morning",
        "coffee later? my treat",
    ];

    #[tokio::test]
    async fn a_conversation_read_at_once_after_a_replug_is_no_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let rules = Arc::new(Rules::default());
        // Twelve turns written over six minutes, stamped by an SMSC whose
        // clock says UTC+1 and runs a minute slow, all read from the SIM
        // within a second of the replug at NOW.
        let offset = time::UtcOffset::from_hms(1, 0, 0).unwrap();
        let first_written = (NOW - time::Duration::minutes(7)).to_offset(offset);
        for i in 0..12_i64 {
            let from = if i % 2 == 0 { A } else { B };
            let written = first_written + time::Duration::seconds(30 * i);
            let text = format!("turn {i}: {}", LINES[usize::try_from(i).unwrap()]);
            let [part] = &delivered(from, &text, written, 0)[..] else {
                panic!("one part");
            };
            let at = NOW + time::Duration::milliseconds(80 * i);
            let outcome = accept_inbound(&store, part.clone(), rules.clone(), at)
                .await
                .unwrap();
            assert!(
                matches!(outcome, InboundOutcome::Relayed { .. }),
                "{i}: {outcome:?}"
            );
        }
        let kept = recent(&store, &session).await;
        assert_eq!(kept.len(), 12);
        for (i, message) in (0_i64..).zip(&kept) {
            let written = first_written + time::Duration::seconds(30 * i);
            assert_eq!(
                message.sent_ms,
                Some(ms(written)),
                "{i}: the SMSC's time, in UTC"
            );
            assert_eq!(message.created_ms, ms(NOW) + 80 * i);
        }
        let record = store.session(session).await.unwrap();
        assert_eq!(record.close_reason, None);
    }

    #[tokio::test]
    async fn a_long_message_is_placed_at_its_earliest_part() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let text = "a long one ".repeat(30);
        let written = NOW - time::Duration::minutes(5);
        let mut parts = delivered(A, &text, written, 7);
        assert_eq!(parts.len(), 3);
        // Each part stamped on its own, the later ones a second apart; the
        // first arrives last.
        let later = delivered(A, &text, written + time::Duration::seconds(1), 7);
        parts[1] = later[1].clone();
        parts[2] = later[2].clone();
        parts.rotate_left(1);
        for part in parts {
            accept_inbound(&store, part, reject(), NOW).await.unwrap();
        }
        let kept = recent(&store, &session).await;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].body.as_deref(), Some(text.as_str()));
        assert_eq!(kept[0].sent_ms, Some(ms(written)));
    }
}
