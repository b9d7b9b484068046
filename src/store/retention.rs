//! Retention and data-protection erasure. Bodies go; the metadata (who by
//! position, when, status, part counts) stays for the operator's records.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::sessions::{ERASED_PARTICIPANT, end_session};
use super::{Store, StoreError, to_ms};
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;

/// What an erasure changed, table by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Open sessions of the number, closed: nobody left to relay to.
    pub sessions_closed: usize,
    pub interactions: usize,
    pub inbound_parts: usize,
    pub outbox: usize,
    pub participants: usize,
    pub auto_replies: usize,
    /// Its opt-out, block-list entry, recipient rows and hub.
    pub rails: usize,
    pub audit: usize,
}

/// What replaces an erased number in free text.
pub(super) const ERASED: &str = "[erased]";

/// How long the auto-reply ledger must remember a sender (at most one
/// auto-reply per sender per day).
pub(super) const AUTO_REPLY_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// Why a message queued before an erasure was never sent.
pub(super) const CANCELLED: &str = "erased on request before it was sent";

impl Store {
    /// Erases the message bodies (interaction and outbox bodies, part texts
    /// and PDUs) of everything created before `cutoff`, and forgets the
    /// strangers the auto-reply ledger remembers from a day before it.
    /// Returns how many interactions lost their body.
    pub async fn erase_bodies_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.erase_bodies_older_than(cutoff).await;
        }
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
            // The ledger only answers "replied in the last day?": older
            // rows are a list of strangers' numbers and nothing else.
            tx.execute(
                "DELETE FROM auto_replies WHERE last_ms < ?1",
                params![cutoff - AUTO_REPLY_MEMORY_MS],
            )?;
            tx.commit()?;
            empty_wal(conn)?;
            Ok(erased)
        })
        .await
    }

    /// Data minimisation: forgets who took part in sessions that ended before
    /// `cutoff` and who sent or received out-of-session traffic before it.
    /// The records stay (times, statuses, counts), their numbers go, as in
    /// an erasure. Returns how many participants were forgotten.
    pub async fn forget_numbers_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.forget_numbers_older_than(cutoff).await;
        }
        let cutoff = to_ms(cutoff);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            const ENDED: &str = "SELECT id FROM sessions WHERE status != 'open' AND ended_ms < ?1";
            tx.execute(
                &format!(
                    "UPDATE interactions SET from_number = NULL, to_number = NULL
                     WHERE (from_number IS NOT NULL OR to_number IS NOT NULL)
                       AND (session_id IN ({ENDED})
                            OR (session_id IS NULL AND created_ms < ?1))"
                ),
                params![cutoff],
            )?;
            tx.execute(
                "UPDATE outbox SET to_number = NULL
                 WHERE to_number IS NOT NULL AND state IN ('sent', 'failed') AND created_ms < ?1",
                params![cutoff],
            )?;
            // A received PDU carries its sender too.
            tx.execute(
                "UPDATE inbound_parts SET sender = NULL, pdu_hex = NULL
                 WHERE sender IS NOT NULL AND interaction_id IS NOT NULL AND received_ms < ?1",
                params![cutoff],
            )?;
            // This month's recipients name numbers too: those not in an open
            // session and sent nothing since the cutoff are forgotten (the
            // budget then counts them again if they come back).
            tx.execute(
                "DELETE FROM sim_recipients
                 WHERE number NOT IN (SELECT number FROM participants WHERE open = 1)
                   AND number NOT IN (SELECT to_number FROM interactions
                                      WHERE to_number IS NOT NULL AND created_ms >= ?1)",
                params![cutoff],
            )?;
            let forgotten = tx.execute(
                &format!(
                    "UPDATE participants SET number = ?2 || session_id || ':' || position
                     WHERE number NOT LIKE ?2 || '%' AND session_id IN ({ENDED})"
                ),
                params![cutoff, ERASED_PARTICIPANT],
            )? + tx.execute(
                // The first participant of a facade session that closed
                // while waiting for its second.
                "UPDATE twilio_participants SET identifier = NULL
                 WHERE identifier IS NOT NULL AND session_sid IN (
                     SELECT sid FROM twilio_sessions WHERE session_id IS NULL
                       AND (closed_ms < ?1 OR deleted_ms < ?1))",
                params![cutoff],
            )?;
            tx.commit()?;
            empty_wal(conn)?;
            Ok(forgotten)
        })
        .await
    }

    /// A data-protection request: removes every body exchanged with `number`
    /// and every occurrence of the number itself, in one transaction. Its
    /// open sessions are closed at `now`. The audit trail records that
    /// `actor` erased a number, by its redacted form only.
    pub async fn erase_participant(
        &self,
        number: PhoneNumber,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<ErasureCounts, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.erase_participant(number, actor, now).await;
        }
        self.call(move |conn| {
            let redacted = format!("{number:?}");
            let number = number.e164().to_string();
            let tx = conn.transaction()?;
            let open: Vec<String> = tx
                .prepare("SELECT session_id FROM participants WHERE number = ?1 AND open = 1")?
                .query_map(params![number], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &open {
                end_session(&tx, id, CloseReason::Erased, now)?;
            }
            // First, while the interactions still name the number: what is
            // queued or sent in its sessions, to it, or about it (a forward
            // to the operator quotes the sender's number in the body). What
            // is still queued is not sent any more.
            let outbox = tx.execute(
                "UPDATE outbox
                 SET body = NULL, to_number = NULL,
                     state = CASE WHEN state = 'queued' THEN 'failed' ELSE state END,
                     last_error = CASE WHEN state = 'queued' THEN ?2 ELSE last_error END
                 WHERE to_number = ?1 OR interaction_id IN (
                     SELECT id FROM interactions
                     WHERE from_number = ?1 OR to_number = ?1 OR session_id IN (
                         SELECT session_id FROM participants WHERE number = ?1))",
                params![number, CANCELLED],
            )?;
            // Interactions in the number's sessions, or from/to it directly.
            let interactions = tx.execute(
                "UPDATE interactions
                 SET body = NULL,
                     from_number = CASE WHEN from_number = ?1 THEN NULL ELSE from_number END,
                     to_number = CASE WHEN to_number = ?1 THEN NULL ELSE to_number END,
                     status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END,
                     reason = CASE WHEN status = 'queued' THEN ?2 ELSE reason END
                 WHERE from_number = ?1 OR to_number = ?1
                    OR session_id IN (SELECT session_id FROM participants WHERE number = ?1)",
                params![number, CANCELLED],
            )?;
            // The other party's parts in the number's sessions were
            // exchanged with it too: their texts go, the row stays.
            let scrubbed_parts = tx.execute(
                "UPDATE inbound_parts SET text = NULL, pdu_hex = NULL
                 WHERE sender IS NOT ?1 AND interaction_id IN (
                     SELECT id FROM interactions WHERE session_id IN (
                         SELECT session_id FROM participants WHERE number = ?1))",
                params![number],
            )?;
            let deleted_parts = tx.execute(
                "DELETE FROM inbound_parts WHERE sender = ?1",
                params![number],
            )?;
            let auto_replies = tx.execute(
                "DELETE FROM auto_replies WHERE sender = ?1",
                params![number],
            )?;
            // The rails' lists name the number too: its opt-out, its block,
            // the SIMs that sent to it this month, its hub.
            let rails = tx.execute("DELETE FROM opt_outs WHERE number = ?1", params![number])?
                + tx.execute(
                    "DELETE FROM blocked_numbers WHERE number = ?1",
                    params![number],
                )?
                + tx.execute(
                    "DELETE FROM sim_recipients WHERE number = ?1",
                    params![number],
                )?
                // A hub names its number too (its sessions ended above).
                + tx.execute("DELETE FROM hubs WHERE number = ?1", params![number])?;
            // Unique per row: the open-route index must still hold.
            let participants = tx.execute(
                "UPDATE participants
                 SET number = ?2 || session_id || ':' || position
                 WHERE number = ?1",
                params![number, ERASED_PARTICIPANT],
            )? + tx.execute(
                // A Twilio facade session still waiting for its second
                // participant holds the first one's number: it goes (shown
                // `[erased]`; nobody can join that session any more).
                "UPDATE twilio_participants SET identifier = NULL WHERE identifier = ?1",
                params![number],
            )?;
            let audit = tx.execute(
                "UPDATE audit SET detail = REPLACE(detail, ?1, ?2), object = REPLACE(object, ?1, ?2)
                 WHERE instr(detail, ?1) > 0 OR instr(object, ?1) > 0",
                params![number, ERASED],
            )?;
            let counts = ErasureCounts {
                sessions_closed: open.len(),
                interactions,
                inbound_parts: scrubbed_parts + deleted_parts,
                outbox,
                participants,
                auto_replies,
                rails,
                audit,
            };
            super::sessions::audit(
                &tx,
                now,
                &actor,
                "participant.erase",
                &redacted,
                &format!("{counts:?}"),
            )?;
            tx.commit()?;
            empty_wal(conn)?;
            Ok(counts)
        })
        .await
    }
}

/// Copies the erased pages into the database file and empties the
/// write-ahead log, whose older frames still hold those pages as they were
/// before the erasure. (`secure_delete` zeroes the freed space itself.)
fn empty_wal(conn: &Connection) -> Result<(), StoreError> {
    // Waits (busy timeout) for readers of older snapshots to finish.
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(StoreError::WalBusy);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::types::Value;

    use super::*;
    use crate::store::fixtures::{self, A, B, NOW, PROXY, Received, number, receive};
    use crate::store::{NewOutbound, SessionFilter};

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

    /// A Twilio facade session waiting for its second participant keeps
    /// the first one's number on its own row: erased too.
    #[tokio::test]
    async fn erasing_a_number_forgets_it_as_a_waiting_facade_participant() {
        use crate::store::{TwilioParticipantRow, TwilioService, TwilioSessionRow};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_traffic(&dir).await;
        let ms = crate::store::to_ms(NOW);
        store
            .twilio_create_service(TwilioService {
                sid: "KS1".into(),
                unique_name: None,
                default_ttl: None,
                callback_url: None,
                intercept_callback_url: None,
                out_of_session_callback_url: None,
                number_selection_behavior: "prefer-sticky".into(),
                geo_match_level: "country".into(),
                created_ms: ms,
                updated_ms: ms,
            })
            .await
            .unwrap();
        let row = TwilioSessionRow {
            sid: "KC1".into(),
            service_sid: "KS1".into(),
            session_id: None,
            unique_name: None,
            ttl: None,
            expiry_ms: None,
            mode: "both".into(),
            closed_ms: None,
            deleted_ms: None,
            created_ms: ms,
            updated_ms: ms,
        };
        let waiting = TwilioParticipantRow {
            sid: "KP1".into(),
            session_sid: "KC1".into(),
            position: 0,
            identifier: Some(A.into()),
            friendly_name: None,
            proxy_iccid: None,
            created_ms: ms,
            deleted_ms: None,
        };
        store
            .twilio_create_session(row, vec![waiting], None, NOW)
            .await
            .unwrap();
        let counts = store
            .erase_participant(number(A), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(counts.participants, 2, "the session's and the waiting one");
        let values = all_values(&dir);
        assert!(!values.iter().any(|v| v.contains(A)), "{values:?}");
        let kept = store.twilio_participants("KC1".into()).await.unwrap();
        assert_eq!(kept.len(), 1, "shown as erased");
        assert_eq!(kept[0].identifier, None);
        // Data minimisation forgets a closed waiting session's number too.
        let row = TwilioSessionRow {
            sid: "KC2".into(),
            closed_ms: Some(ms),
            ..row_template(ms)
        };
        let waiting = TwilioParticipantRow {
            sid: "KP2".into(),
            session_sid: "KC2".into(),
            identifier: Some(B.into()),
            ..kept[0].clone()
        };
        store
            .twilio_create_session(row, vec![waiting], None, NOW)
            .await
            .unwrap();
        store
            .forget_numbers_older_than(NOW + time::Duration::days(1))
            .await
            .unwrap();
        let kept = store.twilio_participants("KC2".into()).await.unwrap();
        assert_eq!(kept[0].identifier, None);
    }

    fn row_template(ms: i64) -> crate::store::TwilioSessionRow {
        crate::store::TwilioSessionRow {
            sid: String::new(),
            service_sid: "KS1".into(),
            session_id: None,
            unique_name: None,
            ttl: None,
            expiry_ms: None,
            mode: "both".into(),
            closed_ms: None,
            deleted_ms: None,
            created_ms: ms,
            updated_ms: ms,
        }
    }

    #[tokio::test]
    async fn erasing_a_participant_leaves_no_trace_of_the_number() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        assert!(all_values(&dir).iter().any(|v| v.contains(A)));
        let counts = store
            .erase_participant(number(A), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(counts.participants, 1);
        assert_eq!(counts.interactions, 2);
        assert_eq!(counts.outbox, 2);
        let values = all_values(&dir);
        assert!(!values.iter().any(|v| v.contains(A)), "{values:?}");
        assert!(!values.iter().any(|v| v.contains("secret")), "{values:?}");
        // The other party and the records themselves remain; the audit
        // trail says a number was erased, not which.
        assert!(values.iter().any(|v| v == B));
        assert!(values.iter().any(|v| v == "participant.erase"));
        assert!(values.iter().any(|v| v == "+*********001"), "{values:?}");
        assert_eq!(store.interactions(session.clone()).await.unwrap().len(), 2);
        // The open session is closed (nobody to relay to) and reads back
        // with the erased participant as such, alone or in a list.
        assert_eq!(counts.sessions_closed, 1);
        // The two queued messages will not be sent any more.
        assert_eq!(store.claim_next_due(PROXY.into(), NOW).await.unwrap(), None);
        let interactions = store.interactions(session.clone()).await.unwrap();
        assert!(
            interactions.iter().all(|i| i.status == "failed"),
            "{interactions:?}"
        );
        let record = store.session(session).await.unwrap();
        assert_eq!(
            record.status,
            crate::masking::lifecycle::SessionStatus::Closed
        );
        assert_eq!(record.close_reason, Some(CloseReason::Erased));
        assert_eq!(record.participants, [None, Some(number(B))]);
        assert_eq!(record.rules_view(), None);
        let filter = SessionFilter {
            status: None,
            label: None,
            participant: None,
            limit: 10,
            offset: 0,
        };
        assert_eq!(store.sessions(filter).await.unwrap(), [record]);
    }

    /// Someone outside every session.
    const STRANGER: &str = "+447911000077";

    /// `number`'s digits as TP-address semi-octets in hex, the way a stored
    /// PDU carries them (3GPP TS 23.040 §9.1.2.3: swapped nibbles, `F` pad).
    fn semi_octets(number: &str) -> String {
        let mut digits: Vec<char> = number.trim_start_matches('+').chars().collect();
        if digits.len() % 2 == 1 {
            digits.push('F');
        }
        digits
            .chunks(2)
            .flat_map(|pair| [pair[1], pair[0]])
            .collect()
    }

    /// Whether `needle` occurs in any of the database's files (the main
    /// file, its WAL and shared memory): what a disk image would reveal.
    fn on_disk(dir: &tempfile::TempDir, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if bytes
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
        found
    }

    #[tokio::test]
    async fn an_erased_number_and_its_texts_are_gone_from_the_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        // A writes to B and B answers; the received parts keep their PDUs.
        let pdu = |from: &str| format!("0791447000000000040C91{}0000", semi_octets(from));
        for (from, position, to, text) in [
            (A, 0, B, "confidential from A"),
            (B, 1, A, "confidential from B"),
        ] {
            let relayed = Received::Relayed {
                session: session.clone(),
                from_position: position,
                to,
            };
            receive(&store, from, pdu(from), text, relayed).await;
        }
        // A stranger's message is forwarded to the operator, prefixed with
        // the stranger's number.
        let forwarded = Received::Forwarded {
            to: "+447911000099",
        };
        receive(
            &store,
            STRANGER,
            pdu(STRANGER),
            "confidential too",
            forwarded,
        )
        .await;
        let digits = A.trim_start_matches('+');
        let stranger = STRANGER.trim_start_matches('+');
        for needle in [digits, &semi_octets(A), stranger, "confidential", "secret"] {
            assert!(
                !on_disk(&dir, needle).is_empty(),
                "{needle} is stored first"
            );
        }

        for erased in [A, STRANGER] {
            store
                .erase_participant(number(erased), "test".into(), NOW)
                .await
                .unwrap();
        }

        // Not only unreachable through SQL: overwritten in the files, so no
        // free page, stale WAL frame or disk image holds them any more.
        for needle in [digits, &semi_octets(A), stranger, "confidential", "secret"] {
            assert_eq!(on_disk(&dir, needle), Vec::<String>::new(), "{needle}");
        }
        // B's number stays, and so do the records.
        assert!(!on_disk(&dir, B.trim_start_matches('+')).is_empty());
        assert_eq!(store.interactions(session).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn retention_forgets_auto_replied_strangers_after_a_day_more() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _session) = store_with_traffic(&dir).await;
        let replied = Received::AutoReplied {
            reply: "No conversation here.",
        };
        receive(&store, STRANGER, "00".into(), "who is this?", replied).await;
        let ledger = |dir: &tempfile::TempDir| -> i64 {
            Connection::open(dir.path().join("simmask.db"))
                .unwrap()
                .query_row("SELECT COUNT(*) FROM auto_replies", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(ledger(&dir), 1);
        // Within the day after the cutoff the ledger still counts.
        store
            .erase_bodies_older_than(NOW + time::Duration::hours(23))
            .await
            .unwrap();
        assert_eq!(ledger(&dir), 1);
        store
            .erase_bodies_older_than(NOW + time::Duration::hours(25))
            .await
            .unwrap();
        assert_eq!(ledger(&dir), 0);
    }

    #[tokio::test]
    async fn numbers_of_sessions_ended_long_ago_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_traffic(&dir).await;
        let relayed = Received::Relayed {
            session: session.clone(),
            from_position: 0,
            to: B,
        };
        let pdu = format!("0791447000000000040C91{}0000", semi_octets(A));
        receive(&store, A, pdu, "hello", relayed).await;
        while let Some(item) = store.claim_next_due(PROXY.into(), NOW).await.unwrap() {
            store.mark_sent(item.id, vec![1], NOW).await.unwrap();
        }
        let digits = |number: &str| number.trim_start_matches('+').to_string();
        // Still open: nothing is forgotten, however late the cutoff.
        let later = NOW + time::Duration::days(30);
        assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 0);
        assert!(!on_disk(&dir, &digits(A)).is_empty());

        store
            .close_session(session.clone(), "test".into(), NOW)
            .await
            .unwrap();
        // Ended after the cutoff: kept.
        assert_eq!(store.forget_numbers_older_than(NOW).await.unwrap(), 0);
        assert!(!on_disk(&dir, &digits(B)).is_empty());
        // Ended before it: both numbers go, the records stay.
        assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 2);
        for number in [A, B] {
            assert_eq!(on_disk(&dir, &digits(number)), Vec::<String>::new());
        }
        assert_eq!(on_disk(&dir, &semi_octets(A)), Vec::<String>::new());
        let record = store.session(session.clone()).await.unwrap();
        assert_eq!(record.participants, [None, None]);
        assert_eq!(store.interactions(session).await.unwrap().len(), 3);
        assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bodies_past_retention_are_gone_from_the_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _session) = store_with_traffic(&dir).await;
        // Queued bodies are kept until sent: send both first.
        while let Some(item) = store.claim_next_due(PROXY.into(), NOW).await.unwrap() {
            store.mark_sent(item.id, vec![1], NOW).await.unwrap();
        }
        assert!(!on_disk(&dir, "secret").is_empty());
        store
            .erase_bodies_older_than(NOW + time::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(on_disk(&dir, "secret"), Vec::<String>::new());
    }
}
