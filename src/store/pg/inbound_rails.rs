//! The rails' facts and the hubs' conversations in the inbound
//! transaction on PostgreSQL: the rest of [`PgInbound`]'s calls (see
//! `inbound.rs`).

use time::OffsetDateTime;

use super::super::hubs::HubConversation;
use super::super::rails::{BlockedMessage, RecentMessage};
use super::super::sessions::{LiveSim, NewSession, SessionRecord};
use super::super::{StoreError, to_ms};
use super::hubs;
use super::inbound::{PgInbound, STATEMENT_WAIT, narrow, number, wait};
use super::sessions::{month_of, query_sessions};
use crate::number::PhoneNumber;

impl PgInbound<'_> {
    pub(in crate::store) fn is_opted_out(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM opt_outs WHERE number = $1",
            &[&number.e164()],
        )
    }

    pub(in crate::store) fn opt_out(
        &self,
        number: &PhoneNumber,
        keyword: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO opt_outs (number, keyword, at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (number) DO UPDATE SET keyword = $2, at_ms = $3",
            &[&number.e164(), &keyword, &to_ms(now)],
        )?;
        Ok(())
    }

    pub(in crate::store) fn opt_in(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM opt_outs WHERE number = $1", &[&number.e164()])? > 0)
    }

    pub(in crate::store) fn open_sessions_of_number(
        &self,
        number: &PhoneNumber,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.wait_store(query_sessions(
            &self.tx,
            "s.id IN (SELECT session_id FROM participants WHERE number = $1 AND open) \
             AND s.status = 'open' ORDER BY s.id",
            &[&number.e164()],
        ))
    }

    pub(in crate::store) fn is_blocked(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM blocked_numbers WHERE number = $1",
            &[&number.e164()],
        )
    }

    pub(in crate::store) fn session_messages(&self, session_id: &str) -> Result<u32, StoreError> {
        let count: i64 = self
            .query_one(
                "SELECT COUNT(*) FROM interactions WHERE session_id = $1 AND kind = 'sms' \
                 AND from_position IS NOT NULL AND rule IS NULL AND status != 'dropped'",
                &[&session_id],
            )?
            .get(0);
        narrow(count, "message count")
    }

    pub(in crate::store) fn sender_messages_since(
        &self,
        sender: &PhoneNumber,
        since: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let count: i64 = self
            .query_one(
                "SELECT COUNT(*) FROM interactions i JOIN participants p \
                   ON p.session_id = i.session_id AND p.position = i.from_position \
                 WHERE p.number = $1 AND i.kind = 'sms' AND i.created_ms >= $2 \
                   AND i.rule IS NULL AND i.status != 'dropped'",
                &[&sender.e164(), &to_ms(since)],
            )?
            .get(0);
        narrow(count, "message count")
    }

    pub(in crate::store) fn recent_messages(
        &self,
        session_id: &str,
        since: OffsetDateTime,
    ) -> Result<Vec<RecentMessage>, StoreError> {
        self.query(
            "SELECT created_ms, from_position, body, sent_ms FROM interactions \
             WHERE session_id = $1 AND kind = 'sms' \
               AND from_position IS NOT NULL AND rule IS NULL AND created_ms >= $2 \
             ORDER BY created_ms, id",
            &[&session_id, &to_ms(since)],
        )?
        .iter()
        .map(|row| {
            Ok(RecentMessage {
                created_ms: row.get(0),
                from_position: narrow(i64::from(row.get::<_, i16>(1)), "position")?,
                body: row.get(2),
                sent_ms: row.get(3),
            })
        })
        .collect()
    }

    pub(in crate::store) fn recipients_this_month(
        &self,
        proxy_iccid: &str,
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        let count: i64 = self
            .query_one(
                "SELECT COUNT(*) FROM sim_recipients WHERE iccid = $1 AND month = $2",
                &[&proxy_iccid, &month_of(now)],
            )?
            .get(0);
        narrow(count, "recipient count")
    }

    pub(in crate::store) fn recipient_known(
        &self,
        proxy_iccid: &str,
        to: &PhoneNumber,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM sim_recipients WHERE iccid = $1 AND month = $2 AND number = $3",
            &[&proxy_iccid, &month_of(now), &to.e164()],
        )
    }

    pub(in crate::store) fn record_blocked(
        &self,
        blocked: &BlockedMessage<'_>,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let from_position = blocked.from_position.map(i16::from);
        Ok(self
            .query_one(
                "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position, \
                 from_number, to_number, status, reason, rule, body, created_ms, updated_ms) \
                 VALUES ($1, $2, 'sms', $3, $4, $5, 'blocked', $6, $7, $8, $9, $9) RETURNING id",
                &[
                    &blocked.session_id,
                    &blocked.proxy_iccid,
                    &from_position,
                    &blocked.sender.e164(),
                    &blocked.to.map(PhoneNumber::e164),
                    &blocked.reason,
                    &blocked.rule,
                    &blocked.body,
                    &to_ms(now),
                ],
            )?
            .get(0))
    }

    /// Opens a session on exactly `live` under allocation's rules, in a
    /// savepoint: on a refusal nothing of it is written and the
    /// transaction goes on.
    pub(in crate::store) fn open_session_on(
        &mut self,
        new: NewSession,
        live: LiveSim,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        let store = self.store.clone();
        let handle = self.handle.clone();
        let savepoint = wait(&handle, self.tx.transaction())?;
        let opened = handle.block_on(async {
            tokio::time::timeout(
                STATEMENT_WAIT,
                store.allocate_in(&savepoint, new, vec![live], None, now),
            )
            .await
        });
        let record = match opened {
            Ok(record) => record?,
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "no answer from the database within {} s",
                    STATEMENT_WAIT.as_secs()
                )));
            }
        };
        wait(&handle, savepoint.commit())?;
        Ok(record)
    }

    pub(in crate::store) fn front_desk_of(
        &self,
        proxy_iccid: &str,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let staff: Option<String> = self
            .query_opt(
                "SELECT front_desk FROM sims WHERE iccid = $1",
                &[&proxy_iccid],
            )?
            .and_then(|row| row.get(0));
        staff.as_deref().map(number).transpose()
    }

    // Hubs.

    pub(in crate::store) fn is_hub(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM hubs WHERE number = $1", &[&number.e164()])
    }

    pub(in crate::store) fn hub_conversations(
        &self,
        proxy_iccid: &str,
        hub_number: &PhoneNumber,
    ) -> Result<Vec<HubConversation>, StoreError> {
        self.wait_store(hubs::conversations(&self.tx, proxy_iccid, hub_number))
    }

    pub(in crate::store) fn last_heard(
        &self,
        proxy_iccid: &str,
        hub_number: &PhoneNumber,
    ) -> Result<Option<String>, StoreError> {
        self.wait_store(hubs::last_heard(&self.tx, proxy_iccid, hub_number))
    }
}
