//! A session's life on PostgreSQL beside allocation and reopening
//! (`allocate.rs`): retiring a SIM, the opening's hold on the SIM it chose,
//! and following a step of this appliance's clock.
//!
//! Retiring is the fleet's decision, taken through any appliance's API: the
//! SIM's row is locked first, so an opener choosing that SIM on another
//! appliance at the same instant either commits before (and its session is
//! ended with the others) or sees the SIM disabled (see [`hold_proxy`]).
//! Nothing here acts on a modem: the appliance that holds the SIM stops
//! relaying for the ended sessions as any ended session.

use time::{Duration, OffsetDateTime};

use super::super::StoreError;
use super::super::sessions::SessionRecord;
use super::sessions::{audit, end_session, session_by_id};
use super::{PgStore, in_transaction, pg_error};
use crate::masking::lifecycle::CloseReason;

type Tx<'a> = deadpool_postgres::Transaction<'a>;

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
