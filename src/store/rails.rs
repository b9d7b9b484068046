//! The rows of the safety rails: opt-outs (STOP), the block list, each
//! SIM's recipients this month, and the counts the intercept rules and
//! loop protection read. The rules themselves are the relay's
//! (`crate::sms::rails`); this file only reads and writes rows, inside the
//! inbound transaction ([`InboundTx`]) or as typed calls.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::allocate::{allocate_in, month_of};
use super::inbound::{InboundTx, Side, sqlite_or};
use super::sessions::{LiveSim, NewSession, SessionRecord, audit, query_sessions};
use super::{Store, StoreError, from_ms, to_ms};
use crate::number::PhoneNumber;

/// One number of the block list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockRecord {
    pub number: PhoneNumber,
    pub reason: String,
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A relayed message of a session, as loop protection reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentMessage {
    /// When it arrived here (our clock).
    pub created_ms: i64,
    /// When the sender's SMSC took it (its clock, UTC), when known.
    pub sent_ms: Option<i64>,
    /// Which participant sent it.
    pub from_position: u8,
    /// `None` once retention erased it.
    pub body: Option<String>,
}

/// A message that an intercept rule stopped, to record.
#[derive(Debug, Clone)]
pub struct BlockedMessage<'a> {
    pub proxy_iccid: &'a str,
    pub session_id: Option<&'a str>,
    pub from_position: Option<u8>,
    pub sender: &'a PhoneNumber,
    pub to: Option<&'a PhoneNumber>,
    /// The rule's name (`block_list`, `loop`…).
    pub rule: &'a str,
    pub reason: &'a str,
    pub body: &'a str,
}

impl Store {
    /// Adds `number` to the block list (or updates its reason).
    pub async fn block_number(
        &self,
        number: PhoneNumber,
        reason: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<BlockRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.block_number(number, reason, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT INTO blocked_numbers (number, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (number) DO UPDATE SET reason = ?2, actor = ?3, at_ms = ?4",
            )?
            .execute(params![number.e164(), reason, actor, to_ms(now)])?;
            audit(&tx, now, &actor, "block.add", &format!("{number:?}"), "")?;
            tx.commit()?;
            Ok(BlockRecord {
                number,
                reason,
                actor,
                at: now,
            })
        })
        .await
    }

    /// Takes `number` off the block list; `false` when it was not on it.
    pub async fn unblock_number(
        &self,
        number: PhoneNumber,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.unblock_number(number, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let removed = tx
                .prepare_cached("DELETE FROM blocked_numbers WHERE number = ?1")?
                .execute(params![number.e164()])?;
            if removed > 0 {
                audit(&tx, now, &actor, "block.remove", &format!("{number:?}"), "")?;
            }
            tx.commit()?;
            Ok(removed > 0)
        })
        .await
    }

    /// The block list, newest first.
    pub async fn blocked_numbers(&self) -> Result<Vec<BlockRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.blocked_numbers().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT number, reason, actor, at_ms FROM blocked_numbers ORDER BY at_ms DESC",
            )?;
            let mut rows = statement.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let number: String = row.get(0)?;
                out.push(BlockRecord {
                    number: PhoneNumber::from_e164(&number)
                        .map_err(|e| StoreError::Corrupt(format!("blocked number: {e}")))?,
                    reason: row.get(1)?,
                    actor: row.get(2)?,
                    at: from_ms(row.get(3)?)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Whether `number` is on the block list.
    pub async fn is_blocked(&self, number: PhoneNumber) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.is_blocked(number).await;
        }
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM blocked_numbers WHERE number = ?1")?
                .exists(params![number.e164()])?)
        })
    }

    /// Whether `number` opted out (sent STOP and not START since).
    pub async fn is_opted_out(&self, number: PhoneNumber) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.is_opted_out(number).await;
        }
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM opt_outs WHERE number = ?1")?
                .exists(params![number.e164()])?)
        })
    }

    /// The most recent ended session of `participant` on the proxy
    /// `proxy_iccid`, if any (a fallback after expiry looks for it).
    pub async fn last_ended_session_of(
        &self,
        proxy_iccid: String,
        participant: PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.last_ended_session_of(proxy_iccid, participant).await;
        }
        self.read(|conn| {
            let mut found = query_sessions(
                conn,
                "s.proxy_iccid = ?1 AND s.status != 'open' AND EXISTS (SELECT 1 FROM \
                 participants p WHERE p.session_id = s.id AND p.number = ?2) \
                 ORDER BY s.ended_ms DESC LIMIT 1",
                &[&proxy_iccid, &participant.e164()],
            )?;
            Ok(found.pop())
        })
    }

    /// Opens a session on exactly `new.proxy` (a front desk pairing the
    /// caller with its staff number), under allocation's rules.
    pub async fn open_session_on(
        &self,
        new: NewSession,
        live: LiveSim,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.open_session_on(new, live, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let record = allocate_in(&tx, new, vec![live], now)?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Forgets opt-outs and block-list entries set before `cutoff`
    /// (`[intercept] forget_after_days`); returns how many.
    pub async fn forget_rail_lists_older_than(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.forget_rail_lists_older_than(cutoff).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let cutoff = to_ms(cutoff);
            let forgotten = tx.execute("DELETE FROM opt_outs WHERE at_ms < ?1", params![cutoff])?
                + tx.execute(
                    "DELETE FROM blocked_numbers WHERE at_ms < ?1",
                    params![cutoff],
                )?;
            tx.commit()?;
            Ok(forgotten)
        })
        .await
    }

    /// Forgets which numbers each SIM sent to in months before `now`'s.
    pub async fn forget_past_recipients(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.forget_past_recipients(now).await;
        }
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM sim_recipients WHERE month < ?1",
                params![month_of(now)],
            )?)
        })
        .await
    }
}

impl InboundTx<'_> {
    /// Whether `number` opted out.
    pub fn is_opted_out(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.is_opted_out(number));
        Ok(tx
            .prepare_cached("SELECT 1 FROM opt_outs WHERE number = ?1")?
            .exists(params![number.e164()])?)
    }

    /// Records that `number` opted out with `keyword`.
    pub fn opt_out(
        &self,
        number: &PhoneNumber,
        keyword: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.opt_out(number, keyword, now));
        tx.prepare_cached(
            "INSERT INTO opt_outs (number, keyword, at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (number) DO UPDATE SET keyword = ?2, at_ms = ?3",
        )?
        .execute(params![number.e164(), keyword, to_ms(now)])?;
        Ok(())
    }

    /// Lifts `number`'s opt-out; `false` when it had none.
    pub fn opt_in(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.opt_in(number));
        Ok(tx
            .prepare_cached("DELETE FROM opt_outs WHERE number = ?1")?
            .execute(params![number.e164()])?
            > 0)
    }

    /// Every open session of `number`, on any proxy.
    pub fn open_sessions_of_number(
        &self,
        number: &PhoneNumber,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.open_sessions_of_number(number));
        query_sessions(
            tx,
            // From the number's participant rows (indexed), not from every
            // open session: a STOP at a million sessions took seconds.
            "s.id IN (SELECT session_id FROM participants WHERE number = ?1 AND open = 1) \
             AND s.status = 'open' ORDER BY s.id",
            &[&number.e164()],
        )
    }

    /// Whether `number` is on the block list.
    pub fn is_blocked(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.is_blocked(number));
        Ok(tx
            .prepare_cached("SELECT 1 FROM blocked_numbers WHERE number = ?1")?
            .exists(params![number.e164()])?)
    }

    /// Messages a session relayed (or queued) so far.
    pub fn session_messages(&self, session_id: &str) -> Result<u32, StoreError> {
        let tx = sqlite_or!(self, pg => pg.session_messages(session_id));
        Ok(tx
            .prepare_cached(
                "SELECT COUNT(*) FROM interactions WHERE session_id = ?1 AND kind = 'sms'
                 AND from_position IS NOT NULL AND rule IS NULL AND status != 'dropped'",
            )?
            .query_row(params![session_id], |row| row.get(0))?)
    }

    /// Messages relayed for `sender` (as a session participant) since
    /// `since`, over all proxies.
    pub fn sender_messages_since(
        &self,
        sender: &PhoneNumber,
        since: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let tx = sqlite_or!(self, pg => pg.sender_messages_since(sender, since));
        Ok(tx
            .prepare_cached(
                "SELECT COUNT(*) FROM interactions i JOIN participants p
                   ON p.session_id = i.session_id AND p.position = i.from_position
                 WHERE p.number = ?1 AND i.kind = 'sms' AND i.created_ms >= ?2
                   AND i.rule IS NULL AND i.status != 'dropped'",
            )?
            .query_row(params![sender.e164(), to_ms(since)], |row| row.get(0))?)
    }

    /// A session's relayed messages that arrived since `since`, both
    /// directions, in the order they arrived.
    pub fn recent_messages(
        &self,
        session_id: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<RecentMessage>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.recent_messages(session_id, since));
        let mut statement = tx.prepare_cached(
            "SELECT created_ms, from_position, body, sent_ms FROM interactions
             WHERE session_id = ?1 AND kind = 'sms'
               AND from_position IS NOT NULL AND rule IS NULL AND created_ms >= ?2
             ORDER BY created_ms, id",
        )?;
        let rows = statement.query_map(params![session_id, to_ms(since)], |row| {
            Ok(RecentMessage {
                created_ms: row.get(0)?,
                from_position: row.get(1)?,
                body: row.get(2)?,
                sent_ms: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The SIM's distinct recipients this month. It counts every one of
    /// them: ask only when a limit applies to a new recipient.
    pub fn recipients_this_month(
        &self,
        proxy_iccid: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let tx = sqlite_or!(self, pg => pg.recipients_this_month(proxy_iccid, now));
        Ok(tx
            .prepare_cached("SELECT COUNT(*) FROM sim_recipients WHERE iccid = ?1 AND month = ?2")?
            .query_row(params![proxy_iccid, month_of(now)], |row| row.get(0))?)
    }

    /// Whether the proxy sent to `to` this month already.
    pub fn recipient_known(
        &self,
        proxy_iccid: &str,
        to: &PhoneNumber,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.recipient_known(proxy_iccid, to, now));
        Ok(tx
            .prepare_cached(
                "SELECT 1 FROM sim_recipients WHERE iccid = ?1 AND month = ?2 AND number = ?3",
            )?
            .query_row(params![proxy_iccid, month_of(now), to.e164()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Records a message an intercept rule stopped; returns its
    /// interaction.
    pub fn record_blocked(
        &self,
        blocked: &BlockedMessage<'_>,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let tx = sqlite_or!(self, pg => pg.record_blocked(blocked, now));
        tx.prepare_cached(
            "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position,
                     from_number, to_number, status, reason, rule, body, created_ms, updated_ms)
                 VALUES (?1, ?2, 'sms', ?3, ?4, ?5, 'blocked', ?6, ?7, ?8, ?9, ?9)",
        )?
        .execute(params![
            blocked.session_id,
            blocked.proxy_iccid,
            blocked.from_position,
            blocked.sender.e164(),
            blocked.to.map(PhoneNumber::e164),
            blocked.reason,
            blocked.rule,
            blocked.body,
            to_ms(now)
        ])?;
        Ok(tx.last_insert_rowid())
    }

    /// Opens a session on exactly `new.proxy` (a front desk), under
    /// allocation's rules; on a refusal nothing of it is written and the
    /// transaction goes on.
    pub fn open_session_on(
        &mut self,
        new: NewSession,
        live: LiveSim,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        let tx = match &mut self.side {
            Side::Sqlite(tx) => tx,
            Side::Pg(pg) => return pg.open_session_on(new, live, now),
        };
        let savepoint = tx.savepoint()?;
        let record = allocate_in(&savepoint, new, vec![live], now)?;
        savepoint.commit()?;
        Ok(record)
    }

    /// The staff number of the proxy's front desk, if it is one (and not
    /// draining).
    pub fn front_desk_of(&self, proxy_iccid: &str) -> Result<Option<PhoneNumber>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.front_desk_of(proxy_iccid));
        let staff: Option<Option<String>> = tx
            .prepare_cached("SELECT front_desk FROM sims WHERE iccid = ?1")?
            .query_row(params![proxy_iccid], |row| row.get(0))
            .optional()?;
        staff
            .flatten()
            .map(|n| {
                PhoneNumber::from_e164(&n)
                    .map_err(|e| StoreError::Corrupt(format!("front desk number: {e}")))
            })
            .transpose()
    }
}

/// How far back the per-participant limit counts.
pub const PARTICIPANT_WINDOW: Duration = Duration::DAY;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{A, B, NOW, PROXY, number, store_with_session};

    #[tokio::test]
    async fn erasure_and_retention_cover_the_rails_lists() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let (a, b) = (number(A), number(B));
        store
            .block_number(a.clone(), "spam".into(), "test".into(), NOW)
            .await
            .unwrap();
        let (opted, to) = (a.clone(), b.clone());
        store
            .inbound(move |tx| {
                tx.opt_out(&opted, "STOP", NOW)?;
                tx.queue_sms(
                    &crate::store::NewOutbound {
                        session_id: None,
                        proxy_iccid: PROXY.into(),
                        from_position: None,
                        to,
                        body: "hi".into(),
                    },
                    NOW,
                )
            })
            .await
            .unwrap();
        assert!(store.is_opted_out(a.clone()).await.unwrap());
        let counts = store
            .erase_participant(a.clone(), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(counts.rails, 2, "{counts:?}");
        assert!(!store.is_opted_out(a.clone()).await.unwrap());
        assert!(!store.is_blocked(a).await.unwrap());
        assert!(store.blocked_numbers().await.unwrap().is_empty());

        // Retention: old entries and last month's recipients go.
        store
            .block_number(b.clone(), String::new(), "test".into(), NOW)
            .await
            .unwrap();
        let later = NOW + Duration::days(40);
        assert_eq!(store.sim_budget_use(NOW).await.unwrap()[PROXY].0, 1);
        assert_eq!(store.forget_past_recipients(later).await.unwrap(), 1);
        assert_eq!(
            store
                .forget_rail_lists_older_than(later - Duration::days(30))
                .await
                .unwrap(),
            1
        );
        assert!(!store.is_blocked(b).await.unwrap());
    }

    #[tokio::test]
    async fn a_relays_smsc_time_is_kept_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let written = NOW - Duration::minutes(7);
        let id = session.clone();
        let recent = store
            .inbound_durable(move |tx| {
                for (i, (from, to, sent)) in [(0, B, Some(written)), (1, A, None)]
                    .into_iter()
                    .enumerate()
                {
                    let part = super::super::ReceivedPart {
                        proxy_iccid: PROXY.into(),
                        sender: number(if from == 0 { A } else { B }),
                        location: None,
                        pdu_hex: format!("0{i}"),
                        concat: None,
                        text: "hi".into(),
                    };
                    let part_id = tx.keep_part(&part, NOW)?.expect("a new part");
                    let interaction = tx.queue_sms(
                        &crate::store::NewOutbound {
                            session_id: Some(id.clone()),
                            proxy_iccid: PROXY.into(),
                            from_position: Some(from),
                            to: number(to),
                            body: "hi".into(),
                        },
                        NOW,
                    )?;
                    tx.link_parts(interaction, &[part_id], 1, false, sent)?;
                }
                tx.recent_messages(&id, NOW - Duration::HOUR)
            })
            .await
            .unwrap();
        let kept: Vec<_> = recent
            .iter()
            .map(|m| (m.from_position, m.created_ms, m.sent_ms))
            .collect();
        assert_eq!(
            kept,
            [(0, to_ms(NOW), Some(to_ms(written))), (1, to_ms(NOW), None)]
        );
    }
}
