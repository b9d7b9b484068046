//! Status reports on PostgreSQL: a SIM's delivery reports matched to the
//! sends they answer (by the SIM and the message reference), as on SQLite.

use time::OffsetDateTime;

use super::super::relay::{DeliveryReport, DeliveryStatus};
use super::super::{StoreError, to_ms};
use super::relay::set_interaction_status;
use super::{PgStore, in_transaction, pg_error};

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Applies one status report; the interaction and its session, if found.
async fn delivery_report(
    tx: &Tx<'_>,
    report: &DeliveryReport,
    now: i64,
) -> Result<Option<(i64, Option<String>)>, StoreError> {
    let reference = report.message_reference.to_string();
    let outbox: Option<i64> = tx
        .query_opt(
            "SELECT id FROM outbox \
             WHERE proxy_iccid = $1 AND state = 'sent' \
               AND (',' || message_refs || ',') LIKE ('%,' || $2 || ',%') \
             ORDER BY sent_ms DESC, id DESC LIMIT 1",
            &[&report.proxy_iccid, &reference],
        )
        .await
        .map_err(pg_error)?
        .map(|row| row.get(0));
    let Some(outbox) = outbox else {
        return Ok(None);
    };
    let status = match report.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
    };
    let interaction = set_interaction_status(tx, outbox, status, "status report", now).await?;
    let session: Option<String> = tx
        .query_one(
            "SELECT session_id FROM interactions WHERE id = $1",
            &[&interaction],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(Some((interaction, session)))
}

impl PgStore {
    pub(in crate::store) async fn record_delivery_reports(
        &self,
        reports: Vec<DeliveryReport>,
        now: OffsetDateTime,
    ) -> Result<Vec<Option<(i64, Option<String>)>>, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                let mut found = Vec::with_capacity(reports.len());
                for report in &reports {
                    found.push(delivery_report(&tx, report, now).await?);
                }
                Ok(found)
            }
            .await
        })
    }
}
