//! Calls through a proxy: one interaction per call (kind `call`), with its
//! answer, end, duration and outcome, and its status history.

use rusqlite::{OptionalExtension, params};
use time::{Duration, OffsetDateTime};

use super::{Store, StoreError, to_ms};
use crate::number::PhoneNumber;

/// A call that is over, as the voice bridge recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInteraction {
    pub proxy_iccid: String,
    /// `None` for out-of-session calls.
    pub session_id: Option<String>,
    /// The calling side.
    pub from: Option<PhoneNumber>,
    /// The side the proxy dialled.
    pub to: Option<PhoneNumber>,
    pub started_at: OffsetDateTime,
    pub answered_at: Option<OffsetDateTime>,
    pub ended_at: OffsetDateTime,
    pub duration: Option<Duration>,
    /// `transferred`, `completed`, `busy`, `no_answer`, … (the status too).
    pub outcome: String,
    pub reason: String,
}

impl Store {
    /// Records a finished call in one transaction: the interaction, an event
    /// for its start, its answer and its end, and the session's activity.
    pub async fn record_call(&self, call: CallInteraction) -> Result<i64, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let from = call.from.as_ref().map(|n| n.e164().to_string());
            let position: Option<i64> = match (&call.session_id, &from) {
                (Some(session), Some(from)) => tx
                    .query_row(
                        "SELECT position FROM participants WHERE session_id = ?1 AND number = ?2",
                        params![session, from],
                        |row| row.get(0),
                    )
                    .optional()?,
                _ => None,
            };
            let (started, ended) = (to_ms(call.started_at), to_ms(call.ended_at));
            let answered = call.answered_at.map(to_ms);
            tx.execute(
                "INSERT INTO interactions (session_id, proxy_iccid, kind, from_position,
                     from_number, to_number, status, reason, answered_ms, ended_ms,
                     duration_ms, outcome, created_ms, updated_ms)
                 VALUES (?1, ?2, 'call', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?6, ?11, ?9)",
                params![
                    call.session_id,
                    call.proxy_iccid,
                    position,
                    from,
                    call.to.as_ref().map(|n| n.e164().to_string()),
                    call.outcome,
                    call.reason,
                    answered,
                    ended,
                    call.duration.map(|d| d.whole_milliseconds() as i64),
                    started,
                ],
            )?;
            let id = tx.last_insert_rowid();
            let mut events = vec![(started, "ringing", "")];
            if let Some(at) = answered {
                events.push((at, "answered", ""));
            }
            events.push((ended, call.outcome.as_str(), call.reason.as_str()));
            for (at, status, detail) in events {
                tx.execute(
                    "INSERT INTO interaction_events (interaction_id, at_ms, status, detail)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, at, status, detail],
                )?;
            }
            if let (Some(session), Some(_)) = (&call.session_id, answered) {
                tx.execute(
                    "UPDATE sessions SET last_activity_ms = MAX(last_activity_ms, ?2) WHERE id = ?1",
                    params![session, ended],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{A, B, NOW, PROXY, number, store_with_session};
    use super::*;

    #[tokio::test]
    async fn a_bridged_call_is_recorded_on_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let answered = NOW + Duration::seconds(12);
        let ended = answered + Duration::seconds(61);
        let call = CallInteraction {
            proxy_iccid: PROXY.into(),
            session_id: Some(session.clone()),
            from: Some(number(B)),
            to: Some(number(A)),
            started_at: NOW,
            answered_at: Some(answered),
            ended_at: ended,
            duration: Some(ended - answered),
            outcome: "completed".into(),
            reason: String::new(),
        };
        let id = store.record_call(call).await.unwrap();
        let interactions = store.interactions(session).await.unwrap();
        assert_eq!(interactions.len(), 1);
        let recorded = &interactions[0];
        assert_eq!(recorded.id, id);
        assert_eq!(recorded.kind, "call");
        assert_eq!(recorded.from_position, Some(1));
        assert_eq!(recorded.status, "completed");
        let (duration, events): (i64, i64) = store
            .call(move |conn| {
                Ok(conn.query_row(
                    "SELECT duration_ms, (SELECT COUNT(*) FROM interaction_events
                                          WHERE interaction_id = ?1)
                     FROM interactions WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!((duration, events), (61_000, 3));
    }

    #[tokio::test]
    async fn an_out_of_session_call_has_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let call = CallInteraction {
            proxy_iccid: PROXY.into(),
            session_id: None,
            from: None,
            to: None,
            started_at: NOW,
            answered_at: None,
            ended_at: NOW,
            duration: None,
            outcome: "rejected".into(),
            reason: "out of session".into(),
        };
        store.record_call(call).await.unwrap();
        assert!(store.interactions(session).await.unwrap().is_empty());
    }
}
