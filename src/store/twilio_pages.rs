//! The facade's sessions at work: message interactions queued, lifetimes
//! set, pending sessions expired, and a session's interactions read paged
//! and filtered in SQL (a long conversation is never read whole for one
//! page).

use rusqlite::params;
use time::OffsetDateTime;

use super::relay::{INTERACTION_COLUMNS, insert_outbound, interaction_of};
use super::{InteractionRecord, NewOutbound, Store, StoreError, to_ms};

/// Which of a session's interactions to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InteractionPick {
    /// All of them.
    All,
    /// One, by id.
    Id(i64),
    /// Its calls.
    Calls,
    /// The SMS its proxy itself sent to `number` (MessageInteractions).
    ProxyMessagesTo(String),
}

impl Store {
    /// Closes the facade's pending sessions (a participant still missing,
    /// so no appliance session) that reached their `date_expiry`, or their
    /// `ttl` without any interaction, as Twilio's expire; answers their
    /// SIDs.
    pub async fn twilio_expire_pending(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_expire_pending(now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let sids = {
                let mut statement = tx.prepare_cached(
                    "SELECT sid FROM twilio_sessions
                     WHERE session_id IS NULL AND closed_ms IS NULL AND deleted_ms IS NULL
                       AND (expiry_ms <= ?1 OR (ttl > 0 AND created_ms + ttl * 1000 <= ?1))",
                )?;
                let rows = statement.query_map(params![now], |row| row.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            for sid in &sids {
                tx.execute(
                    "UPDATE twilio_sessions SET closed_ms = ?2, updated_ms = ?2 WHERE sid = ?1",
                    params![sid, now],
                )?;
            }
            tx.commit()?;
            Ok(sids)
        })
        .await
    }

    /// A session's interactions, newest first: `limit` from `offset`.
    pub async fn twilio_interactions(
        &self,
        session_id: String,
        pick: InteractionPick,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg
                .twilio_interactions(session_id, pick, limit, offset)
                .await;
        }
        let (condition, value): (&str, Option<rusqlite::types::Value>) = match pick {
            InteractionPick::All => ("1", None),
            InteractionPick::Id(id) => ("id = ?4", Some(id.into())),
            InteractionPick::Calls => ("kind = 'call'", None),
            InteractionPick::ProxyMessagesTo(number) => (
                "kind = 'sms' AND from_position IS NULL AND to_number = ?4",
                Some(number.into()),
            ),
        };
        let sql = format!(
            "SELECT {INTERACTION_COLUMNS} FROM interactions
             WHERE session_id = ?1 AND {condition}
             ORDER BY created_ms DESC, id DESC LIMIT ?2 OFFSET ?3"
        );
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let (limit, offset) = (limit as i64, offset as i64);
            let rows = match &value {
                Some(value) => statement
                    .query_map(params![session_id, limit, offset, value], interaction_of)?,
                None => statement.query_map(params![session_id, limit, offset], interaction_of)?,
            };
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Queues an SMS from a session's proxy to one participant (Proxy's
    /// MessageInteraction) and restarts the session's idle lifetime, in
    /// one transaction; answers the interaction's id.
    pub async fn twilio_queue_message(
        &self,
        new: NewOutbound,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_queue_message(new, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let outbox = insert_outbound(&tx, &new, now)?;
            let interaction: i64 = tx.query_row(
                "SELECT interaction_id FROM outbox WHERE id = ?1",
                params![outbox],
                |row| row.get(0),
            )?;
            tx.execute(
                "UPDATE sessions SET last_activity_ms = MAX(last_activity_ms, ?2)
                 WHERE id = ?1 AND status = 'open'",
                params![new.session_id, now],
            )?;
            tx.commit()?;
            Ok(interaction)
        })
        .await
    }

    /// Who each of a session's proxy-originated SMS went to, by
    /// interaction id.
    pub async fn twilio_message_targets(
        &self,
        session_id: String,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_message_targets(session_id).await;
        }
        self.read(move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, to_number FROM interactions
                 WHERE session_id = ?1 AND kind = 'sms' AND from_position IS NULL
                   AND to_number IS NOT NULL",
            )?;
            let rows =
                statement.query_map(params![session_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Sets an open appliance session's lifetimes: `expires` absolute (ms),
    /// `idle_ttl` seconds; `Some(None)` removes one.
    pub async fn twilio_set_lifetime(
        &self,
        session_id: String,
        expires: Option<Option<i64>>,
        idle_ttl: Option<Option<i64>>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_set_lifetime(session_id, expires, idle_ttl).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(expires) = expires {
                tx.execute(
                    "UPDATE sessions SET expires_ms = ?2 WHERE id = ?1 AND status = 'open'",
                    params![session_id, expires],
                )?;
            }
            if let Some(idle) = idle_ttl {
                tx.execute(
                    "UPDATE sessions SET idle_ttl_s = ?2 WHERE id = ?1 AND status = 'open'",
                    params![session_id, idle],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Sets a facade session's own lifetimes (while it waits for its
    /// second participant, or as shown once open).
    pub async fn twilio_set_row_lifetime(
        &self,
        sid: String,
        ttl: Option<Option<i64>>,
        expiry_ms: Option<Option<i64>>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_set_row_lifetime(sid, ttl, expiry_ms, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(ttl) = ttl {
                tx.execute(
                    "UPDATE twilio_sessions SET ttl = ?2, updated_ms = ?3 WHERE sid = ?1",
                    params![sid, ttl, now],
                )?;
            }
            if let Some(expiry) = expiry_ms {
                tx.execute(
                    "UPDATE twilio_sessions SET expiry_ms = ?2, updated_ms = ?3 WHERE sid = ?1",
                    params![sid, expiry, now],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
