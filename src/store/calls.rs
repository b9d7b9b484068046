//! Calls through a proxy: one interaction per call, written when the call
//! is over, with its outcome and timings.

use rusqlite::params;
use time::OffsetDateTime;

use super::relay::add_event;
use super::{Store, StoreError, to_ms};
use crate::number::PhoneNumber;

/// A finished call as the voice bridge reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInteraction {
    pub proxy_iccid: String,
    pub session_id: Option<String>,
    /// The caller's position in the session, when in session.
    pub from_position: Option<u8>,
    pub caller: Option<PhoneNumber>,
    pub other: Option<PhoneNumber>,
    pub started_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: OffsetDateTime,
    pub duration_ms: Option<i64>,
    /// `completed`, `transferred`, `busy`, `no_answer`, `ended_by_operator`…
    pub outcome: String,
    pub reason: String,
}

impl Store {
    /// Records a finished call; returns its interaction id. The session's
    /// idle clock restarts: a call is activity.
    pub async fn record_call(&self, call: CallInteraction) -> Result<i64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.record_call(call).await;
        }
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ended = to_ms(call.ended_at);
            let status = call_status(&call);
            tx.execute(
                "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position,
                     from_number, to_number, status, reason, answered_ms, ended_ms,
                     duration_ms, outcome, created_ms, updated_ms)
                 VALUES (?1, ?2, 'call', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?9)",
                params![
                    call.session_id,
                    call.proxy_iccid,
                    call.from_position,
                    call.caller.as_ref().map(|n| n.e164().to_string()),
                    call.other.as_ref().map(|n| n.e164().to_string()),
                    status,
                    call.reason,
                    call.answered_at.map(to_ms),
                    ended,
                    call.duration_ms,
                    call.outcome,
                    to_ms(call.started_at),
                ],
            )?;
            let id = tx.last_insert_rowid();
            add_event(&tx, id, "ringing", "", to_ms(call.started_at))?;
            if let Some(answered) = call.answered_at {
                add_event(&tx, id, "answered", "", to_ms(answered))?;
            }
            add_event(&tx, id, &call.outcome, &call.reason, ended)?;
            if let Some(session) = &call.session_id {
                tx.execute(
                    "UPDATE sessions SET last_activity_ms = MAX(last_activity_ms, ?2)
                     WHERE id = ?1 AND status = 'open'",
                    params![session, ended],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }
}

/// The interaction's status for a call's outcome.
pub(in crate::store) fn call_status(call: &CallInteraction) -> &'static str {
    match call.outcome.as_str() {
        "transferred" | "completed" => "bridged",
        // Ended by the appliance (operator, session, maximum duration):
        // bridged if the two had talked.
        "ended_by_operator" | "session_ended" | "max_duration" if call.answered_at.is_some() => {
            "bridged"
        }
        "rejected" | "second_call_rejected" => "rejected",
        _ => "failed",
    }
}
