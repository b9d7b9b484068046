//! Calls on PostgreSQL: the appliance that holds the proxy SIM bridges the
//! call and writes its interaction, which every appliance's API then shows.

use super::super::calls::{CallInteraction, call_status};
use super::super::{StoreError, to_ms};
use super::{PgStore, in_transaction, pg_error};

impl PgStore {
    /// Records a finished call; returns its interaction id. The session's
    /// idle clock restarts: a call is activity.
    pub(in crate::store) async fn record_call(
        &self,
        call: CallInteraction,
    ) -> Result<i64, StoreError> {
        let ended = to_ms(call.ended_at);
        let status = call_status(&call);
        let from_position = call.from_position.map(i16::from);
        let caller = call.caller.as_ref().map(|n| n.e164().to_string());
        let other = call.other.as_ref().map(|n| n.e164().to_string());
        in_transaction!(self, |tx| {
            async {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position, \
                         from_number, to_number, status, reason, answered_ms, ended_ms, \
                         duration_ms, outcome, created_ms, updated_ms) \
                         VALUES ($1, $2, 'call', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $9) \
                         RETURNING id",
                        &[
                            &call.session_id,
                            &call.proxy_iccid,
                            &from_position,
                            &caller,
                            &other,
                            &status,
                            &call.reason,
                            &call.answered_at.map(to_ms),
                            &ended,
                            &call.duration_ms,
                            &call.outcome,
                            &to_ms(call.started_at),
                        ],
                    )
                    .await
                    .map_err(pg_error)?
                    .get(0);
                let mut events = vec![("ringing", "", to_ms(call.started_at))];
                if let Some(answered) = call.answered_at {
                    events.push(("answered", "", to_ms(answered)));
                }
                events.push((call.outcome.as_str(), call.reason.as_str(), ended));
                for (status, detail, at) in events {
                    tx.execute(super::relay::ADD_EVENT, &[&id, &at, &status, &detail])
                        .await
                        .map_err(pg_error)?;
                }
                if let Some(session) = &call.session_id {
                    tx.execute(
                        "UPDATE sessions SET last_activity_ms = GREATEST(last_activity_ms, $2) \
                         WHERE id = $1 AND status = 'open'",
                        &[session, &ended],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                Ok(id)
            }
            .await
        })
    }
}
