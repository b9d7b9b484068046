//! API callbacks' delivery queue on PostgreSQL. Callbacks act on the
//! appliance where the event happened, so each appliance queues, resumes,
//! reschedules and caps only its own rows.

use time::OffsetDateTime;

use super::super::callbacks::{MAX_PENDING_DELIVERIES, PendingDelivery};
use super::super::{StoreError, to_ms};
use super::{PgStore, in_transaction, pg_error};

impl PgStore {
    /// Records a delivery to make now; drops this appliance's deliveries
    /// older than its newest [`MAX_PENDING_DELIVERIES`].
    pub(in crate::store) async fn queue_delivery(
        &self,
        kind: String,
        body: String,
        now: OffsetDateTime,
    ) -> Result<PendingDelivery, StoreError> {
        let now = to_ms(now);
        let appliance = self.appliance_id();
        in_transaction!(self, |tx| {
            async {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO callback_deliveries \
                         (appliance_id, kind, body, next_attempt_ms, created_ms) \
                         VALUES ($1, $2, $3, $4, $4) RETURNING id",
                        &[&appliance, &kind, &body, &now],
                    )
                    .await
                    .map_err(pg_error)?
                    .get(0);
                // Ids only grow (a sequence); each appliance's rows are
                // interleaved with the others', so the cap is the id of its
                // MAX_PENDING_DELIVERIES-th newest row, through the index.
                let dropped = tx
                    .execute(
                        "DELETE FROM callback_deliveries \
                         WHERE appliance_id = $1 AND id <= ( \
                             SELECT id FROM callback_deliveries WHERE appliance_id = $1 \
                             ORDER BY id DESC OFFSET $2 LIMIT 1)",
                        &[&appliance, &MAX_PENDING_DELIVERIES],
                    )
                    .await
                    .map_err(pg_error)?;
                super::super::callbacks::note_dropped(dropped);
                Ok(PendingDelivery::new(id, kind, body, now))
            }
            .await
        })
    }

    /// This appliance's deliveries not yet made, oldest first.
    pub(in crate::store) async fn pending_deliveries(
        &self,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, kind, body, attempts, next_attempt_ms FROM callback_deliveries \
                 WHERE appliance_id = $1 ORDER BY id",
                &[&self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(PendingDelivery {
                    id: row.try_get(0).map_err(pg_error)?,
                    kind: row.try_get(1).map_err(pg_error)?,
                    body: row.try_get(2).map_err(pg_error)?,
                    attempts: u32::try_from(row.try_get::<_, i32>(3).map_err(pg_error)?)
                        .unwrap_or(0),
                    next_attempt_ms: row.try_get(4).map_err(pg_error)?,
                })
            })
            .collect()
    }

    /// An attempt failed; the next is due at `next_attempt`.
    pub(in crate::store) async fn reschedule_delivery(
        &self,
        id: i64,
        attempts: u32,
        error: String,
        next_attempt: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let client = self.client().await?;
        client
            .execute(
                "UPDATE callback_deliveries SET attempts = $3, last_error = $4, \
                 next_attempt_ms = $5 WHERE id = $1 AND appliance_id = $2",
                &[
                    &id,
                    &self.appliance_id(),
                    &attempts,
                    &error,
                    &to_ms(next_attempt),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Delivered, or given up: the row goes.
    pub(in crate::store) async fn finish_delivery(&self, id: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM callback_deliveries WHERE id = $1 AND appliance_id = $2",
                &[&id, &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
