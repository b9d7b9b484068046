//! Allocation and reopening inside the fleet's transaction, as
//! `store::allocate` does them on SQLite: the rows the pure masking rules
//! ([`crate::masking::allocation`], [`crate::masking::lifecycle::may_reopen`])
//! need are read, the rules decide, and the session is written; the
//! database's own indexes (the masking rule, a hub's codes: schema v6)
//! refuse what slips past.
//!
//! Each transaction first takes an advisory lock per participant, so that
//! openers for the same person on any appliance queue rather than race. A
//! hub is a participant of each of its sessions: its openers queue on it,
//! and its codes are drawn one at a time.

use std::collections::{HashMap, HashSet};

use time::{Duration, OffsetDateTime};

use super::super::sessions::{LiveSim, NewSession, SessionRecord};
use super::super::{StoreError, to_ms};
use super::hubs::{code_for, hubs_among};
use super::sessions::{
    DB_NOW_MS, audit, month_of, number, optional_number, session_by_id, sim_by_iccid,
};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::allocation::{
    self, AllocationError, AllocationRequest, Budget, ProxyCandidate, SimLimits,
};
use crate::masking::lifecycle::{self, ReopenProxy, SessionStatus};
use crate::number::PhoneNumber;

/// Takes the per-person advisory lock of each of `numbers` until the
/// transaction ends, in a fixed order (two transactions locking the same
/// two people never deadlock). Erasure takes the same lock.
pub(super) async fn lock_people(
    tx: &impl deadpool_postgres::GenericClient,
    numbers: &[&PhoneNumber],
) -> Result<(), StoreError> {
    let mut keys: Vec<&str> = numbers.iter().map(|n| n.e164()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

/// One SIM's use of its budgets at `now` as far as allocation needs it
/// (as SQLite's): counted only where a limit is set, and only up to one
/// past it (beyond that the answer is the same), on the indexes
/// `sim_recipients`' key and `outbox_sent`, so an opening does not read a
/// month of recipients or a day of sends of every SIM.
async fn budget_against(
    tx: &impl deadpool_postgres::GenericClient,
    iccid: &str,
    limits: SimLimits,
    now: OffsetDateTime,
) -> Result<(u32, u32), StoreError> {
    let count = |row: tokio_postgres::Row| u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX);
    let mut recipients = 0;
    if let Some(limit) = limits.recipients_per_month {
        recipients = count(
            tx.query_one(
                "SELECT COUNT(*) FROM (SELECT 1 FROM sim_recipients \
                 WHERE iccid = $1 AND month = $2 LIMIT $3) AS used",
                &[&iccid, &month_of(now), &(i64::from(limit) + 1)],
            )
            .await
            .map_err(pg_error)?,
        );
    }
    let mut sent = 0;
    if let Some(limit) = limits.per_day {
        sent = count(
            tx.query_one(
                "SELECT COUNT(*) FROM (SELECT 1 FROM outbox \
                 WHERE proxy_iccid = $1 AND sent_ms IS NOT NULL AND sent_ms > $2 LIMIT $3) AS used",
                &[&iccid, &to_ms(now - Duration::DAY), &(i64::from(limit) + 1)],
            )
            .await
            .map_err(pg_error)?,
        );
    }
    Ok((recipients, sent))
}

/// The conflict a rule of the database's refused a participant row with,
/// as SQLite's; other errors stay as they are.
pub(super) fn rail(error: tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return pg_error(error);
    };
    match db.constraint() {
        Some("participants_open_route") => {
            return StoreError::Conflict {
                code: "participant_busy",
                message: "a participant has another open session on this proxy (the masking \
                          rule)"
                    .into(),
            };
        }
        Some("participants_open_hub_code") => {
            return StoreError::Conflict {
                code: "participant_busy",
                message: "the hub has an open session with the same code on this proxy".into(),
            };
        }
        Some("participants_one_hub_side") => {
            return StoreError::Allocation(AllocationError::TwoHubs);
        }
        _ => {}
    }
    // The trigger of schema v6 (`hub: …`), as SQLite's of v11.
    if let Some(message) = db.message().strip_prefix("hub:") {
        return StoreError::Conflict {
            code: "hub",
            message: message.trim().to_string(),
        };
    }
    pg_error(error)
}

impl PgStore {
    /// Allocation and the session's rows in one transaction. Advisory locks
    /// on both participants' numbers (in a fixed order, so two openers
    /// cannot deadlock) make concurrent openers for the same person queue,
    /// on any appliance; the partial unique indexes are the rule's last
    /// word.
    pub(in crate::store) async fn open_session(
        &self,
        new: NewSession,
        live: Vec<LiveSim>,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        // A SIM withdrawn under the opening (see `lifecycle::hold_proxy`):
        // allocation again, which now sees it and takes another.
        let mut tries = 0;
        loop {
            let (new, live) = (new.clone(), live.clone());
            match in_transaction!(self, |tx| {
                self.allocate_in(&tx, new, live, None, now).await
            }) {
                Err(StoreError::Conflict {
                    code: super::lifecycle::SIM_WITHDRAWN,
                    ..
                }) if tries < 2 => tries += 1,
                other => return other,
            }
        }
    }

    /// Allocates and writes a session inside the caller's transaction
    /// (rolled back, or the savepoint, when this fails).
    pub(super) async fn allocate_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        new: NewSession,
        live: Vec<LiveSim>,
        among: Option<Vec<String>>,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        let live: HashMap<String, LiveSim> =
            live.into_iter().map(|s| (s.iccid.clone(), s)).collect();
        let [a, b] = &new.participants;
        lock_people(tx, &[a, b]).await?;
        let (a_text, b_text) = (a.e164().to_string(), b.e164().to_string());

        // Kept by triggers (table `sim_load`, schema v10): counting the open
        // sessions here read every one of them at each opening.
        let mut load: HashMap<String, usize> = HashMap::new();
        for row in tx
            .query("SELECT iccid, open_sessions FROM sim_load", &[])
            .await
            .map_err(pg_error)?
        {
            load.insert(
                row.get(0),
                usize::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            );
        }
        let mut busy: HashMap<String, HashSet<PhoneNumber>> = HashMap::new();
        for row in tx
            .query(
                "SELECT proxy_iccid, number FROM participants WHERE open AND number IN ($1, $2)",
                &[&a_text, &b_text],
            )
            .await
            .map_err(pg_error)?
        {
            busy.entry(row.get(0))
                .or_default()
                .insert(number(row.get(1))?);
        }
        let month = month_of(now);
        let mut known: HashMap<String, HashSet<PhoneNumber>> = HashMap::new();
        for row in tx
            .query(
                "SELECT iccid, number FROM sim_recipients WHERE month = $1 AND number IN ($2, $3)",
                &[&month, &a_text, &b_text],
            )
            .await
            .map_err(pg_error)?
        {
            known
                .entry(row.get(0))
                .or_default()
                .insert(number(row.get(1))?);
        }
        let timeout_ms = i64::try_from(self.heartbeat_timeout().as_millis()).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                &format!(
                    "SELECT s.iccid, s.msisdn, s.enabled, s.reserved_for, s.draining, \
                     (s.appliance_id IS NULL OR s.appliance_id = $2 \
                      OR a.heartbeat_ms >= {DB_NOW_MS} - $3), \
                     st.healthy AND st.updated_ms >= {DB_NOW_MS} - $3, \
                     st.signal_dbm, st.voice_method IS NOT NULL \
                     FROM sims s LEFT JOIN appliances a ON a.id = s.appliance_id \
                     LEFT JOIN sim_status st ON st.iccid = s.iccid \
                     WHERE (s.iccid = $1 OR ($1::TEXT IS NULL AND s.iccid NOT IN \
                         (SELECT iccid FROM twilio_numbers WHERE is_reserved))) \
                       AND ($4::TEXT[] IS NULL OR s.iccid = ANY($4))"
                ),
                &[&new.proxy, &self.appliance_id(), &timeout_ms, &among],
            )
            .await
            .map_err(pg_error)?;
        let mut candidates = Vec::with_capacity(rows.len());
        for row in rows {
            let iccid: String = row.get(0);
            let online: bool = row.get(5);
            // The caller's bank knows its own SIMs; the others are judged
            // by what their appliance last stored, while it beats.
            let (healthy, signal_dbm, voice_capable) = match live.get(&iccid) {
                Some(state) => (state.healthy, state.signal_dbm, state.voice_capable),
                None => (
                    row.get::<_, Option<bool>>(6).unwrap_or(false),
                    row.get(7),
                    row.get::<_, Option<bool>>(8).unwrap_or(false),
                ),
            };
            let limits = new.limits.of(&iccid);
            let (recipients, sent) = budget_against(tx, &iccid, limits, now).await?;
            candidates.push(ProxyCandidate {
                number: number(row.get(1))?,
                enabled: row.get(2),
                healthy: online && healthy,
                voice_capable,
                open_sessions: load.get(&iccid).copied().unwrap_or(0),
                signal_dbm,
                busy_participants: busy.remove(&iccid).unwrap_or_default(),
                reserved_for: optional_number(row.get(3))?,
                draining: row.get(4),
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
        if let Some(proxy) = &new.proxy
            && candidates.is_empty()
        {
            return Err(StoreError::NoSuchSim(proxy.clone()));
        }
        let hubs = hubs_among(tx, &[a, b]).await?;
        // People recognise the proxy they used before; a hub uses them all,
        // so only its counterpart's history counts.
        let sticky: Vec<&str> = [a, b]
            .into_iter()
            .filter(|p| !hubs.contains(p))
            .map(PhoneNumber::e164)
            .collect();
        let preferred = if new.sticky && !sticky.is_empty() {
            tx.query(
                "SELECT p.proxy_iccid FROM participants p JOIN sessions s ON s.id = p.session_id \
                 WHERE p.number IN ($1, $2) ORDER BY s.opened_ms DESC LIMIT 8",
                &[&sticky[0], &sticky[sticky.len() - 1]],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| row.get(0))
            .collect()
        } else {
            Vec::new()
        };
        let mut opted_out = Vec::new();
        for row in tx
            .query(
                "SELECT number FROM opt_outs WHERE number IN ($1, $2)",
                &[&a_text, &b_text],
            )
            .await
            .map_err(pg_error)?
        {
            opted_out.push(number(row.get(0))?);
        }
        let request = AllocationRequest {
            participants: new.participants.clone(),
            mode: new.mode,
            preferred,
            opted_out,
            reserve_percent: new.limits.reserve_percent,
            hubs: hubs.clone(),
        };
        let proxy = allocation::allocate(&request, &candidates)?.iccid.clone();
        super::lifecycle::hold_proxy(tx, &proxy).await?;

        let id = format!("ses_{:016x}", rand::random::<u64>());
        let expires = new.ttl.map(|ttl| to_ms(now + ttl));
        tx.execute(
            "INSERT INTO sessions (id, proxy_iccid, mode, status, label, opened_ms, expires_ms, \
             idle_ttl_s, last_activity_ms, fallback_number) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $5, $8)",
            &[
                &id,
                &proxy,
                &new.mode.as_str(),
                &new.label,
                &to_ms(now),
                &expires,
                &new.idle_ttl.map(|d| d.whole_seconds()),
                &new.fallback_number.as_ref().map(|n| n.e164().to_string()),
            ],
        )
        .await
        .map_err(rail)?;
        for (position, participant) in new.participants.iter().enumerate() {
            let position = i16::try_from(position).unwrap_or(0);
            // A hub's side gets a code free among its open sessions on the
            // proxy: drawn under the hub's lock, so openers on two
            // appliances never draw the same one.
            let code = if hubs.contains(participant) {
                Some(code_for(tx, &proxy, participant, None).await?)
            } else {
                None
            };
            tx.execute(
                "INSERT INTO participants (session_id, position, number, proxy_iccid, open, \
                 hub_code) VALUES ($1, $2, $3, $4, TRUE, $5)",
                &[&id, &position, &participant.e164(), &proxy, &code],
            )
            .await
            .map_err(rail)?;
        }
        audit(
            tx,
            self,
            now,
            &new.actor,
            "session.open",
            &id,
            new.mode.as_str(),
        )
        .await?;
        session_by_id(tx, &id).await
    }

    /// Reopens a closed or expired session on its proxy when the masking
    /// rule and the rails still allow it, as SQLite's `reopen`: its
    /// lifetime starts again from `now`; a hub's side keeps its code when
    /// it is still free on the proxy, else gets a new one, and a side that
    /// is no hub any more is an ordinary participant again.
    pub(in crate::store) async fn reopen_session(
        &self,
        id: String,
        ttl: Option<Duration>,
        idle_ttl: Option<Duration>,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let before = session_by_id(&tx, &id).await?;
                let participants = match &before.participants {
                    [Some(a), Some(b)] => Some([a.clone(), b.clone()]),
                    _ => None,
                };
                if let Some([a, b]) = &participants {
                    lock_people(&tx, &[a, b]).await?;
                }
                // One reopener or closer of this session at a time; read
                // again under the locks.
                tx.execute("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE", &[&id])
                    .await
                    .map_err(pg_error)?;
                let session = session_by_id(&tx, &id).await?;
                let sim = sim_by_iccid(&tx, &session.proxy_iccid).await?;
                let mut proxy = ReopenProxy {
                    draining: sim.draining,
                    reserved_for: sim.reserved_for,
                    busy: Vec::new(),
                };
                let mut opted_out = Vec::new();
                let mut hubs = Vec::new();
                if let Some([a, b]) = &participants {
                    hubs = hubs_among(&tx, &[a, b]).await?;
                    if hubs.len() == 2 {
                        return Err(StoreError::Allocation(AllocationError::TwoHubs));
                    }
                    // A hub may have other sessions on the proxy: not busy.
                    for participant in [a, b].into_iter().filter(|n| !hubs.contains(n)) {
                        let busy = tx
                            .query_opt(
                                "SELECT 1 FROM participants \
                                 WHERE proxy_iccid = $1 AND number = $2 AND open",
                                &[&session.proxy_iccid, &participant.e164()],
                            )
                            .await
                            .map_err(pg_error)?
                            .is_some();
                        if busy {
                            proxy.busy.push(participant.clone());
                        }
                    }
                    for row in tx
                        .query(
                            "SELECT number FROM opt_outs WHERE number IN ($1, $2)",
                            &[&a.e164(), &b.e164()],
                        )
                        .await
                        .map_err(pg_error)?
                    {
                        opted_out.push(number(row.get(0))?);
                    }
                }
                lifecycle::may_reopen(session.status, participants.as_ref(), &proxy, &opted_out)
                    .map_err(|refusal| StoreError::Conflict {
                        code: refusal.code(),
                        message: format!("session {id} cannot be reopened: {refusal}"),
                    })?;
                // The same lifetime again, from now, unless the request
                // sets another.
                let ttl = ttl.or_else(|| session.expires_at.map(|at| at - session.opened_at));
                let idle = idle_ttl
                    .map(|d| d.whole_seconds())
                    .or(session.idle_ttl_seconds);
                tx.execute(
                    "UPDATE sessions SET status = $2, close_reason = NULL, ended_ms = NULL, \
                     expires_ms = $3, idle_ttl_s = $4, last_activity_ms = $5 WHERE id = $1",
                    &[
                        &id,
                        &SessionStatus::Open.as_str(),
                        &ttl.map(|t| to_ms(now + t)),
                        &idle,
                        &to_ms(now),
                    ],
                )
                .await
                .map_err(rail)?;
                // Codes cleared first: the hub's side may now be the other
                // one (a session has one hub side at most).
                tx.execute(
                    "UPDATE participants SET hub_code = NULL WHERE session_id = $1",
                    &[&id],
                )
                .await
                .map_err(rail)?;
                for (position, participant) in session.participants.iter().enumerate() {
                    let Some(participant) = participant.as_ref().filter(|p| hubs.contains(p))
                    else {
                        continue;
                    };
                    let kept = session
                        .hub
                        .as_ref()
                        .filter(|side| usize::from(side.position) == position)
                        .map(|side| side.code.as_str());
                    let code = code_for(&tx, &session.proxy_iccid, participant, kept).await?;
                    tx.execute(
                        "UPDATE participants SET hub_code = $3 \
                         WHERE session_id = $1 AND position = $2",
                        &[&id, &i16::try_from(position).unwrap_or(0), &code],
                    )
                    .await
                    .map_err(rail)?;
                }
                tx.execute(
                    "UPDATE participants SET open = TRUE WHERE session_id = $1",
                    &[&id],
                )
                .await
                .map_err(rail)?;
                audit(&tx, self, now, &actor, "session.reopen", &id, "").await?;
                session_by_id(&tx, &id).await
            }
            .await
        })
    }
}
