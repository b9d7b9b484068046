//! Bulk import of sessions onto known proxies (moving from another masking
//! service, or seeding a benchmark): one transaction, all or nothing. The
//! database's unique index still enforces the masking rule row by row.

use rusqlite::params;
use time::OffsetDateTime;

use crate::masking::Mode;
use crate::number::PhoneNumber;

use super::{Store, StoreError, to_ms};

/// A session to import on a given proxy.
#[derive(Debug, Clone)]
pub struct ImportedSession {
    pub proxy_iccid: String,
    pub participants: [PhoneNumber; 2],
    pub mode: Mode,
    pub label: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

impl Store {
    /// Imports `sessions` as open; returns their ids in order.
    pub async fn import_sessions(
        &self,
        sessions: Vec<ImportedSession>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.import_sessions(sessions, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut ids = Vec::with_capacity(sessions.len());
            {
                let mut session = tx.prepare_cached(
                    "INSERT INTO sessions (id, proxy_iccid, mode, status, label, opened_ms, \
                     expires_ms, last_activity_ms) VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?5)",
                )?;
                let mut participant = tx.prepare_cached(
                    "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
                     VALUES (?1, ?2, ?3, ?4, 1)",
                )?;
                for imported in sessions {
                    let id = format!("ses_{:016x}", rand::random::<u64>());
                    session.execute(params![
                        id,
                        imported.proxy_iccid,
                        imported.mode.as_str(),
                        imported.label,
                        to_ms(now),
                        imported.expires_at.map(to_ms),
                    ])?;
                    for (position, number) in imported.participants.iter().enumerate() {
                        participant.execute(params![
                            id,
                            position as i64,
                            number.e164(),
                            imported.proxy_iccid
                        ])?;
                    }
                    ids.push(id);
                }
            }
            super::sessions::audit(
                &tx,
                now,
                "import",
                "session.import",
                "*",
                &ids.len().to_string(),
            )?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: u32) -> PhoneNumber {
        PhoneNumber::from_e164(&format!("+4479{n:08}")).unwrap()
    }

    #[tokio::test]
    async fn imported_sessions_route_and_keep_the_masking_rule() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let now = OffsetDateTime::now_utc();
        store
            .upsert_sim("p1".into(), number(99), String::new(), None, now)
            .await
            .unwrap();
        let session = |a, b| ImportedSession {
            proxy_iccid: "p1".into(),
            participants: [number(a), number(b)],
            mode: Mode::Both,
            label: None,
            expires_at: None,
        };
        let ids = store
            .import_sessions(vec![session(1, 2), session(3, 4)], now)
            .await
            .unwrap();
        let found = store
            .open_session_of("p1".into(), number(3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, ids[1]);
        // Number 1 again on the same proxy breaks the rule: nothing is imported.
        assert!(
            store
                .import_sessions(vec![session(5, 6), session(1, 7)], now)
                .await
                .is_err()
        );
        assert!(
            store
                .open_session_of("p1".into(), number(5))
                .await
                .unwrap()
                .is_none()
        );
    }
}
