//! Interactions across sessions by time (exports, the last relays and calls
//! of `simmask status`) and the outbox's send log (rate-limit seeding and
//! use). Exports are read a page at a time, so that no caller ever holds
//! a whole range in memory.

use std::collections::HashMap;

use rusqlite::{Row, params};
use time::OffsetDateTime;

use super::{Store, StoreError, to_ms};
use crate::number::PhoneNumber;

/// The most rows one export page holds.
pub const EXPORT_PAGE: usize = 500;

pub(super) const DAY_MS: i64 = 24 * 3_600_000;

/// One interaction as exported: the session's participants are resolved to
/// the numbers that sent and received (absent once erased or forgotten).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedInteraction {
    pub id: i64,
    pub session_id: Option<String>,
    /// The proxy's own number (absent if the SIM left the pool).
    pub proxy_number: Option<String>,
    pub kind: String,
    pub from_position: Option<u8>,
    pub from_number: Option<PhoneNumber>,
    pub to_number: Option<PhoneNumber>,
    pub status: String,
    pub reason: String,
    pub outcome: Option<String>,
    pub parts: u32,
    pub incomplete: bool,
    /// The text, until retention erases it.
    pub body: Option<String>,
    pub created_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// Where the next export page starts: after this (created_ms, id).
pub type ExportCursor = (i64, i64);

/// Sends in the last minute and the last day, of one SIM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounts {
    pub last_minute: u32,
    pub last_day: u32,
}

pub(super) const SELECT: &str = "
    SELECT i.id, i.session_id, s.msisdn, i.kind, i.from_position,
           COALESCE(i.from_number, pf.number), COALESCE(i.to_number, pt.number),
           i.status, i.reason, i.outcome, i.parts, i.incomplete, i.body,
           i.created_ms, i.answered_ms, i.ended_ms, i.duration_ms
    FROM interactions i
    LEFT JOIN sims s ON s.iccid = i.proxy_iccid
    LEFT JOIN participants pf
           ON pf.session_id = i.session_id AND pf.position = i.from_position
    LEFT JOIN participants pt
           ON pt.session_id = i.session_id AND pt.position = 1 - i.from_position";

fn exported(row: &Row<'_>) -> Result<ExportedInteraction, StoreError> {
    let number = |index| -> Result<Option<PhoneNumber>, StoreError> {
        Ok(row
            .get::<_, Option<String>>(index)?
            .and_then(|n| PhoneNumber::from_e164(&n).ok()))
    };
    Ok(ExportedInteraction {
        id: row.get(0)?,
        session_id: row.get(1)?,
        proxy_number: row.get(2)?,
        kind: row.get(3)?,
        from_position: row.get(4)?,
        from_number: number(5)?,
        to_number: number(6)?,
        status: row.get(7)?,
        reason: row.get(8)?,
        outcome: row.get(9)?,
        parts: row.get(10)?,
        incomplete: row.get(11)?,
        body: row.get(12)?,
        created_ms: row.get(13)?,
        answered_ms: row.get(14)?,
        ended_ms: row.get(15)?,
        duration_ms: row.get(16)?,
    })
}

impl Store {
    /// Up to [`EXPORT_PAGE`] interactions created in `[from, to)`, oldest
    /// first, starting after `after`.
    pub async fn interactions_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<ExportCursor>,
    ) -> Result<Vec<ExportedInteraction>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.interactions_between(from, to, after).await;
        }
        let (from, to) = (to_ms(from), to_ms(to));
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "{SELECT} WHERE i.created_ms >= ?1 AND i.created_ms < ?2 \
                 AND (i.created_ms, i.id) > (?3, ?4) ORDER BY i.created_ms, i.id LIMIT ?5"
            ))?;
            let mut rows =
                statement.query(params![from, to, after_ms, after_id, EXPORT_PAGE as i64])?;
            let mut page = Vec::with_capacity(EXPORT_PAGE);
            while let Some(row) = rows.next()? {
                page.push(exported(row)?);
            }
            Ok(page)
        })
        .await
    }

    /// One interaction as exported, if it exists. On SQLite it is read
    /// beside the writer, on this task, without waiting for the writer; on
    /// PostgreSQL it is a query like any other.
    pub async fn exported_interaction(
        &self,
        id: i64,
    ) -> Result<Option<ExportedInteraction>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.exported_interaction(id).await;
        }
        self.read(|conn| {
            let mut statement = conn.prepare_cached(&format!("{SELECT} WHERE i.id = ?1"))?;
            let mut rows = statement.query(params![id])?;
            rows.next()?.map(exported).transpose()
        })
    }

    /// The `limit` most recent interactions of every session, newest first.
    pub async fn recent_interactions(
        &self,
        limit: usize,
    ) -> Result<Vec<ExportedInteraction>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.recent_interactions(limit).await;
        }
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "{SELECT} ORDER BY i.created_ms DESC, i.id DESC LIMIT ?1"
            ))?;
            let mut rows = statement.query(params![limit as i64])?;
            let mut recent = Vec::new();
            while let Some(row) = rows.next()? {
                recent.push(exported(row)?);
            }
            Ok(recent)
        })
        .await
    }

    /// The send attempts `iccid` made since `since` (ms since the epoch),
    /// oldest first: what its rate limiter is seeded with at start.
    pub async fn recent_sends(
        &self,
        iccid: String,
        since: OffsetDateTime,
    ) -> Result<Vec<i64>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.recent_sends(iccid, since).await;
        }
        let since = to_ms(since);
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT at_ms FROM outbox_sends WHERE proxy_iccid = ?1 AND at_ms > ?2 \
                 ORDER BY at_ms",
            )?;
            let rows = statement.query_map(params![iccid, since], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .await
    }

    /// Forgets the send attempts of more than a day before `now` (the rate
    /// limiter looks back one day at most); the sweeper runs it hourly.
    /// Returns how many were forgotten.
    pub async fn forget_old_sends(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.forget_old_sends(now).await;
        }
        let cutoff = to_ms(now) - DAY_MS;
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM outbox_sends WHERE at_ms <= ?1")?
                .execute(params![cutoff])?)
        })
        .await
    }

    /// Each SIM's sends in the minute and the day before `now`, by ICCID.
    pub async fn send_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, SendCounts>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.send_counts(now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT proxy_iccid, SUM(at_ms > ?1 - 60000), COUNT(*) FROM outbox_sends \
                 WHERE at_ms > ?1 - ?2 AND at_ms <= ?1 GROUP BY proxy_iccid",
            )?;
            let mut rows = statement.query(params![now, DAY_MS])?;
            let mut counts = HashMap::new();
            while let Some(row) = rows.next()? {
                counts.insert(
                    row.get(0)?,
                    SendCounts {
                        last_minute: row.get(1)?,
                        last_day: row.get(2)?,
                    },
                );
            }
            Ok(counts)
        })
        .await
    }
}

/// Records a send attempt of `iccid` at `now`. Those older than a day
/// are forgotten by [`Store::forget_old_sends`], not here: once a day of
/// sends is logged, deleting the oldest at each send wrote two more pages
/// on the relay's path.
pub(super) fn log_send(tx: &rusqlite::Connection, iccid: &str, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO outbox_sends (proxy_iccid, at_ms) VALUES (?1, ?2)")?
        .execute(params![iccid, now])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewOutbound;
    use crate::store::fixtures::{A, B, NOW, PROXY, number, store_with_session};

    #[tokio::test]
    async fn pages_follow_each_other_and_resolve_participants() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let total = EXPORT_PAGE + 7;
        for i in 0..total {
            let new = NewOutbound {
                session_id: Some(session.clone()),
                proxy_iccid: PROXY.into(),
                from_position: Some(0),
                to: number(B),
                body: format!("message {i}"),
            };
            store
                .queue_sms(new, NOW + time::Duration::milliseconds(i as i64 / 3))
                .await
                .unwrap();
        }
        let end = NOW + time::Duration::hours(1);
        let first = store.interactions_between(NOW, end, None).await.unwrap();
        assert_eq!(first.len(), EXPORT_PAGE);
        let last = first.last().unwrap();
        let second = store
            .interactions_between(NOW, end, Some((last.created_ms, last.id)))
            .await
            .unwrap();
        assert_eq!(second.len(), 7);
        assert_eq!(second[6].body.as_deref(), Some("message 506"));
        assert_eq!(first[0].from_number, Some(number(A)));
        assert_eq!(first[0].to_number, Some(number(B)));
        assert_eq!(first[0].proxy_number.as_deref(), Some("+447000000000"));
        let none = store
            .interactions_between(end, end + time::Duration::hours(1), None)
            .await
            .unwrap();
        assert!(none.is_empty());
        let recent = store.recent_interactions(3).await.unwrap();
        assert_eq!(recent[0].body.as_deref(), Some("message 506"));
    }

    #[tokio::test]
    async fn every_claim_is_logged_as_a_send_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        for at in [
            NOW - time::Duration::hours(25),
            NOW - time::Duration::minutes(5),
            NOW,
        ] {
            let new = NewOutbound {
                session_id: Some(session.clone()),
                proxy_iccid: PROXY.into(),
                from_position: Some(0),
                to: number(B),
                body: "hi".into(),
            };
            store.queue_sms(new, at).await.unwrap();
            store
                .claim_next_due(PROXY.into(), at)
                .await
                .unwrap()
                .unwrap();
        }
        let sends = store
            .recent_sends(PROXY.into(), NOW - time::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(sends.len(), 2, "the send of yesterday is not counted");
        let counts = store.send_counts(NOW).await.unwrap();
        assert_eq!(
            counts[PROXY],
            SendCounts {
                last_minute: 1,
                last_day: 2
            }
        );
        // Kept until the sweeper forgets it (not at every send).
        let two_days = NOW - time::Duration::days(2);
        let logged = store.recent_sends(PROXY.into(), two_days).await.unwrap();
        assert_eq!(logged.len(), 3);
        assert_eq!(store.forget_old_sends(NOW).await.unwrap(), 1);
        let logged = store.recent_sends(PROXY.into(), two_days).await.unwrap();
        assert_eq!(logged.len(), 2, "only the day's sends are left");
        assert_eq!(store.send_counts(NOW).await.unwrap()[PROXY], counts[PROXY]);
    }
}
