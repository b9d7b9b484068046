//! Accepting what a SIM received: each part kept and deduplicated, the
//! parts of a long message reassembled, the complete message routed by the
//! masking rules and its relay queued, all in one store transaction, so
//! that once the caller hears back it may delete the message from the SIM.
//!
//! The decisions are made here ([`super::reassembly`], [`super::inbound`]);
//! the store only reads and writes the rows ([`InboundTx`]).

use time::OffsetDateTime;

use super::inbound::{InboundAction, decide};
use super::reassembly::{
    Assembly, Concat, Grouping, MessageKey, Part, assemble, assemble_incomplete, grouping,
};
use crate::masking::lifecycle::SessionStatus;
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
}

impl InboundOutcome {
    /// The interaction written, if any.
    pub fn interaction_id(&self) -> Option<i64> {
        match self {
            InboundOutcome::Duplicate | InboundOutcome::Waiting { .. } => None,
            InboundOutcome::Relayed { interaction_id }
            | InboundOutcome::AutoReplied { interaction_id }
            | InboundOutcome::Forwarded { interaction_id }
            | InboundOutcome::Dropped { interaction_id, .. } => Some(*interaction_id),
        }
    }
}

/// Accepts one inbound part (see the module docs). Queued at the call, so
/// parts accepted one after another are stored in that order; the answer
/// comes once the part is on disk.
pub fn accept_inbound(
    store: &Store,
    part: InboundPart,
    policy: OutOfSessionPolicy,
    now: OffsetDateTime,
) -> impl Future<Output = Result<InboundOutcome, StoreError>> + use<> {
    store.inbound_durable(move |tx| accept(tx, &part, &policy, now))
}

/// Accepts one part inside a transaction the caller drives ([`accept_inbound`]
/// is this in a transaction of its own); the relay adds its own work to the
/// same transaction.
pub fn accept_in(
    tx: &mut InboundTx<'_>,
    part: &InboundPart,
    policy: &OutOfSessionPolicy,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    accept(tx, part, policy, now)
}

/// Relays what arrived of every message whose first part is older than
/// `cutoff` and is still incomplete (the reassembly timeout); the
/// interactions are flagged incomplete.
pub async fn sweep_incomplete(
    store: &Store,
    cutoff: OffsetDateTime,
    policy: OutOfSessionPolicy,
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
                };
                outcomes.push(route_message(tx, message, &policy, now)?);
            }
            Ok(outcomes)
        })
        .await
}

fn accept(
    tx: &mut InboundTx<'_>,
    part: &InboundPart,
    policy: &OutOfSessionPolicy,
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
    let (part_ids, body) = match group {
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
                Assembly::Complete(body) => (held.iter().map(|part| part.id).collect(), body),
            }
        }
        _ => (vec![part_id], part.text.clone()),
    };
    let message = Message {
        proxy_iccid: &part.proxy_iccid,
        sender: &part.sender,
        body,
        part_ids,
        incomplete: false,
    };
    route_message(tx, message, policy, now)
}

/// One complete (or swept) message to route.
struct Message<'a> {
    proxy_iccid: &'a str,
    sender: &'a PhoneNumber,
    body: String,
    /// The received parts that made it.
    part_ids: Vec<i64>,
    /// Parts were missing when the reassembly timeout swept it.
    incomplete: bool,
}

/// Routes one message by the masking rules, writes its interaction (and its
/// outbox row when something is sent) and links the parts to it.
fn route_message(
    tx: &mut InboundTx<'_>,
    message: Message<'_>,
    policy: &OutOfSessionPolicy,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let Message {
        proxy_iccid,
        sender,
        body,
        part_ids,
        incomplete,
    } = message;
    let session = tx.open_session_of(proxy_iccid, sender)?;
    let sessions: Vec<_> = session.iter().filter_map(|s| s.rules_view()).collect();
    let last_auto_reply = tx.last_auto_reply(proxy_iccid, sender)?;
    let decision = decide(&sessions, sender, &body, policy, last_auto_reply, now);
    if let Some(id) = &decision.expire_session {
        tx.end_session(id, SessionStatus::Expired, now)?;
    }
    let queue = |tx: &mut InboundTx<'_>,
                 session_id: Option<String>,
                 from_position: Option<u8>,
                 to: PhoneNumber,
                 body: String| {
        let new = NewOutbound {
            session_id,
            proxy_iccid: proxy_iccid.to_string(),
            from_position,
            to,
            body,
        };
        tx.queue_sms(&new, now)
    };
    let outcome = match decision.action {
        InboundAction::Relay {
            session_id,
            from_position,
            to,
        } => {
            tx.touch_session(&session_id, now)?;
            let id = queue(tx, Some(session_id), Some(from_position), to, body)?;
            InboundOutcome::Relayed { interaction_id: id }
        }
        InboundAction::AutoReply { text } => {
            tx.note_auto_reply(proxy_iccid, sender, now)?;
            let id = queue(tx, None, None, sender.clone(), text)?;
            InboundOutcome::AutoReplied { interaction_id: id }
        }
        InboundAction::Forward { to, body } => {
            let id = queue(tx, None, None, to, body)?;
            InboundOutcome::Forwarded { interaction_id: id }
        }
        InboundAction::Drop { reason } => {
            let id = tx.record_dropped(proxy_iccid, sender, reason, &body, now)?;
            InboundOutcome::Dropped {
                interaction_id: id,
                reason,
            }
        }
    };
    let Some(interaction) = outcome.interaction_id() else {
        return Ok(outcome);
    };
    if matches!(
        outcome,
        InboundOutcome::AutoReplied { .. } | InboundOutcome::Forwarded { .. }
    ) {
        // The interaction is the sent reply or forward; it came from the stranger.
        tx.set_interaction_sender(interaction, sender)?;
    }
    let parts = u32::try_from(part_ids.len()).unwrap_or(u32::MAX);
    tx.link_parts(interaction, &part_ids, parts, incomplete)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::masking::lifecycle::SessionStatus;
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

    const REJECT: OutOfSessionPolicy = OutOfSessionPolicy::Reject;

    #[tokio::test]
    async fn a_message_is_relayed_once_even_when_read_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let first = accept_inbound(&store, part(A, "01AA", None, "hi"), REJECT, NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::Relayed { .. }));
        let again = accept_inbound(&store, part(A, "01aa", None, "hi"), REJECT, NOW)
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
        let outcome = accept_inbound(&store, part(B, "03", Some((9, 3, 3)), "baz"), REJECT, NOW)
            .await
            .unwrap();
        assert_eq!(outcome, InboundOutcome::Waiting { missing: 2 });
        accept_inbound(&store, part(B, "01", Some((9, 3, 1)), "foo"), REJECT, NOW)
            .await
            .unwrap();
        let last = accept_inbound(&store, part(B, "02", Some((9, 3, 2)), "bar"), REJECT, NOW)
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
        let dropped = accept_inbound(&store, part(X, "10", None, "hi"), REJECT, NOW)
            .await
            .unwrap();
        assert!(matches!(dropped, InboundOutcome::Dropped { .. }));
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);

        let policy = OutOfSessionPolicy::AutoReply {
            text: "closed".into(),
        };
        let first = accept_inbound(&store, part(X, "11", None, "hi"), policy.clone(), NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::AutoReplied { .. }));
        let second = accept_inbound(&store, part(X, "12", None, "hi"), policy, NOW)
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
        let outcome = accept_inbound(&store, part(A, "20", None, "hi"), REJECT, later)
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
        accept_inbound(&store, part(B, "01", Some((4, 3, 1)), "foo"), REJECT, NOW)
            .await
            .unwrap();
        accept_inbound(&store, part(B, "03", Some((4, 3, 3)), "baz"), REJECT, NOW)
            .await
            .unwrap();
        let too_early = sweep_incomplete(&store, NOW, REJECT, NOW).await.unwrap();
        assert!(too_early.is_empty());
        let later = NOW + time::Duration::minutes(10);
        let swept = sweep_incomplete(&store, later, REJECT, later)
            .await
            .unwrap();
        assert!(matches!(swept[..], [InboundOutcome::Relayed { .. }]));
        assert!(
            sweep_incomplete(&store, later, REJECT, later)
                .await
                .unwrap()
                .is_empty()
        );
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 1);
        assert!(interactions[0].incomplete);
        assert_eq!(interactions[0].body.as_deref(), Some("foo[…]baz"));
    }
}
