//! The store: the only module that speaks SQL.
//!
//! One SQLite file in WAL mode (a row whose commit was answered survives a
//! power cut), versioned migrations, and one writer connection on its own
//! thread. [`Store`] is the typed async handle to it: callers never see SQL,
//! and every state change is one transaction (or one savepoint of a
//! transaction several share) on that thread. Transactions commit to the
//! log without waiting for the disk; a sync thread makes each group of them
//! durable with one `fdatasync` before their callers hear of them (the
//! outbox's bookkeeping excepted, see [`Store::call_relaxed`]), and a
//! checkpoint thread copies the log into the database, so neither holds up
//! the writer.
//!
//! The narrow interface is deliberate (README, "A fleet: several appliances
//! on one PostgreSQL"): a second backend implements the same calls. With
//! `[store] backend = "postgres"` the handle talks to the fleet's
//! PostgreSQL database instead (`store::pg`): each call implemented there
//! dispatches at its top, and every other one answers
//! [`StoreError::Unsupported`] naming itself.

mod allocate;
mod api_queries;
mod audit;
mod callbacks;
mod calls;
mod export;
mod fleet;
mod hubs;
mod import;
mod inbound;
mod integrity;
mod migrations;
mod pg;
mod pool;
mod rails;
mod relay;
mod retention;
mod sessions;
mod threads;
mod tokens;
mod twilio;
mod twilio_hooks;
mod twilio_pages;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::Connection;
use threads::{Answer, Job};
use time::OffsetDateTime;
use tokio::sync::oneshot;

pub use api_queries::{SimCounters, TrafficHour};
pub use audit::AuditRecord;
pub use callbacks::{MAX_PENDING_DELIVERIES, PendingDelivery};
pub use calls::CallInteraction;
pub use export::{EXPORT_PAGE, ExportCursor, ExportedInteraction, SendCounts};
pub use hubs::{HubConversation, HubRecord};
pub use import::ImportedSession;
pub use inbound::{HeldPart, InboundTx, ReceivedPart, WaitingMessage};
pub use integrity::{IntegrityCheck, MAX_PROBLEMS, WriteFailure, quick_check_file};
pub use migrations::latest_version;
pub use pg::{
    ApplianceRecord, DEFAULT_HEARTBEAT_TIMEOUT, FleetEvent, LeftBehind, MigrationReport, PgBackup,
    PgRestore, TableCount, redacted as redacted_url,
};
pub use pool::{SimStatusRecord, SimStorage};
pub use rails::{BlockRecord, BlockedMessage, PARTICIPANT_WINDOW, RecentMessage};
pub use relay::{
    DeliveryReport, DeliveryStatus, InteractionRecord, NewOutbound, NextClaim, OutboxItem,
};
pub use retention::ErasureCounts;
pub use sessions::{
    HubSide, LiveSim, MAX_PAGE_SIZE, ModemRecord, NewSession, SessionFilter, SessionRecord,
    SimChange, SimRecord,
};
pub use tokens::{NewToken, Role, TokenError, TokenRecord, TokenRef};
pub use twilio::{
    ServiceSessionRef, TwilioNumber, TwilioParticipantRow, TwilioService, TwilioSessionRow,
};
pub use twilio_hooks::{HeldMessage, Hold, HoldKind, INTERCEPT_BACKSTOP_MS, TwilioCallback};
pub use twilio_pages::InteractionPick;

use crate::masking::allocation::AllocationError;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database schema version {found} is from a newer simmask (this one knows up to {known}): \
         refusing to downgrade; run the newer simmask or restore a backup"
    )]
    TooNew { found: usize, known: usize },
    #[error(
        "database schema version {found} is older than this simmask's ({known}): \
         `simmask run` migrates it when it starts"
    )]
    Outdated { found: usize, known: usize },
    #[error("database migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store's writer thread has stopped")]
    WriterGone,
    #[error("no session {0}")]
    NoSuchSession(String),
    #[error("no SIM {0}")]
    NoSuchSim(String),
    #[error("no hub {0}")]
    NoSuchHub(String),
    #[error("session {id} is already {status}")]
    SessionNotOpen { id: String, status: String },
    /// A rail refused the change (a 409 with `code`: `opted_out`,
    /// `draining`, `reserved`, `participant_busy`, `session_open`…).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Committed, but the fsync meant to make it durable failed: the
    /// caller must act as if it had not been stored.
    #[error("commit not made durable: {message}")]
    NotDurable { disk_full: bool, message: String },
    #[error(
        "erasure committed, but the write-ahead log still holds the erased data \
         (another connection kept reading): run it again to overwrite it"
    )]
    WalBusy,
    #[error("{path} is not a simmask backup: {reason}")]
    NotABackup { path: String, reason: String },
    /// The call exists on the other backend only (so far).
    #[error("`{operation}` is not implemented on the {backend} store yet")]
    Unsupported {
        operation: String,
        backend: &'static str,
    },
    /// The database server cannot be reached (PostgreSQL): nothing was
    /// stored; try again when it is back.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Postgres(tokio_postgres::Error),
    /// PostgreSQL's own tools (`pg_dump`, `pg_restore`) are missing, too
    /// old, or refused (a fleet's backup and restore).
    #[error("{0}")]
    PgTool(String),
}

/// The database server does not answer (PostgreSQL): since when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOutage {
    pub since: OffsetDateTime,
    pub error: String,
}

/// Which database the store keeps its rows in (`[store] backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file on this appliance (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by the fleet's appliances.
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the store is: an SQLite file or a PostgreSQL url.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            // Never the password.
            Location::Postgres(url) => write!(f, "{}", pg::redacted(url)),
        }
    }
}

/// The name of the store call a job belongs to, from the type of its
/// closure (`simmask::store::sessions::<impl …>::open_session::{{closure}}`
/// gives `open_session`), for [`StoreError::Unsupported`].
fn operation_of<F>() -> String {
    let name = std::any::type_name::<F>();
    name.rsplit("::")
        .find(|part| !part.starts_with("{{") && !part.is_empty())
        .unwrap_or(name)
        .trim_end_matches('>')
        .to_string()
}

/// The store's files and schema, for health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFiles {
    pub schema: usize,
    pub database_bytes: u64,
    pub wal_bytes: u64,
}

/// The typed handle to the database. Cheap to clone; the writer thread
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// A read-only connection for the routing lookup on every inbound SMS
    /// or call: WAL lets it read beside the writer, and querying it on the
    /// caller's thread saves the hop to the writer thread (the lookup takes
    /// tens of microseconds; the hop can take longer on a busy Pi).
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// The last write the disk refused (full, failing), until one works.
    write_health: integrity::WriteHealth,
    /// The fleet's PostgreSQL database, when that is the backend: every
    /// call it implements goes there; the others answer
    /// [`StoreError::Unsupported`].
    pg: Option<pg::PgStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies the
    /// migrations, and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = open_connection(path)?;
        migrations::migrate(&mut conn)?;
        let write_health = integrity::WriteHealth::default();
        let jobs = threads::start(conn, path, write_health.clone())?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            jobs,
            reader: Arc::new(Mutex::new(reader)),
            path: path.to_path_buf(),
            write_health,
            pg: None,
        })
    }

    /// Opens the store at `location`: [`Store::open`] for an SQLite file;
    /// for PostgreSQL, connects, applies the migrations and registers this
    /// appliance as `appliance` (its SIMs' owner), with a heartbeat every
    /// third of `heartbeat_timeout`.
    pub async fn connect(
        location: &Location,
        appliance: &str,
        heartbeat_timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open(path),
            Location::Postgres(url) => {
                let pg = pg::PgStore::connect(url, appliance, heartbeat_timeout).await?;
                // No SQLite behind a PostgreSQL store: the writer channel
                // has no thread (calls never reach it, see `call`), and the
                // reader is an empty in-memory database never queried.
                let (jobs, _) = mpsc::channel::<Job>();
                let reader = Connection::open_in_memory()?;
                Ok(Self {
                    jobs,
                    reader: Arc::new(Mutex::new(reader)),
                    path: PathBuf::from(pg.shown()),
                    write_health: integrity::WriteHealth::default(),
                    pg: Some(pg),
                })
            }
        }
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pg {
            Some(_) => Backend::Postgres,
            None => Backend::Sqlite,
        }
    }

    /// While the fleet's database does not answer: since when and why
    /// (`None` on SQLite, whose file is local: see `write_failure`).
    pub fn database_outage(&self) -> Option<DatabaseOutage> {
        self.pg.as_ref().and_then(|pg| pg.outage())
    }

    /// The answer of a call the current backend does not implement.
    fn unsupported<F>(&self) -> StoreError {
        StoreError::Unsupported {
            operation: operation_of::<F>(),
            backend: self.backend().as_str(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the next run number of the daemon (1 for the first start): the
    /// event bus numbers this run's events from it, so ids never repeat
    /// across restarts.
    pub async fn start_event_run(&self) -> Result<u64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.start_event_run().await;
        }
        self.call(|conn| {
            let run: i64 = conn.query_row(
                "INSERT INTO event_runs (id, run) VALUES (1, 1)
                 ON CONFLICT (id) DO UPDATE SET run = run + 1 RETURNING run",
                [],
                |row| row.get(0),
            )?;
            Ok(u64::try_from(run).unwrap_or(1))
        })
        .await
    }

    /// Runs `f` on the writer connection and returns its result once what
    /// it wrote is on disk. The writer commits without waiting for the disk
    /// and goes on with the next job; the sync thread answers after the
    /// `fdatasync` of the log that covers the commit, shared with every job
    /// that committed meanwhile (what `synchronous = FULL` did on the
    /// writer, which held every job queued behind it for the fsync). A job
    /// that changed nothing is answered at once.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.on_writer(f, true).await
    }

    /// Like [`Store::call`], answered as soon as `f` has committed, without
    /// waiting for the disk: for outbox bookkeeping only, where a state a
    /// power cut loses means a resend, never a lost message (and the next
    /// synced commit makes it durable too). It keeps an fsync off the
    /// relay's hot path. Like [`Store::call_durable`]'s, `f` writes in a
    /// savepoint of its own, never a transaction: it may share one.
    async fn call_relaxed<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.on_writer(f, false).await
    }

    /// Runs `f` on the writer; answers once its writes are on disk when
    /// `wait_for_the_disk`, else as soon as it has run.
    async fn on_writer<R, F>(&self, f: F, wait_for_the_disk: bool) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        if self.pg.is_some() {
            return Err(self.unsupported::<F>());
        }
        let (reply, answer) = oneshot::channel();
        let health = self.write_health.clone();
        let job = if wait_for_the_disk {
            Job::Alone(Box::new(move |conn| {
                let before = conn.total_changes();
                let result = f(conn);
                let wrote = conn.total_changes() != before;
                health.observe(&result, wrote);
                if wrote {
                    return Some(answer_when_synced(reply, result));
                }
                // The caller may have gone away (cancelled); nothing to do then.
                let _ = reply.send(result);
                None
            }))
        } else {
            Job::Shared(Box::new(move |conn| {
                let result = run_observed(conn, f, &health);
                Box::new(move |ended| {
                    let _ = reply.send(committed(result, ended, &health));
                    None
                })
            }))
        };
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs the read-only `f` on the reader connection, on this thread.
    fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError>,
    {
        if self.pg.is_some() {
            return Err(self.unsupported::<F>());
        }
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        f(&reader)
    }

    /// Like [`Store::call`] for a transaction that must be on disk before
    /// the caller acts on it (an inbound SMS before its delete from the
    /// SIM): the answer comes only after an fsync. Jobs queued together
    /// share that fsync, so a burst on 16 modems costs one, not 16, and
    /// up to eight share one transaction (`f` writes in a savepoint of its
    /// own; see [`threads::Job::Shared`]).
    /// `on_commit` runs on the writer thread as soon as the job has
    /// committed, before the group's fsync: for a hand-over that may be
    /// repeated after a power cut (a relayed send) but must wait neither
    /// for the fsync nor for the caller's task to be scheduled. Whatever
    /// must not happen before the commit is durable (deleting the message
    /// from its SIM) waits for the answer.
    ///
    /// The job is queued when this is called, not when the future is first
    /// polled: callers that await on separate tasks keep their call order.
    fn call_durable<R, F, D>(
        &self,
        f: F,
        on_commit: D,
    ) -> impl Future<Output = Result<R, StoreError>> + use<R, F, D>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        D: FnOnce(&mut Result<R, StoreError>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let health = self.write_health.clone();
        let unsupported = self.pg.is_some().then(|| self.unsupported::<F>());
        let queued = self
            .jobs
            .send(Job::Shared(Box::new(move |conn| {
                let result = run_observed(conn, f, &health);
                Box::new(move |ended| {
                    let mut result = committed(result, ended, &health);
                    on_commit(&mut result);
                    Some(answer_when_synced(reply, result))
                })
            })))
            .map_err(|_| StoreError::WriterGone);
        async move {
            if let Some(unsupported) = unsupported {
                return Err(unsupported);
            }
            queued?;
            answer.await.map_err(|_| StoreError::WriterGone)?
        }
    }

    /// The schema version and the files' sizes, after a query answered.
    pub async fn health(&self) -> Result<StoreFiles, StoreError> {
        if let Some(pg) = &self.pg {
            let (schema, database_bytes) = pg.health().await?;
            return Ok(StoreFiles {
                schema,
                database_bytes,
                wal_bytes: 0,
            });
        }
        let path = self.path.clone();
        let schema = self.call(|conn| migrations::current_version(conn)).await?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        Ok(StoreFiles {
            schema,
            database_bytes: size(&path),
            wal_bytes: size(Path::new(&wal)),
        })
    }

    /// Opens the database at `path` only if it exists, and refuses one
    /// whose schema is not the latest: for checks that must change nothing
    /// (`simmask doctor` neither creates nor migrates a store).
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        let missing = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(missing)?;
        let found = migrations::current_version(&conn)?;
        let known = latest_version();
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        if found < known {
            return Err(StoreError::Outdated { found, known });
        }
        drop(conn);
        Self::open(path)
    }

    /// Takes a consistent copy of the database into `out` with SQLite's
    /// online backup, while the daemon keeps writing.
    pub fn backup_file(database: &Path, out: &Path) -> Result<(), StoreError> {
        let source = open_connection(database)?;
        let mut copy = Connection::open(out).map_err(|source| StoreError::Open {
            path: out.display().to_string(),
            source,
        })?;
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        // All pages in one step: the copy is one snapshot of the source.
        backup.step(-1)?;
        Ok(())
    }
}

impl Store {
    /// Copies the backup `backup` into a new database at `database` (which
    /// must not exist), after checking that it is a sound simmask database
    /// this binary can read; returns its schema version. [`Store::open`]
    /// brings it to the latest schema afterwards.
    pub fn restore_file(backup: &Path, database: &Path) -> Result<usize, StoreError> {
        let (source, version) = Self::open_backup(backup)?;
        let mut target = open_connection(database)?;
        rusqlite::backup::Backup::new(&source, &mut target)?.step(-1)?;
        Ok(version)
    }

    /// Checks that `backup` is a sound simmask database this binary can
    /// read, without changing anything; returns its schema version.
    pub fn check_backup(backup: &Path) -> Result<usize, StoreError> {
        Self::open_backup(backup).map(|(_, version)| version)
    }

    fn open_backup(backup: &Path) -> Result<(Connection, usize), StoreError> {
        let not_a_backup = |reason: String| StoreError::NotABackup {
            path: backup.display().to_string(),
            reason,
        };
        if !backup.is_file() {
            return Err(not_a_backup("no such file".into()));
        }
        let source =
            Connection::open_with_flags(backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| not_a_backup(e.to_string()))?;
        let check: String = source
            .pragma_query_value(None, "quick_check", |row| row.get(0))
            .map_err(|e| not_a_backup(e.to_string()))?;
        if check != "ok" {
            return Err(not_a_backup(format!("the file is damaged ({check})")));
        }
        let version: i64 = source.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let has_sessions: bool = source.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions')",
            [],
            |row| row.get(0),
        )?;
        let version = usize::try_from(version).unwrap_or(0);
        if version == 0 || !has_sessions {
            return Err(not_a_backup(
                "an SQLite file without simmask's tables".into(),
            ));
        }
        if version > latest_version() {
            return Err(StoreError::TooNew {
                found: version,
                known: latest_version(),
            });
        }
        Ok((source, version))
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(open_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_error)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_error)?;
    // Deleted and overwritten content is zeroed, not left in free space:
    // erased numbers and texts must not survive in the file.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(open_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements kept per connection. rusqlite keeps 16 by default;
/// one received message runs more distinct statements than that on the
/// writer (routing, the rails, the outbox, the send log), so each was
/// parsed and planned again every time: a quarter of the daemon's CPU per
/// relay. The store has fewer than 256 statements in all, and only those a
/// connection runs take room (a few kilobytes each).
const STATEMENT_CACHE: usize = 256;

/// Runs a shared job's `f` (see [`threads::Job::Shared`]) and records the
/// outcome in the store's write health; its writes belong to its own
/// savepoint, or to none when `f` wrote nothing. (The writer's
/// `threads::run_shared` runs such jobs together.)
fn run_observed<R, F>(
    conn: &mut Connection,
    f: F,
    health: &integrity::WriteHealth,
) -> Result<R, StoreError>
where
    F: FnOnce(&mut Connection) -> Result<R, StoreError>,
{
    let before = conn.total_changes();
    let result = f(conn);
    health.observe(&result, conn.total_changes() != before);
    result
}

/// A shared job's result once its transaction has ended: its own error,
/// or the transaction's when that failed to commit (its writes are gone).
fn committed<R>(
    result: Result<R, StoreError>,
    ended: Result<(), &rusqlite::Error>,
    health: &integrity::WriteHealth,
) -> Result<R, StoreError> {
    match (result, ended) {
        (Ok(_), Err(error)) => {
            let failed: Result<R, StoreError> = Err(StoreError::Sqlite(copy_error(error)));
            health.observe(&failed, true);
            failed
        }
        (result, _) => result,
    }
}

/// The same error again, for each job of a transaction that failed.
fn copy_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// The answer of a job that wrote: sent by the sync thread once the log
/// holding its commit is on disk, or the sync's error if that failed.
fn answer_when_synced<R: Send + 'static>(
    reply: oneshot::Sender<Result<R, StoreError>>,
    result: Result<R, StoreError>,
) -> Answer {
    Box::new(move |unsynced: Option<StoreError>| {
        // Committed but not made durable: the caller must not act as if it
        // were (a message stays on its SIM, to be read again and
        // recognised).
        let result = match (result, unsynced) {
            (Ok(_), Some(error)) => Err(error),
            (result, _) => result,
        };
        // The caller may have gone away (cancelled); nothing to do then.
        let _ = reply.send(result);
    })
}

/// Milliseconds since the Unix epoch, the store's time unit.
fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
