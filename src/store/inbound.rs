//! The inbound relay's rows: received parts kept and deduplicated, the
//! parts of a concatenated message found again, and what the relay decided
//! written down, all inside one transaction that the relay (`crate::sms`)
//! drives through [`InboundTx`]. The decisions are the relay's; this file
//! only reads and writes rows, so a second backend implements the same
//! calls without knowing the rules.

use futures::future::Either;
use rusqlite::{OptionalExtension, Savepoint, params};
use time::OffsetDateTime;

use super::pg::PgInbound;
use super::relay::{NewOutbound, OutboxItem, claim, insert_outbound};
use super::sessions::{SessionRecord, end_session, session_by_id};
use super::{Store, StoreError, from_ms, to_ms};
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;
use crate::pdu::Concat;

/// One received part as it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPart {
    pub proxy_iccid: String,
    pub sender: PhoneNumber,
    /// SIM storage and index; `None` for direct `+CMT` delivery.
    pub location: Option<(String, u32)>,
    /// Upper-case hex: the same PDU read twice is recognised.
    pub pdu_hex: String,
    /// Only for a part the relay groups with others.
    pub concat: Option<Concat>,
    pub text: String,
}

/// A part held for a concatenated message not yet relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPart {
    pub id: i64,
    pub sequence: u8,
    pub text: String,
    /// The PDU as received (for its SMSC timestamp); `None` once erased.
    pub pdu_hex: Option<String>,
}

/// A concatenated message whose parts wait past a cutoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingMessage {
    pub proxy_iccid: String,
    pub sender: PhoneNumber,
    pub reference: u16,
    pub total: u8,
}

/// One transaction on the inbound rows, driven by the relay, on either
/// backend: the relay's rules are one copy whichever database holds the
/// rows.
pub struct InboundTx<'c> {
    pub(super) side: Side<'c>,
    /// The last message queued in it: (interaction, outbox row).
    last_queued: Option<(i64, i64)>,
}

/// The backend an [`InboundTx`] writes to.
pub(super) enum Side<'c> {
    Sqlite(Savepoint<'c>),
    Pg(PgInbound<'c>),
}

/// The SQLite transaction of an [`InboundTx`]; on PostgreSQL, returns
/// what the given call of [`PgInbound`] answers.
macro_rules! sqlite_or {
    ($self:ident, $pg:ident => $on_pg:expr) => {
        match &$self.side {
            $crate::store::inbound::Side::Sqlite(tx) => tx,
            $crate::store::inbound::Side::Pg($pg) => return $on_pg,
        }
    };
}
pub(super) use sqlite_or;

impl<'c> InboundTx<'c> {
    fn on_sqlite(tx: Savepoint<'c>) -> Self {
        InboundTx {
            side: Side::Sqlite(tx),
            last_queued: None,
        }
    }

    /// A transaction on PostgreSQL (`store::pg` runs it).
    pub(super) fn on_pg(pg: PgInbound<'c>) -> Self {
        InboundTx {
            side: Side::Pg(pg),
            last_queued: None,
        }
    }

    /// The PostgreSQL transaction, to commit.
    pub(super) fn into_pg(self) -> Option<PgInbound<'c>> {
        match self.side {
            Side::Pg(pg) => Some(pg),
            Side::Sqlite(_) => None,
        }
    }

    /// The SQLite transaction, to commit.
    fn into_sqlite(self) -> Option<Savepoint<'c>> {
        match self.side {
            Side::Sqlite(tx) => Some(tx),
            Side::Pg(_) => None,
        }
    }
}

impl Store {
    /// Runs `f` in one transaction that is on disk (fsynced) before the
    /// answer comes: what `f` stored may then be deleted from the SIM.
    /// Queued at the call, so transactions started one after another run in
    /// that order; transactions queued together share one fsync.
    pub fn inbound_durable<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, StoreError>> + use<R, F>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut InboundTx<'c>) -> Result<R, StoreError> + Send + 'static,
    {
        self.inbound_durable_then(f, |_| {})
    }

    /// [`Store::inbound_durable`], with `on_commit` run on the writer
    /// thread as soon as the transaction has committed, before it is made
    /// durable (on SQLite, before the group's fsync; PostgreSQL's commit is
    /// durable): for the relayed send, which a power cut may repeat but
    /// must not delay. The answer still waits for durability.
    pub fn inbound_durable_then<R, F, D>(
        &self,
        f: F,
        on_commit: D,
    ) -> impl Future<Output = Result<R, StoreError>> + use<R, F, D>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut InboundTx<'c>) -> Result<R, StoreError> + Send + 'static,
        D: FnOnce(&mut Result<R, StoreError>) + Send + 'static,
    {
        // PostgreSQL acknowledges a commit once it is durable (its
        // default `synchronous_commit`).
        if let Some(pg) = &self.pg {
            return Either::Left(pg.inbound(f, on_commit));
        }
        Either::Right(self.call_durable(
            move |conn| {
                let mut inbound = InboundTx::on_sqlite(conn.savepoint()?);
                let result = f(&mut inbound)?;
                if let Some(tx) = inbound.into_sqlite() {
                    tx.commit()?;
                }
                Ok(result)
            },
            on_commit,
        ))
    }

    /// Like [`Store::inbound_durable`] for work that deletes nothing from a
    /// SIM afterwards (the reassembly sweep): committed without waiting for
    /// its own fsync.
    pub async fn inbound<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut InboundTx<'c>) -> Result<R, StoreError> + Send + 'static,
    {
        if let Some(pg) = &self.pg {
            return pg.inbound(f, |_| {}).await;
        }
        self.call(move |conn| {
            let mut inbound = InboundTx::on_sqlite(conn.savepoint()?);
            let result = f(&mut inbound)?;
            if let Some(tx) = inbound.into_sqlite() {
                tx.commit()?;
            }
            Ok(result)
        })
        .await
    }
}

impl InboundTx<'_> {
    /// Keeps `part`; `None` when the same PDU was already kept for this SIM
    /// (read twice, or redelivered).
    pub fn keep_part(
        &self,
        part: &ReceivedPart,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.keep_part(part, now));
        let (storage, index) = part.location.clone().unzip();
        let concat = part.concat;
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO inbound_parts (proxy_iccid, sender, storage, storage_index,
                 pdu_hex, concat_ref, concat_total, concat_seq, text, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                part.proxy_iccid,
                part.sender.e164(),
                storage,
                index,
                part.pdu_hex,
                concat.map(|c| c.reference),
                concat.map(|c| c.total),
                concat.map(|c| c.sequence),
                part.text,
                to_ms(now)
            ])?;
        Ok((inserted > 0).then(|| tx.last_insert_rowid()))
    }

    /// The PDUs of the received parts `part_ids` (those not erased).
    pub fn part_pdus(&self, part_ids: &[i64]) -> Result<Vec<String>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.part_pdus(part_ids));
        let mut statement = tx.prepare_cached(
            "SELECT pdu_hex FROM inbound_parts WHERE id = ?1 AND pdu_hex IS NOT NULL",
        )?;
        let mut pdus = Vec::with_capacity(part_ids.len());
        for id in part_ids {
            if let Some(pdu) = statement
                .query_row(params![id], |row| row.get(0))
                .optional()?
            {
                pdus.push(pdu);
            }
        }
        Ok(pdus)
    }

    /// The parts held for one concatenated message, in sequence order.
    pub fn held_parts(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        reference: u16,
        total: u8,
    ) -> Result<Vec<HeldPart>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.held_parts(proxy_iccid, sender, reference, total));
        let mut statement = tx.prepare_cached(
            "SELECT id, concat_seq, COALESCE(text, ''), pdu_hex FROM inbound_parts
             WHERE proxy_iccid = ?1 AND sender = ?2 AND concat_ref = ?3 AND concat_total = ?4
               AND interaction_id IS NULL
             ORDER BY concat_seq, id",
        )?;
        let rows = statement.query_map(
            params![proxy_iccid, sender.e164(), reference, total],
            |row| {
                Ok(HeldPart {
                    id: row.get(0)?,
                    sequence: row.get(1)?,
                    text: row.get(2)?,
                    pdu_hex: row.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Concatenated messages still incomplete whose first part arrived
    /// before `cutoff`.
    pub fn waiting_since(&self, cutoff: OffsetDateTime) -> Result<Vec<WaitingMessage>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.waiting_since(cutoff));
        let rows: Vec<(String, String, u16, u8)> = tx
            .prepare(
                "SELECT proxy_iccid, sender, concat_ref, concat_total FROM inbound_parts
                 WHERE interaction_id IS NULL AND concat_ref IS NOT NULL
                 GROUP BY proxy_iccid, sender, concat_ref, concat_total
                 HAVING MIN(received_ms) < ?1",
            )?
            .query_map(params![to_ms(cutoff)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(proxy_iccid, sender, reference, total)| {
                let sender = PhoneNumber::from_e164(&sender)
                    .map_err(|_| StoreError::Corrupt(format!("stored sender {sender:?}")))?;
                Ok(WaitingMessage {
                    proxy_iccid,
                    sender,
                    reference,
                    total,
                })
            })
            .collect()
    }

    /// The open session of `sender` on the proxy, if any (the masking rule
    /// allows at most one; a hub's sessions are not among them).
    pub fn open_session_of(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.open_session_of(proxy_iccid, sender));
        tx.prepare_cached(
            "SELECT session_id FROM participants
                 WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1 AND hub_code IS NULL",
        )?
        .query_row(params![proxy_iccid, sender.e164()], |row| {
            row.get::<_, String>(0)
        })
        .optional()?
        .map(|id| session_by_id(tx, &id))
        .transpose()
    }

    /// When `sender` last got the proxy's auto-reply.
    pub fn last_auto_reply(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.last_auto_reply(proxy_iccid, sender));
        tx.prepare_cached(
            "SELECT last_ms FROM auto_replies WHERE proxy_iccid = ?1 AND sender = ?2",
        )?
        .query_row(params![proxy_iccid, sender.e164()], |row| {
            row.get::<_, i64>(0)
        })
        .optional()?
        .map(from_ms)
        .transpose()
    }

    /// Notes that `sender` got the proxy's auto-reply now.
    pub fn note_auto_reply(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.note_auto_reply(proxy_iccid, sender, now));
        tx.prepare_cached(
            "INSERT INTO auto_replies (proxy_iccid, sender, last_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (proxy_iccid, sender) DO UPDATE SET last_ms = excluded.last_ms",
        )?
        .execute(params![proxy_iccid, sender.e164(), to_ms(now)])?;
        Ok(())
    }

    /// Ends a session, for `reason`.
    pub fn end_session(
        &self,
        id: &str,
        reason: CloseReason,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.end_session(id, reason, now));
        end_session(tx, id, reason, now)
    }

    /// Records traffic on a session (its idle timer restarts).
    pub fn touch_session(&self, id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.touch_session(id, now));
        tx.prepare_cached("UPDATE sessions SET last_activity_ms = ?2 WHERE id = ?1")?
            .execute(params![id, to_ms(now)])?;
        Ok(())
    }

    /// Queues an SMS for the proxy's outbox; returns its interaction.
    pub fn queue_sms(&mut self, new: &NewOutbound, now: OffsetDateTime) -> Result<i64, StoreError> {
        let (interaction, outbox) = match &self.side {
            Side::Pg(pg) => pg.queue_sms(new, now)?,
            Side::Sqlite(tx) => {
                let outbox = insert_outbound(tx, new, to_ms(now))?;
                let interaction = tx
                    .prepare_cached("SELECT interaction_id FROM outbox WHERE id = ?1")?
                    .query_row(params![outbox], |row| row.get(0))?;
                (interaction, outbox)
            }
        };
        self.last_queued = Some((interaction, outbox));
        Ok(interaction)
    }

    /// The outbox row of `interaction`, queued in this transaction, if
    /// nothing of its SIM is due before it: it may be claimed now.
    pub fn claimable(
        &self,
        interaction: i64,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        // The message queued in this transaction; outbox rows are not
        // indexed by interaction.
        let Some(outbox) = self
            .last_queued
            .and_then(|(queued, outbox)| (queued == interaction).then_some(outbox))
        else {
            return Ok(None);
        };
        let tx = sqlite_or!(self, pg => pg.claimable(outbox, now));
        let row: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT id, proxy_iccid FROM outbox WHERE id = ?1 AND state = 'queued'",
            )?
            .query_row(params![outbox], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((id, proxy_iccid)) = row else {
            return Ok(None);
        };
        let earlier: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE proxy_iccid = ?1 AND state = 'queued'
                                AND next_attempt_ms <= ?2 AND id < ?3)",
            )?
            .query_row(params![proxy_iccid, to_ms(now), id], |row| row.get(0))?;
        Ok((!earlier).then_some(id))
    }

    /// Claims the queued outbox row `outbox_id` for sending, as
    /// [`Store::claim_next_due`] would.
    pub fn claim(
        &self,
        outbox_id: i64,
        now: OffsetDateTime,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.claim(outbox_id, now));
        claim(tx, outbox_id, to_ms(now))
    }

    /// The session an interaction belongs to, if any.
    pub fn interaction_session(&self, interaction: i64) -> Result<Option<String>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.interaction_session(interaction));
        Ok(tx
            .prepare_cached("SELECT session_id FROM interactions WHERE id = ?1")?
            .query_row(params![interaction], |row| row.get(0))
            .optional()?
            .flatten())
    }

    /// Records a received SMS that is not sent on, with why; returns its
    /// interaction.
    pub fn record_dropped(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        reason: &str,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let tx = sqlite_or!(self, pg => pg.record_dropped(proxy_iccid, sender, reason, body, now));
        tx.prepare_cached(
            "INSERT INTO interactions (proxy_iccid, kind, from_number, status, reason, body,
                                       created_ms, updated_ms)
             VALUES (?1, 'sms', ?2, 'dropped', ?3, ?4, ?5, ?5)",
        )?
        .execute(params![
            proxy_iccid,
            sender.e164(),
            reason,
            body,
            to_ms(now)
        ])?;
        Ok(tx.last_insert_rowid())
    }

    /// Notes who an out-of-session interaction (the reply or forward sent
    /// because of them) came from.
    pub fn set_interaction_sender(
        &self,
        interaction: i64,
        sender: &PhoneNumber,
    ) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.set_interaction_sender(interaction, sender));
        tx.prepare_cached("UPDATE interactions SET from_number = ?2 WHERE id = ?1")?
            .execute(params![interaction, sender.e164()])?;
        Ok(())
    }

    /// Ties the received parts to the interaction they made, with their
    /// count, flagged when parts were missing, and the time the sender's
    /// SMSC took the message (`sent`, its earliest part's; `None` leaves the
    /// column as it is).
    pub fn link_parts(
        &self,
        interaction: i64,
        part_ids: &[i64],
        parts: u32,
        incomplete: bool,
        sent: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let tx =
            sqlite_or!(self, pg => pg.link_parts(interaction, part_ids, parts, incomplete, sent));
        tx.prepare_cached(
            "UPDATE interactions SET parts = ?2, incomplete = ?3 OR incomplete,
                 sent_ms = COALESCE(?4, sent_ms)
             WHERE id = ?1",
        )?
        .execute(params![interaction, parts, incomplete, sent.map(to_ms)])?;
        let mut link =
            tx.prepare_cached("UPDATE inbound_parts SET interaction_id = ?2 WHERE id = ?1")?;
        for id in part_ids {
            link.execute(params![id, interaction])?;
        }
        Ok(())
    }
}
