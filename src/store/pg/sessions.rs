//! The pool (modems, SIMs) and sessions on PostgreSQL, with allocation in
//! one transaction: the same pure masking rules as on SQLite decide, the
//! partial unique index refuses what slips past.

use std::collections::{HashMap, HashSet};

use time::{Duration, OffsetDateTime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::super::sessions::{
    HubSide, LiveSim, MAX_PAGE_SIZE, ModemRecord, NewSession, SessionFilter, SessionRecord,
    SimChange, SimRecord,
};
use super::super::{StoreError, from_ms, to_ms};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::allocation::{self, AllocationRequest, Budget, ProxyCandidate};
use crate::masking::lifecycle::{CloseReason, SessionStatus};
use crate::number::PhoneNumber;

/// The database's clock in milliseconds: heartbeats are written and judged
/// on it, so appliances whose clocks disagree (a Pi has no real-time
/// clock) still agree on who is alive.
pub(in crate::store) const DB_NOW_MS: &str =
    "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

const SESSION_COLUMNS: &str = "s.id, s.proxy_iccid, sim.msisdn, s.mode, s.status, s.label, \
     s.opened_ms, s.expires_ms, s.idle_ttl_s, s.last_activity_ms, s.ended_ms, \
     (SELECT number FROM participants WHERE session_id = s.id AND position = 0), \
     (SELECT number FROM participants WHERE session_id = s.id AND position = 1), \
     s.close_reason, s.fallback_number, \
     (SELECT position FROM participants WHERE session_id = s.id AND hub_code IS NOT NULL), \
     (SELECT hub_code FROM participants WHERE session_id = s.id AND hub_code IS NOT NULL)";

const SIM_COLUMNS: &str =
    "iccid, msisdn, imsi, modem_imei, enabled, reserved_for, draining, front_desk";

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn number(text: &str) -> Result<PhoneNumber, StoreError> {
    PhoneNumber::from_e164(text).map_err(|e| corrupt("stored number", e))
}

fn optional_number(text: Option<String>) -> Result<Option<PhoneNumber>, StoreError> {
    text.as_deref().map(number).transpose()
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    let participant = |i: usize| -> Result<Option<PhoneNumber>, StoreError> {
        let text: String = row.try_get(i).map_err(pg_error)?;
        if text.starts_with("erased:") {
            return Ok(None);
        }
        number(&text).map(Some)
    };
    let get_time = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get::<_, Option<i64>>(i)
            .map_err(pg_error)?
            .map(from_ms)
            .transpose()
    };
    let mode: String = row.get(3);
    let status: String = row.get(4);
    Ok(SessionRecord {
        id: row.get(0),
        proxy_iccid: row.get(1),
        proxy_number: number(row.get(2))?,
        mode: mode
            .parse()
            .map_err(|e: String| corrupt("session mode", e))?,
        status: status
            .parse()
            .map_err(|e: String| corrupt("session status", e))?,
        label: row.get(5),
        opened_at: from_ms(row.get(6))?,
        expires_at: get_time(7)?,
        idle_ttl_seconds: row.get(8),
        last_activity_at: from_ms(row.get(9))?,
        ended_at: get_time(10)?,
        participants: [participant(11)?, participant(12)?],
        close_reason: row
            .get::<_, Option<String>>(13)
            .map(|r| r.parse().map_err(|e: String| corrupt("close reason", e)))
            .transpose()?,
        fallback_number: optional_number(row.get(14))?,
        hub: match (
            row.get::<_, Option<i16>>(15),
            row.get::<_, Option<String>>(16),
        ) {
            (Some(position), Some(code)) => Some(HubSide {
                position: u8::try_from(position).map_err(|e| corrupt("hub position", e))?,
                code,
            }),
            _ => None,
        },
    })
}

pub(in crate::store) async fn query_sessions(
    client: &impl deadpool_postgres::GenericClient,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN sims sim ON sim.iccid = s.proxy_iccid \
         WHERE {condition}"
    );
    let statement = client.prepare_cached(&sql).await.map_err(pg_error)?;
    client
        .query(&statement, params)
        .await
        .map_err(pg_error)?
        .iter()
        .map(session_from_row)
        .collect()
}

pub(in crate::store) async fn session_by_id(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<SessionRecord, StoreError> {
    query_sessions(client, "s.id = $1", &[&id])
        .await?
        .pop()
        .ok_or_else(|| StoreError::NoSuchSession(id.to_string()))
}

fn sim_from_row(row: &Row) -> Result<SimRecord, StoreError> {
    Ok(SimRecord {
        iccid: row.get(0),
        msisdn: number(row.get(1))?,
        imsi: row.get(2),
        modem_imei: row.get(3),
        enabled: row.get(4),
        reserved_for: optional_number(row.get(5))?,
        draining: row.get(6),
        front_desk: optional_number(row.get(7))?,
    })
}

pub(in crate::store) async fn sim_by_iccid(
    client: &impl deadpool_postgres::GenericClient,
    iccid: &str,
) -> Result<SimRecord, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {SIM_COLUMNS} FROM sims WHERE iccid = $1"),
            &[&iccid],
        )
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::NoSuchSim(iccid.to_string()))?;
    sim_from_row(&row)
}

pub(in crate::store) async fn audit(
    client: &impl deadpool_postgres::GenericClient,
    store: &PgStore,
    now: OffsetDateTime,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO audit (at_ms, appliance_id, actor, action, object, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &to_ms(now),
                &store.appliance_id(),
                &actor,
                &action,
                &object,
                &detail,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn end_session(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    reason: CloseReason,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE sessions SET status = $2, ended_ms = $3, close_reason = $4 WHERE id = $1",
            &[
                &id,
                &reason.status().as_str(),
                &to_ms(now),
                &reason.as_str(),
            ],
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(
            "UPDATE participants SET open = FALSE WHERE session_id = $1",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The masking rule's index refused a row: the same conflict as SQLite's.
fn rail(error: tokio_postgres::Error) -> StoreError {
    if error
        .as_db_error()
        .is_some_and(|db| db.constraint() == Some("participants_open_route"))
    {
        return StoreError::Conflict {
            code: "participant_busy",
            message: "a participant has another open session on this proxy (the masking rule)"
                .into(),
        };
    }
    pg_error(error)
}

/// `YYYY-MM` of `now` (UTC): the period of the recipients budget.
pub(in crate::store) fn month_of(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

impl PgStore {
    pub(in crate::store) async fn upsert_modem(
        &self,
        modem: ModemRecord,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO modems (imei, appliance_id, manufacturer, model, revision, profile, \
                 port, first_seen_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (imei) DO UPDATE SET appliance_id = $2, manufacturer = $3, \
                 model = $4, revision = $5, profile = $6, port = $7, last_seen_ms = $8",
                &[
                    &modem.imei,
                    &self.appliance_id(),
                    &modem.manufacturer,
                    &modem.model,
                    &modem.revision,
                    &modem.profile,
                    &modem.port,
                    &to_ms(now),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Records a SIM this appliance holds: it owns it from now on. A SIM
    /// that was on another appliance moves here with its sessions and its
    /// pending outbox; a send the other appliance had started goes back in
    /// the queue (at most one duplicate, never a lost message).
    pub(in crate::store) async fn upsert_sim(
        &self,
        iccid: String,
        msisdn: PhoneNumber,
        imsi: String,
        modem_imei: Option<String>,
        now: OffsetDateTime,
    ) -> Result<SimRecord, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let before: Option<i64> = tx
                    .query_opt(
                        "SELECT appliance_id FROM sims WHERE iccid = $1 FOR UPDATE",
                        &[&iccid],
                    )
                    .await
                    .map_err(pg_error)?
                    .and_then(|row| row.get(0));
                tx.execute(
                    "INSERT INTO sims (iccid, msisdn, imsi, modem_imei, appliance_id, \
                     first_seen_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     ON CONFLICT (iccid) DO UPDATE SET msisdn = $2, imsi = $3, modem_imei = $4, \
                     appliance_id = $5, last_seen_ms = $6",
                    &[
                        &iccid,
                        &msisdn.e164(),
                        &imsi,
                        &modem_imei,
                        &self.appliance_id(),
                        &to_ms(now),
                    ],
                )
                .await
                .map_err(pg_error)?;
                if let Some(previous) = before.filter(|p| *p != self.appliance_id()) {
                    let requeued = tx
                        .execute(
                            "UPDATE outbox SET state = 'queued', \
                             last_error = 'the SIM moved to another appliance while sending' \
                             WHERE proxy_iccid = $1 AND state = 'sending'",
                            &[&iccid],
                        )
                        .await
                        .map_err(pg_error)?;
                    tracing::info!(
                        iccid = %iccid,
                        from_appliance = previous,
                        to_appliance = %self.appliance(),
                        requeued,
                        "fleet: a SIM moved to this appliance; its sessions and outbox follow it"
                    );
                    audit(
                        &tx,
                        self,
                        now,
                        self.appliance(),
                        "sim.move",
                        &iccid,
                        &format!("from appliance {previous}"),
                    )
                    .await?;
                }
                sim_by_iccid(&tx, &iccid).await
            }
            .await
        })
    }

    pub(in crate::store) async fn sims(&self) -> Result<Vec<SimRecord>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {SIM_COLUMNS} FROM sims ORDER BY iccid"),
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(sim_from_row)
            .collect()
    }

    pub(in crate::store) async fn update_sim(
        &self,
        iccid: String,
        change: SimChange,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SimRecord, StoreError> {
        in_transaction!(self, |tx| {
            async {
                sim_by_iccid(&tx, &iccid).await?;
                if let Some(enabled) = change.enabled {
                    tx.execute(
                        "UPDATE sims SET enabled = $2 WHERE iccid = $1",
                        &[&iccid, &enabled],
                    )
                    .await
                    .map_err(pg_error)?;
                    let action = if enabled { "sim.enable" } else { "sim.disable" };
                    audit(&tx, self, now, &actor, action, &iccid, "").await?;
                }
                if let Some(owner) = &change.reserved_for {
                    let owner_text = owner.as_ref().map(|o| o.e164().to_string());
                    tx.execute(
                        "UPDATE sims SET reserved_for = $2 WHERE iccid = $1",
                        &[&iccid, &owner_text],
                    )
                    .await
                    .map_err(pg_error)?;
                    let (action, detail) = match owner {
                        Some(owner) => ("sim.reserve", format!("{owner:?}")),
                        None => ("sim.release", String::new()),
                    };
                    audit(&tx, self, now, &actor, action, &iccid, &detail).await?;
                }
                if let Some(draining) = change.draining {
                    tx.execute(
                        "UPDATE sims SET draining = $2 WHERE iccid = $1",
                        &[&iccid, &draining],
                    )
                    .await
                    .map_err(pg_error)?;
                    let action = if draining { "sim.drain" } else { "sim.undrain" };
                    audit(&tx, self, now, &actor, action, &iccid, "").await?;
                }
                if let Some(staff) = &change.front_desk {
                    let staff_text = staff.as_ref().map(|s| s.e164().to_string());
                    tx.execute(
                        "UPDATE sims SET front_desk = $2 WHERE iccid = $1",
                        &[&iccid, &staff_text],
                    )
                    .await
                    .map_err(pg_error)?;
                    let detail = staff.as_ref().map(|s| format!("{s:?}")).unwrap_or_default();
                    audit(&tx, self, now, &actor, "sim.front_desk", &iccid, &detail).await?;
                }
                sim_by_iccid(&tx, &iccid).await
            }
            .await
        })
    }

    /// Allocation and the session's rows in one transaction. Advisory locks
    /// on both participants' numbers (in a fixed order, so two openers
    /// cannot deadlock) make concurrent openers for the same person queue,
    /// on any appliance; the partial unique index is the rule's last word.
    pub(in crate::store) async fn open_session(
        &self,
        new: NewSession,
        live: Vec<LiveSim>,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        in_transaction!(self, |tx| self.allocate_in(&tx, new, live, None, now).await)
    }

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
        let mut keys = [a.e164().to_string(), b.e164().to_string()];
        keys.sort();
        for key in &keys {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[key],
            )
            .await
            .map_err(pg_error)?;
        }
        let (a_text, b_text) = (a.e164().to_string(), b.e164().to_string());

        let mut load: HashMap<String, usize> = HashMap::new();
        for row in tx
            .query(
                "SELECT proxy_iccid, COUNT(*) FROM sessions WHERE status = 'open' \
                 GROUP BY proxy_iccid",
                &[],
            )
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
        let used = budget_use(tx, now).await?;
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
            let (recipients, sent) = used.get(&iccid).copied().unwrap_or_default();
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
        let preferred = if new.sticky {
            tx.query(
                "SELECT p.proxy_iccid FROM participants p JOIN sessions s ON s.id = p.session_id \
                 WHERE p.number IN ($1, $2) ORDER BY s.opened_ms DESC LIMIT 8",
                &[&a_text, &b_text],
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
            // Hubs are not kept in the fleet's database yet.
            hubs: Vec::new(),
        };
        let proxy = allocation::allocate(&request, &candidates)?.iccid.clone();

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
            tx.execute(
                "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
                 VALUES ($1, $2, $3, $4, TRUE)",
                &[&id, &position, &participant.e164(), &proxy],
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

    pub(in crate::store) async fn session(&self, id: String) -> Result<SessionRecord, StoreError> {
        let client = self.client().await?;
        session_by_id(&client, &id).await
    }

    pub(in crate::store) async fn sessions(
        &self,
        filter: SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let status = filter.status.map(|s| s.as_str().to_string());
        let label = filter
            .label
            .map(|l| format!("%{}%", l.replace(['%', '_', '\\'], "")));
        let participant = filter.participant.map(|p| p.e164().to_string());
        let limit = filter.limit.clamp(1, MAX_PAGE_SIZE) as i64;
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let client = self.client().await?;
        query_sessions(
            &client,
            "($1::TEXT IS NULL OR s.status = $1) AND ($2::TEXT IS NULL OR s.label LIKE $2) \
             AND ($3::TEXT IS NULL OR EXISTS (SELECT 1 FROM participants p \
                  WHERE p.session_id = s.id AND p.number = $3)) \
             ORDER BY s.opened_ms DESC, s.id LIMIT $4 OFFSET $5",
            &[&status, &label, &participant, &limit, &offset],
        )
        .await
    }

    pub(in crate::store) async fn close_session(
        &self,
        id: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let row = tx
                    .query_opt(
                        "SELECT status FROM sessions WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await
                    .map_err(pg_error)?
                    .ok_or_else(|| StoreError::NoSuchSession(id.clone()))?;
                let status: String = row.get(0);
                if status != SessionStatus::Open.as_str() {
                    return Err(StoreError::SessionNotOpen {
                        id: id.clone(),
                        status,
                    });
                }
                end_session(&tx, &id, CloseReason::Operator, now).await?;
                audit(&tx, self, now, &actor, "session.close", &id, "").await?;
                session_by_id(&tx, &id).await
            }
            .await
        })
    }

    pub(in crate::store) async fn open_session_of(
        &self,
        proxy_iccid: String,
        from: PhoneNumber,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT session_id FROM participants \
                 WHERE proxy_iccid = $1 AND number = $2 AND open AND hub_code IS NULL",
            )
            .await
            .map_err(pg_error)?;
        let id: Option<String> = client
            .query_opt(&statement, &[&proxy_iccid, &from.e164()])
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0));
        match id {
            Some(id) => session_by_id(&client, &id).await.map(Some),
            None => Ok(None),
        }
    }

    pub(in crate::store) async fn touch_session(
        &self,
        id: String,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sessions SET last_activity_ms = $2 WHERE id = $1",
                &[&id, &to_ms(now)],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub(in crate::store) async fn expire_due(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let now_ms = to_ms(now);
                // SKIP LOCKED: two appliances sweeping at once end each
                // session once.
                let due: Vec<(String, Option<i64>)> = tx
                    .query(
                        "SELECT id, expires_ms FROM sessions WHERE status = 'open' AND \
                         ((expires_ms IS NOT NULL AND expires_ms <= $1) \
                          OR (idle_ttl_s IS NOT NULL AND last_activity_ms + idle_ttl_s * 1000 <= $1)) \
                         FOR UPDATE SKIP LOCKED",
                        &[&now_ms],
                    )
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                let mut expired = Vec::with_capacity(due.len());
                for (id, expires_ms) in &due {
                    let reason = if expires_ms.is_some_and(|at| at <= now_ms) {
                        CloseReason::Ttl
                    } else {
                        CloseReason::Idle
                    };
                    end_session(&tx, id, reason, now).await?;
                    expired.push(session_by_id(&tx, id).await?);
                }
                Ok(expired)
            }
            .await
        })
    }
}

/// Each SIM's use of its budgets at `now`: distinct recipients this month
/// and messages sent in the last 24 hours.
pub(in crate::store) async fn budget_use(
    tx: &impl deadpool_postgres::GenericClient,
    now: OffsetDateTime,
) -> Result<HashMap<String, (u32, u32)>, StoreError> {
    let mut used: HashMap<String, (u32, u32)> = HashMap::new();
    for row in tx
        .query(
            "SELECT iccid, COUNT(*) FROM sim_recipients WHERE month = $1 GROUP BY iccid",
            &[&month_of(now)],
        )
        .await
        .map_err(pg_error)?
    {
        used.entry(row.get(0)).or_default().0 =
            u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
    }
    for row in tx
        .query(
            "SELECT proxy_iccid, COUNT(*) FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms > $1 \
             GROUP BY proxy_iccid",
            &[&to_ms(now - Duration::DAY)],
        )
        .await
        .map_err(pg_error)?
    {
        used.entry(row.get(0)).or_default().1 =
            u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
    }
    Ok(used)
}
