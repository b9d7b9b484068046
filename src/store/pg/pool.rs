//! The pool's views and the sweeps' bookkeeping on PostgreSQL: modems,
//! counters, budgets, send log, storage fill, retention.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use super::super::api_queries::{HOUR_MS, SimCounters, TrafficHour};
use super::super::export::DAY_MS;
use super::super::pool::SimStorage;
use super::super::sessions::ModemRecord;
use super::super::{StoreError, from_ms, to_ms};
use super::retention::count as affected;
use super::sessions::{budget_use, month_of};
use super::{PgStore, in_transaction, pg_error};

fn count(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl PgStore {
    pub(in crate::store) async fn modems(&self) -> Result<Vec<ModemRecord>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT imei, manufacturer, model, revision, profile, COALESCE(port, '') \
                 FROM modems ORDER BY imei",
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| ModemRecord {
                imei: row.get(0),
                manufacturer: row.get(1),
                model: row.get(2),
                revision: row.get(3),
                profile: row.get(4),
                port: row.get(5),
            })
            .collect())
    }

    pub(in crate::store) async fn sim_counters(
        &self,
    ) -> Result<HashMap<String, SimCounters>, StoreError> {
        let client = self.client().await?;
        let mut counters: HashMap<String, SimCounters> = HashMap::new();
        for row in client
            .query(
                "SELECT proxy_iccid, COUNT(*) FROM inbound_parts GROUP BY proxy_iccid",
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            counters.entry(row.get(0)).or_default().received = count(row.get(1));
        }
        for row in client
            .query(
                "SELECT proxy_iccid, state, COUNT(*) FROM outbox GROUP BY proxy_iccid, state",
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            let entry = counters.entry(row.get(0)).or_default();
            let n = count(row.get(2));
            match row.get::<_, &str>(1) {
                "sent" => entry.sent += n,
                "failed" => entry.failed += n,
                _ => entry.queued += n,
            }
        }
        for row in client
            .query(
                "SELECT proxy_iccid, COUNT(*) FROM sessions WHERE status = 'open' \
                 GROUP BY proxy_iccid",
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            counters.entry(row.get(0)).or_default().open_sessions = count(row.get(1));
        }
        Ok(counters)
    }

    pub(in crate::store) async fn messages_relayed_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let relayed: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM interactions \
                 WHERE created_ms >= $1 AND kind = 'sms' AND session_id IS NOT NULL \
                 AND from_position IS NOT NULL AND status NOT IN ('blocked', 'dropped')",
                &[&to_ms(since)],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(count(relayed))
    }

    /// `iccid`'s traffic per hour from `since` (the start of an hour) on,
    /// whichever appliance held the SIM at the time.
    pub(in crate::store) async fn sim_traffic_by_hour(
        &self,
        iccid: String,
        since_ms: i64,
    ) -> Result<Vec<TrafficHour>, StoreError> {
        let client = self.client().await?;
        let mut hours: BTreeMap<i64, TrafficHour> = BTreeMap::new();
        for (sql, received) in [
            (
                "SELECT received_ms / $3, COUNT(*) FROM inbound_parts \
                 WHERE proxy_iccid = $1 AND received_ms >= $2 GROUP BY 1",
                true,
            ),
            (
                "SELECT sent_ms / $3, COUNT(*) FROM outbox \
                 WHERE proxy_iccid = $1 AND sent_ms >= $2 GROUP BY 1",
                false,
            ),
        ] {
            for row in client
                .query(sql, &[&iccid, &since_ms, &HOUR_MS])
                .await
                .map_err(pg_error)?
            {
                let hour: i64 = row.get(0);
                let entry = hours.entry(hour).or_default();
                entry.hour_ms = hour * HOUR_MS;
                let n = count(row.get(1));
                if received {
                    entry.received = n;
                } else {
                    entry.sent = n;
                }
            }
        }
        Ok(hours.into_values().collect())
    }

    pub(in crate::store) async fn sim_budget_use(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        let client = self.client().await?;
        budget_use(&client, now).await
    }

    pub(in crate::store) async fn recent_sends(
        &self,
        iccid: String,
        since: OffsetDateTime,
    ) -> Result<Vec<i64>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT at_ms FROM outbox_sends WHERE proxy_iccid = $1 AND at_ms > $2 \
                 ORDER BY at_ms",
                &[&iccid, &to_ms(since)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    pub(in crate::store) async fn forget_old_sends(
        &self,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let forgotten = client
            .execute(
                "DELETE FROM outbox_sends WHERE at_ms <= $1",
                &[&(to_ms(now) - DAY_MS)],
            )
            .await
            .map_err(pg_error)?;
        Ok(affected(forgotten))
    }

    pub(in crate::store) async fn save_sim_storage(
        &self,
        iccid: String,
        storage: SimStorage,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let (used, total) = (
            i32::try_from(storage.used).unwrap_or(i32::MAX),
            i32::try_from(storage.total).unwrap_or(i32::MAX),
        );
        client
            .execute(
                "INSERT INTO sim_storage (iccid, storage, used, total, updated_ms) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM sims WHERE iccid = $1) \
                 ON CONFLICT (iccid) DO UPDATE SET storage = $2, used = $3, total = $4, \
                 updated_ms = $5",
                &[
                    &iccid,
                    &storage.storage,
                    &used,
                    &total,
                    &to_ms(storage.updated_at),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn sim_storages(
        &self,
    ) -> Result<BTreeMap<String, SimStorage>, StoreError> {
        let client = self.client().await?;
        let mut out = BTreeMap::new();
        for row in client
            .query(
                "SELECT iccid, storage, used, total, updated_ms FROM sim_storage",
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            out.insert(
                row.get::<_, String>(0),
                SimStorage {
                    storage: row.get(1),
                    used: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
                    total: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                    updated_at: from_ms(row.get(4))?,
                },
            );
        }
        Ok(out)
    }

    /// Erases message texts older than `cutoff` (the metadata stays).
    pub(in crate::store) async fn erase_bodies_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let cutoff = to_ms(cutoff);
        in_transaction!(self, |tx| {
            async {
                let erased = tx
                    .execute(
                        "UPDATE interactions SET body = NULL \
                         WHERE created_ms < $1 AND body IS NOT NULL",
                        &[&cutoff],
                    )
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    "UPDATE outbox SET body = NULL \
                     WHERE created_ms < $1 AND state IN ('sent', 'failed')",
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                tx.execute(
                    "UPDATE inbound_parts SET text = NULL, pdu_hex = NULL \
                     WHERE received_ms < $1 AND interaction_id IS NOT NULL",
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                // The auto-reply ledger only answers "replied in the last
                // day?": older rows are a list of strangers' numbers.
                tx.execute(
                    "DELETE FROM auto_replies WHERE last_ms < $1",
                    &[&(cutoff - super::super::retention::AUTO_REPLY_MEMORY_MS)],
                )
                .await
                .map_err(pg_error)?;
                Ok(affected(erased))
            }
            .await
        })
    }

    pub(in crate::store) async fn forget_past_recipients(
        &self,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let forgotten = client
            .execute(
                "DELETE FROM sim_recipients WHERE month < $1",
                &[&month_of(now)],
            )
            .await
            .map_err(pg_error)?;
        Ok(affected(forgotten))
    }
}
