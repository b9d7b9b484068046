//! Callback deliveries not yet made: a row per event to POST, kept until it
//! is delivered or given up, so that a restart resumes them.

use rusqlite::params;
use time::OffsetDateTime;

use super::{Store, StoreError, to_ms};

/// A delivery waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// Unique for ever (never reused): receivers deduplicate by it.
    pub id: i64,
    /// The event kind, which names the URL in the configuration.
    pub kind: String,
    /// The JSON body, as first encoded.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, ms since the epoch.
    pub next_attempt_ms: i64,
}

/// Deliveries kept at most: while a receiver is unreachable for long, the
/// oldest beyond this are dropped (and said so) rather than filling the
/// disk.
pub const MAX_PENDING_DELIVERIES: i64 = 10_000;

impl PendingDelivery {
    /// A delivery just queued, due at once.
    pub(super) fn new(id: i64, kind: String, body: String, now: i64) -> Self {
        Self {
            id,
            kind,
            body,
            attempts: 0,
            next_attempt_ms: now,
        }
    }
}

/// Says that queuing a delivery dropped the oldest ones over the cap.
pub(super) fn note_dropped(dropped: u64) {
    if dropped > 0 {
        tracing::warn!(
            dropped,
            kept = MAX_PENDING_DELIVERIES,
            "callback deliveries: too many undelivered; the oldest were dropped"
        );
    }
}

impl Store {
    /// Records a delivery to make now; returns it. Deliveries older than
    /// the newest [`MAX_PENDING_DELIVERIES`] are dropped.
    pub async fn queue_delivery(
        &self,
        kind: String,
        body: String,
        now: OffsetDateTime,
    ) -> Result<PendingDelivery, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.queue_delivery(kind, body, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO callback_deliveries (kind, body, next_attempt_ms, created_ms) \
                 VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![kind, body, now])?;
            let id = conn.last_insert_rowid();
            // Ids only grow (AUTOINCREMENT): what is older than the newest
            // MAX_PENDING_DELIVERIES goes, through the primary key.
            let dropped = conn
                .prepare_cached("DELETE FROM callback_deliveries WHERE id <= ?1")?
                .execute(params![id - MAX_PENDING_DELIVERIES])?;
            note_dropped(dropped as u64);
            Ok(PendingDelivery::new(id, kind, body, now))
        })
        .await
    }

    /// Every delivery not yet made, oldest first (at start-up).
    pub async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.pending_deliveries().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, kind, body, attempts, next_attempt_ms FROM callback_deliveries \
                 ORDER BY id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(PendingDelivery {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    body: row.get(2)?,
                    attempts: row.get(3)?,
                    next_attempt_ms: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// An attempt failed; the next is due at `next_attempt`.
    pub async fn reschedule_delivery(
        &self,
        id: i64,
        attempts: u32,
        error: String,
        next_attempt: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg
                .reschedule_delivery(id, attempts, error, next_attempt)
                .await;
        }
        let next = to_ms(next_attempt);
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE callback_deliveries SET attempts = ?2, last_error = ?3, \
                 next_attempt_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![id, attempts, error, next])?;
            Ok(())
        })
        .await
    }

    /// Delivered, or given up: the row goes.
    pub async fn finish_delivery(&self, id: i64) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.finish_delivery(id).await;
        }
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM callback_deliveries WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    #[tokio::test]
    async fn an_unreachable_receiver_cannot_grow_the_table_without_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("simmask.db")).unwrap();
        // A receiver down for long: the table is full already.
        store
            .call(|conn| {
                let tx = conn.transaction()?;
                for n in 0..MAX_PENDING_DELIVERIES {
                    tx.execute(
                        "INSERT INTO callback_deliveries (kind, body, next_attempt_ms, created_ms)
                         VALUES ('message_relayed', ?1, 0, 0)",
                        params![format!("{{\"n\":{n}}}")],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        let mut last = None;
        for n in MAX_PENDING_DELIVERIES..MAX_PENDING_DELIVERIES + 25 {
            last = Some(
                store
                    .queue_delivery("message_relayed".into(), format!("{{\"n\":{n}}}"), NOW)
                    .await
                    .unwrap(),
            );
        }
        let pending = store.pending_deliveries().await.unwrap();
        assert_eq!(pending.len() as i64, MAX_PENDING_DELIVERIES);
        assert_eq!(
            pending.last().unwrap().id,
            last.unwrap().id,
            "the newest are kept"
        );
        assert_eq!(pending[0].body, "{\"n\":25}", "the oldest went");
    }

    #[tokio::test]
    async fn deliveries_survive_a_reopen_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        let (first, second) = {
            let store = Store::open(&path).unwrap();
            let first = store
                .queue_delivery("session_closed".into(), "{}".into(), NOW)
                .await
                .unwrap();
            let second = store
                .queue_delivery("modem_up".into(), "{\"a\":1}".into(), NOW)
                .await
                .unwrap();
            store
                .reschedule_delivery(second.id, 2, "503".into(), NOW + time::Duration::minutes(1))
                .await
                .unwrap();
            (first, second)
        };
        let store = Store::open(&path).unwrap();
        let pending = store.pending_deliveries().await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[1].attempts, 2);
        assert_eq!(pending[1].body, "{\"a\":1}");
        store.finish_delivery(first.id).await.unwrap();
        store.finish_delivery(second.id).await.unwrap();
        let third = store
            .queue_delivery("modem_up".into(), "{}".into(), NOW)
            .await
            .unwrap();
        assert!(third.id > second.id);
    }
}
