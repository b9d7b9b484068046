//! Hubs' rows: the hubs, their open sessions on a proxy with their codes,
//! the session whose counterpart a hub last heard from, and the code a new
//! or reopened session of a hub gets. The rules are
//! [`crate::masking::hub`]'s; this file reads and writes rows.
//!
//! A hub's side of a session is the participant row with a `hub_code`;
//! the database keeps the masking rule for every row without one and the
//! codes unique among a hub's open sessions on a proxy (schema v11).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::inbound::{InboundTx, sqlite_or};
use super::sessions::{SessionRecord, audit, corrupt, end_session, query_sessions, session_by_id};
use super::{Store, StoreError, from_ms, to_ms};
use crate::masking::hub;
use crate::masking::lifecycle::CloseReason;
use crate::number::PhoneNumber;

/// A hub as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubRecord {
    pub id: String,
    pub number: PhoneNumber,
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One open session of a hub on a proxy, with its code.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConversation {
    pub session: SessionRecord,
    pub code: String,
}

fn hub_from_row(row: &rusqlite::Row<'_>) -> Result<HubRecord, StoreError> {
    let number: String = row.get(1)?;
    Ok(HubRecord {
        id: row.get(0)?,
        number: PhoneNumber::from_e164(&number).map_err(|e| corrupt("hub number", e))?,
        label: row.get(2)?,
        created_at: from_ms(row.get(3)?)?,
    })
}

fn hub_by_id(conn: &Connection, id: &str) -> Result<HubRecord, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT id, number, label, created_ms FROM hubs WHERE id = ?1")?;
    let mut rows = statement.query(params![id])?;
    match rows.next()? {
        Some(row) => hub_from_row(row),
        None => Err(StoreError::NoSuchHub(id.to_string())),
    }
}

/// Which of `numbers` are hubs.
pub(super) fn hubs_among(
    conn: &Connection,
    numbers: &[&PhoneNumber],
) -> Result<Vec<PhoneNumber>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT 1 FROM hubs WHERE number = ?1")?;
    let mut hubs = Vec::new();
    for number in numbers {
        if statement.exists(params![number.e164()])? {
            hubs.push((*number).clone());
        }
    }
    Ok(hubs)
}

/// A code for one more open session of `hub` on `proxy`: `keep` (the code
/// a reopened session had) when no open session there has it or its keys,
/// else a new one.
pub(super) fn code_for(
    conn: &Connection,
    proxy: &str,
    hub_number: &PhoneNumber,
    keep: Option<&str>,
) -> Result<String, StoreError> {
    let taken: Vec<String> = conn
        .prepare_cached(
            "SELECT hub_code FROM participants
             WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1 AND hub_code IS NOT NULL",
        )?
        .query_map(params![proxy, hub_number.e164()], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
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
fn conversations(
    conn: &Connection,
    proxy: &str,
    hub_number: &PhoneNumber,
) -> Result<Vec<HubConversation>, StoreError> {
    let sessions = query_sessions(
        conn,
        "s.status = 'open' AND s.id IN (SELECT session_id FROM participants \
         WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1 AND hub_code IS NOT NULL) \
         ORDER BY s.id",
        &[&proxy, &hub_number.e164()],
    )?;
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
fn last_heard(
    conn: &Connection,
    proxy: &str,
    hub_number: &PhoneNumber,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT i.session_id FROM participants h
             JOIN interactions i ON i.session_id = h.session_id
             WHERE h.proxy_iccid = ?1 AND h.number = ?2 AND h.open = 1
               AND h.hub_code IS NOT NULL
               AND i.from_position IS NOT NULL AND i.from_position != h.position
               AND i.rule IS NULL AND i.status != 'dropped'
             ORDER BY i.created_ms DESC, i.id DESC LIMIT 1",
        )?
        .query_row(params![proxy, hub_number.e164()], |row| row.get(0))
        .optional()?)
}

impl Store {
    /// Makes `number` a hub. Its open sessions become hub sessions, each
    /// with a code; returns them.
    pub async fn create_hub(
        &self,
        number: PhoneNumber,
        label: Option<String>,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<(HubRecord, Vec<SessionRecord>), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.create_hub(number, label, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if !hubs_among(&tx, &[&number])?.is_empty() {
                return Err(StoreError::Conflict {
                    code: "hub_exists",
                    message: "that number is a hub already".into(),
                });
            }
            let open: Vec<(String, String)> = tx
                .prepare_cached(
                    "SELECT session_id, proxy_iccid FROM participants WHERE number = ?1 AND open = 1",
                )?
                .query_map(params![number.e164()], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (session, _) in &open {
                let other_is_hub = tx
                    .prepare_cached(
                        "SELECT 1 FROM participants WHERE session_id = ?1 AND number != ?2
                         AND hub_code IS NOT NULL",
                    )?
                    .exists(params![session, number.e164()])?;
                if other_is_hub {
                    return Err(StoreError::Conflict {
                        code: "two_hubs",
                        message: format!(
                            "the number is in open session {session} with a hub, and two hubs \
                             are never paired: close it first"
                        ),
                    });
                }
            }
            let id = format!("hub_{:016x}", rand::random::<u64>());
            tx.prepare_cached(
                "INSERT INTO hubs (id, number, label, created_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, number.e164(), label, to_ms(now)])?;
            let mut converted = Vec::with_capacity(open.len());
            for (session, proxy) in &open {
                let code = code_for(&tx, proxy, &number, None)?;
                tx.prepare_cached(
                    "UPDATE participants SET hub_code = ?3 WHERE session_id = ?1 AND number = ?2",
                )?
                .execute(params![session, number.e164(), code])?;
                converted.push(session_by_id(&tx, session)?);
            }
            audit(
                &tx,
                now,
                &actor,
                "hub.create",
                &id,
                &format!("{number:?}, {} open sessions given codes", open.len()),
            )?;
            let hub = hub_by_id(&tx, &id)?;
            tx.commit()?;
            Ok((hub, converted))
        })
        .await
    }

    /// Every hub, oldest first.
    pub async fn hubs(&self) -> Result<Vec<HubRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.hubs().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, number, label, created_ms FROM hubs ORDER BY created_ms, id",
            )?;
            let mut rows = statement.query([])?;
            let mut hubs = Vec::new();
            while let Some(row) = rows.next()? {
                hubs.push(hub_from_row(row)?);
            }
            Ok(hubs)
        })
        .await
    }

    /// The open sessions of every hub, each with the hub's id.
    pub async fn hub_sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.hub_sessions().await;
        }
        self.call(|conn| {
            let pairs: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT h.id, p.session_id FROM hubs h
                     JOIN participants p ON p.number = h.number AND p.open = 1
                      AND p.hub_code IS NOT NULL
                     ORDER BY h.id, p.proxy_iccid, p.hub_code",
                )?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            pairs
                .into_iter()
                .map(|(hub, session)| Ok((hub, session_by_id(conn, &session)?)))
                .collect()
        })
        .await
    }

    /// Removes a hub. Its open sessions end (`operator`): without the hub's
    /// exception they would break the masking rule. Returns the hub and
    /// the sessions ended.
    pub async fn remove_hub(
        &self,
        id: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<(HubRecord, Vec<SessionRecord>), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.remove_hub(id, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let hub = hub_by_id(&tx, &id)?;
            let open: Vec<String> = tx
                .prepare_cached(
                    "SELECT session_id FROM participants
                     WHERE number = ?1 AND open = 1 AND hub_code IS NOT NULL ORDER BY session_id",
                )?
                .query_map(params![hub.number.e164()], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut ended = Vec::with_capacity(open.len());
            for session in &open {
                end_session(&tx, session, CloseReason::Operator, now)?;
                ended.push(session_by_id(&tx, session)?);
            }
            tx.prepare_cached("DELETE FROM hubs WHERE id = ?1")?
                .execute(params![id])?;
            audit(
                &tx,
                now,
                &actor,
                "hub.remove",
                &id,
                &format!("{:?}, {} sessions ended", hub.number, ended.len()),
            )?;
            tx.commit()?;
            Ok((hub, ended))
        })
        .await
    }

    /// The open sessions of `hub_number` on the proxy with their codes, and
    /// the one whose counterpart the hub last heard from: where a call from
    /// the hub may go.
    pub async fn hub_conversations(
        &self,
        proxy_iccid: String,
        hub_number: PhoneNumber,
    ) -> Result<(Vec<HubConversation>, Option<String>), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.hub_conversations(proxy_iccid, hub_number).await;
        }
        self.read(|conn| {
            Ok((
                conversations(conn, &proxy_iccid, &hub_number)?,
                last_heard(conn, &proxy_iccid, &hub_number)?,
            ))
        })
    }
}

impl InboundTx<'_> {
    /// Whether `number` is a hub.
    pub fn is_hub(&self, number: &PhoneNumber) -> Result<bool, StoreError> {
        let tx = sqlite_or!(self, pg => pg.is_hub(number));
        Ok(!hubs_among(tx, &[number])?.is_empty())
    }

    /// The open sessions of `hub_number` on the proxy, with their codes.
    pub fn hub_conversations(
        &self,
        proxy_iccid: &str,
        hub_number: &PhoneNumber,
    ) -> Result<Vec<HubConversation>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.hub_conversations(proxy_iccid, hub_number));
        conversations(tx, proxy_iccid, hub_number)
    }

    /// The open session of `hub_number` on the proxy whose counterpart the
    /// hub last heard from.
    pub fn last_heard(
        &self,
        proxy_iccid: &str,
        hub_number: &PhoneNumber,
    ) -> Result<Option<String>, StoreError> {
        let tx = sqlite_or!(self, pg => pg.last_heard(proxy_iccid, hub_number));
        last_heard(tx, proxy_iccid, hub_number)
    }

    /// Records what was written as an interaction's text when what was
    /// sent differs (a message to a hub goes out with its code in front).
    pub fn set_interaction_body(&self, interaction: i64, body: &str) -> Result<(), StoreError> {
        let tx = sqlite_or!(self, pg => pg.set_interaction_body(interaction, body));
        tx.prepare_cached("UPDATE interactions SET body = ?2 WHERE id = ?1")?
            .execute(params![interaction, body])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::Mode;
    use crate::store::fixtures::{NOW, PROXY, number, store_with_session};
    use crate::store::{LiveSim, NewSession};

    const HUB: &str = "+447911000100";

    fn new_session(a: &str, b: &str) -> NewSession {
        NewSession {
            participants: [number(a), number(b)],
            mode: Mode::Both,
            ttl: None,
            idle_ttl: None,
            label: None,
            sticky: true,
            actor: "test".into(),
            fallback_number: None,
            proxy: None,
            limits: Default::default(),
        }
    }

    fn live() -> Vec<LiveSim> {
        vec![LiveSim {
            iccid: PROXY.into(),
            healthy: true,
            signal_dbm: Some(-70),
            voice_capable: true,
        }]
    }

    #[tokio::test]
    async fn a_hub_holds_many_sessions_on_one_sim_each_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        let counterparts: Vec<String> = (0..12).map(|i| format!("+4479110002{i:02}")).collect();
        // Before it is a hub, a second session on the only SIM is refused.
        store
            .open_session(new_session(HUB, &counterparts[0]), live(), NOW)
            .await
            .unwrap();
        let refused = store
            .open_session(new_session(HUB, &counterparts[1]), live(), NOW)
            .await;
        assert!(refused.is_err());
        let (hub, converted) = store
            .create_hub(number(HUB), Some("dispatch".into()), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(converted.len(), 1, "its open session got a code");
        assert!(converted[0].hub.is_some());
        let mut codes = vec![converted[0].hub.clone().unwrap().code];
        for other in &counterparts[1..] {
            let session = store
                .open_session(new_session(other, HUB), live(), NOW)
                .await
                .unwrap();
            let side = session.hub.clone().expect("a hub session");
            assert_eq!(side.position, 1);
            codes.push(side.code);
        }
        let keyed: std::collections::HashSet<String> = codes.iter().map(|c| hub::keys(c)).collect();
        assert_eq!(keyed.len(), codes.len(), "{codes:?}");
        // A counterpart keeps the masking rule; two hubs are never paired.
        assert!(
            store
                .open_session(new_session(&counterparts[3], HUB), live(), NOW)
                .await
                .is_err()
        );
        let (conversations, last) = store
            .hub_conversations(PROXY.into(), number(HUB))
            .await
            .unwrap();
        assert_eq!((conversations.len(), last), (12, None));
        let sessions = store.hub_sessions().await.unwrap();
        assert_eq!(sessions.len(), 12);
        assert!(sessions.iter().all(|(id, _)| id == &hub.id));
        // Removing the hub ends its sessions: the rule would break otherwise.
        let (_, ended) = store
            .remove_hub(hub.id.clone(), "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(ended.len(), 12);
        assert!(store.hubs().await.unwrap().is_empty());
        assert!(matches!(
            store.remove_hub(hub.id, "test".into(), NOW).await,
            Err(StoreError::NoSuchHub(_))
        ));
    }

    #[tokio::test]
    async fn a_reopened_hub_session_keeps_its_code_unless_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_session(&dir, None).await;
        store
            .create_hub(number(HUB), None, "test".into(), NOW)
            .await
            .unwrap();
        let first = store
            .open_session(new_session("+447911000201", HUB), live(), NOW)
            .await
            .unwrap();
        let code = first.hub.clone().unwrap().code;
        store
            .close_session(first.id.clone(), "test".into(), NOW)
            .await
            .unwrap();
        let reopened = store
            .reopen_session(first.id.clone(), None, None, "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(reopened.hub.unwrap().code, code);
        // The hub goes: a reopened session of it is an ordinary one.
        let hub_id = store.hubs().await.unwrap()[0].id.clone();
        store.remove_hub(hub_id, "test".into(), NOW).await.unwrap();
        let plain = store
            .reopen_session(first.id, None, None, "test".into(), NOW)
            .await
            .unwrap();
        assert_eq!(plain.hub, None);
    }
}
