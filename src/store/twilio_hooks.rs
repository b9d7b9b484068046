//! The Twilio facade's held interactions (`twilio_holds`): a relay waiting
//! for its service's intercept callback, a stranger's message waiting for
//! the out-of-session callback. The hold is written in the transaction that
//! stores the message, so the message may leave the SIM at once: until the
//! receiver answers it is in the store, and a restart asks again.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::inbound::sqlite_or;
use super::relay::add_event;
use super::{InboundTx, Store, StoreError, to_ms};
use crate::number::PhoneNumber;

/// How long an intercepted relay waits at most when nobody decides (the
/// facade switched off with messages held): then it goes, as Twilio's
/// relay goes on when its intercept callback does not answer.
pub const INTERCEPT_BACKSTOP_MS: i64 = 10 * 60 * 1000;

/// What a hold waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// The relay is queued with its outbox row held back.
    Intercept,
    /// The message is recorded `held`, not routed yet.
    OutOfSession,
}

impl HoldKind {
    pub(in crate::store) fn as_str(self) -> &'static str {
        match self {
            HoldKind::Intercept => "intercept",
            HoldKind::OutOfSession => "out_of_session",
        }
    }

    pub(in crate::store) fn parse(text: &str) -> Self {
        if text == "intercept" {
            HoldKind::Intercept
        } else {
            HoldKind::OutOfSession
        }
    }
}

/// A hold due for its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub interaction_id: i64,
    pub kind: HoldKind,
    pub service_sid: String,
    /// Callbacks tried so far.
    pub attempts: u32,
    pub proxy_iccid: String,
    pub session_id: Option<String>,
    /// The sender, for an out-of-session hold.
    pub from_number: Option<String>,
    pub body: Option<String>,
    pub created_ms: i64,
}

/// A service's status callback waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioCallback {
    pub id: i64,
    pub url: String,
    /// The parameters, form-encoded.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// A stranger's held message taken back to be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    pub proxy_iccid: String,
    pub sender: PhoneNumber,
    pub body: String,
    pub part_ids: Vec<i64>,
    pub incomplete: bool,
}

impl InboundTx<'_> {
    /// The service whose number `proxy_iccid` is, when it has the callback
    /// of `kind`.
    fn twilio_hook_service(
        &self,
        proxy_iccid: &str,
        kind: HoldKind,
    ) -> Result<Option<String>, StoreError> {
        // PostgreSQL's side asks in `store::pg::twilio_hooks`.
        let tx = sqlite_or!(self, pg => pg.twilio_hook_service(proxy_iccid, kind));
        let column = match kind {
            HoldKind::Intercept => "intercept_callback_url",
            HoldKind::OutOfSession => "out_of_session_callback_url",
        };
        Ok(tx
            .prepare_cached(&format!(
                "SELECT s.sid FROM twilio_numbers n JOIN twilio_services s ON s.sid = n.service_sid
                 WHERE n.iccid = ?1 AND s.{column} IS NOT NULL"
            ))?
            .query_row(params![proxy_iccid], |row| row.get(0))
            .optional()?)
    }

    fn twilio_hold(
        &self,
        interaction_id: i64,
        kind: HoldKind,
        service_sid: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.twilio_hold(interaction_id, kind, service_sid, now));
        tx.prepare_cached(
            "INSERT INTO twilio_holds (interaction_id, kind, service_sid, next_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
        )?
        .execute(params![interaction_id, kind.as_str(), service_sid, now])?;
        Ok(())
    }

    /// Holds the relay just queued as `interaction_id` when its proxy's
    /// service has an intercept callback: its outbox row is not due until
    /// the callback allows it (or [`INTERCEPT_BACKSTOP_MS`] passes).
    pub fn twilio_hold_intercept(
        &self,
        interaction_id: i64,
        proxy_iccid: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.twilio_hold_intercept(interaction_id, proxy_iccid, now));
        let Some(service) = self.twilio_hook_service(proxy_iccid, HoldKind::Intercept)? else {
            return Ok(false);
        };
        let now = to_ms(now);
        tx.prepare_cached(
            "UPDATE outbox SET next_attempt_ms = ?2 WHERE interaction_id = ?1 AND state = 'queued'",
        )?
        .execute(params![interaction_id, now + INTERCEPT_BACKSTOP_MS])?;
        self.twilio_hold(interaction_id, HoldKind::Intercept, &service, now)?;
        add_event(
            tx,
            interaction_id,
            "held",
            "waiting for the service's intercept callback",
            now,
        )?;
        Ok(true)
    }

    /// Records a stranger's message `held` when its proxy's service has an
    /// out-of-session callback; answers its interaction.
    pub fn twilio_hold_out_of_session(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        let tx =
            sqlite_or!(self, pg => pg.twilio_hold_out_of_session(proxy_iccid, sender, body, now));
        let Some(service) = self.twilio_hook_service(proxy_iccid, HoldKind::OutOfSession)? else {
            return Ok(None);
        };
        let now = to_ms(now);
        tx
            .prepare_cached(
                "INSERT INTO interactions (proxy_iccid, kind, from_number, status, reason, body,
                                           created_ms, updated_ms)
                 VALUES (?1, 'sms', ?2, 'held', 'waiting for the out-of-session callback', ?3, ?4, ?4)",
            )?
            .execute(params![proxy_iccid, sender.e164(), body, now])?;
        let id = tx.last_insert_rowid();
        self.twilio_hold(id, HoldKind::OutOfSession, &service, now)?;
        Ok(Some(id))
    }

    /// Takes a stranger's held message back (its placeholder interaction is
    /// removed, its parts unlinked) for the caller to route in this
    /// transaction; `None` when it is not held any more.
    pub fn twilio_take_held(&self, interaction_id: i64) -> Result<Option<HeldMessage>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.twilio_take_held(interaction_id));
        let found: Option<(String, Option<String>, Option<String>, bool)> = tx
            .query_row(
                "SELECT i.proxy_iccid, i.from_number, i.body, i.incomplete FROM interactions i
                 JOIN twilio_holds h ON h.interaction_id = i.id
                 WHERE i.id = ?1 AND i.status = 'held' AND h.kind = 'out_of_session'",
                params![interaction_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let Some((proxy_iccid, Some(sender), body, incomplete)) = found else {
            return Ok(None);
        };
        let part_ids = {
            let mut statement =
                tx.prepare("SELECT id FROM inbound_parts WHERE interaction_id = ?1 ORDER BY id")?;
            let rows = statement.query_map(params![interaction_id], |row| row.get(0))?;
            rows.collect::<Result<Vec<i64>, _>>()?
        };
        tx.execute(
            "UPDATE inbound_parts SET interaction_id = NULL WHERE interaction_id = ?1",
            params![interaction_id],
        )?;
        tx.execute(
            "DELETE FROM interactions WHERE id = ?1",
            params![interaction_id],
        )?;
        let sender = PhoneNumber::from_e164(&sender)
            .map_err(|_| StoreError::Corrupt(format!("held message {interaction_id}: sender")))?;
        Ok(Some(HeldMessage {
            proxy_iccid,
            sender,
            body: body.unwrap_or_default(),
            part_ids,
            incomplete,
        }))
    }
}

impl Store {
    /// The holds whose callback is due, each leased for `lease_ms` (a
    /// caller that dies mid-call leaves it to be asked again).
    pub async fn twilio_due_holds(
        &self,
        now: OffsetDateTime,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Hold>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_due_holds(now, lease_ms, limit).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let holds = {
                let mut statement = tx.prepare_cached(
                    "SELECT h.interaction_id, h.kind, h.service_sid, h.attempts, i.proxy_iccid,
                            i.session_id, i.from_number, i.body, h.created_ms
                     FROM twilio_holds h JOIN interactions i ON i.id = h.interaction_id
                     WHERE h.next_ms <= ?1 ORDER BY h.next_ms, h.interaction_id LIMIT ?2",
                )?;
                let rows = statement.query_map(params![now, limit as i64], |row| {
                    Ok(Hold {
                        interaction_id: row.get(0)?,
                        kind: HoldKind::parse(&row.get::<_, String>(1)?),
                        service_sid: row.get(2)?,
                        attempts: row.get(3)?,
                        proxy_iccid: row.get(4)?,
                        session_id: row.get(5)?,
                        from_number: row.get(6)?,
                        body: row.get(7)?,
                        created_ms: row.get(8)?,
                    })
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            lease(
                &tx,
                "UPDATE twilio_holds SET next_ms = ?2 WHERE interaction_id = ?1",
                holds.iter().map(|hold| hold.interaction_id),
                now + lease_ms,
            )?;
            tx.commit()?;
            Ok(holds)
        })
        .await
    }

    /// At start: every hold and status callback is due now (a lease taken by a process that
    /// is gone must not wait out its minute).
    pub async fn twilio_holds_resume(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_holds_resume(now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let holds = conn.execute(
                "UPDATE twilio_holds SET next_ms = ?1 WHERE next_ms > ?1",
                params![now],
            )?;
            conn.execute(
                "UPDATE twilio_callbacks SET next_ms = ?1 WHERE next_ms > ?1",
                params![now],
            )?;
            Ok(holds)
        })
        .await
    }

    /// A callback attempt failed: asked again at `next`.
    pub async fn twilio_hold_retry(
        &self,
        interaction_id: i64,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_hold_retry(interaction_id, next).await;
        }
        let next = to_ms(next);
        self.call(move |conn| {
            conn.execute(
                "UPDATE twilio_holds SET attempts = attempts + 1, next_ms = ?2
                 WHERE interaction_id = ?1",
                params![interaction_id, next],
            )?;
            Ok(())
        })
        .await
    }

    /// The intercept callback let the relay go: its outbox row is due now.
    /// Whether it was still waiting.
    pub async fn twilio_release_intercept(
        &self,
        interaction_id: i64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_release_intercept(interaction_id, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM twilio_holds WHERE interaction_id = ?1",
                params![interaction_id],
            )?;
            let released = tx.execute(
                "UPDATE outbox SET next_attempt_ms = ?2
                 WHERE interaction_id = ?1 AND state = 'queued' AND attempts = 0",
                params![interaction_id, now],
            )? > 0;
            if released {
                add_event(
                    &tx,
                    interaction_id,
                    "queued",
                    "the intercept callback let it go",
                    now,
                )?;
            }
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    /// The intercept callback answered 403: the relay is not sent, its
    /// interaction is `blocked` by the rule `intercept_callback`. `false`
    /// when it had gone already (the backstop passed).
    pub async fn twilio_block_intercept(
        &self,
        interaction_id: i64,
        reason: String,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_block_intercept(interaction_id, reason, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM twilio_holds WHERE interaction_id = ?1",
                params![interaction_id],
            )?;
            let stopped = tx.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?2
                 WHERE interaction_id = ?1 AND state = 'queued' AND attempts = 0",
                params![interaction_id, reason],
            )? > 0;
            if stopped {
                tx.execute(
                    "UPDATE interactions SET status = 'blocked', rule = 'intercept_callback',
                         reason = ?2, updated_ms = ?3 WHERE id = ?1",
                    params![interaction_id, reason, now],
                )?;
                add_event(&tx, interaction_id, "blocked", &reason, now)?;
            }
            tx.commit()?;
            Ok(stopped)
        })
        .await
    }

    /// Records a status callback to deliver now. Those older than the
    /// newest [`super::callbacks::MAX_PENDING_DELIVERIES`] are dropped (a
    /// receiver down for long cannot fill the disk).
    pub async fn twilio_queue_callback(
        &self,
        url: String,
        body: String,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_queue_callback(url, body, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO twilio_callbacks (url, body, next_ms, created_ms) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![url, body, now])?;
            let id = conn.last_insert_rowid();
            let dropped = conn
                .prepare_cached("DELETE FROM twilio_callbacks WHERE id <= ?1")?
                .execute(params![id - super::callbacks::MAX_PENDING_DELIVERIES])?;
            if dropped > 0 {
                tracing::warn!(dropped, "twilio callbacks: too many undelivered; the oldest were dropped");
            }
            Ok(id)
        })
        .await
    }

    /// The status callbacks due, each leased for `lease_ms`.
    pub async fn twilio_due_callbacks(
        &self,
        now: OffsetDateTime,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<TwilioCallback>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_due_callbacks(now, lease_ms, limit).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let due = {
                let mut statement = tx.prepare_cached(
                    "SELECT id, url, body, attempts FROM twilio_callbacks WHERE next_ms <= ?1
                     ORDER BY next_ms, id LIMIT ?2",
                )?;
                let rows = statement.query_map(params![now, limit as i64], |row| {
                    Ok(TwilioCallback {
                        id: row.get(0)?,
                        url: row.get(1)?,
                        body: row.get(2)?,
                        attempts: row.get(3)?,
                    })
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            lease(
                &tx,
                "UPDATE twilio_callbacks SET next_ms = ?2 WHERE id = ?1",
                due.iter().map(|callback| callback.id),
                now + lease_ms,
            )?;
            tx.commit()?;
            Ok(due)
        })
        .await
    }

    /// Delivered, refused or given up: the row goes.
    pub async fn twilio_callback_done(&self, id: i64) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_callback_done(id).await;
        }
        self.call(move |conn| {
            conn.execute("DELETE FROM twilio_callbacks WHERE id = ?1", params![id])?;
            Ok(())
        })
        .await
    }

    /// An attempt failed: the next at `next`.
    pub async fn twilio_callback_retry(
        &self,
        id: i64,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_callback_retry(id, next).await;
        }
        let next = to_ms(next);
        self.call(move |conn| {
            conn.execute(
                "UPDATE twilio_callbacks SET attempts = attempts + 1, next_ms = ?2 WHERE id = ?1",
                params![id, next],
            )?;
            Ok(())
        })
        .await
    }

    /// Holds of either kind still waiting (for status and tests).
    pub async fn twilio_holds_waiting(&self) -> Result<i64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_holds_waiting().await;
        }
        self.read(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM twilio_holds", [], |row| row.get(0))?)
        })
    }
}

/// Pushes the rows just taken (`ids`) out of reach until `until` with
/// `update` (`?1` the id, `?2` the time), so a second taker skips them and a
/// taker that dies leaves them due again after the lease.
fn lease(
    tx: &rusqlite::Transaction<'_>,
    update: &str,
    ids: impl Iterator<Item = i64>,
    until: i64,
) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(update)?;
    for id in ids {
        statement.execute(params![id, until])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::NOW;

    #[tokio::test]
    async fn a_status_callback_not_delivered_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simmask.db");
        {
            let store = Store::open(&path).unwrap();
            let id = store
                .twilio_queue_callback("http://receiver/status".into(), "a=1&b=2".into(), NOW)
                .await
                .unwrap();
            let due = store.twilio_due_callbacks(NOW, 60_000, 10).await.unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].id, id);
            // Leased: not handed out twice while its attempt runs.
            assert!(
                store
                    .twilio_due_callbacks(NOW, 60_000, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        // The process died mid-attempt: the next one asks again at once.
        let store = Store::open(&path).unwrap();
        store.twilio_holds_resume(NOW).await.unwrap();
        let due = store.twilio_due_callbacks(NOW, 60_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].url.as_str(), due[0].body.as_str()),
            ("http://receiver/status", "a=1&b=2")
        );
        store
            .twilio_callback_retry(due[0].id, NOW + time::Duration::seconds(2))
            .await
            .unwrap();
        assert!(
            store
                .twilio_due_callbacks(NOW, 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = store
            .twilio_due_callbacks(NOW + time::Duration::seconds(2), 60_000, 10)
            .await
            .unwrap();
        assert_eq!(later[0].attempts, 1);
        store.twilio_callback_done(later[0].id).await.unwrap();
        assert!(
            store
                .twilio_due_callbacks(NOW + time::Duration::hours(1), 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
