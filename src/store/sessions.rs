//! The pool (modems, SIMs) and sessions: typed calls on the writer thread.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::masking::Mode;
use crate::masking::allocation::PoolLimits;
use crate::masking::lifecycle::{CloseReason, Session, SessionStatus};
use crate::number::PhoneNumber;

use super::allocate::{allocate_and_insert, budget_use, reopen};
use super::{Store, StoreError, from_ms, to_ms};

/// The most sessions one listing returns.
pub const MAX_PAGE_SIZE: usize = 500;

/// A SIM of the pool as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimRecord {
    pub iccid: String,
    pub msisdn: PhoneNumber,
    pub imsi: String,
    pub modem_imei: Option<String>,
    pub enabled: bool,
    /// The participant this SIM is pinned to: nobody else gets it.
    pub reserved_for: Option<PhoneNumber>,
    /// No new sessions; the open ones run to their end.
    pub draining: bool,
    /// The staff number strangers are paired with (front desk).
    pub front_desk: Option<PhoneNumber>,
}

/// A change to a SIM's settings; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct SimChange {
    pub enabled: Option<bool>,
    /// `Some(None)` releases the reservation.
    pub reserved_for: Option<Option<PhoneNumber>>,
    pub draining: Option<bool>,
    /// `Some(None)` ends the front desk.
    pub front_desk: Option<Option<PhoneNumber>>,
}

/// A modem as stored (by IMEI).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModemRecord {
    pub imei: String,
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    pub profile: String,
    pub port: String,
}

/// What the bank knows right now about a SIM and allocation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSim {
    pub iccid: String,
    pub healthy: bool,
    pub signal_dbm: Option<i32>,
    pub voice_capable: bool,
}

/// A request to open a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub participants: [PhoneNumber; 2],
    pub mode: Mode,
    pub ttl: Option<Duration>,
    pub idle_ttl: Option<Duration>,
    pub label: Option<String>,
    /// Prefer a proxy one of the participants used before.
    pub sticky: bool,
    /// Who asked (a token name, `cli`), for the audit trail.
    pub actor: String,
    /// Where a former participant's calls go once the session expired.
    pub fallback_number: Option<PhoneNumber>,
    /// Only this proxy (a front desk pairing a stranger on the SIM they
    /// reached); allocation's rules still apply to it.
    pub proxy: Option<String>,
    /// The SIMs' budgets.
    pub limits: PoolLimits,
}

/// A session as stored, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub proxy_iccid: String,
    pub proxy_number: PhoneNumber,
    /// `None` for a participant erased on request (`simmask erase`).
    pub participants: [Option<PhoneNumber>; 2],
    pub mode: Mode,
    pub status: SessionStatus,
    pub label: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub idle_ttl_seconds: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Why it ended; `None` while open.
    pub close_reason: Option<CloseReason>,
    pub fallback_number: Option<PhoneNumber>,
    /// The hub's side, when one participant is a hub: its position and the
    /// session's code.
    pub hub: Option<HubSide>,
}

/// The hub's side of a session with a hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubSide {
    /// The hub's position among the participants (0 or 1).
    pub position: u8,
    /// The session's code among the hub's sessions on its proxy (`K7`).
    pub code: String,
}

impl SessionRecord {
    /// The view the masking rules take; `None` once a participant is
    /// erased (such a session was closed by the erasure: nothing to route).
    pub fn rules_view(&self) -> Option<Session> {
        let [Some(a), Some(b)] = &self.participants else {
            return None;
        };
        Some(Session {
            id: self.id.clone(),
            proxy_iccid: self.proxy_iccid.clone(),
            participants: [a.clone(), b.clone()],
            mode: self.mode,
            status: self.status,
            opened_at: self.opened_at,
            expires_at: self.expires_at,
            idle_ttl: self.idle_ttl_seconds.map(Duration::seconds),
            last_activity_at: self.last_activity_at,
        })
    }
}

/// Which sessions a listing returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    /// Sessions whose label contains this text.
    pub label: Option<String>,
    /// Sessions with this participant.
    pub participant: Option<PhoneNumber>,
    pub limit: usize,
    pub offset: usize,
}

const SESSION_COLUMNS: &str = "s.id, s.proxy_iccid, sim.msisdn, s.mode, s.status, s.label, \
     s.opened_ms, s.expires_ms, s.idle_ttl_s, s.last_activity_ms, s.ended_ms, \
     (SELECT number FROM participants WHERE session_id = s.id AND position = 0), \
     (SELECT number FROM participants WHERE session_id = s.id AND position = 1), \
     s.close_reason, s.fallback_number, \
     (SELECT position FROM participants WHERE session_id = s.id AND hub_code IS NOT NULL), \
     (SELECT hub_code FROM participants WHERE session_id = s.id AND hub_code IS NOT NULL)";

/// How an erased participant's number starts in the `participants` table
/// (followed by the session id and position, unique per row).
pub(super) const ERASED_PARTICIPANT: &str = "erased:";

pub(super) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn session_from_row(row: &Row<'_>) -> Result<SessionRecord, StoreError> {
    let number = |i: usize| -> Result<PhoneNumber, StoreError> {
        let text: String = row.get(i)?;
        PhoneNumber::from_e164(&text).map_err(|e| corrupt("stored number", e))
    };
    let participant = |i: usize| -> Result<Option<PhoneNumber>, StoreError> {
        let text: String = row.get(i)?;
        if text.starts_with(ERASED_PARTICIPANT) {
            return Ok(None);
        }
        PhoneNumber::from_e164(&text)
            .map(Some)
            .map_err(|e| corrupt("stored number", e))
    };
    let mode: String = row.get(3)?;
    let status: String = row.get(4)?;
    let optional_time = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        row.get::<_, Option<i64>>(i)?.map(from_ms).transpose()
    };
    Ok(SessionRecord {
        id: row.get(0)?,
        proxy_iccid: row.get(1)?,
        proxy_number: number(2)?,
        mode: mode
            .parse()
            .map_err(|e: String| corrupt("session mode", e))?,
        status: status
            .parse()
            .map_err(|e: String| corrupt("session status", e))?,
        label: row.get(5)?,
        opened_at: from_ms(row.get(6)?)?,
        expires_at: optional_time(7)?,
        idle_ttl_seconds: row.get(8)?,
        last_activity_at: from_ms(row.get(9)?)?,
        ended_at: optional_time(10)?,
        participants: [participant(11)?, participant(12)?],
        close_reason: row
            .get::<_, Option<String>>(13)?
            .map(|r| r.parse().map_err(|e: String| corrupt("close reason", e)))
            .transpose()?,
        fallback_number: row
            .get::<_, Option<String>>(14)?
            .map(|n| PhoneNumber::from_e164(&n).map_err(|e| corrupt("fallback number", e)))
            .transpose()?,
        hub: match (
            row.get::<_, Option<u8>>(15)?,
            row.get::<_, Option<String>>(16)?,
        ) {
            (Some(position), Some(code)) => Some(HubSide { position, code }),
            _ => None,
        },
    })
}

pub(super) fn query_sessions(
    conn: &Connection,
    condition: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN sims sim ON sim.iccid = s.proxy_iccid \
         WHERE {condition}"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params)?;
    let mut sessions = Vec::new();
    while let Some(row) = rows.next()? {
        sessions.push(session_from_row(row)?);
    }
    Ok(sessions)
}

pub(super) fn session_by_id(conn: &Connection, id: &str) -> Result<SessionRecord, StoreError> {
    query_sessions(conn, "s.id = ?1", &[&id])?
        .pop()
        .ok_or_else(|| StoreError::NoSuchSession(id.to_string()))
}

pub(super) fn audit(
    tx: &Connection,
    now: OffsetDateTime,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit (at_ms, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![to_ms(now), actor, action, object, detail])?;
    Ok(())
}

pub(super) fn end_session(
    tx: &Connection,
    id: &str,
    reason: CloseReason,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE sessions SET status = ?2, ended_ms = ?3, close_reason = ?4 WHERE id = ?1",
    )?
    .execute(params![
        id,
        reason.status().as_str(),
        to_ms(now),
        reason.as_str()
    ])?;
    tx.prepare_cached("UPDATE participants SET open = 0 WHERE session_id = ?1")?
        .execute(params![id])?;
    Ok(())
}

impl Store {
    /// Records a modem seen by the bank.
    pub async fn upsert_modem(
        &self,
        modem: ModemRecord,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.upsert_modem(modem, now).await;
        }
        let ModemRecord {
            imei,
            manufacturer,
            model,
            revision,
            profile,
            port,
        } = modem;
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO modems (imei, manufacturer, model, revision, profile, port, \
                 first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT (imei) DO UPDATE SET manufacturer = ?2, model = ?3, revision = ?4, \
                 profile = ?5, port = ?6, last_seen_ms = ?7",
            )?
            .execute(params![
                imei,
                manufacturer,
                model,
                revision,
                profile,
                port,
                to_ms(now)
            ])?;
            Ok(())
        })
        .await
    }

    /// Records a SIM seen by the bank. The ICCID is the identity: a SIM in a
    /// new modem keeps its row (and so its sessions and enabled flag).
    pub async fn upsert_sim(
        &self,
        iccid: String,
        msisdn: PhoneNumber,
        imsi: String,
        modem_imei: Option<String>,
        now: OffsetDateTime,
    ) -> Result<SimRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.upsert_sim(iccid, msisdn, imsi, modem_imei, now).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sims (iccid, msisdn, imsi, modem_imei, first_seen_ms, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                 ON CONFLICT (iccid) DO UPDATE SET msisdn = ?2, imsi = ?3, modem_imei = ?4, \
                 last_seen_ms = ?5",
            )?
            .execute(params![iccid, msisdn.e164(), imsi, modem_imei, to_ms(now)])?;
            sim_by_iccid(conn, &iccid)
        })
        .await
    }

    /// Every SIM of the pool.
    pub async fn sims(&self) -> Result<Vec<SimRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sims().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT iccid, msisdn, imsi, modem_imei, enabled, reserved_for, draining, front_desk FROM sims \
                 ORDER BY iccid",
            )?;
            let mut rows = statement.query([])?;
            let mut sims = Vec::new();
            while let Some(row) = rows.next()? {
                sims.push(sim_from_row(row)?);
            }
            Ok(sims)
        })
        .await
    }

    /// Enables or disables a SIM for new sessions (open ones keep running).
    pub async fn set_sim_enabled(
        &self,
        iccid: String,
        enabled: bool,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SimRecord, StoreError> {
        let change = SimChange {
            enabled: Some(enabled),
            ..SimChange::default()
        };
        self.update_sim(iccid, change, actor, now).await
    }

    /// Changes a SIM's settings (enabled, reserved, draining, front desk);
    /// every change is audited. Open sessions keep running.
    pub async fn update_sim(
        &self,
        iccid: String,
        change: SimChange,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SimRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.update_sim(iccid, change, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            sim_by_iccid(&tx, &iccid)?;
            if let Some(enabled) = change.enabled {
                tx.prepare_cached("UPDATE sims SET enabled = ?2 WHERE iccid = ?1")?
                    .execute(params![iccid, enabled])?;
                let action = if enabled { "sim.enable" } else { "sim.disable" };
                audit(&tx, now, &actor, action, &iccid, "")?;
            }
            if let Some(owner) = &change.reserved_for {
                tx.prepare_cached("UPDATE sims SET reserved_for = ?2 WHERE iccid = ?1")?
                    .execute(params![iccid, owner.as_ref().map(PhoneNumber::e164)])?;
                // The audit trail names the owner by its redacted form only.
                let (action, detail) = match owner {
                    Some(owner) => ("sim.reserve", format!("{owner:?}")),
                    None => ("sim.release", String::new()),
                };
                audit(&tx, now, &actor, action, &iccid, &detail)?;
            }
            if let Some(draining) = change.draining {
                tx.prepare_cached("UPDATE sims SET draining = ?2 WHERE iccid = ?1")?
                    .execute(params![iccid, draining])?;
                let action = if draining { "sim.drain" } else { "sim.undrain" };
                audit(&tx, now, &actor, action, &iccid, "")?;
            }
            if let Some(staff) = &change.front_desk {
                tx.prepare_cached("UPDATE sims SET front_desk = ?2 WHERE iccid = ?1")?
                    .execute(params![iccid, staff.as_ref().map(PhoneNumber::e164)])?;
                let detail = staff.as_ref().map(|s| format!("{s:?}")).unwrap_or_default();
                audit(&tx, now, &actor, "sim.front_desk", &iccid, &detail)?;
            }
            let sim = sim_by_iccid(&tx, &iccid)?;
            tx.commit()?;
            Ok(sim)
        })
        .await
    }

    /// Retires a SIM: its open sessions end (`sim_retired`) and it is
    /// disabled. Returns the sessions it ended.
    pub async fn retire_sim(
        &self,
        iccid: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.retire_sim(iccid, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            sim_by_iccid(&tx, &iccid)?;
            let open = query_sessions(&tx, "s.proxy_iccid = ?1 AND s.status = 'open'", &[&iccid])?;
            let mut ended = Vec::with_capacity(open.len());
            for session in &open {
                end_session(&tx, &session.id, CloseReason::SimRetired, now)?;
                ended.push(session_by_id(&tx, &session.id)?);
            }
            tx.prepare_cached("UPDATE sims SET enabled = 0 WHERE iccid = ?1")?
                .execute(params![iccid])?;
            audit(
                &tx,
                now,
                &actor,
                "sim.retire",
                &iccid,
                &format!("{} sessions ended", ended.len()),
            )?;
            tx.commit()?;
            Ok(ended)
        })
        .await
    }

    /// Reopens a closed or expired session on its proxy when the masking
    /// rule and the rails still allow it. Its lifetime starts again from
    /// `now`: `ttl`/`idle_ttl` when given, else the ones it had.
    pub async fn reopen_session(
        &self,
        id: String,
        ttl: Option<Duration>,
        idle_ttl: Option<Duration>,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.reopen_session(id, ttl, idle_ttl, actor, now).await;
        }
        self.call(move |conn| reopen(conn, &id, ttl, idle_ttl, &actor, now))
            .await
    }

    /// Each SIM's use of its budgets at `now`: (distinct recipients this
    /// month, messages sent in the last 24 hours), by ICCID.
    pub async fn sim_budget_use(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<String, (u32, u32)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sim_budget_use(now).await;
        }
        self.call(move |conn| budget_use(conn, now)).await
    }

    /// Opens a session on the proxy the masking rules choose, atomically:
    /// the writer thread serialises allocations, and the database refuses a
    /// second open session of a number on one proxy.
    pub async fn open_session(
        &self,
        new: NewSession,
        live: Vec<LiveSim>,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.open_session(new, live, now).await;
        }
        // Openings queued together share one fsync (group commit): eight
        // API callers at once wait for one flush, not eight in a row.
        self.call_durable(
            move |conn| allocate_and_insert(conn, new, live, now),
            |_| {},
        )
        .await
    }

    pub async fn session(&self, id: String) -> Result<SessionRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.session(id).await;
        }
        self.call(move |conn| session_by_id(conn, &id)).await
    }

    /// Sessions matching `filter`, newest first.
    pub async fn sessions(&self, filter: SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sessions(filter).await;
        }
        self.call(move |conn| {
            let status = filter.status.map(|s| s.as_str().to_string());
            let label = filter
                .label
                .map(|l| format!("%{}%", l.replace(['%', '_'], "")));
            let participant = filter.participant.map(|p| p.e164().to_string());
            let limit = filter.limit.clamp(1, MAX_PAGE_SIZE) as i64;
            let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
            query_sessions(
                conn,
                "(?1 IS NULL OR s.status = ?1) AND (?2 IS NULL OR s.label LIKE ?2) \
                 AND (?3 IS NULL OR EXISTS (SELECT 1 FROM participants p \
                      WHERE p.session_id = s.id AND p.number = ?3)) \
                 ORDER BY s.opened_ms DESC, s.id LIMIT ?4 OFFSET ?5",
                &[&status, &label, &participant, &limit, &offset],
            )
        })
        .await
    }

    /// Closes an open session (the operator's decision).
    pub async fn close_session(
        &self,
        id: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.close_session(id, actor, now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let session = session_by_id(&tx, &id)?;
            if session.status != SessionStatus::Open {
                return Err(StoreError::SessionNotOpen {
                    id,
                    status: session.status.as_str().into(),
                });
            }
            end_session(&tx, &id, CloseReason::Operator, now)?;
            audit(&tx, now, &actor, "session.close", &id, "")?;
            let session = session_by_id(&tx, &id)?;
            tx.commit()?;
            Ok(session)
        })
        .await
    }

    /// The open session of `from` on the proxy `proxy_iccid` (at most one, by
    /// the masking rule), for routing inbound traffic. A hub's sessions are
    /// not among them: a hub has many ([`Store::hub_conversations`]).
    pub async fn open_session_of(
        &self,
        proxy_iccid: String,
        from: PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.open_session_of(proxy_iccid, from).await;
        }
        self.read(|conn| {
            let id: Option<String> = conn
                .prepare_cached(
                    "SELECT session_id FROM participants \
                     WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1 AND hub_code IS NULL",
                )?
                .query_row(params![proxy_iccid, from.e164()], |row| row.get(0))
                .optional()?;
            id.map(|id| session_by_id(conn, &id)).transpose()
        })
    }

    /// Marks a session active at `now` (its idle TTL restarts).
    pub async fn touch_session(&self, id: String, now: OffsetDateTime) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.touch_session(id, now).await;
        }
        self.call(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_activity_ms = ?2 WHERE id = ?1")?
                .execute(params![id, to_ms(now)])?;
            Ok(())
        })
        .await
    }

    /// Moves the deadlines of every open session by `by` (after the clock
    /// was stepped by as much), so each keeps the time it had left; returns
    /// how many moved. On a fleet, only the deadlines this appliance's clock
    /// wrote move: the others were written by clocks that did not step.
    pub async fn shift_open_sessions(&self, by: time::Duration) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.shift_open_sessions(by).await;
        }
        let by_ms = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE sessions SET expires_ms = expires_ms + ?1, \
                     last_activity_ms = last_activity_ms + ?1 WHERE status = 'open'",
                )?
                .execute(params![by_ms])?)
        })
        .await
    }

    /// Ends every open session whose absolute or idle deadline has passed,
    /// and returns them.
    pub async fn expire_due(&self, now: OffsetDateTime) -> Result<Vec<SessionRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.expire_due(now).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now_ms = to_ms(now);
            let due = query_sessions(
                &tx,
                // Through the two deadline indexes (schema `AT_SCALE`): the
                // sweep ran every few seconds over every open session.
                "s.id IN (SELECT id FROM sessions INDEXED BY sessions_open_expires \
                 WHERE status = 'open' AND expires_ms IS NOT NULL AND expires_ms <= ?1 \
                 UNION ALL SELECT id FROM sessions INDEXED BY sessions_open_idle \
                 WHERE status = 'open' AND idle_ttl_s IS NOT NULL \
                 AND last_activity_ms + idle_ttl_s * 1000 <= ?1)",
                &[&now_ms],
            )?;
            for session in &due {
                let reason = if session.expires_at.is_some_and(|at| at <= now) {
                    CloseReason::Ttl
                } else {
                    CloseReason::Idle
                };
                end_session(&tx, &session.id, reason, now)?;
            }
            let mut expired = Vec::with_capacity(due.len());
            for session in &due {
                expired.push(session_by_id(&tx, &session.id)?);
            }
            tx.commit()?;
            Ok(expired)
        })
        .await
    }
}

fn sim_from_row(row: &Row<'_>) -> Result<SimRecord, StoreError> {
    let msisdn: String = row.get(1)?;
    Ok(SimRecord {
        iccid: row.get(0)?,
        msisdn: PhoneNumber::from_e164(&msisdn).map_err(|e| corrupt("SIM number", e))?,
        imsi: row.get(2)?,
        modem_imei: row.get(3)?,
        enabled: row.get(4)?,
        reserved_for: optional_number(row, 5)?,
        draining: row.get(6)?,
        front_desk: optional_number(row, 7)?,
    })
}

fn optional_number(row: &Row<'_>, i: usize) -> Result<Option<PhoneNumber>, StoreError> {
    row.get::<_, Option<String>>(i)?
        .map(|n| PhoneNumber::from_e164(&n).map_err(|e| corrupt("stored number", e)))
        .transpose()
}

pub(super) fn sim_by_iccid(conn: &Connection, iccid: &str) -> Result<SimRecord, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT iccid, msisdn, imsi, modem_imei, enabled, reserved_for, draining, front_desk FROM sims \
         WHERE iccid = ?1",
    )?;
    let mut rows = statement.query(params![iccid])?;
    match rows.next()? {
        Some(row) => sim_from_row(row),
        None => Err(StoreError::NoSuchSim(iccid.to_string())),
    }
}
