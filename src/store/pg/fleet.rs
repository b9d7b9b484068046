//! The fleet: appliances and their heartbeats, the SIMs' live state as
//! their appliance last stored it, and events from every appliance to
//! every API (a table, announced with NOTIFY).

use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::super::pool::SimStatusRecord;
use super::super::{StoreError, from_ms, to_ms};
use super::sessions::DB_NOW_MS;
use super::{PgStore, pg_error};

/// The channel fleet events are announced on.
const CHANNEL: &str = "simmask_events";

/// One appliance of the fleet as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplianceRecord {
    pub id: i64,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
    /// Its heartbeat is within the timeout: its SIMs take sessions.
    pub online: bool,
    /// The SIMs it holds, by ICCID.
    pub sims: Vec<String>,
}

/// One event of some appliance of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetEvent {
    pub id: i64,
    pub appliance: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    /// The event as its appliance serialised it (JSON).
    pub payload: String,
}

impl PgStore {
    /// Records that this appliance is alive, on the database's clock.
    pub(in crate::store) async fn heartbeat(&self, _now: OffsetDateTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!("UPDATE appliances SET heartbeat_ms = {DB_NOW_MS} WHERE id = $1"),
                &[&self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// The next run number of the event bus (see the SQLite store's
    /// `start_event_run`).
    pub(in crate::store) async fn start_event_run(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT nextval('event_runs')", &[])
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(1))
    }

    /// Every appliance, its last heartbeat and its SIMs.
    pub(in crate::store) async fn appliances(&self) -> Result<Vec<ApplianceRecord>, StoreError> {
        let client = self.client().await?;
        let timeout_ms = i64::try_from(self.heartbeat_timeout().as_millis()).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT a.id, a.name, a.heartbeat_ms, a.heartbeat_ms >= {DB_NOW_MS} - $1, \
                     COALESCE(ARRAY(SELECT iccid FROM sims WHERE appliance_id = a.id \
                                    ORDER BY iccid), '{{}}') \
                     FROM appliances a ORDER BY a.name"
                ),
                &[&timeout_ms],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(ApplianceRecord {
                    id: row.get(0),
                    name: row.get(1),
                    last_heartbeat: from_ms(row.get(2))?,
                    online: row.get(3),
                    sims: row.get(4),
                })
            })
            .collect()
    }

    /// The appliance that holds `iccid`, and whether it is online.
    pub(in crate::store) async fn sim_owner(
        &self,
        iccid: String,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let client = self.client().await?;
        let timeout_ms = i64::try_from(self.heartbeat_timeout().as_millis()).unwrap_or(i64::MAX);
        Ok(client
            .query_opt(
                &format!(
                    "SELECT a.name, a.heartbeat_ms >= {DB_NOW_MS} - $2 FROM sims s \
                     JOIN appliances a ON a.id = s.appliance_id WHERE s.iccid = $1"
                ),
                &[&iccid, &timeout_ms],
            )
            .await
            .map_err(pg_error)?
            .map(|row| (row.get(0), row.get(1))))
    }

    /// Records the live state of SIMs this appliance holds; SIMs not in
    /// the pool are skipped.
    pub(in crate::store) async fn save_sim_statuses(
        &self,
        statuses: Vec<SimStatusRecord>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO sim_status (iccid, state, healthy, signal_dbm, registration, roaming, \
                 operator, voice_method, port, last_error, updated_ms) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
                 WHERE EXISTS (SELECT 1 FROM sims WHERE iccid = $1) \
                 ON CONFLICT (iccid) DO UPDATE SET state = $2, healthy = $3, signal_dbm = $4, \
                 registration = $5, roaming = $6, operator = $7, voice_method = $8, port = $9, \
                 last_error = $10, updated_ms = $11",
            )
            .await
            .map_err(pg_error)?;
        for status in statuses {
            // Judged against the database's clock, like the heartbeats.
            client
                .execute(
                    &statement,
                    &[
                        &status.iccid,
                        &status.state,
                        &status.healthy,
                        &status.signal_dbm,
                        &status.registration,
                        &status.roaming,
                        &status.operator,
                        &status.voice_method,
                        &status.port,
                        &status.last_error,
                        &to_ms(OffsetDateTime::now_utc()),
                    ],
                )
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Every SIM's last stored live state. A SIM whose appliance stopped
    /// beating shows `offline`, not healthy, whatever it last said.
    pub(in crate::store) async fn sim_statuses(&self) -> Result<Vec<SimStatusRecord>, StoreError> {
        let client = self.client().await?;
        let timeout_ms = i64::try_from(self.heartbeat_timeout().as_millis()).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT st.iccid, st.state, st.healthy, st.signal_dbm, st.registration, \
                     st.roaming, st.operator, st.voice_method, st.port, st.last_error, \
                     st.updated_ms, (a.id = $2 OR a.heartbeat_ms >= {DB_NOW_MS} - $1) \
                     FROM sim_status st JOIN sims s ON s.iccid = st.iccid \
                     LEFT JOIN appliances a ON a.id = s.appliance_id ORDER BY st.iccid"
                ),
                &[&timeout_ms, &self.appliance_id()],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let online = row.get::<_, Option<bool>>(11).unwrap_or(false);
                Ok(SimStatusRecord {
                    iccid: row.get(0),
                    state: if online { row.get(1) } else { "offline".into() },
                    healthy: online && row.get::<_, bool>(2),
                    signal_dbm: row.get(3),
                    registration: row.get(4),
                    roaming: row.get(5),
                    operator: row.get(6),
                    voice_method: row.get(7),
                    port: row.get(8),
                    last_error: if online {
                        row.get(9)
                    } else {
                        "its appliance stopped beating its heartbeat".into()
                    },
                    updated_at: from_ms(row.get(10))?,
                })
            })
            .collect()
    }

    /// Stores an event of this appliance and announces it to the fleet.
    pub(in crate::store) async fn publish_event(
        &self,
        kind: String,
        payload: String,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let id: i64 = client
            .query_one(
                "WITH e AS (INSERT INTO fleet_events (appliance_id, at_ms, kind, payload) \
                 VALUES ($1, $2, $3, $4) RETURNING id) \
                 SELECT id, pg_notify($5, id::TEXT) FROM e",
                &[&self.appliance_id(), &to_ms(now), &kind, &payload, &CHANNEL],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(id)
    }

    /// The id of the fleet's newest event (0: none yet).
    pub(in crate::store) async fn last_event_id(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let id: i64 = client
            .query_one("SELECT COALESCE(MAX(id), 0) FROM fleet_events", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(id)
    }

    /// The fleet's events after `after`, oldest first, at most `limit`.
    pub(in crate::store) async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<FleetEvent>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT e.id, a.name, e.at_ms, e.kind, e.payload FROM fleet_events e \
                 JOIN appliances a ON a.id = e.appliance_id WHERE e.id > $1 \
                 ORDER BY e.id LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(FleetEvent {
                    id: row.get(0),
                    appliance: row.get(1),
                    at: from_ms(row.get(2))?,
                    kind: row.get(3),
                    payload: row.get(4),
                })
            })
            .collect()
    }

    /// Follows the fleet's events after `after`: a connection of its own
    /// LISTENs, and each announcement (or, without one, every few seconds)
    /// reads what is new, so none is missed across a reconnection. Ends
    /// when the receiver is dropped.
    pub(in crate::store) fn follow_events(&self, after: i64) -> mpsc::Receiver<FleetEvent> {
        let (send, receive) = mpsc::channel(256);
        let store = self.clone();
        tokio::spawn(async move {
            let mut last = after;
            loop {
                let (client, mut connection) = match store
                    .inner
                    .config
                    .connect(store.inner.connector.clone())
                    .await
                {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "fleet: cannot listen for events; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        if send.is_closed() {
                            return;
                        }
                        continue;
                    }
                };
                let (wake, mut woken) = mpsc::channel::<()>(16);
                let pump = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) {
                            let _ = wake.try_send(());
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_err()
                {
                    pump.abort();
                    continue;
                }
                loop {
                    match store.events_after(last, 500).await {
                        Ok(events) => {
                            for event in events {
                                last = event.id;
                                if send.send(event).await.is_err() {
                                    pump.abort();
                                    return;
                                }
                            }
                        }
                        Err(error) => tracing::warn!(%error, "fleet: cannot read events"),
                    }
                    tokio::select! {
                        woke = woken.recv() => if woke.is_none() { break },
                        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        () = send.closed() => { pump.abort(); return; }
                    }
                }
                pump.abort();
            }
        });
        receive
    }
}
