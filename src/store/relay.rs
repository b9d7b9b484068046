//! The relay's tables: interactions with their status history, and the
//! outbox. Every call is one transaction on the writer thread; the decisions
//! (backoff, error classes) are the relay's, made before it calls here.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::allocate::month_of;
use super::{Store, StoreError, from_ms, to_ms};
use crate::number::PhoneNumber;

/// An SMS to send through a proxy, recorded as an interaction.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub session_id: Option<String>,
    pub proxy_iccid: String,
    /// The sending participant's position when in a session.
    pub from_position: Option<u8>,
    pub to: PhoneNumber,
    pub body: String,
}

/// An outbox row claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub interaction_id: i64,
    pub session_id: Option<String>,
    pub proxy_iccid: String,
    pub to_number: String,
    pub body: String,
    /// Attempts including the one now starting.
    pub attempts: u32,
    /// When it was queued, ms since the epoch.
    pub created_ms: i64,
}

/// What a SIM's worker gets from the outbox: the message claimed, or when
/// the next one falls due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextClaim {
    Claimed(OutboxItem),
    /// Nothing due now; the earliest retry queued, if any.
    NothingDue {
        next_due: Option<OffsetDateTime>,
    },
}

/// One interaction as listed for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionRecord {
    pub id: i64,
    pub kind: String,
    pub from_position: Option<u8>,
    pub status: String,
    pub reason: String,
    /// The intercept rule that stopped it, if one did.
    pub rule: Option<String>,
    pub body: Option<String>,
    pub parts: u32,
    pub incomplete: bool,
    pub created_ms: i64,
    /// Calls: when the other side answered, when it ended, how long the
    /// conversation lasted, and how it ended (`transferred`, `no_answer`…).
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub outcome: Option<String>,
}

/// The delivery status a report carries (3GPP TS 23.040 §9.2.3.15, TP-ST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Failed,
}

/// A status report received for one of a SIM's sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub proxy_iccid: String,
    pub message_reference: u8,
    pub status: DeliveryStatus,
}

impl Store {
    /// Records an outbound SMS: the interaction, its first event and the
    /// outbox row, in one transaction. Returns the outbox row's id.
    pub async fn queue_sms(
        &self,
        new: NewOutbound,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.queue_sms(new, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let id = insert_outbound(&tx, &new, now)?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Claims the oldest due row of one SIM for sending: state `sending`,
    /// attempts + 1, and the attempt in the send log. Rows of other SIMs are never considered: a message waits
    /// for its own proxy, as sending from another would unmask.
    pub async fn claim_next_due(
        &self,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<Option<OutboxItem>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.claim_next_due(proxy_iccid, now).await;
        }
        let now = to_ms(now);
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            let row = claim_next(&tx, &proxy_iccid, now)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    /// [`Store::claim_next_due`], or when the SIM's next message falls due.
    pub async fn claim_next(
        &self,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<NextClaim, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.claim_next(proxy_iccid, now).await;
        }
        let now = to_ms(now);
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            let next = claim_or_next_due(&tx, &proxy_iccid, now)?;
            tx.commit()?;
            Ok(next)
        })
        .await
    }

    /// [`Store::mark_sent`] and, in the same job, [`Store::claim_next`] on
    /// the same SIM: a SIM with a backlog goes from one send to the next
    /// with one trip to the writer.
    pub async fn mark_sent_and_claim_next(
        &self,
        outbox_id: i64,
        message_refs: Vec<u8>,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<NextClaim, StoreError> {
        if let Some(pg) = &self.pg {
            return pg
                .mark_sent_and_claim_next(outbox_id, message_refs, proxy_iccid, now)
                .await;
        }
        let now = to_ms(now);
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            sent(&tx, outbox_id, &message_refs, now)?;
            let next = claim_or_next_due(&tx, &proxy_iccid, now)?;
            tx.commit()?;
            Ok(next)
        })
        .await
    }

    /// Puts rows claimed but never sent back in the queue, as they were
    /// (a worker stopping with messages handed to it).
    pub async fn unclaim(&self, outbox_ids: Vec<i64>) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.unclaim(outbox_ids).await;
        }
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            {
                let mut unclaim = tx.prepare_cached(
                    "UPDATE outbox SET state = 'queued', attempts = MAX(attempts - 1, 0)
                     WHERE id = ?1 AND state = 'sending'",
                )?;
                for id in outbox_ids {
                    unclaim.execute(params![id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The send was accepted by the network with these message references.
    pub async fn mark_sent(
        &self,
        outbox_id: i64,
        message_refs: Vec<u8>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.mark_sent(outbox_id, message_refs, now).await;
        }
        let now = to_ms(now);
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            sent(&tx, outbox_id, &message_refs, now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A transient failure: back to `queued` until `next_attempt`.
    pub async fn mark_retry(
        &self,
        outbox_id: i64,
        error: String,
        next_attempt: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.mark_retry(outbox_id, error, next_attempt).await;
        }
        let next = to_ms(next_attempt);
        self.call_relaxed(move |conn| {
            conn.execute(
                "UPDATE outbox SET state = 'queued', last_error = ?2, next_attempt_ms = ?3
             WHERE id = ?1",
                params![outbox_id, error, next],
            )?;
            Ok(())
        })
        .await
    }

    /// A permanent failure, or the attempts are exhausted.
    pub async fn mark_failed(
        &self,
        outbox_id: i64,
        reason: String,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.mark_failed(outbox_id, reason, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            tx.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
                params![outbox_id, reason],
            )?;
            set_interaction_status(&tx, outbox_id, "failed", &reason, now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Applies a status report: the most recent sent row of that SIM with
    /// that message reference. Returns the interaction updated, if any.
    /// Committed with its own fsync (a report stored on the SIM is deleted
    /// once this returns).
    pub async fn record_delivery_report(
        &self,
        proxy_iccid: String,
        message_reference: u8,
        status: DeliveryStatus,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = &self.pg {
            let report = DeliveryReport {
                proxy_iccid,
                message_reference,
                status,
            };
            let found = pg.record_delivery_reports(vec![report], now).await?;
            return Ok(found.into_iter().next().flatten().map(|(id, _)| id));
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            let found = delivery_report(&tx, &proxy_iccid, message_reference, status, now)?;
            tx.commit()?;
            Ok(found.map(|(interaction, _)| interaction))
        })
        .await
    }

    /// Applies many status reports in one job, as bookkeeping (made durable
    /// by the next fsync, like the outbox's own states): for each, the
    /// interaction updated and its session, if any.
    pub async fn record_delivery_reports(
        &self,
        reports: Vec<DeliveryReport>,
        now: OffsetDateTime,
    ) -> Result<Vec<Option<(i64, Option<String>)>>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.record_delivery_reports(reports, now).await;
        }
        let now = to_ms(now);
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            let mut found = Vec::with_capacity(reports.len());
            for report in &reports {
                found.push(delivery_report(
                    &tx,
                    &report.proxy_iccid,
                    report.message_reference,
                    report.status,
                    now,
                )?);
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    /// The session an interaction belongs to, if any.
    pub async fn interaction_session(
        &self,
        interaction_id: i64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.interaction_session(interaction_id).await;
        }
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT session_id FROM interactions WHERE id = ?1")?
                .query_row(params![interaction_id], |row| row.get(0))
                .optional()?
                .flatten())
        })
        .await
    }

    /// The proxy SIM an interaction went through.
    pub async fn interaction_proxy(
        &self,
        interaction_id: i64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.interaction_proxy(interaction_id).await;
        }
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT proxy_iccid FROM interactions WHERE id = ?1")?
                .query_row(params![interaction_id], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    /// On start-up: rows a crash left `sending` go back to `queued`. The
    /// modem may have sent one already, so a crash costs at most one
    /// duplicate per row, never a lost message. Returns how many were requeued.
    pub async fn requeue_stuck_sending(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.requeue_stuck_sending(now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = ?1,
                        last_error = 'interrupted while sending'
                 WHERE state = 'sending'",
                params![now],
            )?)
        })
        .await
    }

    /// A session's interactions, oldest first.
    pub async fn interactions(
        &self,
        session_id: String,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.interactions(session_id).await;
        }
        self.call(move |conn| list_interactions(conn, &session_id))
            .await
    }
}

/// Claims the oldest due `queued` row of `proxy_iccid`.
fn claim_next(
    tx: &Connection,
    proxy_iccid: &str,
    now: i64,
) -> Result<Option<OutboxItem>, StoreError> {
    let id: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM outbox
             WHERE proxy_iccid = ?1 AND state = 'queued' AND next_attempt_ms <= ?2
             ORDER BY next_attempt_ms, id LIMIT 1",
        )?
        .query_row(params![proxy_iccid, now], |row| row.get(0))
        .optional()?;
    match id {
        Some(id) => claim(tx, id, now),
        None => Ok(None),
    }
}

/// Claims the oldest due row of `proxy_iccid`, or says when the next
/// queued one falls due.
fn claim_or_next_due(
    tx: &Connection,
    proxy_iccid: &str,
    now: i64,
) -> Result<NextClaim, StoreError> {
    if let Some(item) = claim_next(tx, proxy_iccid, now)? {
        return Ok(NextClaim::Claimed(item));
    }
    let next_due: Option<i64> = tx
        .prepare_cached(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE proxy_iccid = ?1 AND state = 'queued'",
        )?
        .query_row(params![proxy_iccid], |row| row.get(0))?;
    Ok(NextClaim::NothingDue {
        next_due: next_due.map(super::from_ms).transpose()?,
    })
}

/// Claims the `queued` row `outbox_id`: state `sending`, attempts + 1.
pub(super) fn claim(
    tx: &Connection,
    outbox_id: i64,
    now: i64,
) -> Result<Option<OutboxItem>, StoreError> {
    let claimed = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1
             WHERE id = ?1 AND state = 'queued'
             RETURNING id, interaction_id, proxy_iccid, COALESCE(to_number, ''),
                       COALESCE(body, ''), attempts, created_ms",
        )?
        .query_row(params![outbox_id], |row| {
            Ok(OutboxItem {
                id: row.get(0)?,
                interaction_id: row.get(1)?,
                proxy_iccid: row.get(2)?,
                to_number: row.get(3)?,
                body: row.get(4)?,
                attempts: row.get(5)?,
                session_id: None,
                created_ms: row.get(6)?,
            })
        })
        .optional()?;
    let Some(mut item) = claimed else {
        return Ok(None);
    };
    item.session_id = tx
        .prepare_cached("SELECT session_id FROM interactions WHERE id = ?1")?
        .query_row(params![item.interaction_id], |row| row.get(0))?;
    // Each claim is an attempt the carrier may count.
    super::export::log_send(tx, &item.proxy_iccid, now)?;
    Ok(Some(item))
}

/// Marks a row sent with its message references.
fn sent(tx: &Connection, outbox_id: i64, refs: &[u8], now: i64) -> Result<(), StoreError> {
    let refs = refs.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    tx.prepare_cached(
        "UPDATE outbox SET state = 'sent', message_refs = ?2, sent_ms = ?3 WHERE id = ?1",
    )?
    .execute(params![outbox_id, refs, now])?;
    set_interaction_status(tx, outbox_id, "sent", "", now)?;
    Ok(())
}

/// Applies one status report; the interaction and its session, if found.
fn delivery_report(
    tx: &Connection,
    proxy_iccid: &str,
    message_reference: u8,
    status: DeliveryStatus,
    now: i64,
) -> Result<Option<(i64, Option<String>)>, StoreError> {
    let reference = message_reference.to_string();
    let outbox_id: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM outbox
             WHERE proxy_iccid = ?1 AND state = 'sent'
               AND (',' || message_refs || ',') LIKE ('%,' || ?2 || ',%')
             ORDER BY sent_ms DESC, id DESC LIMIT 1",
        )?
        .query_row(params![proxy_iccid, reference], |row| row.get(0))
        .optional()?;
    let Some(outbox_id) = outbox_id else {
        return Ok(None);
    };
    let status = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
    };
    let interaction = set_interaction_status(tx, outbox_id, status, "status report", now)?;
    let session = tx
        .prepare_cached("SELECT session_id FROM interactions WHERE id = ?1")?
        .query_row(params![interaction], |row| row.get(0))?;
    Ok(Some((interaction, session)))
}

pub(super) fn insert_outbound(
    tx: &Connection,
    new: &NewOutbound,
    now: i64,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position, to_number,
                                   status, body, created_ms, updated_ms)
         VALUES (?1, ?2, 'sms', ?3, ?4, 'queued', ?5, ?6, ?6)",
    )?
    .execute(params![
        new.session_id,
        new.proxy_iccid,
        new.from_position,
        new.to.e164(),
        new.body,
        now
    ])?;
    let interaction = tx.last_insert_rowid();
    add_event(tx, interaction, "queued", "", now)?;
    tx.prepare_cached(
        "INSERT INTO outbox (interaction_id, proxy_iccid, to_number, body, state,
                             next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
    )?
    .execute(params![
        interaction,
        new.proxy_iccid,
        new.to.e164(),
        new.body,
        now
    ])?;
    let outbox = tx.last_insert_rowid();
    // The SIM's recipients this month, for its budget.
    tx.prepare_cached(
        "INSERT OR IGNORE INTO sim_recipients (iccid, month, number) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        new.proxy_iccid,
        month_of(from_ms(now)?),
        new.to.e164()
    ])?;
    Ok(outbox)
}

/// Sets the status of the interaction behind an outbox row and records the
/// event; returns the interaction's id.
fn set_interaction_status(
    tx: &Connection,
    outbox_id: i64,
    status: &str,
    detail: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let interaction: i64 = tx
        .prepare_cached("SELECT interaction_id FROM outbox WHERE id = ?1")?
        .query_row(params![outbox_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("no outbox row {outbox_id}")))?;
    tx.prepare_cached(
        "UPDATE interactions SET status = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![interaction, status, detail, now])?;
    add_event(tx, interaction, status, detail, now)?;
    Ok(interaction)
}

pub(super) fn add_event(
    tx: &Connection,
    interaction: i64,
    status: &str,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO interaction_events (interaction_id, at_ms, status, detail)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![interaction, now, status, detail])?;
    Ok(())
}

/// The columns [`interaction_of`] reads, in its order.
pub(super) const INTERACTION_COLUMNS: &str = "id, kind, from_position, status, reason, body, \
    parts, incomplete, created_ms, answered_ms, ended_ms, duration_ms, outcome, rule";

/// An interaction row selected with [`INTERACTION_COLUMNS`].
pub(super) fn interaction_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<InteractionRecord> {
    Ok(InteractionRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        from_position: row.get(2)?,
        status: row.get(3)?,
        reason: row.get(4)?,
        body: row.get(5)?,
        parts: row.get(6)?,
        incomplete: row.get(7)?,
        created_ms: row.get(8)?,
        answered_ms: row.get(9)?,
        ended_ms: row.get(10)?,
        duration_ms: row.get(11)?,
        outcome: row.get(12)?,
        rule: row.get(13)?,
    })
}

fn list_interactions(
    conn: &Connection,
    session_id: &str,
) -> Result<Vec<InteractionRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE session_id = ?1
         ORDER BY created_ms, id"
    ))?;
    let rows = statement.query_map(params![session_id], interaction_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
    const PROXY: &str = "8944000000000000000";

    fn outbound(body: &str) -> NewOutbound {
        NewOutbound {
            session_id: None,
            proxy_iccid: PROXY.into(),
            from_position: None,
            to: PhoneNumber::from_e164("+447911000002").unwrap(),
            body: body.into(),
        }
    }

    fn status_of(path: &std::path::Path, interaction: i64) -> String {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT status FROM interactions WHERE id = ?1",
            params![interaction],
            |row| row.get(0),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_queued_message_is_claimed_once_then_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        let store = Store::open(&path).unwrap();
        store.queue_sms(outbound("hello"), NOW).await.unwrap();

        let other_sim = store
            .claim_next_due("8944000000000000009".into(), NOW)
            .await
            .unwrap();
        assert_eq!(other_sim, None, "a message never leaves by another SIM");

        let item = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((item.body.as_str(), item.attempts), ("hello", 1));
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
        store.mark_sent(item.id, vec![42], NOW).await.unwrap();
        assert_eq!(status_of(&path, item.interaction_id), "sent");
    }

    #[tokio::test]
    async fn a_retry_waits_for_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        store.queue_sms(outbound("hello"), NOW).await.unwrap();
        let item = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        let later = NOW + time::Duration::seconds(5);
        store
            .mark_retry(item.id, "+CMS ERROR: 42".into(), later)
            .await
            .unwrap();
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
        let again = store
            .claim_next_due(PROXY.into(), later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.attempts, 2);
    }

    #[tokio::test]
    async fn after_a_crash_mid_send_the_message_is_sent_once_more_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        {
            let store = Store::open(&path).unwrap();
            store.queue_sms(outbound("hello"), NOW).await.unwrap();
            store
                .claim_next_due(PROXY.into(), NOW)
                .await
                .unwrap()
                .unwrap();
            // The process dies here: claimed, never marked sent.
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
        assert_eq!(store.requeue_stuck_sending(NOW).await.unwrap(), 1);
        let item = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.attempts, 2);
        store.mark_sent(item.id, vec![7], NOW).await.unwrap();
        assert_eq!(store.requeue_stuck_sending(NOW).await.unwrap(), 0);
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_delivery_report_updates_the_latest_message_with_that_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        let store = Store::open(&path).unwrap();
        let mut interactions = Vec::new();
        for (body, at) in [("old", NOW), ("new", NOW + time::Duration::minutes(1))] {
            store.queue_sms(outbound(body), at).await.unwrap();
            let item = store
                .claim_next_due(PROXY.into(), at)
                .await
                .unwrap()
                .unwrap();
            // References wrap at 256: both got 9.
            store.mark_sent(item.id, vec![8, 9], at).await.unwrap();
            interactions.push(item.interaction_id);
        }
        let updated = store
            .record_delivery_report(PROXY.into(), 9, DeliveryStatus::Delivered, NOW)
            .await
            .unwrap();
        assert_eq!(updated, Some(interactions[1]));
        assert_eq!(status_of(&path, interactions[1]), "delivered");
        assert_eq!(status_of(&path, interactions[0]), "sent");
        let unknown = store
            .record_delivery_report(PROXY.into(), 99, DeliveryStatus::Failed, NOW)
            .await
            .unwrap();
        assert_eq!(unknown, None);
    }

    #[tokio::test]
    async fn a_permanent_failure_fails_the_interaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        let store = Store::open(&path).unwrap();
        store.queue_sms(outbound("hello"), NOW).await.unwrap();
        let item = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        store
            .mark_failed(item.id, "+CMS ERROR: 21".into(), NOW)
            .await
            .unwrap();
        assert_eq!(status_of(&path, item.interaction_id), "failed");
        assert_eq!(store.requeue_stuck_sending(NOW).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_job_marks_a_send_and_claims_the_next_and_an_unsent_claim_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        let store = Store::open(&path).unwrap();
        for body in ["one", "two"] {
            store.queue_sms(outbound(body), NOW).await.unwrap();
        }
        let first = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        let NextClaim::Claimed(second) = store
            .mark_sent_and_claim_next(first.id, vec![3], PROXY.into(), NOW)
            .await
            .unwrap()
        else {
            panic!("the second is due");
        };
        assert_eq!((second.body.as_str(), second.attempts), ("two", 1));
        assert_eq!(status_of(&path, first.interaction_id), "sent");
        store.unclaim(vec![second.id]).await.unwrap();
        let again = store
            .claim_next_due(PROXY.into(), NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts), (second.id, 1), "as it was");
        let none = store
            .mark_sent_and_claim_next(again.id, vec![4], PROXY.into(), NOW)
            .await
            .unwrap();
        assert_eq!(none, NextClaim::NothingDue { next_due: None });
        let found = store
            .record_delivery_reports(
                vec![
                    DeliveryReport {
                        proxy_iccid: PROXY.into(),
                        message_reference: 4,
                        status: DeliveryStatus::Delivered,
                    },
                    DeliveryReport {
                        proxy_iccid: PROXY.into(),
                        message_reference: 99,
                        status: DeliveryStatus::Failed,
                    },
                ],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(found, vec![Some((again.interaction_id, None)), None]);
        assert_eq!(status_of(&path, again.interaction_id), "delivered");
    }
}
