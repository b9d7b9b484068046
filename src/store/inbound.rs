//! Accepting an inbound SMS part: stored, deduplicated, reassembled, routed
//! and its relay queued, all in one transaction, so that once the caller
//! hears back it may delete the message from the SIM.

use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use super::relay::{NewOutbound, insert_outbound};
use super::sessions::{end_session, session_by_id};
use super::{Store, StoreError, from_ms, to_ms};
use crate::masking::lifecycle::SessionStatus;
use crate::masking::policy::OutOfSessionPolicy;
use crate::number::PhoneNumber;
use crate::sms::inbound::{InboundAction, decide};
use crate::sms::reassembly::{
    Assembly, Concat, Grouping, MessageKey, Part, assemble, assemble_incomplete, grouping,
};

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

impl Store {
    /// Accepts one inbound part (see the module docs). Queued at the call,
    /// so parts accepted one after another are stored in that order.
    pub fn accept_inbound(
        &self,
        part: InboundPart,
        policy: OutOfSessionPolicy,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<InboundOutcome, StoreError>> + use<> {
        self.call_durable(move |conn| {
            let tx = conn.transaction()?;
            let outcome = accept(&tx, &part, &policy, now)?;
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// Relays what arrived of every message whose first part is older than
    /// `cutoff` and is still incomplete (the reassembly timeout); the
    /// interactions are flagged incomplete.
    pub async fn sweep_incomplete(
        &self,
        cutoff: OffsetDateTime,
        policy: OutOfSessionPolicy,
        now: OffsetDateTime,
    ) -> Result<Vec<InboundOutcome>, StoreError> {
        let cutoff = to_ms(cutoff);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let stale: Vec<(String, String, u16, u8)> = tx
                .prepare(
                    "SELECT proxy_iccid, sender, concat_ref, concat_total FROM inbound_parts
                     WHERE interaction_id IS NULL AND concat_ref IS NOT NULL
                     GROUP BY proxy_iccid, sender, concat_ref, concat_total
                     HAVING MIN(received_ms) < ?1",
                )?
                .query_map(params![cutoff], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut outcomes = Vec::with_capacity(stale.len());
            for (proxy_iccid, sender, reference, total) in stale {
                let Ok(number) = PhoneNumber::from_e164(&sender) else {
                    return Err(StoreError::Corrupt(format!("stored sender {sender:?}")));
                };
                let key = MessageKey {
                    sender,
                    reference,
                    total,
                };
                let held = pending_parts(&tx, &proxy_iccid, &key)?;
                let texts: Vec<(u8, &str)> = held
                    .iter()
                    .map(|(_, seq, text)| (*seq, text.as_str()))
                    .collect();
                let body = assemble_incomplete(&key, &texts);
                let ids: Vec<i64> = held.iter().map(|(id, _, _)| *id).collect();
                let parts = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                let outcome =
                    route_message(&tx, &proxy_iccid, &number, body, parts, &ids, &policy, now)?;
                if let Some(interaction) = outcome.interaction_id() {
                    tx.execute(
                        "UPDATE interactions SET incomplete = 1 WHERE id = ?1",
                        params![interaction],
                    )?;
                }
                outcomes.push(outcome);
            }
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }
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

fn accept(
    tx: &Transaction<'_>,
    part: &InboundPart,
    policy: &OutOfSessionPolicy,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let now_ms = to_ms(now);
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
    let (storage, index) = part.location.clone().unzip();
    let concat = match &group {
        Grouping::Multi { .. } => part.concat,
        _ => None,
    };
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO inbound_parts (proxy_iccid, sender, storage, storage_index,
             pdu_hex, concat_ref, concat_total, concat_seq, text, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            part.proxy_iccid,
            rules_part.sender,
            storage,
            index,
            rules_part.pdu_hex,
            concat.map(|c| c.reference),
            concat.map(|c| c.total),
            concat.map(|c| c.sequence),
            part.text,
            now_ms
        ],
    )?;
    if inserted == 0 {
        return Ok(InboundOutcome::Duplicate);
    }
    let (part_ids, body, parts) = match group {
        Grouping::Multi { key, .. } => {
            let held = pending_parts(tx, &part.proxy_iccid, &key)?;
            let texts: Vec<(u8, &str)> = held
                .iter()
                .map(|(_, seq, text)| (*seq, text.as_str()))
                .collect();
            match assemble(&key, &texts) {
                Assembly::Waiting { missing } => {
                    return Ok(InboundOutcome::Waiting {
                        missing: missing.len(),
                    });
                }
                Assembly::Complete(body) => (
                    held.iter().map(|(id, _, _)| *id).collect(),
                    body,
                    u32::from(key.total),
                ),
            }
        }
        _ => (vec![tx.last_insert_rowid()], part.text.clone(), 1),
    };

    route_message(
        tx,
        &part.proxy_iccid,
        &part.sender,
        body,
        parts,
        &part_ids,
        policy,
        now,
    )
}

/// Routes one complete (or swept) message and writes its interaction and
/// outbox row; links the parts to the interaction.
#[allow(clippy::too_many_arguments)]
fn route_message(
    tx: &Transaction<'_>,
    proxy_iccid: &str,
    sender: &PhoneNumber,
    body: String,
    parts: u32,
    part_ids: &[i64],
    policy: &OutOfSessionPolicy,
    now: OffsetDateTime,
) -> Result<InboundOutcome, StoreError> {
    let now_ms = to_ms(now);
    let sender_e164 = sender.e164();

    let session = tx
        .query_row(
            "SELECT session_id FROM participants WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1",
            params![proxy_iccid, sender_e164],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|id| session_by_id(tx, &id))
        .transpose()?;
    let sessions: Vec<_> = session.iter().filter_map(|s| s.rules_view()).collect();
    let last_auto_reply = tx
        .query_row(
            "SELECT last_ms FROM auto_replies WHERE proxy_iccid = ?1 AND sender = ?2",
            params![proxy_iccid, sender_e164],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .map(from_ms)
        .transpose()?;
    let decision = decide(&sessions, sender, &body, policy, last_auto_reply, now);
    if let Some(id) = &decision.expire_session {
        end_session(tx, id, SessionStatus::Expired, now)?;
    }

    let queue =
        |session_id: Option<String>, from_position: Option<u8>, to: PhoneNumber, body: String| {
            let outbox = insert_outbound(
                tx,
                &NewOutbound {
                    session_id,
                    proxy_iccid: proxy_iccid.to_string(),
                    from_position,
                    to,
                    body,
                },
                now_ms,
            )?;
            let interaction: i64 = tx.query_row(
                "SELECT interaction_id FROM outbox WHERE id = ?1",
                params![outbox],
                |row| row.get(0),
            )?;
            Ok::<_, StoreError>(interaction)
        };
    let (interaction_id, outcome) = match decision.action {
        InboundAction::Relay {
            session_id,
            from_position,
            to,
        } => {
            tx.execute(
                "UPDATE sessions SET last_activity_ms = ?2 WHERE id = ?1",
                params![session_id, now_ms],
            )?;
            let id = queue(Some(session_id), Some(from_position), to, body)?;
            (id, InboundOutcome::Relayed { interaction_id: id })
        }
        InboundAction::AutoReply { text } => {
            tx.execute(
                "INSERT INTO auto_replies (proxy_iccid, sender, last_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (proxy_iccid, sender) DO UPDATE SET last_ms = excluded.last_ms",
                params![proxy_iccid, sender_e164, now_ms],
            )?;
            let id = queue(None, None, sender.clone(), text)?;
            (id, InboundOutcome::AutoReplied { interaction_id: id })
        }
        InboundAction::Forward { to, body } => {
            let id = queue(None, None, to, body)?;
            (id, InboundOutcome::Forwarded { interaction_id: id })
        }
        InboundAction::Drop { reason } => {
            tx.execute(
                "INSERT INTO interactions (proxy_iccid, kind, from_number, status, reason, body,
                                           created_ms, updated_ms)
                 VALUES (?1, 'sms', ?2, 'dropped', ?3, ?4, ?5, ?5)",
                params![proxy_iccid, sender_e164, reason, body, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            (
                id,
                InboundOutcome::Dropped {
                    interaction_id: id,
                    reason,
                },
            )
        }
    };
    if !matches!(
        outcome,
        InboundOutcome::Relayed { .. } | InboundOutcome::Dropped { .. }
    ) {
        // The interaction is the sent reply or forward; it came from the stranger.
        tx.execute(
            "UPDATE interactions SET from_number = ?2 WHERE id = ?1",
            params![interaction_id, sender_e164],
        )?;
    }
    tx.execute(
        "UPDATE interactions SET parts = ?2 WHERE id = ?1",
        params![interaction_id, parts],
    )?;
    for id in part_ids {
        tx.execute(
            "UPDATE inbound_parts SET interaction_id = ?2 WHERE id = ?1",
            params![id, interaction_id],
        )?;
    }
    Ok(outcome)
}

/// The parts held for `key` not yet assembled: (row id, sequence, text).
fn pending_parts(
    tx: &Transaction<'_>,
    proxy_iccid: &str,
    key: &MessageKey,
) -> Result<Vec<(i64, u8, String)>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT id, concat_seq, COALESCE(text, '') FROM inbound_parts
         WHERE proxy_iccid = ?1 AND sender = ?2 AND concat_ref = ?3 AND concat_total = ?4
           AND interaction_id IS NULL
         ORDER BY concat_seq, id",
    )?;
    let rows = statement.query_map(
        params![proxy_iccid, key.sender, key.reference, key.total],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {

    use super::*;
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
        let first = store
            .accept_inbound(part(A, "01AA", None, "hi"), REJECT, NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::Relayed { .. }));
        let again = store
            .accept_inbound(part(A, "01aa", None, "hi"), REJECT, NOW)
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
        let outcome = store
            .accept_inbound(part(B, "03", Some((9, 3, 3)), "baz"), REJECT, NOW)
            .await
            .unwrap();
        assert_eq!(outcome, InboundOutcome::Waiting { missing: 2 });
        store
            .accept_inbound(part(B, "01", Some((9, 3, 1)), "foo"), REJECT, NOW)
            .await
            .unwrap();
        let last = store
            .accept_inbound(part(B, "02", Some((9, 3, 2)), "bar"), REJECT, NOW)
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
        let dropped = store
            .accept_inbound(part(X, "10", None, "hi"), REJECT, NOW)
            .await
            .unwrap();
        assert!(matches!(dropped, InboundOutcome::Dropped { .. }));
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);

        let policy = OutOfSessionPolicy::AutoReply {
            text: "closed".into(),
        };
        let first = store
            .accept_inbound(part(X, "11", None, "hi"), policy.clone(), NOW)
            .await
            .unwrap();
        assert!(matches!(first, InboundOutcome::AutoReplied { .. }));
        let second = store
            .accept_inbound(part(X, "12", None, "hi"), policy, NOW)
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
        let outcome = store
            .accept_inbound(part(A, "20", None, "hi"), REJECT, later)
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
        store
            .accept_inbound(part(B, "01", Some((4, 3, 1)), "foo"), REJECT, NOW)
            .await
            .unwrap();
        store
            .accept_inbound(part(B, "03", Some((4, 3, 3)), "baz"), REJECT, NOW)
            .await
            .unwrap();
        let too_early = store.sweep_incomplete(NOW, REJECT, NOW).await.unwrap();
        assert!(too_early.is_empty());
        let later = NOW + time::Duration::minutes(10);
        let swept = store.sweep_incomplete(later, REJECT, later).await.unwrap();
        assert!(matches!(swept[..], [InboundOutcome::Relayed { .. }]));
        assert!(
            store
                .sweep_incomplete(later, REJECT, later)
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
