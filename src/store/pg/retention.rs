//! Retention and data-protection erasure on PostgreSQL: the same rows go
//! as on SQLite, fleet-wide (one database holds every appliance's records,
//! so an erasure on any appliance erases the person everywhere).

use time::OffsetDateTime;

use super::super::retention::{CANCELLED, ERASED, ErasureCounts};
use super::super::sessions::ERASED_PARTICIPANT;
use super::super::{StoreError, to_ms};
use super::sessions::{audit, end_session};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;

/// Sessions ended before `$1`.
const ENDED: &str = "SELECT id FROM sessions WHERE status <> 'open' AND ended_ms < $1";

/// Rows a statement touched, as the store's calls report them.
pub(super) fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

impl PgStore {
    /// Forgets the numbers of sessions ended before `cutoff` and of
    /// out-of-session traffic before it; the records stay. Returns how many
    /// participants were forgotten.
    pub(in crate::store) async fn forget_numbers_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let cutoff = to_ms(cutoff);
        in_transaction!(self, |tx| {
            async {
                tx.execute(
                    &format!(
                        "UPDATE interactions SET from_number = NULL, to_number = NULL \
                         WHERE (from_number IS NOT NULL OR to_number IS NOT NULL) \
                           AND (session_id IN ({ENDED}) \
                                OR (session_id IS NULL AND created_ms < $1))"
                    ),
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                tx.execute(
                    "UPDATE outbox SET to_number = NULL \
                     WHERE to_number IS NOT NULL AND state IN ('sent', 'failed') \
                       AND created_ms < $1",
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                // A received PDU carries its sender too.
                tx.execute(
                    "UPDATE inbound_parts SET sender = NULL, pdu_hex = NULL \
                     WHERE sender IS NOT NULL AND interaction_id IS NOT NULL \
                       AND received_ms < $1",
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                // This month's recipients not in an open session and sent
                // nothing since the cutoff are forgotten.
                tx.execute(
                    "DELETE FROM sim_recipients \
                     WHERE number NOT IN (SELECT number FROM participants WHERE open) \
                       AND number NOT IN (SELECT to_number FROM interactions \
                                          WHERE to_number IS NOT NULL AND created_ms >= $1)",
                    &[&cutoff],
                )
                .await
                .map_err(pg_error)?;
                // The first participant of a facade session that closed
                // while waiting for its second.
                let waiting = tx
                    .execute(
                        "UPDATE twilio_participants SET identifier = NULL \
                         WHERE identifier IS NOT NULL AND session_sid IN ( \
                             SELECT sid FROM twilio_sessions WHERE session_id IS NULL \
                               AND (closed_ms < $1 OR deleted_ms < $1))",
                        &[&cutoff],
                    )
                    .await
                    .map_err(pg_error)?;
                let forgotten = tx
                    .execute(
                        &format!(
                            "UPDATE participants \
                             SET number = $2::text || session_id || ':' || position \
                             WHERE number NOT LIKE $2::text || '%' AND session_id IN ({ENDED})"
                        ),
                        &[&cutoff, &ERASED_PARTICIPANT],
                    )
                    .await
                    .map_err(pg_error)?;
                Ok(count(forgotten) + count(waiting))
            }
            .await
        })
    }

    /// A data-protection request: every body exchanged with `number` and
    /// every occurrence of the number, in one transaction; its open
    /// sessions (on any appliance) closed at `now`.
    pub(in crate::store) async fn erase_participant(
        &self,
        number: PhoneNumber,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<ErasureCounts, StoreError> {
        let redacted = format!("{number:?}");
        let number = number.e164().to_string();
        in_transaction!(self, |tx| {
            async {
                // The lock allocation takes for this person: no session
                // with them opens on another appliance mid-erasure.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&number],
                )
                .await
                .map_err(pg_error)?;
                let open: Vec<String> = tx
                    .query(
                        "SELECT session_id FROM participants WHERE number = $1 AND open \
                         ORDER BY session_id FOR UPDATE",
                        &[&number],
                    )
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                for id in &open {
                    end_session(&tx, id, CloseReason::Erased, now).await?;
                }
                // First, while the interactions still name the number: what
                // is queued or sent in its sessions, to it, or about it.
                let outbox = tx
                    .execute(
                        "UPDATE outbox \
                         SET body = NULL, to_number = NULL, \
                             state = CASE WHEN state = 'queued' THEN 'failed' ELSE state END, \
                             last_error = CASE WHEN state = 'queued' THEN $2 ELSE last_error END \
                         WHERE to_number = $1 OR interaction_id IN ( \
                             SELECT id FROM interactions \
                             WHERE from_number = $1 OR to_number = $1 OR session_id IN ( \
                                 SELECT session_id FROM participants WHERE number = $1))",
                        &[&number, &CANCELLED],
                    )
                    .await
                    .map_err(pg_error)?;
                let interactions = tx
                    .execute(
                        "UPDATE interactions \
                         SET body = NULL, \
                             from_number = CASE WHEN from_number = $1 THEN NULL ELSE from_number END, \
                             to_number = CASE WHEN to_number = $1 THEN NULL ELSE to_number END, \
                             status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END, \
                             reason = CASE WHEN status = 'queued' THEN $2 ELSE reason END \
                         WHERE from_number = $1 OR to_number = $1 \
                            OR session_id IN (SELECT session_id FROM participants WHERE number = $1)",
                        &[&number, &CANCELLED],
                    )
                    .await
                    .map_err(pg_error)?;
                // The other party's parts in the number's sessions were
                // exchanged with it too: their texts go, the row stays.
                let scrubbed_parts = tx
                    .execute(
                        "UPDATE inbound_parts SET text = NULL, pdu_hex = NULL \
                         WHERE sender IS DISTINCT FROM $1 AND interaction_id IN ( \
                             SELECT id FROM interactions WHERE session_id IN ( \
                                 SELECT session_id FROM participants WHERE number = $1))",
                        &[&number],
                    )
                    .await
                    .map_err(pg_error)?;
                let mut deleted = Vec::new();
                for statement in [
                    "DELETE FROM inbound_parts WHERE sender = $1",
                    "DELETE FROM auto_replies WHERE sender = $1",
                    // The rails' lists: its opt-out, its block, the SIMs
                    // that sent to it this month, its hub (ended above).
                    "DELETE FROM opt_outs WHERE number = $1",
                    "DELETE FROM blocked_numbers WHERE number = $1",
                    "DELETE FROM sim_recipients WHERE number = $1",
                    "DELETE FROM hubs WHERE number = $1",
                ] {
                    deleted.push(count(
                        tx.execute(statement, &[&number]).await.map_err(pg_error)?,
                    ));
                }
                // Unique per row: the open-route index must still hold.
                let participants = tx
                    .execute(
                        "UPDATE participants \
                         SET number = $2::text || session_id || ':' || position \
                         WHERE number = $1",
                        &[&number, &ERASED_PARTICIPANT],
                    )
                    .await
                    .map_err(pg_error)?;
                // A Twilio facade session still waiting for its second
                // participant holds the first one's number: it goes (shown
                // `[erased]`; nobody can join that session any more).
                let waiting = tx
                    .execute(
                        "UPDATE twilio_participants SET identifier = NULL WHERE identifier = $1",
                        &[&number],
                    )
                    .await
                    .map_err(pg_error)?;
                let audited = tx
                    .execute(
                        "UPDATE audit SET detail = REPLACE(detail, $1, $2), \
                                          object = REPLACE(object, $1, $2) \
                         WHERE strpos(detail, $1) > 0 OR strpos(object, $1) > 0",
                        &[&number, &ERASED],
                    )
                    .await
                    .map_err(pg_error)?;
                let counts = ErasureCounts {
                    sessions_closed: open.len(),
                    interactions: count(interactions),
                    inbound_parts: count(scrubbed_parts) + deleted[0],
                    outbox: count(outbox),
                    participants: count(participants) + count(waiting),
                    auto_replies: deleted[1],
                    rails: deleted[2..].iter().sum(),
                    audit: count(audited),
                };
                audit(
                    &tx,
                    self,
                    now,
                    &actor,
                    "participant.erase",
                    &redacted,
                    &format!("{counts:?}"),
                )
                .await?;
                Ok(counts)
            }
            .await
        })
    }
}
