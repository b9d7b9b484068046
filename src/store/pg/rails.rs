//! The safety rails' lists on PostgreSQL: one block list and one opt-out
//! list for the fleet, so a number blocked through any appliance is refused
//! on every one; and the rails' session calls a call's front desk and
//! fallback need.

use time::OffsetDateTime;

use super::super::rails::BlockRecord;
use super::super::sessions::{LiveSim, NewSession, SessionRecord};
use super::super::{StoreError, from_ms, to_ms};
use super::sessions::{audit, query_sessions};
use super::{PgStore, in_transaction, pg_error};
use crate::number::PhoneNumber;

impl PgStore {
    pub(in crate::store) async fn block_number(
        &self,
        number: PhoneNumber,
        reason: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<BlockRecord, StoreError> {
        in_transaction!(self, |tx| {
            async {
                tx.execute(
                    "INSERT INTO blocked_numbers (number, reason, actor, at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (number) \
                     DO UPDATE SET reason = $2, actor = $3, at_ms = $4",
                    &[&number.e164(), &reason, &actor, &to_ms(now)],
                )
                .await
                .map_err(pg_error)?;
                // The number as logs show it (redacted), as on SQLite.
                let shown = format!("{number:?}");
                audit(&tx, self, now, &actor, "block.add", &shown, "").await?;
                Ok(BlockRecord {
                    number: number.clone(),
                    reason: reason.clone(),
                    actor: actor.clone(),
                    at: now,
                })
            }
            .await
        })
    }

    pub(in crate::store) async fn unblock_number(
        &self,
        number: PhoneNumber,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let removed = tx
                    .execute(
                        "DELETE FROM blocked_numbers WHERE number = $1",
                        &[&number.e164()],
                    )
                    .await
                    .map_err(pg_error)?;
                if removed > 0 {
                    let shown = format!("{number:?}");
                    audit(&tx, self, now, &actor, "block.remove", &shown, "").await?;
                }
                Ok(removed > 0)
            }
            .await
        })
    }

    pub(in crate::store) async fn blocked_numbers(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT number, reason, actor, at_ms FROM blocked_numbers \
                 ORDER BY at_ms DESC, number",
                &[],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let number: String = row.get(0);
                Ok(BlockRecord {
                    number: PhoneNumber::from_e164(&number)
                        .map_err(|e| StoreError::Corrupt(format!("blocked number: {e}")))?,
                    reason: row.get(1),
                    actor: row.get(2),
                    at: from_ms(row.get(3))?,
                })
            })
            .collect()
    }

    /// Whether `number` is in `table` (`blocked_numbers` or `opt_outs`).
    async fn listed(&self, table: &str, number: &PhoneNumber) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE number = $1)"
            ))
            .await
            .map_err(pg_error)?;
        Ok(client
            .query_one(&statement, &[&number.e164()])
            .await
            .map_err(pg_error)?
            .get(0))
    }

    pub(in crate::store) async fn is_blocked(
        &self,
        number: PhoneNumber,
    ) -> Result<bool, StoreError> {
        self.listed("blocked_numbers", &number).await
    }

    pub(in crate::store) async fn is_opted_out(
        &self,
        number: PhoneNumber,
    ) -> Result<bool, StoreError> {
        self.listed("opt_outs", &number).await
    }

    pub(in crate::store) async fn last_ended_session_of(
        &self,
        proxy_iccid: String,
        participant: PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let mut found = query_sessions(
            &client,
            "s.proxy_iccid = $1 AND s.status != 'open' AND EXISTS (SELECT 1 FROM \
             participants p WHERE p.session_id = s.id AND p.number = $2) \
             ORDER BY s.ended_ms DESC LIMIT 1",
            &[&proxy_iccid, &participant.e164()],
        )
        .await?;
        Ok(found.pop())
    }

    /// A session on exactly `new.proxy` (a front desk), under allocation's
    /// rules and locks.
    pub(in crate::store) async fn open_session_on(
        &self,
        new: NewSession,
        live: LiveSim,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        if new.proxy.as_deref() != Some(live.iccid.as_str()) {
            return Err(StoreError::Corrupt(
                "a session on a given SIM names that SIM as its proxy".into(),
            ));
        }
        self.open_session(new, vec![live], now).await
    }

    pub(in crate::store) async fn forget_rail_lists_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let cutoff = to_ms(cutoff);
                let mut forgotten = 0;
                for table in ["opt_outs", "blocked_numbers"] {
                    forgotten += tx
                        .execute(&format!("DELETE FROM {table} WHERE at_ms < $1"), &[&cutoff])
                        .await
                        .map_err(pg_error)?;
                }
                Ok(usize::try_from(forgotten).unwrap_or(usize::MAX))
            }
            .await
        })
    }
}
