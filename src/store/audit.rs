//! The audit trail: who did what to which object, for actions that change
//! nothing else in the store (a USSD code sent from a SIM). Actions that do
//! change something are audited in their own transaction.

use rusqlite::params;
use time::OffsetDateTime;

use super::sessions::audit;
use super::{Store, StoreError, from_ms};

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: OffsetDateTime,
    /// A token's name, `cli`, `mqtt`…
    pub actor: String,
    /// `session.close`, `sim.disable`, `sim.ussd`…
    pub action: String,
    pub object: String,
    pub detail: String,
    /// The appliance it was done on (a fleet's trail; `None` on SQLite,
    /// whose trail is this appliance's).
    pub appliance: Option<String>,
}

impl Store {
    /// Records that `actor` did `action` to `object`.
    pub async fn record_action(
        &self,
        actor: String,
        action: &'static str,
        object: String,
        detail: String,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.record_action(actor, action, object, detail, now).await;
        }
        self.call(move |conn| audit(conn, now, &actor, action, &object, &detail))
            .await
    }

    /// The last `limit` lines of the audit trail, newest first.
    pub async fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.audit_trail(limit).await;
        }
        self.call(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT at_ms, actor, action, object, detail FROM audit \
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let mut rows = statement.query(params![limit as i64])?;
            let mut trail = Vec::new();
            while let Some(row) = rows.next()? {
                trail.push(AuditRecord {
                    at: from_ms(row.get(0)?)?,
                    actor: row.get(1)?,
                    action: row.get(2)?,
                    object: row.get(3)?,
                    detail: row.get(4)?,
                    appliance: None,
                });
            }
            Ok(trail)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn actions_are_kept_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let now = OffsetDateTime::now_utc();
        for code in ["*100#", "*101#"] {
            store
                .record_action("mqtt".into(), "sim.ussd", "8944".into(), code.into(), now)
                .await
                .unwrap();
        }
        let trail = store.audit_trail(10).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert_eq!(trail[0].detail, "*101#");
        assert_eq!(
            (trail[1].actor.as_str(), trail[1].action.as_str()),
            ("mqtt", "sim.ussd")
        );
    }
}
