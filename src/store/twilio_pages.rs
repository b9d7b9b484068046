//! The facade's reads of a session's interactions, paged and filtered in
//! SQL (a long conversation is never read whole for one page).

use rusqlite::params;
use time::OffsetDateTime;

use super::relay::{INTERACTION_COLUMNS, interaction_of};
use super::{InteractionRecord, Store, StoreError, to_ms};

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
}
