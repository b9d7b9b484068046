//! The audit trail on PostgreSQL: one trail for the fleet, each line
//! naming the appliance it was written on.

use time::OffsetDateTime;

use super::super::audit::AuditRecord;
use super::super::{StoreError, from_ms};
use super::sessions::audit;
use super::{PgStore, pg_error};

impl PgStore {
    /// Records that `actor` did `action` to `object` on this appliance.
    pub(in crate::store) async fn record_action(
        &self,
        actor: String,
        action: &'static str,
        object: String,
        detail: String,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        audit(&client, self, now, &actor, action, &object, &detail).await
    }

    /// The last `limit` lines of the fleet's trail, newest first.
    pub(in crate::store) async fn audit_trail(
        &self,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT a.at_ms, a.actor, a.action, a.object, a.detail, p.name FROM audit a \
                 LEFT JOIN appliances p ON p.id = a.appliance_id \
                 ORDER BY a.id DESC LIMIT $1",
                &[&i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at: from_ms(row.try_get(0).map_err(pg_error)?)?,
                    actor: row.try_get(1).map_err(pg_error)?,
                    action: row.try_get(2).map_err(pg_error)?,
                    object: row.try_get(3).map_err(pg_error)?,
                    detail: row.try_get(4).map_err(pg_error)?,
                    appliance: row.try_get(5).map_err(pg_error)?,
                })
            })
            .collect()
    }
}
