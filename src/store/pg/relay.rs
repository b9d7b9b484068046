//! Interactions and the outbox on PostgreSQL. A SIM's rows are claimed by
//! the appliance that holds it; `FOR UPDATE SKIP LOCKED` keeps a claim
//! single even while a SIM moves between appliances.

use time::OffsetDateTime;

use super::super::relay::{InteractionRecord, NewOutbound, NextClaim, OutboxItem};
use super::super::{StoreError, from_ms, to_ms};
use super::retention::count;
use super::sessions::month_of;
use super::{PgStore, in_transaction, pg_error};

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// The statements that queue an SMS (`$1` session, `$2` SIM, `$3` sender's
/// position, `$4` recipient, `$5` body, `$6` now; then the outbox row and the
/// month's recipient), shared by the outbox's own transaction
/// ([`PgStore::queue_sms`]) and the inbound relay's (`inbound.rs`).
pub(super) const QUEUE_INTERACTION: &str = "INSERT INTO interactions (session_id, proxy_iccid, \
     kind, from_position, to_number, status, body, created_ms, updated_ms) \
     VALUES ($1, $2, 'sms', $3, $4, 'queued', $5, $6, $6) RETURNING id";
/// `$1` interaction, `$2` SIM, `$3` recipient, `$4` body, `$5` now.
pub(super) const QUEUE_OUTBOX: &str = "INSERT INTO outbox (interaction_id, proxy_iccid, \
     to_number, body, state, next_attempt_ms, created_ms) \
     VALUES ($1, $2, $3, $4, 'queued', $5, $5) RETURNING id";
/// `$1` SIM, `$2` month, `$3` recipient: the SIM's recipients this month,
/// for its budget.
pub(super) const NOTE_RECIPIENT: &str =
    "INSERT INTO sim_recipients (iccid, month, number) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
/// `$1` interaction, `$2` now, `$3` status, `$4` detail.
pub(super) const ADD_EVENT: &str = "INSERT INTO interaction_events (interaction_id, at_ms, status, detail) VALUES ($1, $2, $3, $4)";

pub(super) async fn add_event(
    tx: &Tx<'_>,
    interaction: i64,
    status: &str,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(ADD_EVENT, &[&interaction, &now, &status, &detail])
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn set_interaction_status(
    tx: &Tx<'_>,
    outbox_id: i64,
    status: &str,
    detail: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let interaction: i64 = tx
        .query_opt(
            "UPDATE interactions SET status = $2, reason = $3, updated_ms = $4 \
             WHERE id = (SELECT interaction_id FROM outbox WHERE id = $1) RETURNING id",
            &[&outbox_id, &status, &detail, &now],
        )
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::Corrupt(format!("no outbox row {outbox_id}")))?
        .get(0);
    add_event(tx, interaction, status, detail, now).await?;
    Ok(interaction)
}

async fn claim_next(
    tx: &Tx<'_>,
    proxy_iccid: &str,
    now: i64,
) -> Result<Option<OutboxItem>, StoreError> {
    let row = tx
        .query_opt(
            "UPDATE outbox o SET state = 'sending', attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox \
                         WHERE proxy_iccid = $1 AND state = 'queued' AND next_attempt_ms <= $2 \
                         ORDER BY next_attempt_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING o.id, o.interaction_id, o.proxy_iccid, COALESCE(o.to_number, ''), \
                       COALESCE(o.body, ''), o.attempts, o.created_ms, \
                       (SELECT session_id FROM interactions WHERE id = o.interaction_id)",
            &[&proxy_iccid, &now],
        )
        .await
        .map_err(pg_error)?;
    let Some(row) = row else { return Ok(None) };
    let item = OutboxItem {
        id: row.get(0),
        interaction_id: row.get(1),
        proxy_iccid: row.get(2),
        to_number: row.get(3),
        body: row.get(4),
        attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        created_ms: row.get(6),
        session_id: row.get(7),
    };
    // Each claim is an attempt the carrier may count.
    tx.execute(
        "INSERT INTO outbox_sends (proxy_iccid, at_ms) VALUES ($1, $2)",
        &[&proxy_iccid, &now],
    )
    .await
    .map_err(pg_error)?;
    Ok(Some(item))
}

async fn claim_or_next_due(
    tx: &Tx<'_>,
    proxy_iccid: &str,
    now: i64,
) -> Result<NextClaim, StoreError> {
    if let Some(item) = claim_next(tx, proxy_iccid, now).await? {
        return Ok(NextClaim::Claimed(item));
    }
    let next_due: Option<i64> = tx
        .query_one(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE proxy_iccid = $1 AND state = 'queued'",
            &[&proxy_iccid],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(NextClaim::NothingDue {
        next_due: next_due.map(from_ms).transpose()?,
    })
}

async fn sent(tx: &Tx<'_>, outbox_id: i64, refs: &[u8], now: i64) -> Result<(), StoreError> {
    let refs = refs.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    tx.execute(
        "UPDATE outbox SET state = 'sent', message_refs = $2, sent_ms = $3 WHERE id = $1",
        &[&outbox_id, &refs, &now],
    )
    .await
    .map_err(pg_error)?;
    set_interaction_status(tx, outbox_id, "sent", "", now).await?;
    Ok(())
}

/// Queues an SMS in the caller's transaction: its interaction, first
/// event, outbox row and the month's recipient; answers the interaction
/// and the outbox row.
pub(super) async fn queue_in(
    tx: &Tx<'_>,
    new: &NewOutbound,
    now: i64,
) -> Result<(i64, i64), StoreError> {
    let from_position = new.from_position.map(i16::from);
    let interaction: i64 = tx
        .query_one(
            QUEUE_INTERACTION,
            &[
                &new.session_id,
                &new.proxy_iccid,
                &from_position,
                &new.to.e164(),
                &new.body,
                &now,
            ],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    add_event(tx, interaction, "queued", "", now).await?;
    let outbox: i64 = tx
        .query_one(
            QUEUE_OUTBOX,
            &[
                &interaction,
                &new.proxy_iccid,
                &new.to.e164(),
                &new.body,
                &now,
            ],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    tx.execute(
        NOTE_RECIPIENT,
        &[&new.proxy_iccid, &month_of(from_ms(now)?), &new.to.e164()],
    )
    .await
    .map_err(pg_error)?;
    Ok((interaction, outbox))
}

/// An interaction's columns, as [`interaction_of`] reads them.
pub(super) const INTERACTION_COLUMNS: &str = "id, kind, from_position, status, reason, body, \
     parts, incomplete, created_ms, answered_ms, ended_ms, duration_ms, outcome, rule";

/// An interaction row selected with [`INTERACTION_COLUMNS`].
pub(super) fn interaction_of(row: &tokio_postgres::Row) -> InteractionRecord {
    InteractionRecord {
        id: row.get(0),
        kind: row.get(1),
        from_position: row
            .get::<_, Option<i16>>(2)
            .and_then(|p| u8::try_from(p).ok()),
        status: row.get(3),
        reason: row.get(4),
        body: row.get(5),
        parts: u32::try_from(row.get::<_, i32>(6)).unwrap_or(0),
        incomplete: row.get(7),
        created_ms: row.get(8),
        answered_ms: row.get(9),
        ended_ms: row.get(10),
        duration_ms: row.get(11),
        outcome: row.get(12),
        rule: row.get(13),
    }
}

impl PgStore {
    pub(in crate::store) async fn queue_sms(
        &self,
        new: NewOutbound,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async { Ok(queue_in(&tx, &new, now).await?.1) }.await
        })
    }

    pub(in crate::store) async fn claim_next_due(
        &self,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| { claim_next(&tx, &proxy_iccid, now).await })
    }

    pub(in crate::store) async fn claim_next(
        &self,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<NextClaim, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            claim_or_next_due(&tx, &proxy_iccid, now).await
        })
    }

    pub(in crate::store) async fn mark_sent_and_claim_next(
        &self,
        outbox_id: i64,
        message_refs: Vec<u8>,
        proxy_iccid: String,
        now: OffsetDateTime,
    ) -> Result<NextClaim, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                sent(&tx, outbox_id, &message_refs, now).await?;
                claim_or_next_due(&tx, &proxy_iccid, now).await
            }
            .await
        })
    }

    pub(in crate::store) async fn unclaim(&self, outbox_ids: Vec<i64>) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE outbox SET state = 'queued', attempts = GREATEST(attempts - 1, 0) \
                 WHERE id = ANY($1) AND state = 'sending'",
                &[&outbox_ids],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn mark_sent(
        &self,
        outbox_id: i64,
        message_refs: Vec<u8>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            sent(&tx, outbox_id, &message_refs, now).await
        })
    }

    pub(in crate::store) async fn mark_retry(
        &self,
        outbox_id: i64,
        error: String,
        next_attempt: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE outbox SET state = 'queued', last_error = $2, next_attempt_ms = $3 \
                 WHERE id = $1",
                &[&outbox_id, &error, &to_ms(next_attempt)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn mark_failed(
        &self,
        outbox_id: i64,
        reason: String,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                tx.execute(
                    "UPDATE outbox SET state = 'failed', last_error = $2 WHERE id = $1",
                    &[&outbox_id, &reason],
                )
                .await
                .map_err(pg_error)?;
                set_interaction_status(&tx, outbox_id, "failed", &reason, now).await?;
                Ok(())
            }
            .await
        })
    }

    /// On start-up: this appliance's rows a crash left `sending` go back to
    /// the queue. Only the SIMs it holds: another appliance's sends are its
    /// own.
    pub(in crate::store) async fn requeue_stuck_sending(
        &self,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let requeued = client
            .execute(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = $1, \
                 last_error = 'interrupted while sending' \
                 WHERE state = 'sending' AND proxy_iccid IN \
                 (SELECT iccid FROM sims WHERE appliance_id = $2)",
                &[&to_ms(now), &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(count(requeued))
    }

    pub(in crate::store) async fn interaction_session(
        &self,
        interaction_id: i64,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT session_id FROM interactions WHERE id = $1",
                &[&interaction_id],
            )
            .await
            .map_err(pg_error)?
            .and_then(|row| row.get(0)))
    }

    pub(in crate::store) async fn interaction_proxy(
        &self,
        interaction_id: i64,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT proxy_iccid FROM interactions WHERE id = $1",
                &[&interaction_id],
            )
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0)))
    }

    pub(in crate::store) async fn interactions(
        &self,
        session_id: String,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE session_id = $1 \
                     ORDER BY created_ms, id"
                ),
                &[&session_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(interaction_of).collect())
    }
}
