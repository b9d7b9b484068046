//! Retention and data-protection erasure. Bodies go; the metadata (who by
//! position, when, status, part counts) stays for the operator's records.

use rusqlite::params;
use time::OffsetDateTime;

use super::{Store, StoreError, to_ms};
use crate::number::PhoneNumber;

/// What an erasure changed, table by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureCounts {
    pub interactions: usize,
    pub inbound_parts: usize,
    pub outbox: usize,
    pub participants: usize,
    pub auto_replies: usize,
    pub audit: usize,
}

/// What replaces an erased number in free text.
const ERASED: &str = "[erased]";

impl Store {
    /// Erases the message bodies (interaction and outbox bodies, part texts
    /// and PDUs) of everything created before `cutoff`. Returns how many
    /// interactions lost their body.
    pub async fn erase_bodies_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let cutoff = to_ms(cutoff);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let erased = tx.execute(
                "UPDATE interactions SET body = NULL WHERE created_ms < ?1 AND body IS NOT NULL",
                params![cutoff],
            )?;
            tx.execute(
                "UPDATE outbox SET body = NULL
                 WHERE created_ms < ?1 AND state IN ('sent', 'failed')",
                params![cutoff],
            )?;
            // Assembled or swept parts only: a part still awaiting its
            // siblings is kept until the incomplete-message sweep relays it.
            tx.execute(
                "UPDATE inbound_parts SET text = NULL, pdu_hex = NULL
                 WHERE received_ms < ?1 AND interaction_id IS NOT NULL",
                params![cutoff],
            )?;
            tx.commit()?;
            Ok(erased)
        })
        .await
    }

    /// A data-protection request: removes every body exchanged with `number`
    /// and every occurrence of the number itself, in one transaction.
    pub async fn erase_participant(
        &self,
        number: PhoneNumber,
    ) -> Result<ErasureCounts, StoreError> {
        self.call(move |conn| {
            let number = number.e164().to_string();
            let tx = conn.transaction()?;
            // Interactions in the number's sessions, or from/to it directly.
            let interactions = tx.execute(
                "UPDATE interactions
                 SET body = NULL,
                     from_number = CASE WHEN from_number = ?1 THEN NULL ELSE from_number END,
                     to_number = CASE WHEN to_number = ?1 THEN NULL ELSE to_number END
                 WHERE from_number = ?1 OR to_number = ?1
                    OR session_id IN (SELECT session_id FROM participants WHERE number = ?1)",
                params![number],
            )?;
            let outbox = tx.execute(
                "UPDATE outbox SET body = NULL, to_number = NULL
                 WHERE to_number = ?1 OR interaction_id IN (
                     SELECT id FROM interactions WHERE session_id IN (
                         SELECT session_id FROM participants WHERE number = ?1))",
                params![number],
            )?;
            let inbound_parts = tx.execute(
                "DELETE FROM inbound_parts WHERE sender = ?1",
                params![number],
            )?;
            let auto_replies = tx.execute(
                "DELETE FROM auto_replies WHERE sender = ?1",
                params![number],
            )?;
            // Unique per row: the open-route index must still hold.
            let participants = tx.execute(
                "UPDATE participants
                 SET number = 'erased:' || session_id || ':' || position
                 WHERE number = ?1",
                params![number],
            )?;
            let audit = tx.execute(
                "UPDATE audit SET detail = REPLACE(detail, ?1, ?2), object = REPLACE(object, ?1, ?2)
                 WHERE instr(detail, ?1) > 0 OR instr(object, ?1) > 0",
                params![number, ERASED],
            )?;
            tx.commit()?;
            Ok(ErasureCounts {
                interactions,
                inbound_parts,
                outbox,
                participants,
                auto_replies,
                audit,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::types::Value;

    use super::*;
    use crate::store::NewOutbound;
    use crate::store::fixtures::{self, A, B, NOW, PROXY, number};

    /// A store with one session A–B and one message each way.
    async fn store_with_traffic(dir: &tempfile::TempDir) -> (Store, String) {
        let (store, session_id) = fixtures::store_with_session(dir, None).await;
        for (position, to) in [(0, B), (1, A)] {
            let new = NewOutbound {
                session_id: Some(session_id.clone()),
                proxy_iccid: PROXY.into(),
                from_position: Some(position),
                to: number(to),
                body: format!("secret {position}"),
            };
            store.queue_sms(new, NOW).await.unwrap();
        }
        (store, session_id)
    }

    /// Every value of every table, as text.
    fn all_values(dir: &tempfile::TempDir) -> Vec<String> {
        let conn = Connection::open(dir.path().join("simmask.db")).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut values = Vec::new();
        for table in tables {
            let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for column in 0..columns {
                    if let Value::Text(text) = row.get::<_, Value>(column).unwrap() {
                        values.push(text);
                    }
                }
            }
        }
        values
    }

    #[tokio::test]
    async fn retention_erases_bodies_but_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        let erased = store
            .erase_bodies_older_than(NOW + time::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(erased, 2);
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 2);
        assert!(interactions.iter().all(|i| i.body.is_none()));
    }

    #[tokio::test]
    async fn retention_keeps_recent_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        assert_eq!(store.erase_bodies_older_than(NOW).await.unwrap(), 0);
        let interactions = store.interactions(session).await.unwrap();
        assert!(interactions.iter().all(|i| i.body.is_some()));
    }

    #[tokio::test]
    async fn erasing_a_participant_leaves_no_trace_of_the_number() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        assert!(all_values(&dir).iter().any(|v| v.contains(A)));
        let counts = store.erase_participant(number(A)).await.unwrap();
        assert_eq!(counts.participants, 1);
        assert_eq!(counts.interactions, 2);
        assert_eq!(counts.outbox, 2);
        let values = all_values(&dir);
        assert!(!values.iter().any(|v| v.contains(A)), "{values:?}");
        assert!(!values.iter().any(|v| v.contains("secret")), "{values:?}");
        // The other party and the records themselves remain.
        assert!(values.iter().any(|v| v == B));
        assert_eq!(store.interactions(session).await.unwrap().len(), 2);
    }
}
