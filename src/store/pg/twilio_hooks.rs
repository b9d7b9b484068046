//! The Twilio facade's held messages, status callbacks, pending sessions'
//! expiry and interaction pages on PostgreSQL.
//!
//! A hold is written by the inbound transaction of the appliance that holds
//! the SIM; a status callback by the appliance whose bus saw the event. Both
//! queues are worked by every appliance's hooks task and claimed with `FOR
//! UPDATE SKIP LOCKED` plus a lease (`next_ms` pushed past the attempt,
//! `leased_by` this appliance): one appliance asks each receiver at a time,
//! and the holds of an appliance that went down are asked by another once
//! its lease ends (a held message never waits on a dead appliance; what the
//! answer decides goes through the outbox, which the SIM's holder sends). A
//! restart takes back at once only the leases it held itself, never a live
//! appliance's.

use time::OffsetDateTime;

use super::super::callbacks::MAX_PENDING_DELIVERIES;
use super::super::twilio_hooks::{
    HeldMessage, Hold, HoldKind, INTERCEPT_BACKSTOP_MS, TwilioCallback,
};
use super::super::twilio_pages::InteractionPick;
use super::super::{InteractionRecord, StoreError, to_ms};
use super::inbound::{PgInbound, number};
use super::relay::{ADD_EVENT, INTERACTION_COLUMNS, add_event, interaction_of};
use super::twilio::page;
use super::{PgStore, in_transaction, pg_error};
use crate::number::PhoneNumber;

impl PgStore {
    pub(in crate::store) async fn twilio_expire_pending(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        // One statement: two appliances sweeping at once close (and
        // report) each session once.
        Ok(client
            .query(
                "UPDATE twilio_sessions SET closed_ms = $1, updated_ms = $1 \
                 WHERE session_id IS NULL AND closed_ms IS NULL AND deleted_ms IS NULL \
                   AND (expiry_ms <= $1 OR (ttl > 0 AND created_ms + ttl * 1000 <= $1)) \
                 RETURNING sid",
                &[&to_ms(now)],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    pub(in crate::store) async fn twilio_interactions(
        &self,
        session_id: String,
        pick: InteractionPick,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        let client = self.client().await?;
        let sql = |condition: &str| {
            format!(
                "SELECT {INTERACTION_COLUMNS} FROM interactions \
                 WHERE session_id = $1 AND {condition} \
                 ORDER BY created_ms DESC, id DESC LIMIT $2 OFFSET $3"
            )
        };
        let (limit, offset) = (page(limit), page(offset));
        let rows = match pick {
            InteractionPick::All => {
                client
                    .query(&sql("TRUE"), &[&session_id, &limit, &offset])
                    .await
            }
            InteractionPick::Id(id) => {
                client
                    .query(&sql("id = $4"), &[&session_id, &limit, &offset, &id])
                    .await
            }
            InteractionPick::Calls => {
                client
                    .query(&sql("kind = 'call'"), &[&session_id, &limit, &offset])
                    .await
            }
            InteractionPick::ProxyMessagesTo(to) => {
                client
                    .query(
                        &sql("kind = 'sms' AND from_position IS NULL AND to_number = $4"),
                        &[&session_id, &limit, &offset, &to],
                    )
                    .await
            }
        }
        .map_err(pg_error)?;
        Ok(rows.iter().map(interaction_of).collect())
    }

    pub(in crate::store) async fn twilio_due_holds(
        &self,
        now: OffsetDateTime,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Hold>, StoreError> {
        let now = to_ms(now);
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH due AS (SELECT interaction_id, next_ms FROM twilio_holds \
                              WHERE next_ms <= $1 ORDER BY next_ms, interaction_id LIMIT $2 \
                              FOR UPDATE SKIP LOCKED) \
                 UPDATE twilio_holds h SET next_ms = $3, leased_by = $4 \
                 FROM due JOIN interactions i ON i.id = due.interaction_id \
                 WHERE h.interaction_id = due.interaction_id \
                 RETURNING h.interaction_id, h.kind, h.service_sid, h.attempts, i.proxy_iccid, \
                           i.session_id, i.from_number, i.body, h.created_ms, due.next_ms",
                &[&now, &page(limit), &(now + lease_ms), &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        let mut holds: Vec<(i64, Hold)> = rows
            .iter()
            .map(|row| {
                (
                    row.get(9),
                    Hold {
                        interaction_id: row.get(0),
                        kind: HoldKind::parse(row.get(1)),
                        service_sid: row.get(2),
                        attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                        proxy_iccid: row.get(4),
                        session_id: row.get(5),
                        from_number: row.get(6),
                        body: row.get(7),
                        created_ms: row.get(8),
                    },
                )
            })
            .collect();
        holds.sort_by_key(|(due, hold)| (*due, hold.interaction_id));
        Ok(holds.into_iter().map(|(_, hold)| hold).collect())
    }

    /// At start: the holds and callbacks this appliance had leased (its
    /// process is gone) are due now; other appliances' leases stand.
    pub(in crate::store) async fn twilio_holds_resume(
        &self,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let now = to_ms(now);
        let me = self.appliance_id();
        in_transaction!(self, |tx| {
            async {
                let holds = tx
                    .execute(
                        "UPDATE twilio_holds SET next_ms = $1 \
                         WHERE next_ms > $1 AND leased_by = $2",
                        &[&now, &me],
                    )
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    "UPDATE twilio_callbacks SET next_ms = $1 \
                     WHERE next_ms > $1 AND leased_by = $2",
                    &[&now, &me],
                )
                .await
                .map_err(pg_error)?;
                Ok(usize::try_from(holds).unwrap_or(usize::MAX))
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_hold_retry(
        &self,
        interaction_id: i64,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE twilio_holds SET attempts = attempts + 1, next_ms = $2, leased_by = $3 \
                 WHERE interaction_id = $1",
                &[&interaction_id, &to_ms(next), &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_release_intercept(
        &self,
        interaction_id: i64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                tx.execute(
                    "DELETE FROM twilio_holds WHERE interaction_id = $1",
                    &[&interaction_id],
                )
                .await
                .map_err(pg_error)?;
                let released = tx
                    .execute(
                        "UPDATE outbox SET next_attempt_ms = $2 \
                         WHERE interaction_id = $1 AND state = 'queued' AND attempts = 0",
                        &[&interaction_id, &now],
                    )
                    .await
                    .map_err(pg_error)?
                    > 0;
                if released {
                    add_event(
                        &tx,
                        interaction_id,
                        "queued",
                        "the intercept callback let it go",
                        now,
                    )
                    .await?;
                }
                Ok(released)
            }
            .await
        })
    }

    pub(in crate::store) async fn twilio_block_intercept(
        &self,
        interaction_id: i64,
        reason: String,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = to_ms(now);
        in_transaction!(self, |tx| {
            async {
                tx.execute(
                    "DELETE FROM twilio_holds WHERE interaction_id = $1",
                    &[&interaction_id],
                )
                .await
                .map_err(pg_error)?;
                let stopped = tx
                    .execute(
                        "UPDATE outbox SET state = 'failed', last_error = $2 \
                         WHERE interaction_id = $1 AND state = 'queued' AND attempts = 0",
                        &[&interaction_id, &reason],
                    )
                    .await
                    .map_err(pg_error)?
                    > 0;
                if stopped {
                    tx.execute(
                        "UPDATE interactions SET status = 'blocked', rule = 'intercept_callback', \
                         reason = $2, updated_ms = $3 WHERE id = $1",
                        &[&interaction_id, &reason, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                    add_event(&tx, interaction_id, "blocked", &reason, now).await?;
                }
                Ok(stopped)
            }
            .await
        })
    }

    /// Queues a status callback; past [`MAX_PENDING_DELIVERIES`] undelivered
    /// in the fleet, the oldest go.
    pub(in crate::store) async fn twilio_queue_callback(
        &self,
        url: String,
        body: String,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let now = to_ms(now);
        let client = self.client().await?;
        let id: i64 = client
            .query_one(
                "INSERT INTO twilio_callbacks (url, body, next_ms, created_ms) \
                 VALUES ($1, $2, $3, $3) RETURNING id",
                &[&url, &body, &now],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        let dropped = client
            .execute(
                "DELETE FROM twilio_callbacks WHERE id <= $1",
                &[&(id - MAX_PENDING_DELIVERIES)],
            )
            .await
            .map_err(pg_error)?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "twilio callbacks: too many undelivered; the oldest were dropped"
            );
        }
        Ok(id)
    }

    pub(in crate::store) async fn twilio_due_callbacks(
        &self,
        now: OffsetDateTime,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<TwilioCallback>, StoreError> {
        let now = to_ms(now);
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH due AS (SELECT id, next_ms FROM twilio_callbacks WHERE next_ms <= $1 \
                              ORDER BY next_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE twilio_callbacks c SET next_ms = $3, leased_by = $4 FROM due \
                 WHERE c.id = due.id \
                 RETURNING c.id, c.url, c.body, c.attempts, due.next_ms",
                &[&now, &page(limit), &(now + lease_ms), &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        let mut due: Vec<(i64, TwilioCallback)> = rows
            .iter()
            .map(|row| {
                (
                    row.get(4),
                    TwilioCallback {
                        id: row.get(0),
                        url: row.get(1),
                        body: row.get(2),
                        attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                    },
                )
            })
            .collect();
        due.sort_by_key(|(next, callback)| (*next, callback.id));
        Ok(due.into_iter().map(|(_, callback)| callback).collect())
    }

    pub(in crate::store) async fn twilio_callback_done(&self, id: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM twilio_callbacks WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_callback_retry(
        &self,
        id: i64,
        next: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE twilio_callbacks SET attempts = attempts + 1, next_ms = $2, \
                 leased_by = $3 WHERE id = $1",
                &[&id, &to_ms(next), &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn twilio_holds_waiting(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COUNT(*) FROM twilio_holds", &[])
            .await
            .map_err(pg_error)?
            .get(0))
    }
}

impl PgInbound<'_> {
    /// The service whose number `proxy_iccid` is, when it has the callback
    /// of `kind`.
    pub(in crate::store) fn twilio_hook_service(
        &self,
        proxy_iccid: &str,
        kind: HoldKind,
    ) -> Result<Option<String>, StoreError> {
        let column = match kind {
            HoldKind::Intercept => "intercept_callback_url",
            HoldKind::OutOfSession => "out_of_session_callback_url",
        };
        Ok(self
            .query_opt(
                &format!(
                    "SELECT s.sid FROM twilio_numbers n \
                     JOIN twilio_services s ON s.sid = n.service_sid \
                     WHERE n.iccid = $1 AND s.{column} IS NOT NULL"
                ),
                &[&proxy_iccid],
            )?
            .map(|row| row.get(0)))
    }

    pub(in crate::store) fn twilio_hold(
        &self,
        interaction_id: i64,
        kind: HoldKind,
        service_sid: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO twilio_holds (interaction_id, kind, service_sid, next_ms, created_ms) \
             VALUES ($1, $2, $3, $4, $4)",
            &[&interaction_id, &kind.as_str(), &service_sid, &now],
        )?;
        Ok(())
    }

    pub(in crate::store) fn twilio_hold_intercept(
        &self,
        interaction_id: i64,
        proxy_iccid: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let Some(service) = self.twilio_hook_service(proxy_iccid, HoldKind::Intercept)? else {
            return Ok(false);
        };
        let now = to_ms(now);
        self.execute(
            "UPDATE outbox SET next_attempt_ms = $2 \
             WHERE interaction_id = $1 AND state = 'queued'",
            &[&interaction_id, &(now + INTERCEPT_BACKSTOP_MS)],
        )?;
        self.twilio_hold(interaction_id, HoldKind::Intercept, &service, now)?;
        self.execute(
            ADD_EVENT,
            &[
                &interaction_id,
                &now,
                &"held",
                &"waiting for the service's intercept callback",
            ],
        )?;
        Ok(true)
    }

    pub(in crate::store) fn twilio_hold_out_of_session(
        &self,
        proxy_iccid: &str,
        sender: &PhoneNumber,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        let Some(service) = self.twilio_hook_service(proxy_iccid, HoldKind::OutOfSession)? else {
            return Ok(None);
        };
        let now = to_ms(now);
        let id: i64 = self
            .query_one(
                "INSERT INTO interactions (proxy_iccid, kind, from_number, status, reason, body, \
                 created_ms, updated_ms) VALUES ($1, 'sms', $2, 'held', \
                 'waiting for the out-of-session callback', $3, $4, $4) RETURNING id",
                &[&proxy_iccid, &sender.e164(), &body, &now],
            )?
            .get(0);
        self.twilio_hold(id, HoldKind::OutOfSession, &service, now)?;
        Ok(Some(id))
    }

    pub(in crate::store) fn twilio_take_held(
        &self,
        interaction_id: i64,
    ) -> Result<Option<HeldMessage>, StoreError> {
        // Locked: two appliances deciding the same hold take it once.
        let Some(row) = self.query_opt(
            "SELECT i.proxy_iccid, i.from_number, i.body, i.incomplete FROM interactions i \
             JOIN twilio_holds h ON h.interaction_id = i.id \
             WHERE i.id = $1 AND i.status = 'held' AND h.kind = 'out_of_session' \
             FOR UPDATE OF i",
            &[&interaction_id],
        )?
        else {
            return Ok(None);
        };
        let (proxy_iccid, sender, body, incomplete): (
            String,
            Option<String>,
            Option<String>,
            bool,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let Some(sender) = sender else {
            return Ok(None);
        };
        let part_ids: Vec<i64> = self
            .query(
                "SELECT id FROM inbound_parts WHERE interaction_id = $1 ORDER BY id",
                &[&interaction_id],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect();
        self.execute(
            "UPDATE inbound_parts SET interaction_id = NULL WHERE interaction_id = $1",
            &[&interaction_id],
        )?;
        self.execute("DELETE FROM interactions WHERE id = $1", &[&interaction_id])?;
        let sender = number(&sender)
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
