//! Read-only queries behind the API's pool views and charts: the modems, each
//! SIM's traffic counters and queue, and its traffic per hour.

use std::collections::HashMap;

use rusqlite::params;
use time::OffsetDateTime;

use super::sessions::ModemRecord;
use super::{Store, StoreError, to_ms};

/// A SIM's traffic since it joined the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// SMS parts received on the SIM.
    pub received: u32,
    /// Outbound SMS the modem accepted.
    pub sent: u32,
    /// Outbound SMS given up on.
    pub failed: u32,
    /// Outbound SMS waiting or being sent.
    pub queued: u32,
    /// Sessions open on the SIM.
    pub open_sessions: u32,
}

/// One hour of a SIM's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficHour {
    /// Start of the hour, milliseconds since the epoch.
    pub hour_ms: i64,
    pub received: u32,
    pub sent: u32,
}

pub(super) const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// Every modem the bank has seen, by IMEI.
    pub async fn modems(&self) -> Result<Vec<ModemRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.modems().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT imei, manufacturer, model, revision, profile, COALESCE(port, '') \
                 FROM modems ORDER BY imei",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(ModemRecord {
                    imei: row.get(0)?,
                    manufacturer: row.get(1)?,
                    model: row.get(2)?,
                    revision: row.get(3)?,
                    profile: row.get(4)?,
                    port: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Each SIM's counters, by ICCID (SIMs without traffic are absent).
    pub async fn sim_counters(&self) -> Result<HashMap<String, SimCounters>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sim_counters().await;
        }
        // Kept by triggers (`sim_traffic`, `sim_load`), read beside the
        // writer: a few rows per SIM, however long the history.
        self.read(|conn| {
            let mut counters: HashMap<String, SimCounters> = HashMap::new();
            let mut statement = conn.prepare_cached(
                "SELECT iccid, received, queued, sent, failed FROM sim_traffic \
                 WHERE received + queued + sent + failed > 0",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let entry = counters.entry(row.get(0)?).or_default();
                entry.received = row.get(1)?;
                entry.queued = row.get(2)?;
                entry.sent = row.get(3)?;
                entry.failed = row.get(4)?;
            }
            let mut statement = conn.prepare_cached(
                "SELECT iccid, open_sessions FROM sim_load WHERE open_sessions > 0",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                counters.entry(row.get(0)?).or_default().open_sessions = row.get(1)?;
            }
            Ok(counters)
        })
    }

    /// SMS relayed in sessions since `since`: participants' messages taken
    /// for relay, whatever became of the send (blocked ones are not).
    pub async fn messages_relayed_since(&self, since: OffsetDateTime) -> Result<u32, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.messages_relayed_since(since).await;
        }
        let since = to_ms(since);
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM interactions \
                     WHERE created_ms >= ?1 AND kind = 'sms' AND session_id IS NOT NULL \
                     AND from_position IS NOT NULL AND status NOT IN ('blocked', 'dropped')",
                )?
                .query_row(params![since], |row| row.get(0))?)
        })
        .await
    }

    /// `iccid`'s traffic per hour from the hour containing `since` on,
    /// oldest first; hours without traffic are absent.
    pub async fn sim_traffic_by_hour(
        &self,
        iccid: String,
        since: OffsetDateTime,
    ) -> Result<Vec<TrafficHour>, StoreError> {
        let since = to_ms(since).div_euclid(HOUR_MS) * HOUR_MS;
        if let Some(pg) = &self.pg {
            return pg.sim_traffic_by_hour(iccid, since).await;
        }
        self.call(move |conn| {
            let mut hours: std::collections::BTreeMap<i64, TrafficHour> = Default::default();
            let mut statement = conn.prepare_cached(
                "SELECT received_ms / ?3, COUNT(*) FROM inbound_parts \
                 WHERE proxy_iccid = ?1 AND received_ms >= ?2 GROUP BY 1",
            )?;
            let mut rows = statement.query(params![iccid, since, HOUR_MS])?;
            while let Some(row) = rows.next()? {
                let hour: i64 = row.get(0)?;
                let entry = hours.entry(hour).or_default();
                entry.hour_ms = hour * HOUR_MS;
                entry.received = row.get(1)?;
            }
            let mut statement = conn.prepare_cached(
                "SELECT sent_ms / ?3, COUNT(*) FROM outbox \
                 WHERE proxy_iccid = ?1 AND sent_ms >= ?2 GROUP BY 1",
            )?;
            let mut rows = statement.query(params![iccid, since, HOUR_MS])?;
            while let Some(row) = rows.next()? {
                let hour: i64 = row.get(0)?;
                let entry = hours.entry(hour).or_default();
                entry.hour_ms = hour * HOUR_MS;
                entry.sent = row.get(1)?;
            }
            Ok(hours.into_values().collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewOutbound;
    use crate::store::fixtures::{A, B, NOW, PROXY, Received, number, receive, store_with_session};

    fn outbound(session: &str, to: &str) -> NewOutbound {
        NewOutbound {
            session_id: Some(session.into()),
            proxy_iccid: PROXY.into(),
            from_position: Some(0),
            to: number(to),
            body: "hello".into(),
        }
    }

    #[tokio::test]
    async fn counters_and_hours_follow_the_relay_tables() {
        let dir = tempfile::tempdir().unwrap();
        let (store, session) = store_with_session(&dir, None).await;
        let sent = store.queue_sms(outbound(&session, B), NOW).await.unwrap();
        store.queue_sms(outbound(&session, A), NOW).await.unwrap();
        store.mark_sent(sent, vec![7], NOW).await.unwrap();
        let relayed = Received::Relayed {
            session: session.clone(),
            from_position: 0,
            to: B,
        };
        receive(&store, A, "00".into(), "hi", relayed).await;

        let counters = store.sim_counters().await.unwrap();
        let sim = &counters[PROXY];
        // The received part is relayed to B: a second message in the queue.
        assert_eq!(
            (sim.received, sim.sent, sim.queued, sim.failed),
            (1, 1, 2, 0)
        );
        assert_eq!(sim.open_sessions, 1);

        let hours = store
            .sim_traffic_by_hour(PROXY.into(), NOW - time::Duration::hours(24))
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].received, hours[0].sent), (1, 1));
        assert_eq!(hours[0].hour_ms, to_ms(NOW));
        let later = store
            .sim_traffic_by_hour(PROXY.into(), NOW + time::Duration::hours(2))
            .await
            .unwrap();
        assert!(later.is_empty());
    }
}
