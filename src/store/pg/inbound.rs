//! The inbound relay's transaction on PostgreSQL: the same calls as the
//! SQLite side of [`InboundTx`], over a tokio-postgres transaction.
//!
//! The relay's decisions (`crate::sms::accept`, `hub`, `guard`) are one
//! synchronous copy that runs inside the transaction. On PostgreSQL the
//! transaction runs on a blocking thread of the runtime, each call waiting
//! for its statement with [`Handle::block_on`]; the jobs queue on one worker
//! per appliance, in the order they were called (the parts of one message
//! meet in order, as on SQLite's writer thread). The answer comes after the
//! commit, which PostgreSQL makes durable before it acknowledges it (its
//! default `synchronous_commit`): only then may the SIM forget the message.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Object, Pool};
use time::OffsetDateTime;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::super::inbound::{HeldPart, InboundTx, ReceivedPart, WaitingMessage};
use super::super::relay::{NewOutbound, OutboxItem};
use super::super::sessions::SessionRecord;
use super::super::{StoreError, from_ms, to_ms};
use super::relay;
use super::sessions::{end_session, month_of, session_by_id};
use super::{PgStore, pg_error, pool_error};
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;

/// How long one statement may go unanswered before the transaction is
/// given up as an outage (the message stays on its SIM).
pub(super) const STATEMENT_WAIT: Duration = Duration::from_secs(30);

/// How long the worker answers at once after it could not connect.
const REFUSED_FOR: Duration = Duration::from_secs(1);

/// A job for the inbound worker: given a connection (or why there is
/// none), it runs its transaction and answers its caller itself.
pub(in crate::store) type InboundJob = Box<dyn FnOnce(Result<&mut Object, StoreError>) + Send>;

/// Starts the appliance's inbound worker: one transaction at a time, in
/// the order queued, each on a blocking thread. It stops when the store's
/// last handle (and with it the sender) goes.
pub(super) fn spawn_worker(pool: Pool) -> mpsc::UnboundedSender<InboundJob> {
    let (send, mut jobs) = mpsc::unbounded_channel::<InboundJob>();
    tokio::spawn(async move {
        // When the last connection failed, and why: the jobs queued behind
        // it are answered at once for a moment instead of each waiting for
        // its own connect timeout (their messages stay on the SIM and are
        // read again).
        let mut refused: Option<(std::time::Instant, String)> = None;
        while let Some(job) = jobs.recv().await {
            let client = match &refused {
                Some((at, why)) if at.elapsed() < REFUSED_FOR => {
                    Err(StoreError::Unavailable(why.clone()))
                }
                _ => pool.get().await.map_err(pool_error),
            };
            refused = match &client {
                Err(StoreError::Unavailable(why)) => Some(match refused.take() {
                    Some((at, _)) if at.elapsed() < REFUSED_FOR => (at, why.clone()),
                    _ => (std::time::Instant::now(), why.clone()),
                }),
                _ => None,
            };
            // A job that panicked answered nothing: its caller sees the
            // worker gone for that job, the next ones run.
            let _ = tokio::task::spawn_blocking(move || match client {
                Ok(mut client) => job(Ok(&mut client)),
                Err(error) => job(Err(error)),
            })
            .await;
        }
    });
    send
}

impl PgStore {
    /// Runs `f` in one transaction on the inbound worker; `on_durable` runs
    /// once it is committed, before the answer is sent. Queued at the call.
    pub(in crate::store) fn inbound<R, F, D>(
        &self,
        f: F,
        on_durable: D,
    ) -> impl Future<Output = Result<R, StoreError>> + use<R, F, D>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&mut InboundTx<'c>) -> Result<R, StoreError> + Send + 'static,
        D: FnOnce(&mut Result<R, StoreError>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let store = self.clone();
        let job: InboundJob = Box::new(move |client| {
            let mut result = client.and_then(|client| run(&store, client, f));
            if let Err(error) = result {
                result = Err(store.noted(error));
            }
            on_durable(&mut result);
            // The caller may have gone away (cancelled); nothing to do then.
            let _ = reply.send(result);
        });
        let queued = self.inner.inbound.send(job).is_ok();
        async move {
            if !queued {
                return Err(StoreError::WriterGone);
            }
            answer.await.map_err(|_| StoreError::WriterGone)?
        }
    }
}

/// `f` in a transaction on `client`, committed.
fn run<R>(
    store: &PgStore,
    client: &mut Object,
    f: impl for<'c> FnOnce(&mut InboundTx<'c>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let handle = Handle::current();
    let tx = wait(&handle, client.transaction())?;
    let mut inbound = InboundTx::on_pg(PgInbound {
        tx,
        handle,
        store: store.clone(),
        locked: std::sync::Mutex::new(std::collections::HashSet::new()),
    });
    let result = f(&mut inbound)?;
    if let Some(pg) = inbound.into_pg() {
        pg.commit()?;
    }
    Ok(result)
}

/// Waits on this blocking thread for a statement, within [`STATEMENT_WAIT`].
pub(super) fn wait<T>(
    handle: &Handle,
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match handle.block_on(async { tokio::time::timeout(STATEMENT_WAIT, future).await }) {
        Ok(result) => result.map_err(pg_error),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from the database within {} s",
            STATEMENT_WAIT.as_secs()
        ))),
    }
}

pub(super) fn number(text: &str) -> Result<PhoneNumber, StoreError> {
    PhoneNumber::from_e164(text).map_err(|_| StoreError::Corrupt(format!("stored number {text:?}")))
}

pub(super) fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("stored {what} {value}")))
}

/// The PostgreSQL side of [`InboundTx`].
pub(in crate::store) struct PgInbound<'c> {
    pub(super) tx: deadpool_postgres::Transaction<'c>,
    pub(super) handle: Handle,
    pub(super) store: PgStore,
    /// The people whose lock this transaction holds (see
    /// [`PgInbound::lock_person`]).
    pub(super) locked: std::sync::Mutex<std::collections::HashSet<String>>,
}

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgInbound<'_> {
    pub(super) fn wait<T>(
        &self,
        future: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        wait(&self.handle, future)
    }

    /// A store call of the PostgreSQL backend, waited for here.
    pub(super) fn wait_store<T>(
        &self,
        future: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self
            .handle
            .block_on(async { tokio::time::timeout(STATEMENT_WAIT, future).await })
        {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the database within {} s",
                STATEMENT_WAIT.as_secs()
            ))),
        }
    }

    pub(super) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.wait(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query(&statement, params).await
        })
    }

    pub(super) fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        self.wait(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_opt(&statement, params).await
        })
    }

    pub(super) fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        self.wait(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.query_one(&statement, params).await
        })
    }

    pub(super) fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        self.wait(async {
            let statement = self.tx.prepare_cached(sql).await?;
            self.tx.execute(&statement, params).await
        })
    }

    pub(super) fn exists(&self, sql: &str, params: Params<'_>) -> Result<bool, StoreError> {
        Ok(self.query_opt(sql, params)?.is_some())
    }

    /// Takes `person`'s lock, shared, before the transaction reads or
    /// writes anything naming them: `simmask erase` holds it exclusively,
    /// so a message from a person being erased is committed before the
    /// erasure begins (which then removes it) or read after it ends, never
    /// stored behind its back. Allocation holds it too: an opening for the
    /// person and their message do not cross either.
    pub(super) fn lock_person(&self, person: &PhoneNumber) -> Result<(), StoreError> {
        let key = person.e164().to_string();
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        if locked.contains(&key) {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
            &[&key],
        )?;
        locked.insert(key);
        Ok(())
    }

    /// Commits (the caller answers only after this).
    pub(in crate::store) fn commit(self) -> Result<(), StoreError> {
        wait(&self.handle, self.tx.commit())
    }

    pub(in crate::store) fn keep_part(
        &self,
        part: &ReceivedPart,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        let (storage, index) = part.location.clone().unzip();
        let index = index
            .map(|i| {
                i32::try_from(i)
                    .map_err(|_| StoreError::Corrupt(format!("SIM storage index {i} out of range")))
            })
            .transpose()?;
        let concat = part.concat;
        let reference = concat.map(|c| i32::from(c.reference));
        let total = concat.map(|c| i32::from(c.total));
        let sequence = concat.map(|c| i32::from(c.sequence));
        self.lock_person(&part.sender)?;
        Ok(self
            .query_opt(
                "INSERT INTO inbound_parts (proxy_iccid, sender, storage, storage_index, pdu_hex, \
                 concat_ref, concat_total, concat_seq, text, received_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (proxy_iccid, pdu_hex) DO NOTHING RETURNING id",
                &[
                    &part.proxy_iccid,
                    &part.sender.e164(),
                    &storage,
                    &index,
                    &part.pdu_hex,
                    &reference,
                    &total,
                    &sequence,
                    &part.text,
                    &to_ms(now),
                ],
            )?
            .map(|row| row.get(0)))
    }

    pub(in crate::store) fn part_pdus(&self, part_ids: &[i64]) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query(
                "SELECT pdu_hex FROM inbound_parts WHERE id = ANY($1) AND pdu_hex IS NOT NULL",
                &[&part_ids],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    pub(in crate::store) fn held_parts(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        reference: u16,
        total: u8,
    ) -> Result<Vec<HeldPart>, StoreError> {
        self.lock_person(sender)?;
        self.query(
            "SELECT id, concat_seq, COALESCE(text, ''), pdu_hex FROM inbound_parts \
             WHERE proxy_iccid = $1 AND sender = $2 AND concat_ref = $3 AND concat_total = $4 \
               AND interaction_id IS NULL \
             ORDER BY concat_seq, id",
            &[
                &proxy_iccid,
                &sender.e164(),
                &i32::from(reference),
                &i32::from(total),
            ],
        )?
        .iter()
        .map(|row| {
            Ok(HeldPart {
                id: row.get(0),
                sequence: narrow(i64::from(row.get::<_, i32>(1)), "part sequence")?,
                text: row.get(2),
                pdu_hex: row.get(3),
            })
        })
        .collect()
    }

    pub(in crate::store) fn waiting_since(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<WaitingMessage>, StoreError> {
        self.query(
            "SELECT proxy_iccid, sender, concat_ref, concat_total FROM inbound_parts \
             WHERE interaction_id IS NULL AND concat_ref IS NOT NULL \
             GROUP BY proxy_iccid, sender, concat_ref, concat_total \
             HAVING MIN(received_ms) < $1",
            &[&to_ms(cutoff)],
        )?
        .iter()
        .map(|row| {
            Ok(WaitingMessage {
                proxy_iccid: row.get(0),
                sender: number(row.get(1))?,
                reference: narrow(i64::from(row.get::<_, i32>(2)), "concat reference")?,
                total: narrow(i64::from(row.get::<_, i32>(3)), "concat total")?,
            })
        })
        .collect()
    }

    pub(in crate::store) fn open_session_of(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.lock_person(sender)?;
        let id: Option<String> = self
            .query_opt(
                "SELECT session_id FROM participants \
                 WHERE proxy_iccid = $1 AND number = $2 AND open AND hub_code IS NULL",
                &[&proxy_iccid, &sender.e164()],
            )?
            .map(|row| row.get(0));
        let Some(id) = id else { return Ok(None) };
        // The session's row, held until the commit: an erasure of the other
        // participant ends the session first, so it waits for this message
        // to be committed (and then erases what it queued), or it ended the
        // session already and the message is not relayed to them.
        if !self.exists(
            "SELECT 1 FROM sessions WHERE id = $1 AND status = 'open' FOR SHARE",
            &[&id],
        )? {
            return Ok(None);
        }
        self.wait_store(session_by_id(&self.tx, &id)).map(Some)
    }

    pub(in crate::store) fn last_auto_reply(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.query_opt(
            "SELECT last_ms FROM auto_replies WHERE proxy_iccid = $1 AND sender = $2",
            &[&proxy_iccid, &sender.e164()],
        )?
        .map(|row| from_ms(row.get(0)))
        .transpose()
    }

    pub(in crate::store) fn note_auto_reply(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO auto_replies (proxy_iccid, sender, last_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (proxy_iccid, sender) DO UPDATE SET last_ms = excluded.last_ms",
            &[&proxy_iccid, &sender.e164(), &to_ms(now)],
        )?;
        Ok(())
    }

    pub(in crate::store) fn end_session(
        &self,
        id: &str,
        reason: CloseReason,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.wait_store(end_session(&self.tx, id, reason, now))
    }

    pub(in crate::store) fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sessions SET last_activity_ms = $2 WHERE id = $1",
            &[&id, &to_ms(now)],
        )?;
        Ok(())
    }

    /// Queues an SMS; answers its interaction and outbox row.
    pub(in crate::store) fn queue_sms(
        &self,
        new: &NewOutbound,
        now: OffsetDateTime,
    ) -> Result<(i64, i64), StoreError> {
        let now = to_ms(now);
        let from_position = new.from_position.map(i16::from);
        let interaction: i64 = self
            .query_one(
                relay::QUEUE_INTERACTION,
                &[
                    &new.session_id,
                    &new.proxy_iccid,
                    &from_position,
                    &new.to.e164(),
                    &new.body,
                    &now,
                ],
            )?
            .get(0);
        self.execute(relay::ADD_EVENT, &[&interaction, &now, &"queued", &""])?;
        let outbox: i64 = self
            .query_one(
                relay::QUEUE_OUTBOX,
                &[
                    &interaction,
                    &new.proxy_iccid,
                    &new.to.e164(),
                    &new.body,
                    &now,
                ],
            )?
            .get(0);
        self.execute(
            relay::NOTE_RECIPIENT,
            &[&new.proxy_iccid, &month_of(from_ms(now)?), &new.to.e164()],
        )?;
        Ok((interaction, outbox))
    }

    /// `outbox` (queued in this transaction) when nothing of its SIM is due
    /// before it.
    pub(in crate::store) fn claimable(
        &self,
        outbox: i64,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        let Some(row) = self.query_opt(
            "SELECT id, proxy_iccid FROM outbox WHERE id = $1 AND state = 'queued'",
            &[&outbox],
        )?
        else {
            return Ok(None);
        };
        let (id, proxy_iccid): (i64, String) = (row.get(0), row.get(1));
        let earlier: bool = self
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE proxy_iccid = $1 AND state = 'queued' \
                                AND next_attempt_ms <= $2 AND id < $3)",
                &[&proxy_iccid, &to_ms(now), &id],
            )?
            .get(0);
        Ok((!earlier).then_some(id))
    }

    pub(in crate::store) fn claim(
        &self,
        outbox_id: i64,
        now: OffsetDateTime,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let now = to_ms(now);
        let Some(row) = self.query_opt(
            "UPDATE outbox o SET state = 'sending', attempts = attempts + 1 \
             WHERE id = $1 AND state = 'queued' \
             RETURNING o.id, o.interaction_id, o.proxy_iccid, COALESCE(o.to_number, ''), \
                       COALESCE(o.body, ''), o.attempts, o.created_ms, \
                       (SELECT session_id FROM interactions WHERE id = o.interaction_id)",
            &[&outbox_id],
        )?
        else {
            return Ok(None);
        };
        let item = OutboxItem {
            id: row.get(0),
            interaction_id: row.get(1),
            proxy_iccid: row.get(2),
            to_number: row.get(3),
            body: row.get(4),
            attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
            created_ms: row.get(6),
            session_id: row.get(7),
        };
        // Each claim is an attempt the carrier may count.
        self.execute(
            "INSERT INTO outbox_sends (proxy_iccid, at_ms) VALUES ($1, $2)",
            &[&item.proxy_iccid, &now],
        )?;
        Ok(Some(item))
    }

    pub(in crate::store) fn interaction_session(
        &self,
        interaction: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT session_id FROM interactions WHERE id = $1",
                &[&interaction],
            )?
            .and_then(|row| row.get(0)))
    }

    pub(in crate::store) fn record_dropped(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        reason: &str,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        Ok(self
            .query_one(
                "INSERT INTO interactions (proxy_iccid, kind, from_number, status, reason, body, \
                 created_ms, updated_ms) VALUES ($1, 'sms', $2, 'dropped', $3, $4, $5, $5) \
                 RETURNING id",
                &[&proxy_iccid, &sender.e164(), &reason, &body, &to_ms(now)],
            )?
            .get(0))
    }

    pub(in crate::store) fn set_interaction_sender(
        &self,
        interaction: i64,
        sender: &PhoneNumber,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE interactions SET from_number = $2 WHERE id = $1",
            &[&interaction, &sender.e164()],
        )?;
        Ok(())
    }

    pub(in crate::store) fn set_interaction_body(
        &self,
        interaction: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE interactions SET body = $2 WHERE id = $1",
            &[&interaction, &body],
        )?;
        Ok(())
    }

    pub(in crate::store) fn link_parts(
        &self,
        interaction: i64,
        part_ids: &[i64],
        parts: u32,
        incomplete: bool,
        sent: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let parts = i32::try_from(parts).unwrap_or(i32::MAX);
        self.execute(
            "UPDATE interactions SET parts = $2, incomplete = $3 OR incomplete, \
                 sent_ms = COALESCE($4, sent_ms) \
             WHERE id = $1",
            &[&interaction, &parts, &incomplete, &sent.map(to_ms)],
        )?;
        self.execute(
            "UPDATE inbound_parts SET interaction_id = $2 WHERE id = ANY($1)",
            &[&part_ids, &interaction],
        )?;
        Ok(())
    }
}
