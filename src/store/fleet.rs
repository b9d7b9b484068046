//! The fleet's calls: appliances, heartbeats, SIM ownership and events
//! shared by every appliance. They need the PostgreSQL backend (one SQLite
//! file is one appliance): on SQLite they answer
//! [`StoreError::Unsupported`], except the ones that have a one-appliance
//! meaning.

use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::pg::{ApplianceRecord, FleetEvent, MigrationReport};
use super::{Store, StoreError};

impl Store {
    /// `simmask migrate`: moves the SQLite store at `source` into the
    /// fleet's database at `url`, in one transaction, as the data of the
    /// appliance `appliance` (which then owns its SIMs and modems).
    /// Refuses a second migration into the same database, a source newer
    /// than this simmask, and rows that would break a fleet rule.
    pub async fn migrate_sqlite_to_postgres(
        source: &std::path::Path,
        url: &str,
        appliance: &str,
    ) -> Result<MigrationReport, StoreError> {
        let pg =
            super::pg::PgStore::connect(url, appliance, super::DEFAULT_HEARTBEAT_TIMEOUT).await?;
        pg.migrate_from_sqlite(source).await
    }

    /// `simmask backup` on a fleet: a consistent `pg_dump` (custom format)
    /// of the database at `url` into `out`, while the daemons keep writing.
    pub async fn backup_postgres(
        url: &str,
        out: &std::path::Path,
    ) -> Result<super::PgBackup, StoreError> {
        super::pg::backup(url, out).await
    }

    /// `simmask restore` on a fleet: the archive `backup` (as
    /// [`Store::backup_postgres`] wrote it) into the empty database at
    /// `url` with `pg_restore`, in one transaction, then migrated to this
    /// simmask's schema. A database with tables is refused.
    pub async fn restore_postgres(
        url: &str,
        backup: &std::path::Path,
    ) -> Result<super::PgRestore, StoreError> {
        super::pg::restore(url, backup).await
    }

    fn fleet_only(&self, operation: &str) -> StoreError {
        StoreError::Unsupported {
            operation: format!("{operation} (a fleet needs [store] backend = \"postgres\")"),
            backend: self.backend().as_str(),
        }
    }

    /// Records that this appliance is alive (the store also does it on its
    /// own every third of the heartbeat timeout).
    pub async fn heartbeat(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        match &self.pg {
            Some(pg) => pg.heartbeat(now).await,
            None => Err(self.fleet_only("heartbeat")),
        }
    }

    /// How long an appliance may be silent before the fleet counts it
    /// offline (`None` on SQLite: one appliance, no heartbeat).
    pub fn heartbeat_timeout(&self) -> Option<std::time::Duration> {
        self.pg.as_ref().map(|pg| pg.heartbeat_timeout())
    }

    /// This appliance's name in the fleet, when the store is shared.
    pub fn appliance(&self) -> Option<&str> {
        self.pg.as_ref().map(|pg| pg.appliance())
    }

    /// Every appliance of the fleet: its last heartbeat, whether it is
    /// online, the SIMs it holds.
    pub async fn appliances(&self) -> Result<Vec<ApplianceRecord>, StoreError> {
        match &self.pg {
            Some(pg) => pg.appliances().await,
            None => Err(self.fleet_only("appliances")),
        }
    }

    /// The appliance that holds the SIM `iccid` and whether it is online
    /// (`None` for a SIM no appliance has claimed).
    pub async fn sim_owner(&self, iccid: String) -> Result<Option<(String, bool)>, StoreError> {
        match &self.pg {
            Some(pg) => pg.sim_owner(iccid).await,
            None => Err(self.fleet_only("sim_owner")),
        }
    }

    /// Stores an event of this appliance for every API of the fleet;
    /// returns its id.
    pub async fn publish_event(
        &self,
        kind: String,
        payload: String,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        match &self.pg {
            Some(pg) => pg.publish_event(kind, payload, now).await,
            None => Err(self.fleet_only("publish_event")),
        }
    }

    /// The id of the fleet's newest event (0: none yet), to follow from.
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        match &self.pg {
            Some(pg) => pg.last_event_id().await,
            None => Err(self.fleet_only("last_event_id")),
        }
    }

    /// The fleet's events after the id `after`, oldest first.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<FleetEvent>, StoreError> {
        match &self.pg {
            Some(pg) => pg.events_after(after, limit).await,
            None => Err(self.fleet_only("events_after")),
        }
    }

    /// The SIMs whose outbox another appliance (or this one) just gave
    /// something due (LISTEN / NOTIFY), until the receiver is dropped.
    pub fn follow_outbox_wakes(&self) -> Result<mpsc::Receiver<String>, StoreError> {
        match &self.pg {
            Some(pg) => Ok(pg.follow_outbox_wakes()),
            None => Err(self.fleet_only("follow_outbox_wakes")),
        }
    }

    /// Follows the fleet's events after `after` as they come (LISTEN /
    /// NOTIFY), until the receiver is dropped.
    pub fn follow_events(&self, after: i64) -> Result<mpsc::Receiver<FleetEvent>, StoreError> {
        match &self.pg {
            Some(pg) => Ok(pg.follow_events(after)),
            None => Err(self.fleet_only("follow_events")),
        }
    }
}
