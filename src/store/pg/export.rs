//! Exports on PostgreSQL: the fleet's interactions by time, a page at a
//! time (whichever appliance wrote them), and one interaction as exported
//! (for the events that name it).

use time::OffsetDateTime;

use super::super::export::{EXPORT_PAGE, ExportCursor, ExportedInteraction, SELECT};
use super::super::{StoreError, to_ms};
use super::status::exported;
use super::{PgStore, pg_error};

impl PgStore {
    /// Up to [`EXPORT_PAGE`] interactions created in `[from, to)`, oldest
    /// first, starting after `after`.
    pub(in crate::store) async fn interactions_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<ExportCursor>,
    ) -> Result<Vec<ExportedInteraction>, StoreError> {
        let (from, to) = (to_ms(from), to_ms(to));
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        let page = i64::try_from(EXPORT_PAGE).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{SELECT} WHERE i.created_ms >= $1 AND i.created_ms < $2 \
                     AND (i.created_ms, i.id) > ($3, $4) ORDER BY i.created_ms, i.id LIMIT $5"
                ),
                &[&from, &to, &after_ms, &after_id, &page],
            )
            .await
            .map_err(|e| self.noted(pg_error(e)))?;
        rows.iter().map(exported).collect()
    }

    /// One interaction as exported, if it exists.
    pub(in crate::store) async fn exported_interaction(
        &self,
        id: i64,
    ) -> Result<Option<ExportedInteraction>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("{SELECT} WHERE i.id = $1"), &[&id])
            .await
            .map_err(|e| self.noted(pg_error(e)))?;
        row.as_ref().map(exported).transpose()
    }
}
