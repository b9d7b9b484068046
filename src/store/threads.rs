//! The store's threads: the writer, which runs every job on the one
//! read-write connection in order (the relay's and the outbox's jobs
//! queued together in one transaction) and never waits for the disk; the sync
//! thread, which makes each group of commits durable with one `fdatasync`
//! of the write-ahead log and only then answers them; and the checkpoint
//! thread, which copies a long log into the database. Neither of the last
//! two holds up the writer.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::{StoreError, integrity};

/// A job on the writer thread. No job fsyncs: each hands back the reply
/// to send once the group it ran in has been made durable by one fsync
/// (group commit), or `None` when it has answered already (it wrote
/// nothing, or its caller does not wait for the disk).
pub(super) enum Job {
    /// Opens and commits its own transactions.
    Alone(AloneJob),
    /// Writes inside a savepoint of its own, which is its transaction when
    /// it runs alone; shared jobs queued together run in one transaction,
    /// committed once, so the log pages they all touch (the tables' and
    /// indexes' newest pages, the SIM's counters) are written once, not
    /// once each. Told how that transaction ended.
    Shared(SharedJob),
}

pub(super) type AloneJob = Box<dyn FnOnce(&mut Connection) -> Option<Answer> + Send>;
pub(super) type SharedJob = Box<dyn FnOnce(&mut Connection) -> Ended + Send>;

/// Answers a shared job once the transaction it ran in has committed (or
/// failed to, with that error), or hands back its answer for after the
/// fsync.
pub(super) type Ended = Box<dyn FnOnce(Result<(), &rusqlite::Error>) -> Option<Answer> + Send>;

/// At most this many shared jobs run in one transaction: each waits for
/// the last of its group before it is answered.
const MOST_SHARING: usize = 8;
// The first two jobs taken are run before the limit is looked at.
const _: () = assert!(MOST_SHARING >= 2);

/// Sends a durable job's result to its caller; given the error when the
/// fsync that was to make it durable failed.
pub(super) type Answer = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// Starts the store's threads on the migrated writer connection `conn` of
/// the database at `path`; answers the writer's job queue. The threads stop
/// when the last sender of that queue is dropped.
pub(super) fn start(
    conn: Connection,
    path: &Path,
    health: integrity::WriteHealth,
) -> Result<mpsc::Sender<Job>, StoreError> {
    // Replaces SQLite's auto-checkpoint, which is itself a WAL hook.
    conn.wal_hook(Some(count_log_frames));
    // The writer's commits reach the log without an fsync; the sync thread
    // makes them durable (`synchronous = FULL` would fsync on the writer,
    // at every commit). Set once: the pragma acts when it is compiled, so
    // switching it around each job cost two statements compiled per job.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let (jobs, inbox) = mpsc::channel::<Job>();
    let (to_sync, synced) = mpsc::channel::<Vec<Answer>>();
    let (to_checkpoint, checkpoints) = mpsc::sync_channel::<()>(1);
    let cannot = |what: &str, e: std::io::Error| {
        StoreError::Corrupt(format!("cannot start the {what} thread: {e}"))
    };
    let database = path.to_path_buf();
    thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || checkpointer(&database, checkpoints))
        .map_err(|e| cannot("checkpoint", e))?;
    let database = path.to_path_buf();
    let sync_health = health.clone();
    thread::Builder::new()
        .name("store-sync".into())
        .spawn(move || syncer(&database, synced, sync_health))
        .map_err(|e| cannot("sync", e))?;
    thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer(conn, inbox, to_sync, to_checkpoint, health))
        .map_err(|e| cannot("writer", e))?;
    Ok(jobs)
}

/// The writer thread: runs jobs in order, and hands each group's answers
/// that wait for the disk to the sync thread without waiting for it.
fn writer(
    mut conn: Connection,
    inbox: mpsc::Receiver<Job>,
    to_sync: mpsc::Sender<Vec<Answer>>,
    checkpoint: mpsc::SyncSender<()>,
    health: integrity::WriteHealth,
) {
    while let Ok(first) = inbox.recv() {
        let mut waiting: Vec<Answer> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            next = match job {
                Job::Alone(run) => {
                    waiting.extend(run(&mut conn));
                    None
                }
                Job::Shared(run) => run_shared(&mut conn, run, &inbox, &mut waiting),
            };
            // Take what queued meanwhile into the same group, within reason.
            if next.is_none() && waiting.len() < 64 {
                next = inbox.try_recv().ok();
            }
        }
        if !waiting.is_empty() && to_sync.send(waiting).is_err() {
            // The sync thread is gone (it cannot be while the writer runs;
            // the answers are dropped and their callers see the writer
            // gone, so nothing is taken off a SIM).
            health.refused((false, "the store's sync thread has stopped".into()));
        }
        if LOG_FRAMES.get() >= CHECKPOINT_AT_FRAMES {
            // Already asked (a checkpoint under way) is fine.
            let _ = checkpoint.try_send(());
        }
    }
}

/// Runs the shared job `first` and the shared jobs queued right behind it
/// in one transaction, then tells each how it ended; returns the job of
/// the other kind it took off the queue, if any, to run next.
fn run_shared(
    conn: &mut Connection,
    first: SharedJob,
    inbox: &mpsc::Receiver<Job>,
    waiting: &mut Vec<Answer>,
) -> Option<Job> {
    let second = match inbox.try_recv() {
        Ok(Job::Shared(second)) => second,
        // Alone in the queue: its savepoint is its transaction, and it
        // waits for no other job.
        other => {
            waiting.extend(first(conn)(Ok(())));
            return other.ok();
        }
    };
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Each commits on its own then.
        tracing::warn!(%error, "store: cannot open a shared transaction");
        waiting.extend(first(conn)(Ok(())));
        waiting.extend(second(conn)(Ok(())));
        return None;
    }
    let mut ran = Vec::with_capacity(MOST_SHARING);
    let mut queued = vec![first, second].into_iter();
    let mut left = None;
    // A job whose statement failed badly (a full disk, an I/O error) may
    // have ended the whole transaction: SQLite rolls it back by itself.
    let mut rolled_back = false;
    while ran.len() < MOST_SHARING && !rolled_back {
        let job = match queued.next() {
            Some(job) => job,
            None => match inbox.try_recv() {
                Ok(Job::Shared(job)) => job,
                other => {
                    left = other.ok();
                    break;
                }
            },
        };
        ran.push(job(conn));
        rolled_back = conn.is_autocommit();
    }
    // Whatever was taken and not run (the group ended at its first job):
    // each commits on its own.
    for job in queued {
        waiting.extend(job(conn)(Ok(())));
    }
    let ended = if rolled_back {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("rolled back with a shared transaction whose other job failed".into()),
        ))
    } else {
        conn.execute_batch("COMMIT").inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
    };
    for told in ran {
        waiting.extend(told(ended.as_ref().map(|_| ())));
    }
    left
}

thread_local! {
    /// Frames in the write-ahead log after the writer's last commit: the log's
    /// content, which its file's length is not (SQLite writes a log over
    /// from its start once it is copied, and never shortens the file).
    static LOG_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the writer connection: runs on the writer thread
/// as each commit ends, with the frames now in the log.
fn count_log_frames(wal: &Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    let frames = u32::try_from(frames).unwrap_or(0);
    LOG_FRAMES.set(frames);
    if frames >= WRITER_CHECKPOINT_FRAMES {
        // The backstop, should the checkpoint thread fall behind. An error
        // here would fail a commit that has happened: logged instead.
        if let Err(error) = wal.checkpoint() {
            tracing::warn!(%error, "store: the writer's checkpoint failed");
        }
    }
    Ok(())
}

/// The sync thread: makes durable what the writer committed, one
/// `fdatasync` of the write-ahead log for every group that waited meanwhile,
/// then answers the group's jobs. The writer goes on committing during the
/// sync (it took 0.3 ms at p50 and 2.2 ms at p99 on the bench's disk, and
/// sat on the relay's path for every message queued behind it).
///
/// A commit is durable once its frames are on disk: any descriptor of the
/// log's file flushes them, and a sync that starts after the commit
/// returned covers it. The log is found by its path and opened again when
/// SQLite has replaced it; when it is gone (the last connection closing
/// checkpoints it into the database and deletes it), the database file is
/// synced instead.
fn syncer(database: &Path, groups: mpsc::Receiver<Vec<Answer>>, health: integrity::WriteHealth) {
    let mut wal = WalFile::new(database);
    while let Ok(mut answers) = groups.recv() {
        while let Ok(more) = groups.try_recv() {
            answers.extend(more);
        }
        let unsynced = match wal.sync() {
            Ok(()) => None,
            Err(error) => {
                tracing::error!(%error, "store: cannot make a group of commits durable");
                let disk_full = error.raw_os_error() == Some(nix::libc::ENOSPC);
                let message = format!("syncing the write-ahead log: {error}");
                health.refused((disk_full, message.clone()));
                Some((disk_full, message))
            }
        };
        for answer in answers {
            answer(
                unsynced
                    .clone()
                    .map(|(disk_full, message)| StoreError::NotDurable { disk_full, message }),
            );
        }
    }
}

/// The database's write-ahead log, kept open for syncing.
struct WalFile {
    database: PathBuf,
    wal: PathBuf,
    open: Option<std::fs::File>,
}

impl WalFile {
    fn new(database: &Path) -> Self {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            database: database.to_path_buf(),
            wal: PathBuf::from(wal),
            open: None,
        }
    }

    /// Flushes the log (or, without one, the database) to disk.
    fn sync(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let current = match std::fs::metadata(&self.wal) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let Some((device, inode)) = current else {
            self.open = None;
            return std::fs::File::open(&self.database)?.sync_data();
        };
        let file = match self.open.take() {
            Some(file)
                if file
                    .metadata()
                    .is_ok_and(|m| (m.dev(), m.ino()) == (device, inode)) =>
            {
                file
            }
            _ => std::fs::File::open(&self.wal)?,
        };
        file.sync_data()?;
        self.open = Some(file);
        Ok(())
    }
}

/// The frames of log past which the checkpoint thread copies it into the
/// database: SQLite's own default (1,000 pages).
const CHECKPOINT_AT_FRAMES: u32 = 1_000;

/// The writer checkpoints by itself only past this many frames of log: a
/// backstop, should the checkpoint thread fall behind.
const WRITER_CHECKPOINT_FRAMES: u32 = 25_000;

/// The checkpoint thread: copies the log into the database on a
/// connection of its own when the writer finds the log long. SQLite
/// does this on the committing connection by default, which held the
/// writer for two fsyncs and the copy (2–3 ms) every forty-odd messages,
/// on the path of every message queued behind it. A passive checkpoint
/// neither blocks nor waits for the writer; the writer starts the log
/// afresh at its next transaction once everything is copied.
fn checkpointer(database: &Path, requests: mpsc::Receiver<()>) {
    let mut conn = None;
    while requests.recv().is_ok() {
        if conn.is_none() {
            conn = Connection::open(database)
                .and_then(|c| {
                    c.busy_timeout(std::time::Duration::from_secs(5))
                        .map(|()| c)
                })
                .inspect_err(
                    |error| tracing::warn!(%error, "store: cannot open the checkpoint connection"),
                )
                .ok();
        }
        let Some(c) = &conn else { continue };
        if let Err(error) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "store: checkpoint failed; trying again at the next");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_synced_by_path_and_opened_again_when_replaced() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("s.db");
        std::fs::write(&database, b"database").unwrap();
        let mut wal = WalFile::new(&database);
        let inode =
            |file: &Option<std::fs::File>| file.as_ref().map(|f| f.metadata().unwrap().ino());
        // No log (the last connection closed it into the database): the
        // database file is synced instead.
        wal.sync().unwrap();
        assert_eq!(inode(&wal.open), None);
        let log = dir.path().join("s.db-wal");
        std::fs::write(&log, vec![0u8; 100]).unwrap();
        wal.sync().unwrap();
        assert_eq!(
            inode(&wal.open),
            Some(std::fs::metadata(&log).unwrap().ino())
        );
        // Replaced by another file: found again by its path.
        let kept = std::fs::File::open(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        std::fs::write(&log, vec![0u8; 300]).unwrap();
        assert_ne!(
            kept.metadata().unwrap().ino(),
            std::fs::metadata(&log).unwrap().ino()
        );
        wal.sync().unwrap();
        assert_eq!(
            inode(&wal.open),
            Some(std::fs::metadata(&log).unwrap().ino())
        );
    }

    /// The checkpoint is asked for by the log's content: once copied, the
    /// log is written over from its start and its file keeps its length,
    /// so the length would ask for a checkpoint after every commit.
    #[test]
    fn the_log_is_measured_in_frames_not_by_its_files_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.wal_hook(Some(count_log_frames));
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        conn.execute("INSERT INTO t (b) SELECT zeroblob(6000000)", [])
            .unwrap();
        assert!(
            LOG_FRAMES.get() >= CHECKPOINT_AT_FRAMES,
            "{}",
            LOG_FRAMES.get()
        );
        // The checkpoint thread's copy, on a connection of its own.
        Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        conn.execute("INSERT INTO t (b) VALUES (x'01')", [])
            .unwrap();
        assert!(LOG_FRAMES.get() < 10, "{}", LOG_FRAMES.get());
        let log = std::fs::metadata(dir.path().join("s.db-wal"))
            .unwrap()
            .len();
        assert!(
            log > 4 * 1024 * 1024,
            "the log's file kept its length: {log}"
        );
    }
}
