//! A session's life on PostgreSQL beside allocation itself
//! (`sessions.rs`): the opening's transaction and its retry, retiring a
//! SIM, reopening a session, and following a step of this appliance's
//! clock.
//!
//! Retiring is the fleet's decision, taken through any appliance's API: the
//! SIM's row is locked first, so an opener choosing that SIM on another
//! appliance at the same instant either commits before (and its session is
//! ended with the others) or sees the SIM disabled (see [`hold_proxy`]).
//! Nothing here acts on a modem: the appliance that holds the SIM stops
//! relaying for the ended sessions as any ended session.

use time::{Duration, OffsetDateTime};

use super::super::sessions::{LiveSim, NewSession, SessionRecord};
use super::super::{StoreError, to_ms};
use super::sessions::{audit, end_session, query_sessions, rail, session_by_id, sim_by_iccid};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::allocation::AllocationError;
use crate::masking::lifecycle::{self, CloseReason, ReopenProxy};
use crate::number::PhoneNumber;

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Takes the advisory locks of `numbers` that allocation takes (in the same
/// order), so that openers and reopeners of one person queue, whichever
/// appliance they run on.
pub(super) async fn lock_people(tx: &Tx<'_>, numbers: &[&PhoneNumber]) -> Result<(), StoreError> {
    let mut keys: Vec<String> = numbers.iter().map(|n| n.e164().to_string()).collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[key],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

/// The conflict of an opening whose SIM was withdrawn while it was chosen;
/// the opening allocates again.
pub(super) const SIM_WITHDRAWN: &str = "sim_unavailable";

/// Holds the SIM `iccid` chosen for a new session until the transaction
/// ends, and refuses it if it was disabled or set draining since it was
/// chosen (a retirement or an operator on another appliance that committed
/// in between): an opening never lands on a SIM being retired.
pub(super) async fn hold_proxy(tx: &Tx<'_>, iccid: &str) -> Result<(), StoreError> {
    let row = tx
        .query_one(
            "SELECT enabled, draining FROM sims WHERE iccid = $1 FOR SHARE",
            &[&iccid],
        )
        .await
        .map_err(pg_error)?;
    if !row.get::<_, bool>(0) || row.get::<_, bool>(1) {
        return Err(StoreError::Conflict {
            code: SIM_WITHDRAWN,
            message: format!(
                "SIM {iccid} was disabled or set draining while the session was being opened: \
                 try again"
            ),
        });
    }
    Ok(())
}

impl PgStore {
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
        // A SIM disabled under the opening (see `hold_proxy`): allocation
        // again, which now sees it and takes another.
        let mut tries = 0;
        loop {
            let (new, live) = (new.clone(), live.clone());
            match in_transaction!(self, |tx| { self.allocate_in(&tx, new, live, now).await }) {
                Err(StoreError::Conflict {
                    code: SIM_WITHDRAWN,
                    ..
                }) if tries < 2 => tries += 1,
                other => return other,
            }
        }
    }

    pub(in crate::store) async fn retire_sim(
        &self,
        iccid: String,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        in_transaction!(self, |tx| {
            async {
                let locked = tx
                    .execute(
                        "UPDATE sims SET enabled = FALSE WHERE iccid = $1",
                        &[&iccid],
                    )
                    .await
                    .map_err(pg_error)?;
                if locked == 0 {
                    return Err(StoreError::NoSuchSim(iccid.clone()));
                }
                // The SIM's row is ours: no session opens on it from here on,
                // and every one that did is among these.
                let open: Vec<String> = tx
                    .query(
                        "SELECT id FROM sessions WHERE proxy_iccid = $1 AND status = 'open' \
                         ORDER BY opened_ms, id FOR UPDATE",
                        &[&iccid],
                    )
                    .await
                    .map_err(pg_error)?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let mut ended = Vec::with_capacity(open.len());
                for id in &open {
                    end_session(&tx, id, CloseReason::SimRetired, now).await?;
                    ended.push(session_by_id(&tx, id).await?);
                }
                audit(
                    &tx,
                    self,
                    now,
                    &actor,
                    "sim.retire",
                    &iccid,
                    &format!("{} sessions ended", ended.len()),
                )
                .await?;
                Ok(ended)
            }
            .await
        })
    }

    pub(in crate::store) async fn reopen_session(
        &self,
        id: String,
        ttl: Option<Duration>,
        idle_ttl: Option<Duration>,
        actor: String,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        in_transaction!(self, |tx| {
            self.reopen_in(&tx, &id, ttl, idle_ttl, &actor, now).await
        })
    }

    async fn reopen_in(
        &self,
        tx: &Tx<'_>,
        id: &str,
        ttl: Option<Duration>,
        idle_ttl: Option<Duration>,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<SessionRecord, StoreError> {
        let session = session_by_id(tx, id).await?;
        let participants = match &session.participants {
            [Some(a), Some(b)] => Some([a.clone(), b.clone()]),
            _ => None,
        };
        if let Some([a, b]) = &participants {
            lock_people(tx, &[a, b]).await?;
        }
        // Read again under the locks: another appliance may have reopened
        // or erased it meanwhile.
        let session = query_sessions(tx, "s.id = $1 FOR UPDATE OF s", &[&id])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NoSuchSession(id.to_string()))?;
        let participants = match &session.participants {
            [Some(a), Some(b)] => Some([a.clone(), b.clone()]),
            _ => None,
        };
        let sim = sim_by_iccid(tx, &session.proxy_iccid).await?;
        let mut proxy = ReopenProxy {
            draining: sim.draining,
            reserved_for: sim.reserved_for,
            busy: Vec::new(),
        };
        let mut opted_out = Vec::new();
        if let Some([a, b]) = &participants {
            let (a_text, b_text) = (a.e164().to_string(), b.e164().to_string());
            let hubs = tx
                .query(
                    "SELECT number FROM hubs WHERE number IN ($1, $2)",
                    &[&a_text, &b_text],
                )
                .await
                .map_err(pg_error)?;
            match hubs.len() {
                0 => {}
                2 => return Err(StoreError::Allocation(AllocationError::TwoHubs)),
                // A hub's side needs its code on the proxy again, which the
                // fleet's store does not hand out yet (as for openings).
                _ => {
                    return Err(StoreError::Unsupported {
                        operation: "reopen_session of a hub's session".into(),
                        backend: "postgres",
                    });
                }
            }
            for row in tx
                .query(
                    "SELECT number FROM participants \
                     WHERE proxy_iccid = $1 AND open AND number IN ($2, $3)",
                    &[&session.proxy_iccid, &a_text, &b_text],
                )
                .await
                .map_err(pg_error)?
            {
                let text: String = row.get(0);
                proxy
                    .busy
                    .extend([a, b].into_iter().filter(|n| n.e164() == text).cloned());
            }
            for row in tx
                .query(
                    "SELECT number FROM opt_outs WHERE number IN ($1, $2)",
                    &[&a_text, &b_text],
                )
                .await
                .map_err(pg_error)?
            {
                let text: String = row.get(0);
                opted_out.extend([a, b].into_iter().filter(|n| n.e164() == text).cloned());
            }
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
        tx.execute(
            "UPDATE sessions SET status = 'open', close_reason = NULL, ended_ms = NULL, \
             expires_ms = $2, idle_ttl_s = $3, last_activity_ms = $4 WHERE id = $1",
            &[&id, &ttl.map(|t| to_ms(now + t)), &idle, &to_ms(now)],
        )
        .await
        .map_err(rail)?;
        tx.execute(
            "UPDATE participants SET open = TRUE WHERE session_id = $1",
            &[&id],
        )
        .await
        .map_err(rail)?;
        audit(tx, self, now, actor, "session.reopen", id, "").await?;
        session_by_id(tx, id).await
    }

    /// Moves the deadlines this appliance's clock wrote, of every open
    /// session, by `by`: the step of this appliance's clock says nothing of
    /// the times the fleet's other appliances wrote (schema v8 stamps each
    /// deadline with the appliance that wrote it).
    pub(in crate::store) async fn shift_open_sessions(
        &self,
        by: Duration,
    ) -> Result<usize, StoreError> {
        let by_ms = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        let me = self.appliance_id();
        let client = self.client().await?;
        let moved = client
            .execute(
                "UPDATE sessions SET \
                 expires_ms = CASE WHEN expires_by = $2 THEN expires_ms + $1 ELSE expires_ms END, \
                 last_activity_ms = CASE WHEN activity_by = $2 \
                     THEN last_activity_ms + $1 ELSE last_activity_ms END \
                 WHERE status = 'open' AND (expires_by = $2 OR activity_by = $2)",
                &[&by_ms, &me],
            )
            .await
            .map_err(pg_error)?;
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }
}
