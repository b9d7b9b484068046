//! The live state of each SIM as the daemon last saw it: what tools running
//! beside the daemon (`simmask session open`, `doctor`) allocate from.

use rusqlite::params;
use serde::Serialize;
use time::OffsetDateTime;

use super::sessions::LiveSim;
use super::{Store, StoreError, from_ms, to_ms};

/// One SIM's last known state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimStatusRecord {
    pub iccid: String,
    /// `up`, `unplugged`, `resetting`, `quarantined`, `locked`…
    pub state: String,
    pub healthy: bool,
    pub signal_dbm: Option<i32>,
    pub registration: String,
    pub roaming: bool,
    pub operator: String,
    /// `transfer`, `conference`, or `None` when the SIM cannot bridge calls.
    pub voice_method: Option<String>,
    pub port: String,
    pub last_error: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// How full a SIM's receiving storage was when last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimStorage {
    /// `SM`, `ME`, `MT`…
    pub storage: String,
    pub used: u32,
    pub total: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl SimStatusRecord {
    /// What allocation needs. A status older than `max_age` is not trusted
    /// as healthy: the daemon that wrote it may be gone.
    pub fn live(&self, now: OffsetDateTime, max_age: time::Duration) -> LiveSim {
        LiveSim {
            iccid: self.iccid.clone(),
            healthy: self.healthy && now - self.updated_at <= max_age,
            signal_dbm: self.signal_dbm,
            voice_capable: self.voice_method.is_some(),
        }
    }
}

impl Store {
    /// Records a SIM's live state (the SIM must be in the pool).
    pub async fn save_sim_status(&self, status: SimStatusRecord) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.save_sim_statuses(vec![status]).await;
        }
        self.call_relaxed(move |conn| {
            upsert_status(conn, &status)?;
            Ok(())
        })
        .await
    }

    /// Records the live state and storage fill of many SIMs in one job;
    /// those not in the pool are skipped. Bookkeeping for the tools beside
    /// the daemon, made durable by the next fsync: the daemon writes it
    /// again every poll.
    pub async fn save_sim_statuses(
        &self,
        statuses: Vec<SimStatusRecord>,
        storages: Vec<(String, SimStorage)>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            // The storage fill stays on the appliance (its dashboard).
            drop(storages);
            return pg.save_sim_statuses(statuses).await;
        }
        self.call_relaxed(move |conn| {
            let tx = conn.savepoint()?;
            for status in &statuses {
                // A SIM not yet in the pool has no row to refer to.
                let _ = upsert_status(&tx, status);
            }
            for (iccid, storage) in &storages {
                let _ = upsert_storage(&tx, iccid, storage);
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records how full a SIM's receiving storage is (the SIM must be in
    /// the pool).
    pub async fn save_sim_storage(
        &self,
        iccid: String,
        storage: SimStorage,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.save_sim_storage(iccid, storage).await;
        }
        self.call(move |conn| upsert_storage(conn, &iccid, &storage))
            .await
    }

    /// Every SIM's last known storage fill, by ICCID.
    pub async fn sim_storages(
        &self,
    ) -> Result<std::collections::BTreeMap<String, SimStorage>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sim_storages().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT iccid, storage, used, total, updated_ms FROM sim_storage",
            )?;
            let mut rows = statement.query([])?;
            let mut out = std::collections::BTreeMap::new();
            while let Some(row) = rows.next()? {
                out.insert(
                    row.get::<_, String>(0)?,
                    SimStorage {
                        storage: row.get(1)?,
                        used: row.get(2)?,
                        total: row.get(3)?,
                        updated_at: from_ms(row.get(4)?)?,
                    },
                );
            }
            Ok(out)
        })
        .await
    }

    /// Every SIM's last known state.
    pub async fn sim_statuses(&self) -> Result<Vec<SimStatusRecord>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.sim_statuses().await;
        }
        self.call(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT iccid, state, healthy, signal_dbm, registration, roaming, operator, \
                 voice_method, port, last_error, updated_ms FROM sim_status ORDER BY iccid",
            )?;
            let mut rows = statement.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(SimStatusRecord {
                    iccid: row.get(0)?,
                    state: row.get(1)?,
                    healthy: row.get(2)?,
                    signal_dbm: row.get(3)?,
                    registration: row.get(4)?,
                    roaming: row.get(5)?,
                    operator: row.get(6)?,
                    voice_method: row.get(7)?,
                    port: row.get(8)?,
                    last_error: row.get(9)?,
                    updated_at: from_ms(row.get(10)?)?,
                });
            }
            Ok(out)
        })
        .await
    }
}

fn upsert_status(conn: &rusqlite::Connection, status: &SimStatusRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO sim_status (iccid, state, healthy, signal_dbm, registration, roaming, \
         operator, voice_method, port, last_error, updated_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (iccid) DO UPDATE SET state = ?2, healthy = ?3, signal_dbm = ?4, \
         registration = ?5, roaming = ?6, operator = ?7, voice_method = ?8, port = ?9, \
         last_error = ?10, updated_ms = ?11",
    )?
    .execute(params![
        status.iccid,
        status.state,
        status.healthy,
        status.signal_dbm,
        status.registration,
        status.roaming,
        status.operator,
        status.voice_method,
        status.port,
        status.last_error,
        to_ms(status.updated_at),
    ])?;
    Ok(())
}

fn upsert_storage(
    conn: &rusqlite::Connection,
    iccid: &str,
    storage: &SimStorage,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO sim_storage (iccid, storage, used, total, updated_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (iccid) DO UPDATE SET \
         storage = ?2, used = ?3, total = ?4, updated_ms = ?5",
    )?
    .execute(params![
        iccid,
        storage.storage,
        storage.used,
        storage.total,
        to_ms(storage.updated_at)
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::PhoneNumber;

    fn status(iccid: &str, healthy: bool, at: OffsetDateTime) -> SimStatusRecord {
        SimStatusRecord {
            iccid: iccid.into(),
            state: "up".into(),
            healthy,
            signal_dbm: Some(-71),
            registration: "home".into(),
            roaming: false,
            operator: "Virtual".into(),
            voice_method: Some("transfer".into()),
            port: "/dev/ttyUSB0".into(),
            last_error: String::new(),
            updated_at: at,
        }
    }

    #[tokio::test]
    async fn status_is_saved_replaced_and_aged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        store
            .upsert_sim(
                "8944000000000000001".into(),
                PhoneNumber::from_e164("+447700900001").unwrap(),
                String::new(),
                None,
                now,
            )
            .await
            .unwrap();
        store
            .save_sim_status(status("8944000000000000001", false, now))
            .await
            .unwrap();
        store
            .save_sim_status(status("8944000000000000001", true, now))
            .await
            .unwrap();
        let saved = store.sim_statuses().await.unwrap();
        assert_eq!(saved, vec![status("8944000000000000001", true, now)]);
        let age = time::Duration::minutes(5);
        assert!(saved[0].live(now + time::Duration::minutes(1), age).healthy);
        assert!(!saved[0].live(now + time::Duration::minutes(6), age).healthy);
        assert!(saved[0].live(now, age).voice_capable);
    }

    #[tokio::test]
    async fn status_of_an_unknown_sim_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(store.save_sim_status(status("1", true, now)).await.is_err());
    }
}
