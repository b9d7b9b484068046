//! Is the database file sound, and can the store write? `PRAGMA
//! quick_check` after a start (a power cut in the middle of a write must
//! leave a file that opens and checks clean: WAL, every answered commit
//! fsynced), and the last write that failed for want of space or a working
//! disk.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use time::OffsetDateTime;

use super::{Store, StoreError};

/// What `PRAGMA quick_check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityCheck {
    /// No problem found.
    pub ok: bool,
    /// What SQLite reported, at most [`MAX_PROBLEMS`] lines; empty when ok.
    pub problems: Vec<String>,
    pub checked_at: OffsetDateTime,
    /// How long the check took, in milliseconds.
    pub took_ms: u64,
}

/// The problems listed at most (quick_check stops there too).
pub const MAX_PROBLEMS: usize = 20;

/// Runs `PRAGMA quick_check` on the database at `path` through a read-only
/// connection of its own: it reads beside the writer (WAL), changes
/// nothing, and never creates a missing file.
pub fn quick_check_file(path: &Path) -> Result<IntegrityCheck, StoreError> {
    let started = Instant::now();
    let open_error = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_error)?;
    let problems = match quick_check(&conn) {
        Ok(lines) => lines,
        // A file too damaged to be checked is the finding itself.
        Err(StoreError::Sqlite(error)) if is_corruption(&error) => vec![error.to_string()],
        Err(error) => return Err(error),
    };
    Ok(IntegrityCheck {
        ok: problems.is_empty(),
        problems,
        checked_at: OffsetDateTime::now_utc(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The lines of `PRAGMA quick_check` other than its lone `ok`.
fn quick_check(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
    let lines = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}

fn is_corruption(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// A write the disk refused: full, or failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// SQLITE_FULL: no space left (or a file grew past its limit).
    pub disk_full: bool,
    pub message: String,
    /// The first refusal in a row.
    pub since: OffsetDateTime,
}

/// The store's last refused write; cleared by the next write that commits.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteHealth(Arc<Mutex<Option<WriteFailure>>>);

impl WriteHealth {
    pub(super) fn current(&self) -> Option<WriteFailure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes what a job on the writer connection came to: `wrote` is
    /// whether it changed rows (a read answering proves nothing about the
    /// disk).
    pub(super) fn observe<R>(&self, result: &Result<R, StoreError>, wrote: bool) {
        match result {
            Ok(_) if wrote => self.clear(),
            Ok(_) => {}
            Err(error) => {
                if let Some(failure) = write_failure(error) {
                    self.refused(failure);
                }
            }
        }
    }

    pub(super) fn refused(&self, failure: (bool, String)) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = match slot.as_ref() {
            Some(before) => before.since,
            None => {
                tracing::error!(error = %failure.1, "store: a write was refused; messages stay on the SIMs until it works again");
                OffsetDateTime::now_utc()
            }
        };
        *slot = Some(WriteFailure {
            disk_full: failure.0,
            message: failure.1,
            since,
        });
    }

    fn clear(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = slot.take() {
            tracing::warn!(since = %failure.since, "store: writes work again");
        }
    }
}

/// `(disk_full, message)` when `error` is the disk refusing a write.
pub(super) fn write_failure(error: &StoreError) -> Option<(bool, String)> {
    let sqlite = match error {
        StoreError::Sqlite(sqlite) => sqlite,
        StoreError::NotDurable { disk_full, message } => {
            return Some((*disk_full, message.clone()));
        }
        _ => return None,
    };
    match sqlite.sqlite_error_code()? {
        ErrorCode::DiskFull => Some((true, sqlite.to_string())),
        ErrorCode::SystemIoFailure | ErrorCode::ReadOnly | ErrorCode::CannotOpen => {
            Some((false, sqlite.to_string()))
        }
        _ => None,
    }
}

impl StoreError {
    /// The disk is full: nothing can be committed until space returns.
    pub fn is_disk_full(&self) -> bool {
        write_failure(self).is_some_and(|(full, _)| full)
    }

    /// The disk refused a write (full, read-only, failing).
    pub fn is_write_failure(&self) -> bool {
        write_failure(self).is_some()
    }

    /// The store cannot do it now and will later: the disk refuses writes,
    /// or the database server does not answer (PostgreSQL). Worth trying
    /// again; nothing was stored.
    pub fn is_transient(&self) -> bool {
        self.is_write_failure() || matches!(self, StoreError::Unavailable(_))
    }
}

impl Store {
    /// `PRAGMA quick_check` on a connection of its own, on a thread of its
    /// own: the writer goes on meanwhile.
    pub async fn integrity(&self) -> Result<IntegrityCheck, StoreError> {
        if self.pg.is_some() {
            return Err(StoreError::Unsupported {
                operation: "integrity".into(),
                backend: "postgres",
            });
        }
        let path = self.path.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("store-check".into())
            .spawn(move || {
                let _ = reply.send(quick_check_file(&path));
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the check: {e}")))?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The last write the disk refused, while no write has worked since.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.write_health.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sound_file_checks_ok_and_a_damaged_page_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("check.db");
        let store = Store::open(&path).unwrap();
        let report = store.integrity().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert!(report.problems.is_empty());
        drop(store);

        // A table of several pages, then one of its pages overwritten as a
        // torn write would leave it. The WAL is checkpointed into the file
        // first, explicitly: the store's writer thread may still be closing
        // its connection, and a last close's own checkpoint would then not
        // happen (seen once in a whole run: a 4096-byte file).
        let (root, page_size) = {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE scratch (x TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO scratch SELECT hex(randomblob(40)) FROM n;",
            )
            .unwrap();
            let root: i64 = conn
                .query_row(
                    "SELECT rootpage FROM sqlite_schema WHERE name = 'scratch'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap();
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            assert_eq!(busy, 0, "the WAL checkpointed into the file");
            (root, page_size)
        };
        let mut bytes = std::fs::read(&path).unwrap();
        let offset = usize::try_from((root - 1) * page_size).unwrap();
        // Not a b-tree page type (2, 5, 10 or 13): SQLite cannot read it.
        bytes[offset] = 0x63;
        std::fs::write(&path, bytes).unwrap();

        let report = quick_check_file(&path).unwrap();
        assert!(!report.ok);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("Page") || p.contains("malformed") || p.contains("corrupt")),
            "{report:?}"
        );
    }

    #[test]
    fn a_full_disk_is_told_from_other_errors() {
        let full = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert!(full.is_disk_full() && full.is_write_failure());
        let io = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
            None,
        ));
        assert!(!io.is_disk_full() && io.is_write_failure());
        assert!(!StoreError::NoSuchSession("s".into()).is_write_failure());
        assert!(StoreError::Unavailable("gone".into()).is_transient());
        assert!(!StoreError::Unavailable("gone".into()).is_write_failure());
        assert!(!StoreError::NoSuchSession("s".into()).is_transient());

        let health = WriteHealth::default();
        health.observe(&Err::<(), _>(full), false);
        let first = health.current().expect("noted");
        assert!(first.disk_full);
        health.observe(&Err::<(), _>(io), false);
        assert_eq!(health.current().unwrap().since, first.since, "one episode");
        health.observe(&Ok(()), false);
        assert!(health.current().is_some(), "a read proves nothing");
        health.observe(&Ok(()), true);
        assert!(health.current().is_none());
    }
}
