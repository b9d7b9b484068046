//! Allocation and reopening inside the store's transaction: the rows the
//! pure masking rules ([`crate::masking::allocation`],
//! [`crate::masking::lifecycle::may_reopen`]) need are read here, the rules
//! decide, and the session is written; the database's own constraints (the
//! masking rule, the rails of schema v5) refuse what slips past.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, params};
use time::{Duration, OffsetDateTime};

use super::hubs::{code_for, hubs_among};
use super::sessions::{
    LiveSim, NewSession, SessionRecord, audit, corrupt, session_by_id, sim_by_iccid,
};
use super::{StoreError, to_ms};
use crate::masking::allocation::{self, AllocationRequest, Budget, ProxyCandidate, SimLimits};
use crate::masking::lifecycle::{self, ReopenProxy};
use crate::number::PhoneNumber;

/// `YYYY-MM` of `now` (UTC): the period of the recipients budget.
pub(super) fn month_of(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

/// Maps the refusal of one of the database's rails (a trigger of schema
/// version 5) to its conflict; other errors stay as they are.
pub(super) fn rail(error: rusqlite::Error) -> StoreError {
    let message = error.to_string();
    for code in ["opted_out", "draining", "reserved", "hub"] {
        if message.starts_with(&format!("{code}:")) {
            return StoreError::Conflict {
                code,
                message: message[code.len() + 1..].trim().to_string(),
            };
        }
    }
    if let rusqlite::Error::SqliteFailure(failure, _) = &error
        && failure.code == rusqlite::ErrorCode::ConstraintViolation
        && message.contains("participants")
    {
        return StoreError::Conflict {
            code: "participant_busy",
            message: "a participant has another open session on this proxy (the masking rule)"
                .into(),
        };
    }
    StoreError::Sqlite(error)
}

/// Numbers among `numbers` that opted out.
pub(super) fn opted_out_among(
    conn: &Connection,
    numbers: &[&PhoneNumber],
) -> Result<Vec<PhoneNumber>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT 1 FROM opt_outs WHERE number = ?1")?;
    let mut out = Vec::new();
    for number in numbers {
        if statement.exists(params![number.e164()])? {
            out.push((*number).clone());
        }
    }
    Ok(out)
}

/// Each SIM's use of its budgets at `now`: distinct recipients this month
/// and messages sent in the last 24 hours.
pub(super) fn budget_use(
    conn: &Connection,
    now: OffsetDateTime,
) -> Result<HashMap<String, (u32, u32)>, StoreError> {
    let mut used: HashMap<String, (u32, u32)> = HashMap::new();
    let mut statement = conn.prepare_cached(
        "SELECT iccid, COUNT(*) FROM sim_recipients WHERE month = ?1 GROUP BY iccid",
    )?;
    let mut rows = statement.query(params![month_of(now)])?;
    while let Some(row) = rows.next()? {
        used.entry(row.get(0)?).or_default().0 = row.get(1)?;
    }
    let mut statement = conn.prepare_cached(
        "SELECT proxy_iccid, COUNT(*) FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms > ?1 \
         GROUP BY proxy_iccid",
    )?;
    let mut rows = statement.query(params![to_ms(now - Duration::DAY)])?;
    while let Some(row) = rows.next()? {
        used.entry(row.get(0)?).or_default().1 = row.get(1)?;
    }
    Ok(used)
}

/// One SIM's use of its budgets at `now` as far as allocation needs it:
/// counted only where a limit is set, and only up to one past it (beyond
/// that the answer is the same), so an opening does not read a month of
/// recipients or a day of sends.
fn budget_against(
    conn: &Connection,
    iccid: &str,
    limits: SimLimits,
    now: OffsetDateTime,
) -> Result<(u32, u32), StoreError> {
    let mut recipients = 0;
    if let Some(limit) = limits.recipients_per_month {
        recipients = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM sim_recipients \
                 WHERE iccid = ?1 AND month = ?2 LIMIT ?3)",
            )?
            .query_row(params![iccid, month_of(now), i64::from(limit) + 1], |row| {
                row.get(0)
            })?;
    }
    let mut sent = 0;
    if let Some(limit) = limits.per_day {
        sent = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM outbox \
                 WHERE proxy_iccid = ?1 AND sent_ms IS NOT NULL AND sent_ms > ?2 LIMIT ?3)",
            )?
            .query_row(
                params![iccid, to_ms(now - Duration::DAY), i64::from(limit) + 1],
                |row| row.get(0),
            )?;
    }
    Ok((recipients, sent))
}

pub(super) fn allocate_and_insert(
    conn: &mut Connection,
    new: NewSession,
    live: Vec<LiveSim>,
    now: OffsetDateTime,
) -> Result<SessionRecord, StoreError> {
    let tx = conn.savepoint()?;
    let record = allocate_in(&tx, new, live, now)?;
    tx.commit()?;
    Ok(record)
}

/// Allocates and writes a session inside the caller's transaction (which
/// must be rolled back, or the savepoint, when this fails).
pub(super) fn allocate_in(
    tx: &Connection,
    new: NewSession,
    live: Vec<LiveSim>,
    now: OffsetDateTime,
) -> Result<SessionRecord, StoreError> {
    let live: HashMap<String, LiveSim> = live.into_iter().map(|s| (s.iccid.clone(), s)).collect();
    let [a, b] = &new.participants;

    // Kept by triggers (table `sim_load`): counting the open sessions here
    // read every one of them, a second per opening at a million.
    let mut load: HashMap<String, usize> = HashMap::new();
    {
        let mut statement = tx.prepare_cached("SELECT iccid, open_sessions FROM sim_load")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            load.insert(row.get(0)?, row.get::<_, i64>(1)?.max(0) as usize);
        }
    }
    let number_of = |text: String| -> Result<PhoneNumber, StoreError> {
        PhoneNumber::from_e164(&text).map_err(|e| corrupt("stored number", e))
    };
    let mut busy: HashMap<String, HashSet<PhoneNumber>> = HashMap::new();
    {
        let mut statement = tx.prepare_cached(
            "SELECT proxy_iccid, number FROM participants WHERE open = 1 AND number IN (?1, ?2)",
        )?;
        let mut rows = statement.query(params![a.e164(), b.e164()])?;
        while let Some(row) = rows.next()? {
            busy.entry(row.get(0)?)
                .or_default()
                .insert(number_of(row.get(1)?)?);
        }
    }
    let mut known: HashMap<String, HashSet<PhoneNumber>> = HashMap::new();
    {
        let mut statement = tx.prepare_cached(
            "SELECT iccid, number FROM sim_recipients WHERE month = ?1 AND number IN (?2, ?3)",
        )?;
        let mut rows = statement.query(params![month_of(now), a.e164(), b.e164()])?;
        while let Some(row) = rows.next()? {
            known
                .entry(row.get(0)?)
                .or_default()
                .insert(number_of(row.get(1)?)?);
        }
    }
    let mut candidates = Vec::new();
    {
        let mut statement = tx.prepare_cached(
            // A Twilio service's reserved number is used only when asked
            // for by name (`new.proxy`), whichever API opens the session.
            "SELECT iccid, msisdn, enabled, reserved_for, draining FROM sims \
             WHERE iccid = ?1 OR (?1 IS NULL AND iccid NOT IN \
                 (SELECT iccid FROM twilio_numbers WHERE is_reserved = 1))",
        )?;
        let mut rows = statement.query(params![new.proxy])?;
        while let Some(row) = rows.next()? {
            let iccid: String = row.get(0)?;
            let state = live.get(&iccid);
            let limits = new.limits.of(&iccid);
            let (recipients, sent) = budget_against(tx, &iccid, limits, now)?;
            candidates.push(ProxyCandidate {
                number: number_of(row.get(1)?)?,
                enabled: row.get(2)?,
                healthy: state.is_some_and(|s| s.healthy),
                voice_capable: state.is_some_and(|s| s.voice_capable),
                open_sessions: load.get(&iccid).copied().unwrap_or(0),
                signal_dbm: state.and_then(|s| s.signal_dbm),
                busy_participants: busy.remove(&iccid).unwrap_or_default(),
                reserved_for: row
                    .get::<_, Option<String>>(3)?
                    .map(number_of)
                    .transpose()?,
                draining: row.get(4)?,
                recipients: Budget {
                    used: recipients,
                    limit: limits.recipients_per_month,
                },
                sent_today: Budget {
                    used: sent,
                    limit: limits.per_day,
                },
                known_recipients: known.remove(&iccid).unwrap_or_default(),
                iccid,
            });
        }
    }
    if let Some(proxy) = &new.proxy
        && candidates.is_empty()
    {
        return Err(StoreError::NoSuchSim(proxy.clone()));
    }
    let hubs = hubs_among(tx, &[a, b])?;
    // People recognise the proxy they used before; a hub uses them all, so
    // only its counterpart's history counts.
    let sticky: Vec<&PhoneNumber> = [a, b].into_iter().filter(|p| !hubs.contains(p)).collect();
    let preferred = if new.sticky && !sticky.is_empty() {
        let mut statement = tx.prepare_cached(
            "SELECT p.proxy_iccid FROM participants p JOIN sessions s ON s.id = p.session_id \
             WHERE p.number IN (?1, ?2) ORDER BY s.opened_ms DESC LIMIT 8",
        )?;
        let (first, second) = (sticky[0].e164(), sticky[sticky.len() - 1].e164());
        statement
            .query_map(params![first, second], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?
    } else {
        Vec::new()
    };
    let request = AllocationRequest {
        participants: new.participants.clone(),
        mode: new.mode,
        preferred,
        opted_out: opted_out_among(tx, &[a, b])?,
        reserve_percent: new.limits.reserve_percent,
        hubs: hubs.clone(),
    };
    let proxy = allocation::allocate(&request, &candidates)?.iccid.clone();

    let id = format!("ses_{:016x}", rand::random::<u64>());
    let expires = new.ttl.map(|ttl| to_ms(now + ttl));
    tx.prepare_cached(
        "INSERT INTO sessions (id, proxy_iccid, mode, status, label, opened_ms, expires_ms, \
         idle_ttl_s, last_activity_ms, fallback_number) \
         VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?5, ?8)",
    )?
    .execute(params![
        id,
        proxy,
        new.mode.as_str(),
        new.label,
        to_ms(now),
        expires,
        new.idle_ttl.map(|d| d.whole_seconds()),
        new.fallback_number.as_ref().map(PhoneNumber::e164),
    ])
    .map_err(rail)?;
    for (position, number) in new.participants.iter().enumerate() {
        let code = if hubs.contains(number) {
            Some(code_for(tx, &proxy, number, None)?)
        } else {
            None
        };
        tx.prepare_cached(
            "INSERT INTO participants (session_id, position, number, proxy_iccid, open, hub_code) \
             VALUES (?1, ?2, ?3, ?4, 1, ?5)",
        )?
        .execute(params![id, position as i64, number.e164(), proxy, code])
        .map_err(rail)?;
    }
    audit(tx, now, &new.actor, "session.open", &id, new.mode.as_str())?;
    session_by_id(tx, &id)
}

pub(super) fn reopen(
    conn: &mut Connection,
    id: &str,
    ttl: Option<Duration>,
    idle_ttl: Option<Duration>,
    actor: &str,
    now: OffsetDateTime,
) -> Result<SessionRecord, StoreError> {
    let tx = conn.transaction()?;
    let session = session_by_id(&tx, id)?;
    let participants = match &session.participants {
        [Some(a), Some(b)] => Some([a.clone(), b.clone()]),
        _ => None,
    };
    let sim = sim_by_iccid(&tx, &session.proxy_iccid)?;
    let mut proxy = ReopenProxy {
        draining: sim.draining,
        reserved_for: sim.reserved_for,
        busy: Vec::new(),
    };
    let mut opted_out = Vec::new();
    let mut hubs = Vec::new();
    if let Some([a, b]) = &participants {
        hubs = hubs_among(&tx, &[a, b])?;
        if hubs.len() == 2 {
            return Err(StoreError::Allocation(
                crate::masking::allocation::AllocationError::TwoHubs,
            ));
        }
        let mut statement = tx.prepare_cached(
            "SELECT 1 FROM participants WHERE proxy_iccid = ?1 AND number = ?2 AND open = 1",
        )?;
        // A hub may have other sessions on the proxy: not busy.
        for number in [a, b].into_iter().filter(|n| !hubs.contains(n)) {
            if statement.exists(params![session.proxy_iccid, number.e164()])? {
                proxy.busy.push(number.clone());
            }
        }
        opted_out = opted_out_among(&tx, &[a, b])?;
    }
    lifecycle::may_reopen(session.status, participants.as_ref(), &proxy, &opted_out).map_err(
        |refusal| StoreError::Conflict {
            code: refusal.code(),
            message: format!("session {id} cannot be reopened: {refusal}"),
        },
    )?;
    // The same lifetime again, from now, unless the request sets another.
    let ttl = ttl.or_else(|| session.expires_at.map(|at| at - session.opened_at));
    let idle = idle_ttl
        .map(|d| d.whole_seconds())
        .or(session.idle_ttl_seconds);
    tx.prepare_cached(
        "UPDATE sessions SET status = 'open', close_reason = NULL, ended_ms = NULL, \
         expires_ms = ?2, idle_ttl_s = ?3, last_activity_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![id, ttl.map(|t| to_ms(now + t)), idle, to_ms(now)])
    .map_err(rail)?;
    // The hub's side keeps its code when it is still free; a side that is
    // no hub any more is an ordinary participant again.
    for (position, number) in session.participants.iter().enumerate() {
        let Some(number) = number else { continue };
        let code = if hubs.contains(number) {
            let kept = session
                .hub
                .as_ref()
                .filter(|side| usize::from(side.position) == position)
                .map(|side| side.code.as_str());
            Some(code_for(&tx, &session.proxy_iccid, number, kept)?)
        } else {
            None
        };
        tx.prepare_cached(
            "UPDATE participants SET hub_code = ?3 WHERE session_id = ?1 AND position = ?2",
        )?
        .execute(params![id, position as i64, code])?;
    }
    tx.prepare_cached("UPDATE participants SET open = 1 WHERE session_id = ?1")?
        .execute(params![id])
        .map_err(rail)?;
    audit(&tx, now, actor, "session.reopen", id, "")?;
    let record = session_by_id(&tx, id)?;
    tx.commit()?;
    Ok(record)
}
