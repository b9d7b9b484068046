//! What `/api/v1/status` reads on PostgreSQL: each SIM's sends in the last
//! minute and day, and the fleet's latest interactions.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::super::export::{DAY_MS, ExportedInteraction, SELECT, SendCounts};
use super::super::{StoreError, to_ms};
use super::{PgStore, pg_error};
use crate::number::PhoneNumber;

fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl PgStore {
    pub(in crate::store) async fn send_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, SendCounts>, StoreError> {
        let now = to_ms(now);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT proxy_iccid, COUNT(*) FILTER (WHERE at_ms > $1::BIGINT - 60000), COUNT(*) \
                 FROM outbox_sends WHERE at_ms > $1::BIGINT - $2::BIGINT AND at_ms <= $1::BIGINT \
                 GROUP BY proxy_iccid",
                &[&now, &DAY_MS],
            )
            .await
            .map_err(|e| self.noted(pg_error(e)))?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    SendCounts {
                        last_minute: count(row.get(1)),
                        last_day: count(row.get(2)),
                    },
                )
            })
            .collect())
    }

    pub(in crate::store) async fn recent_interactions(
        &self,
        limit: usize,
    ) -> Result<Vec<ExportedInteraction>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("{SELECT} ORDER BY i.created_ms DESC, i.id DESC LIMIT $1"),
                &[&limit],
            )
            .await
            .map_err(|e| self.noted(pg_error(e)))?;
        rows.iter().map(exported).collect()
    }
}

pub(super) fn exported(row: &tokio_postgres::Row) -> Result<ExportedInteraction, StoreError> {
    let number = |index| -> Option<PhoneNumber> {
        row.get::<_, Option<String>>(index)
            .and_then(|n| PhoneNumber::from_e164(&n).ok())
    };
    let from_position = row
        .get::<_, Option<i16>>(4)
        .map(|p| u8::try_from(p).map_err(|_| StoreError::Corrupt(format!("position {p}"))))
        .transpose()?;
    Ok(ExportedInteraction {
        id: row.get(0),
        session_id: row.get(1),
        proxy_number: row.get(2),
        kind: row.get(3),
        from_position,
        from_number: number(5),
        to_number: number(6),
        status: row.get(7),
        reason: row.get(8),
        outcome: row.get(9),
        parts: u32::try_from(row.get::<_, i32>(10)).unwrap_or(0),
        incomplete: row.get(11),
        body: row.get(12),
        created_ms: row.get(13),
        answered_ms: row.get(14),
        ended_ms: row.get(15),
        duration_ms: row.get(16),
    })
}
