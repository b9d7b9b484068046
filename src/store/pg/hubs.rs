//! Hubs on PostgreSQL, as `store::hubs` keeps them on SQLite: one hub list
//! for the fleet, a hub's open sessions on a proxy with their codes, the
//! session whose counterpart a hub last heard from, and the code a new or
//! reopened session of a hub gets. The rules are [`crate::masking::hub`]'s.
//!
//! Whoever writes a hub's rows (making a number a hub, removing it, opening
//! or reopening one of its sessions) first takes the hub's per-person
//! advisory lock, as allocation does for every participant: on any
//! appliance, they queue, and a code is drawn knowing every other. The
//! indexes of schema v6 refuse whatever slips past.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::super::hubs::{HubConversation, HubRecord};
use super::super::sessions::SessionRecord;
use super::super::{StoreError, from_ms, to_ms};
use super::allocate::{lock_people, rail};
use super::sessions::{audit, end_session, number, query_sessions, session_by_id};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::hub;
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;

const HUB_COLUMNS: &str = "id, number, label, created_ms";

fn hub_from_row(row: &Row) -> Result<HubRecord, StoreError> {
    Ok(HubRecord {
        id: row.get(0),
        number: number(row.get(1))?,
        label: row.get(2),
        created_at: from_ms(row.get(3))?,
    })
}

async fn hub_by_id(client: &impl GenericClient, id: &str) -> Result<HubRecord, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {HUB_COLUMNS} FROM hubs WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::NoSuchHub(id.to_string()))?;
    hub_from_row(&row)
}

/// Which of `numbers` are hubs, in their order.
pub(super) async fn hubs_among(
    client: &impl GenericClient,
    numbers: &[&PhoneNumber],
) -> Result<Vec<PhoneNumber>, StoreError> {
    let texts: Vec<&str> = numbers.iter().map(|n| n.e164()).collect();
    let found: Vec<String> = client
        .query("SELECT number FROM hubs WHERE number = ANY($1)", &[&texts])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(numbers
        .iter()
        .filter(|n| found.iter().any(|f| f == n.e164()))
        .map(|n| (*n).clone())
        .collect())
}

/// A code for one more open session of `hub_number` on `proxy`: `keep`
/// (the code a reopened session had) when no open session there has it or
/// its keys, else a new one. The caller holds the hub's lock.
pub(super) async fn code_for(
    client: &impl GenericClient,
    proxy: &str,
    hub_number: &PhoneNumber,
    keep: Option<&str>,
) -> Result<String, StoreError> {
    let taken: Vec<String> = client
        .query(
            "SELECT hub_code FROM participants \
             WHERE proxy_iccid = $1 AND number = $2 AND open AND hub_code IS NOT NULL",
            &[&proxy, &hub_number.e164()],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(code) = keep
        && !taken
            .iter()
            .any(|t| t == code || hub::keys(t) == hub::keys(code))
    {
        return Ok(code.to_string());
    }
    let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
    hub::new_code(&taken, rand::random()).ok_or_else(|| StoreError::Conflict {
        code: "hub_full",
        message: format!(
            "the hub has {} open sessions on this proxy, as many as codes can tell apart",
            taken.len()
        ),
    })
}

/// The open sessions of `hub_number` on `proxy`, with their codes.
pub(super) async fn conversations(
    client: &impl GenericClient,
    proxy: &str,
    hub_number: &PhoneNumber,
) -> Result<Vec<HubConversation>, StoreError> {
    let sessions = query_sessions(
        client,
        "s.status = 'open' AND s.id IN (SELECT session_id FROM participants \
         WHERE proxy_iccid = $1 AND number = $2 AND open AND hub_code IS NOT NULL) \
         ORDER BY s.id",
        &[&proxy, &hub_number.e164()],
    )
    .await?;
    Ok(sessions
        .into_iter()
        .filter_map(|session| {
            let code = session.hub.as_ref()?.code.clone();
            Some(HubConversation { session, code })
        })
        .collect())
}

/// The open session of `hub_number` on `proxy` whose counterpart the hub
/// last heard from (an SMS relayed to it, a call).
pub(super) async fn last_heard(
    client: &impl GenericClient,
    proxy: &str,
    hub_number: &PhoneNumber,
) -> Result<Option<String>, StoreError> {
    Ok(client
        .query_opt(
            "SELECT i.session_id FROM participants h \
             JOIN interactions i ON i.session_id = h.session_id \
             WHERE h.proxy_iccid = $1 AND h.number = $2 AND h.open \
               AND h.hub_code IS NOT NULL \
               AND i.from_position IS NOT NULL AND i.from_position != h.position \
               AND i.rule IS NULL AND i.status != 'dropped' \
             ORDER BY i.created_ms DESC, i.id DESC LIMIT 1",
            &[&proxy, &hub_number.e164()],
        )
        .await
        .map_err(pg_error)?
        .map(|row| row.get(0)))
}

impl PgStore {
    /// Makes `number` a hub. Its open sessions become hub sessions, each
    /// with a code; returns them.
    pub(in crate::store) async fn create_hub(
        &self,
        number: PhoneNumber,
        label: Option<String>,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<(HubRecord, Vec<SessionRecord>), StoreError> {
        in_transaction!(self, |tx| {
            async {
                lock_people(&tx, &[&number]).await?;
                if !hubs_among(&tx, &[&number]).await?.is_empty() {
                    return Err(hub_exists());
                }
                let open: Vec<(String, String)> = tx
                    .query(
                        "SELECT session_id, proxy_iccid FROM participants \
                         WHERE number = $1 AND open ORDER BY session_id",
                        &[&number.e164()],
                    )
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                for (session, _) in &open {
                    let other_is_hub = tx
                        .query_opt(
                            "SELECT 1 FROM participants WHERE session_id = $1 AND number != $2 \
                             AND hub_code IS NOT NULL",
                            &[session, &number.e164()],
                        )
                        .await
                        .map_err(pg_error)?
                        .is_some();
                    if other_is_hub {
                        return Err(StoreError::Conflict {
                            code: "two_hubs",
                            message: format!(
                                "the number is in open session {session} with a hub, and two \
                                 hubs are never paired: close it first"
                            ),
                        });
                    }
                }
                let id = format!("hub_{:016x}", rand::random::<u64>());
                tx.execute(
                    "INSERT INTO hubs (id, number, label, created_ms) VALUES ($1, $2, $3, $4)",
                    &[&id, &number.e164(), &label, &to_ms(now)],
                )
                .await
                .map_err(|error| {
                    // Another appliance made it a hub first (the number's
                    // lock makes this rare; the unique key makes it sure).
                    if error
                        .as_db_error()
                        .is_some_and(|db| db.constraint() == Some("hubs_number_key"))
                    {
                        hub_exists()
                    } else {
                        pg_error(error)
                    }
                })?;
                let mut converted = Vec::with_capacity(open.len());
                for (session, proxy) in &open {
                    let code = code_for(&tx, proxy, &number, None).await?;
                    tx.execute(
                        "UPDATE participants SET hub_code = $3 \
                         WHERE session_id = $1 AND number = $2",
                        &[session, &number.e164(), &code],
                    )
                    .await
                    .map_err(rail)?;
                    converted.push(session_by_id(&tx, session).await?);
                }
                audit(
                    &tx,
                    self,
                    now,
                    &actor,
                    "hub.create",
                    &id,
                    &format!("{number:?}, {} open sessions given codes", open.len()),
                )
                .await?;
                let hub = hub_by_id(&tx, &id).await?;
                Ok((hub, converted))
            }
            .await
        })
    }

    /// Every hub of the fleet, oldest first.
    pub(in crate::store) async fn hubs(&self) -> Result<Vec<HubRecord>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {HUB_COLUMNS} FROM hubs ORDER BY created_ms, id"),
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(hub_from_row)
            .collect()
    }

    /// The open sessions of every hub, each with the hub's id.
    pub(in crate::store) async fn hub_sessions(
        &self,
    ) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let client = self.client().await?;
        let pairs: Vec<(String, String)> = client
            .query(
                "SELECT h.id, p.session_id FROM hubs h \
                 JOIN participants p ON p.number = h.number AND p.open \
                  AND p.hub_code IS NOT NULL \
                 ORDER BY h.id, p.proxy_iccid, p.hub_code",
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let ids: Vec<&str> = pairs.iter().map(|(_, session)| session.as_str()).collect();
        let mut sessions: HashMap<String, SessionRecord> =
            query_sessions(&client, "s.id = ANY($1)", &[&ids])
                .await?
                .into_iter()
                .map(|session| (session.id.clone(), session))
                .collect();
        // A session that closed between the two reads is left out.
        Ok(pairs
            .into_iter()
            .filter_map(|(hub, session)| Some((hub, sessions.remove(&session)?)))
            .collect())
    }

    /// Removes a hub. Its open sessions end (`operator`): without the hub's
    /// exception they would break the masking rule. Returns the hub and
    /// the sessions ended.
    pub(in crate::store) async fn remove_hub(
        &self,
        id: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<(HubRecord, Vec<SessionRecord>), StoreError> {
        in_transaction!(self, |tx| {
            async {
                let hub = hub_by_id(&tx, &id).await?;
                lock_people(&tx, &[&hub.number]).await?;
                // Read again under the lock: another appliance may have
                // removed it meanwhile.
                let hub = hub_by_id(&tx, &id).await?;
                let open: Vec<String> = tx
                    .query(
                        "SELECT session_id FROM participants \
                         WHERE number = $1 AND open AND hub_code IS NOT NULL \
                         ORDER BY session_id FOR UPDATE",
                        &[&hub.number.e164()],
                    )
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut ended = Vec::with_capacity(open.len());
                for session in &open {
                    end_session(&tx, session, CloseReason::Operator, now).await?;
                    ended.push(session_by_id(&tx, session).await?);
                }
                tx.execute("DELETE FROM hubs WHERE id = $1", &[&id])
                    .await
                    .map_err(pg_error)?;
                audit(
                    &tx,
                    self,
                    now,
                    &actor,
                    "hub.remove",
                    &id,
                    &format!("{:?}, {} sessions ended", hub.number, ended.len()),
                )
                .await?;
                Ok((hub, ended))
            }
            .await
        })
    }

    /// The open sessions of `hub_number` on the proxy with their codes, and
    /// the one whose counterpart the hub last heard from.
    pub(in crate::store) async fn hub_conversations(
        &self,
        proxy_iccid: String,
        hub_number: PhoneNumber,
    ) -> Result<(Vec<HubConversation>, Option<String>), StoreError> {
        let client = self.client().await?;
        Ok((
            conversations(&client, &proxy_iccid, &hub_number).await?,
            last_heard(&client, &proxy_iccid, &hub_number).await?,
        ))
    }
}

fn hub_exists() -> StoreError {
    StoreError::Conflict {
        code: "hub_exists",
        message: "that number is a hub already".into(),
    }
}
