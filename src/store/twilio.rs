//! The Twilio Proxy facade's tables: services, their numbers, and the
//! sessions and participants created through it. The appliance's own
//! sessions stay the one model: a facade session that has both
//! participants points at one, and the appliance's sessions on a service's
//! numbers are that service's sessions.

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::allocate::allocate_in;
use super::{LiveSim, NewSession, SessionRecord, Store, StoreError, to_ms};

/// A Proxy Service: a pool of SIMs and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioService {
    pub sid: String,
    pub unique_name: Option<String>,
    /// Seconds a session lives after its last interaction (0: forever).
    pub default_ttl: Option<i64>,
    pub callback_url: Option<String>,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    /// `prefer-sticky` or `avoid-sticky`.
    pub number_selection_behavior: String,
    pub geo_match_level: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A SIM of a service's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioNumber {
    pub iccid: String,
    /// The SIM's own number (E.164).
    pub msisdn: String,
    pub service_sid: String,
    /// Handed only to sessions that ask for it by `ProxyIdentifier`.
    pub is_reserved: bool,
    /// Open sessions on it now.
    pub in_use: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A session created through the facade (or an appliance session the
/// facade changed: deleted, its participants renamed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSessionRow {
    pub sid: String,
    pub service_sid: String,
    /// The appliance's session, once both participants are known.
    pub session_id: Option<String>,
    pub unique_name: Option<String>,
    pub ttl: Option<i64>,
    pub expiry_ms: Option<i64>,
    /// `sms`, `voice` or `both`.
    pub mode: String,
    /// Closed before its second participant came.
    pub closed_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A participant as the facade knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioParticipantRow {
    pub sid: String,
    pub session_sid: String,
    pub position: u8,
    /// The number, while the session waits for its second participant.
    pub identifier: Option<String>,
    pub friendly_name: Option<String>,
    /// The proxy it asked for (`ProxyIdentifier`), while waiting.
    pub proxy_iccid: Option<String>,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
}

/// One entry of a service's session list: a facade row, an appliance
/// session, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSessionRef {
    pub row: Option<TwilioSessionRow>,
    pub session_id: Option<String>,
}

const SERVICE_COLUMNS: &str = "sid, unique_name, default_ttl, callback_url, \
    intercept_callback_url, out_of_session_callback_url, number_selection_behavior, \
    geo_match_level, created_ms, updated_ms";

fn service_of(row: &Row<'_>) -> rusqlite::Result<TwilioService> {
    Ok(TwilioService {
        sid: row.get(0)?,
        unique_name: row.get(1)?,
        default_ttl: row.get(2)?,
        callback_url: row.get(3)?,
        intercept_callback_url: row.get(4)?,
        out_of_session_callback_url: row.get(5)?,
        number_selection_behavior: row.get(6)?,
        geo_match_level: row.get(7)?,
        created_ms: row.get(8)?,
        updated_ms: row.get(9)?,
    })
}

/// A number's sessions in use come from `sim_load`, kept by triggers (not a
/// count over the open sessions of each number listed).
const NUMBER_SELECT: &str = "SELECT n.iccid, s.msisdn, n.service_sid, n.is_reserved, \
    COALESCE((SELECT l.open_sessions FROM sim_load l WHERE l.iccid = n.iccid), 0), \
    n.created_ms, n.updated_ms FROM twilio_numbers n JOIN sims s ON s.iccid = n.iccid";

fn number_of(row: &Row<'_>) -> rusqlite::Result<TwilioNumber> {
    Ok(TwilioNumber {
        iccid: row.get(0)?,
        msisdn: row.get(1)?,
        service_sid: row.get(2)?,
        is_reserved: row.get(3)?,
        in_use: row.get(4)?,
        created_ms: row.get(5)?,
        updated_ms: row.get(6)?,
    })
}

const SESSION_COLUMNS: &str = "sid, service_sid, session_id, unique_name, ttl, expiry_ms, mode, \
    closed_ms, deleted_ms, created_ms, updated_ms";

fn session_row_of(row: &Row<'_>) -> rusqlite::Result<TwilioSessionRow> {
    Ok(TwilioSessionRow {
        sid: row.get(0)?,
        service_sid: row.get(1)?,
        session_id: row.get(2)?,
        unique_name: row.get(3)?,
        ttl: row.get(4)?,
        expiry_ms: row.get(5)?,
        mode: row.get(6)?,
        closed_ms: row.get(7)?,
        deleted_ms: row.get(8)?,
        created_ms: row.get(9)?,
        updated_ms: row.get(10)?,
    })
}

const PARTICIPANT_COLUMNS: &str = "sid, session_sid, position, identifier, friendly_name, \
    proxy_iccid, created_ms, deleted_ms";

fn participant_of(row: &Row<'_>) -> rusqlite::Result<TwilioParticipantRow> {
    Ok(TwilioParticipantRow {
        sid: row.get(0)?,
        session_sid: row.get(1)?,
        position: row.get(2)?,
        identifier: row.get(3)?,
        friendly_name: row.get(4)?,
        proxy_iccid: row.get(5)?,
        created_ms: row.get(6)?,
        deleted_ms: row.get(7)?,
    })
}

/// A unique constraint that the caller can name.
fn unique(error: rusqlite::Error, code: &'static str, message: String) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict { code, message }
        }
        _ => StoreError::Sqlite(error),
    }
}

/// Writes a facade session row; `verb` is `INSERT` or `INSERT OR IGNORE`.
fn insert_session(
    conn: &rusqlite::Connection,
    verb: &str,
    row: &TwilioSessionRow,
) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "{verb} INTO twilio_sessions ({SESSION_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            row.sid,
            row.service_sid,
            row.session_id,
            row.unique_name,
            row.ttl,
            row.expiry_ms,
            row.mode,
            row.closed_ms,
            row.deleted_ms,
            row.created_ms,
            row.updated_ms
        ],
    )
}

/// Writes a participant row; `verb` is `INSERT` or `INSERT OR IGNORE`.
fn write_participant(
    conn: &Connection,
    verb: &str,
    p: &TwilioParticipantRow,
) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "{verb} INTO twilio_participants ({PARTICIPANT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            p.sid,
            p.session_sid,
            p.position,
            p.identifier,
            p.friendly_name,
            p.proxy_iccid,
            p.created_ms,
            p.deleted_ms
        ],
    )
}

fn insert_participant(tx: &Connection, p: &TwilioParticipantRow) -> Result<(), StoreError> {
    write_participant(tx, "INSERT", p).map_err(|e| {
        unique(
            e,
            "participant_exists",
            "the session already has that participant".into(),
        )
    })?;
    Ok(())
}

/// Opens the appliance's session for a facade session that now has both
/// participants, in the caller's transaction: the waiting numbers are
/// forgotten (the appliance's participants hold them from now on).
fn complete(
    tx: &Connection,
    session_sid: &str,
    new: NewSession,
    live: Vec<LiveSim>,
    now: OffsetDateTime,
) -> Result<SessionRecord, StoreError> {
    let record = allocate_in(tx, new, live, now)?;
    tx.execute(
        "UPDATE twilio_sessions SET session_id = ?2, updated_ms = ?3 WHERE sid = ?1",
        params![session_sid, record.id, to_ms(now)],
    )?;
    tx.execute(
        "UPDATE twilio_participants SET identifier = NULL, proxy_iccid = NULL
         WHERE session_sid = ?1",
        params![session_sid],
    )?;
    Ok(record)
}

impl Store {
    pub async fn twilio_create_service(&self, service: TwilioService) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_create_service(service).await;
        }
        self.call(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO twilio_services ({SERVICE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    service.sid,
                    service.unique_name,
                    service.default_ttl,
                    service.callback_url,
                    service.intercept_callback_url,
                    service.out_of_session_callback_url,
                    service.number_selection_behavior,
                    service.geo_match_level,
                    service.created_ms,
                    service.updated_ms
                ],
            )
            .map_err(|e| {
                unique(
                    e,
                    "unique_name_taken",
                    "another service has that unique_name".into(),
                )
            })?;
            Ok(())
        })
        .await
    }

    pub async fn twilio_update_service(&self, service: TwilioService) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_update_service(service).await;
        }
        self.call(move |conn| {
            conn.execute(
                "UPDATE twilio_services SET unique_name = ?2, default_ttl = ?3, callback_url = ?4,
                     intercept_callback_url = ?5, out_of_session_callback_url = ?6,
                     number_selection_behavior = ?7, geo_match_level = ?8, updated_ms = ?9
                 WHERE sid = ?1",
                params![
                    service.sid,
                    service.unique_name,
                    service.default_ttl,
                    service.callback_url,
                    service.intercept_callback_url,
                    service.out_of_session_callback_url,
                    service.number_selection_behavior,
                    service.geo_match_level,
                    service.updated_ms
                ],
            )
            .map_err(|e| {
                unique(
                    e,
                    "unique_name_taken",
                    "another service has that unique_name".into(),
                )
            })?;
            Ok(())
        })
        .await
    }

    /// Deletes a service, its numbers and its facade sessions; whether it
    /// existed.
    pub async fn twilio_delete_service(&self, sid: String) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_delete_service(sid).await;
        }
        self.call(move |conn| {
            Ok(conn.execute("DELETE FROM twilio_services WHERE sid = ?1", params![sid])? > 0)
        })
        .await
    }

    /// A service by SID or unique name.
    pub async fn twilio_service(&self, key: String) -> Result<Option<TwilioService>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_service(key).await;
        }
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {SERVICE_COLUMNS} FROM twilio_services
                         WHERE sid = ?1 OR unique_name = ?1 ORDER BY sid = ?1 DESC LIMIT 1"
                    ),
                    params![key],
                    service_of,
                )
                .optional()?)
        })
    }

    /// Services, newest first.
    pub async fn twilio_services(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<TwilioService>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_services(limit, offset).await;
        }
        self.read(move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {SERVICE_COLUMNS} FROM twilio_services
                 ORDER BY created_ms DESC, sid LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = statement.query_map(params![limit as i64, offset as i64], service_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Adds a SIM to a service's pool (a SIM is in one pool at most).
    pub async fn twilio_add_number(
        &self,
        service_sid: String,
        iccid: String,
        is_reserved: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg
                .twilio_add_number(service_sid, iccid, is_reserved, now)
                .await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO twilio_numbers (iccid, service_sid, is_reserved, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![iccid, service_sid, is_reserved, now],
            )
            .map_err(|e| {
                unique(
                    e,
                    "number_in_use",
                    "the number already belongs to a service".into(),
                )
            })?;
            Ok(())
        })
        .await
    }

    pub async fn twilio_update_number(
        &self,
        iccid: String,
        is_reserved: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_update_number(iccid, is_reserved, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            conn.execute(
                "UPDATE twilio_numbers SET is_reserved = ?2, updated_ms = ?3 WHERE iccid = ?1",
                params![iccid, is_reserved, now],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn twilio_remove_number(&self, iccid: String) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_remove_number(iccid).await;
        }
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM twilio_numbers WHERE iccid = ?1",
                params![iccid],
            )? > 0)
        })
        .await
    }

    /// A service's numbers, in the order they were added; `limit` 0 for all.
    pub async fn twilio_numbers(
        &self,
        service_sid: String,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<TwilioNumber>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_numbers(service_sid, limit, offset).await;
        }
        let limit = if limit == 0 { -1 } else { limit as i64 };
        self.read(move |conn| {
            let mut statement = conn.prepare(&format!(
                "{NUMBER_SELECT} WHERE n.service_sid = ?1
                 ORDER BY n.created_ms, n.iccid LIMIT ?2 OFFSET ?3"
            ))?;
            let rows =
                statement.query_map(params![service_sid, limit, offset as i64], number_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The pool entry of a SIM, whichever service holds it.
    pub async fn twilio_number(&self, iccid: String) -> Result<Option<TwilioNumber>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_number(iccid).await;
        }
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("{NUMBER_SELECT} WHERE n.iccid = ?1"),
                    params![iccid],
                    number_of,
                )
                .optional()?)
        })
    }

    /// A service's sessions, newest first: those created through the
    /// facade and the appliance's own sessions on its numbers. Deleted
    /// ones are left out.
    pub async fn twilio_service_sessions(
        &self,
        service_sid: String,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ServiceSessionRef>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_service_sessions(service_sid, limit, offset).await;
        }
        self.read(move |conn| {
            let mut statement = conn.prepare(
                "SELECT sid, session_id, created FROM (
                     SELECT t.sid AS sid, t.session_id AS session_id, t.created_ms AS created
                     FROM twilio_sessions t WHERE t.service_sid = ?1 AND t.deleted_ms IS NULL
                     UNION ALL
                     SELECT NULL, s.id, s.opened_ms FROM sessions s
                     WHERE s.proxy_iccid IN (SELECT iccid FROM twilio_numbers WHERE service_sid = ?1)
                       AND NOT EXISTS (SELECT 1 FROM twilio_sessions t WHERE t.session_id = s.id))
                 ORDER BY created DESC, sid, session_id LIMIT ?2 OFFSET ?3",
            )?;
            let refs = statement
                .query_map(params![service_sid, limit as i64, offset as i64], |row| {
                    Ok((row.get::<_, Option<String>>(0)?, row.get(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(refs.len());
            for (sid, session_id) in refs {
                let row = match sid {
                    Some(sid) => Some(conn.query_row(
                        &format!("SELECT {SESSION_COLUMNS} FROM twilio_sessions WHERE sid = ?1"),
                        params![sid],
                        session_row_of,
                    )?),
                    None => None,
                };
                out.push(ServiceSessionRef { row, session_id });
            }
            Ok(out)
        })
    }

    /// A facade session row by SID, by unique name within its service, or
    /// by the appliance session it points at.
    pub async fn twilio_session_row(
        &self,
        service_sid: String,
        key: String,
    ) -> Result<Option<TwilioSessionRow>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_session_row(service_sid, key).await;
        }
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM twilio_sessions WHERE service_sid = ?1
                         AND (sid = ?2 OR unique_name = ?2 OR session_id = ?2)
                         ORDER BY sid = ?2 DESC LIMIT 1"
                    ),
                    params![service_sid, key],
                    session_row_of,
                )
                .optional()?)
        })
    }

    /// Records a facade session with the participants given at creation;
    /// with `open` (both participants known) it opens the appliance's
    /// session in the same transaction.
    pub async fn twilio_create_session(
        &self,
        row: TwilioSessionRow,
        participants: Vec<TwilioParticipantRow>,
        open: Option<(NewSession, Vec<LiveSim>)>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_create_session(row, participants, open, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            insert_session(&tx, "INSERT", &row).map_err(|e| {
                unique(
                    e,
                    "unique_name_taken",
                    "another session of this service has that unique_name".into(),
                )
            })?;
            for participant in &participants {
                insert_participant(&tx, participant)?;
            }
            let record = match open {
                Some((new, live)) => Some(complete(&tx, &row.sid, new, live, now)?),
                None => None,
            };
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Adds a participant to a facade session; with `open` (it is the
    /// second) the appliance's session opens in the same transaction.
    pub async fn twilio_add_participant(
        &self,
        participant: TwilioParticipantRow,
        open: Option<(NewSession, Vec<LiveSim>)>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_add_participant(participant, open, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            insert_participant(&tx, &participant)?;
            let record = match open {
                Some((new, live)) => Some(complete(&tx, &participant.session_sid, new, live, now)?),
                None => None,
            };
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Makes an appliance session a facade row (to mark it deleted, or to
    /// name its participants) unless it has one; answers the row.
    pub async fn twilio_adopt_session(
        &self,
        row: TwilioSessionRow,
    ) -> Result<TwilioSessionRow, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_adopt_session(row).await;
        }
        self.call(move |conn| {
            insert_session(conn, "INSERT OR IGNORE", &row)?;
            Ok(conn.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM twilio_sessions WHERE sid = ?1"),
                params![row.sid],
                session_row_of,
            )?)
        })
        .await
    }

    /// Marks a facade session closed (before it had two participants) or
    /// deleted.
    pub async fn twilio_mark_session(
        &self,
        sid: String,
        closed: bool,
        deleted: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_mark_session(sid, closed, deleted, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            conn.execute(
                "UPDATE twilio_sessions SET
                     closed_ms = CASE WHEN ?2 THEN COALESCE(closed_ms, ?4) ELSE closed_ms END,
                     deleted_ms = CASE WHEN ?3 THEN COALESCE(deleted_ms, ?4) ELSE deleted_ms END,
                     updated_ms = ?4
                 WHERE sid = ?1",
                params![sid, closed, deleted, now],
            )?;
            Ok(())
        })
        .await
    }

    /// The participants a facade session recorded, deleted ones included.
    pub async fn twilio_participants(
        &self,
        session_sid: String,
    ) -> Result<Vec<TwilioParticipantRow>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_participants(session_sid).await;
        }
        self.read(move |conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {PARTICIPANT_COLUMNS} FROM twilio_participants
                 WHERE session_sid = ?1 ORDER BY position"
            ))?;
            let rows = statement.query_map(params![session_sid], participant_of)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Records a participant of an adopted appliance session (to mark it
    /// deleted) unless recorded.
    pub async fn twilio_record_participant(
        &self,
        participant: TwilioParticipantRow,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_record_participant(participant).await;
        }
        self.call(move |conn| {
            write_participant(conn, "INSERT OR IGNORE", &participant)?;
            Ok(())
        })
        .await
    }

    /// Removes a participant: one still waiting is forgotten; one of an
    /// appliance session is marked deleted.
    pub async fn twilio_delete_participant(
        &self,
        sid: String,
        waiting: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.twilio_delete_participant(sid, waiting, now).await;
        }
        let now = to_ms(now);
        self.call(move |conn| {
            if waiting {
                conn.execute(
                    "DELETE FROM twilio_participants WHERE sid = ?1",
                    params![sid],
                )?;
            } else {
                conn.execute(
                    "UPDATE twilio_participants SET deleted_ms = COALESCE(deleted_ms, ?2)
                     WHERE sid = ?1",
                    params![sid, now],
                )?;
            }
            Ok(())
        })
        .await
    }
}
