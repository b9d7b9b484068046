use time::Duration;
use time::macros::datetime;

use super::*;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn number(s: &str) -> PhoneNumber {
    PhoneNumber::from_e164(s).unwrap()
}

fn live(iccid: &str, signal: i32) -> LiveSim {
    LiveSim {
        iccid: iccid.into(),
        healthy: true,
        signal_dbm: Some(signal),
        voice_capable: true,
    }
}

fn new_session(a: &str, b: &str) -> NewSession {
    NewSession {
        participants: [number(a), number(b)],
        mode: Mode::Both,
        ttl: None,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: Default::default(),
    }
}

async fn store_with_sims(dir: &tempfile::TempDir, count: usize) -> (Store, Vec<LiveSim>) {
    let store = Store::open(&dir.path().join("simmask.db")).unwrap();
    let mut pool = Vec::new();
    for i in 0..count {
        let iccid = format!("894400000000000000{i}");
        store
            .upsert_sim(
                iccid.clone(),
                number(&format!("+44700000000{i}")),
                format!("23410000000000{i}"),
                None,
                NOW,
            )
            .await
            .unwrap();
        pool.push(live(&iccid, -70 - i as i32));
    }
    (store, pool)
}

const A: &str = "+447911000001";
const B: &str = "+447911000002";
const C: &str = "+447911000003";

#[tokio::test]
async fn a_session_opens_on_a_free_proxy_and_routes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 2).await;
    let session = store
        .open_session(new_session(A, B), pool, NOW)
        .await
        .unwrap();
    assert_eq!(session.status, SessionStatus::Open);
    assert_eq!(session.participants, [Some(number(A)), Some(number(B))]);
    // Equal load: the strongest signal wins.
    assert_eq!(session.proxy_iccid, "8944000000000000000");
    assert_eq!(session.proxy_number, number("+447000000000"));

    let found = store
        .open_session_of(session.proxy_iccid.clone(), number(B))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, session.id);
    let stranger = store
        .open_session_of(session.proxy_iccid.clone(), number(C))
        .await
        .unwrap();
    assert!(stranger.is_none());
}

#[tokio::test]
async fn the_masking_rule_spreads_a_number_over_proxies_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 2).await;
    let first = store
        .open_session(new_session(A, B), pool.clone(), NOW)
        .await
        .unwrap();
    let second = store
        .open_session(new_session(A, C), pool.clone(), NOW)
        .await
        .unwrap();
    assert_ne!(first.proxy_iccid, second.proxy_iccid);
    let error = store
        .open_session(new_session(A, "+447911000004"), pool.clone(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Allocation(_)), "{error}");
    assert!(error.to_string().contains("2 already carry"), "{error}");

    // Closing frees the proxy for A again.
    store
        .close_session(first.id.clone(), "test".into(), NOW)
        .await
        .unwrap();
    let third = store
        .open_session(new_session(A, "+447911000004"), pool, NOW)
        .await
        .unwrap();
    assert_eq!(third.proxy_iccid, first.proxy_iccid);
    let again = store
        .close_session(first.id, "test".into(), NOW)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already closed"), "{again}");
}

#[tokio::test]
async fn unhealthy_or_disabled_sims_get_no_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut pool) = store_with_sims(&dir, 2).await;
    pool[0].healthy = false;
    store
        .set_sim_enabled(pool[1].iccid.clone(), false, "test".into(), NOW)
        .await
        .unwrap();
    let error = store
        .open_session(new_session(A, B), pool, NOW)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("1 are disabled"), "{error}");
    assert!(error.to_string().contains("1 are unhealthy"), "{error}");
    let missing = store
        .set_sim_enabled("nope".into(), true, "test".into(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NoSuchSim(_)));
}

#[tokio::test]
async fn sticky_sessions_return_to_the_proxy_used_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 3).await;
    let mut first = new_session(A, B);
    first.sticky = true;
    let busy = store
        .open_session(new_session(C, "+447911000005"), pool.clone(), NOW)
        .await
        .unwrap();
    let before = store
        .open_session(first.clone(), pool.clone(), NOW)
        .await
        .unwrap();
    store
        .close_session(before.id.clone(), "test".into(), NOW)
        .await
        .unwrap();
    // Load would now pick another proxy, but A used this one before.
    let later = store
        .open_session(first, pool, NOW + Duration::HOUR)
        .await
        .unwrap();
    assert_eq!(later.proxy_iccid, before.proxy_iccid);
    assert_ne!(busy.proxy_iccid, later.proxy_iccid);
}

#[tokio::test]
async fn sessions_expire_by_absolute_and_idle_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 3).await;
    let mut absolute = new_session(A, B);
    absolute.ttl = Some(Duration::minutes(30));
    let absolute = store
        .open_session(absolute, pool.clone(), NOW)
        .await
        .unwrap();
    let mut idle = new_session(A, C);
    idle.idle_ttl = Some(Duration::minutes(10));
    let idle = store.open_session(idle, pool.clone(), NOW).await.unwrap();
    let forever = store
        .open_session(new_session(B, C), pool, NOW)
        .await
        .unwrap();

    store
        .touch_session(idle.id.clone(), NOW + Duration::minutes(5))
        .await
        .unwrap();
    assert!(
        store
            .expire_due(NOW + Duration::minutes(14))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = store.expire_due(NOW + Duration::minutes(15)).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, idle.id);
    assert_eq!(expired[0].status, SessionStatus::Expired);
    let expired = store.expire_due(NOW + Duration::hours(5)).await.unwrap();
    assert_eq!(
        expired.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&absolute.id]
    );
    let still = store.session(forever.id).await.unwrap();
    assert_eq!(still.status, SessionStatus::Open);
    assert!(
        store
            .open_session_of(idle.proxy_iccid, number(A))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_clock_step_moves_open_deadlines_so_sessions_keep_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 2).await;
    let mut absolute = new_session(A, B);
    absolute.ttl = Some(Duration::minutes(30));
    let absolute = store
        .open_session(absolute, pool.clone(), NOW)
        .await
        .unwrap();
    let mut idle = new_session(A, C);
    idle.idle_ttl = Some(Duration::minutes(10));
    let idle = store.open_session(idle, pool, NOW).await.unwrap();
    store
        .close_session(idle.id.clone(), "test".into(), NOW)
        .await
        .unwrap();

    // The clock was two hours behind and is stepped forward.
    let step = Duration::hours(2);
    assert_eq!(store.shift_open_sessions(step).await.unwrap(), 1);
    assert!(
        store
            .expire_due(NOW + step + Duration::minutes(29))
            .await
            .unwrap()
            .is_empty(),
        "the session keeps its 30 minutes in the new time"
    );
    let expired = store
        .expire_due(NOW + step + Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&absolute.id]
    );
    // A closed session is history: its times stay.
    let closed = store.session(idle.id).await.unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 3).await;
    let mut labelled = new_session(A, B);
    labelled.label = Some("ride 42".into());
    let ride = store
        .open_session(labelled, pool.clone(), NOW)
        .await
        .unwrap();
    let other = store
        .open_session(new_session(A, C), pool, NOW + Duration::SECOND)
        .await
        .unwrap();
    store
        .close_session(other.id.clone(), "test".into(), NOW)
        .await
        .unwrap();

    let all = store
        .sessions(SessionFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&other.id, &ride.id]
    );
    let open = store
        .sessions(SessionFilter {
            status: Some(SessionStatus::Open),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    let by_label = store
        .sessions(SessionFilter {
            label: Some("ride".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_label[0].id, ride.id);
    let by_participant = store
        .sessions(SessionFilter {
            participant: Some(number(C)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_participant[0].id, other.id);
    let second_page = store
        .sessions(SessionFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(second_page[0].id, ride.id);
    let missing = store.session("ses_nope".into()).await.unwrap_err();
    assert!(matches!(missing, StoreError::NoSuchSession(_)));
}

#[tokio::test]
async fn a_sim_in_another_modem_keeps_its_sessions_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 1).await;
    let iccid = pool[0].iccid.clone();
    let session = store
        .open_session(new_session(A, B), pool, NOW)
        .await
        .unwrap();
    store
        .set_sim_enabled(iccid.clone(), false, "test".into(), NOW)
        .await
        .unwrap();
    let modem = ModemRecord {
        imei: "35".into(),
        manufacturer: "Quectel".into(),
        model: "EC25".into(),
        revision: "r".into(),
        profile: "quectel-ec25".into(),
        port: "/dev/ttyUSB7".into(),
    };
    store.upsert_modem(modem, NOW).await.unwrap();
    let moved = store
        .upsert_sim(
            iccid.clone(),
            number("+447000000000"),
            "x".into(),
            Some("35".into()),
            NOW,
        )
        .await
        .unwrap();
    assert!(!moved.enabled);
    assert_eq!(moved.modem_imei.as_deref(), Some("35"));
    let still = store
        .open_session_of(iccid, number(A))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.id, session.id);
}

#[tokio::test]
async fn data_survives_reopening_and_backup_is_a_consistent_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = store_with_sims(&dir, 2).await;
    let session = store
        .open_session(new_session(A, B), pool, NOW)
        .await
        .unwrap();
    let path = store.path().to_path_buf();
    let copy = dir.path().join("backup.db");
    Store::backup_file(&path, &copy).unwrap();
    drop(store);

    for file in [&path, &copy] {
        let reopened = Store::open(file).unwrap();
        let found = reopened.session(session.id.clone()).await.unwrap();
        assert_eq!(found, session);
        assert_eq!(reopened.sims().await.unwrap().len(), 2);
    }
}

/// Durable jobs are answered once the sync thread has flushed the log, and
/// the checkpoint thread (not the writer) copies a long log into the
/// database file.
#[tokio::test]
async fn durable_commits_are_answered_and_a_long_log_is_checkpointed_off_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&path);
    // 6 MiB of log (some 1,500 frames) in 96 durable jobs: past the checkpoint
    // thread's 1,000 frames, far below the writer's own backstop.
    let blob = vec![7u8; 64 * 1024];
    let mut answers = Vec::new();
    for _ in 0..96 {
        let blob = blob.clone();
        answers.push(store.call_durable(
            move |conn| {
                conn.execute_batch("CREATE TABLE IF NOT EXISTS scratch (b BLOB)")?;
                conn.execute("INSERT INTO scratch (b) VALUES (?1)", [blob])?;
                Ok(())
            },
            |_| {},
        ));
    }
    for answer in answers {
        answer.await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while size(&path) < before + 4 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not grow: {} bytes",
            size(&path)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The writer never waits for the disk, and no one hears of a write the
/// disk has not taken: a job that wrote is answered by the sync thread
/// (here with the sync's failure, the log's path pointing at a file that
/// cannot be synced), one that wrote nothing at once, and the outbox's
/// bookkeeping as soon as it has committed.
#[tokio::test]
async fn a_write_is_answered_after_the_sync_and_the_writer_never_syncs_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    store
        .call(|conn| {
            conn.execute_batch("CREATE TABLE scratch (x INTEGER)")?;
            conn.execute("INSERT INTO scratch (x) VALUES (1)", [])?;
            Ok(())
        })
        .await
        .unwrap();
    // SQLite keeps its log open; the sync thread finds it by its path,
    // which now names /dev/null (fdatasync: EINVAL).
    let log = dir.path().join("s.db-wal");
    let moved = dir.path().join("moved-wal");
    std::fs::rename(&log, &moved).unwrap();
    std::os::unix::fs::symlink("/dev/null", &log).unwrap();

    let wrote = store
        .call(|conn| Ok(conn.execute("INSERT INTO scratch (x) VALUES (2)", [])?))
        .await;
    assert!(
        matches!(wrote, Err(StoreError::NotDurable { .. })),
        "{wrote:?}"
    );
    let read = store
        .call(
            |conn| Ok(conn.query_row("SELECT COUNT(*) FROM scratch", [], |r| r.get::<_, i64>(0))?),
        )
        .await;
    assert_eq!(
        read.unwrap(),
        2,
        "a job that wrote nothing waits for no sync"
    );
    let relaxed = store
        .call_relaxed(|conn| Ok(conn.execute("INSERT INTO scratch (x) VALUES (3)", [])?))
        .await;
    assert_eq!(relaxed.unwrap(), 1, "bookkeeping waits for no sync");
    // And the writer's own commits do not sync: SQLite would have synced
    // the log at each of them under `synchronous = FULL` (2).
    let level = store
        .call(|conn| Ok(conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap();
    assert_eq!(level, 1, "NORMAL");

    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&moved, &log).unwrap();
    store
        .call(|conn| Ok(conn.execute("INSERT INTO scratch (x) VALUES (4)", [])?))
        .await
        .unwrap();
}

/// Shared jobs queued together run in one transaction, committed once; a
/// job that fails loses only its own writes; a job that ends the
/// transaction (as SQLite does by itself on a full disk or an I/O error)
/// fails the jobs before it in the group, whose writes went with it, and
/// those after it commit on their own. A lone shared job waits for no one.
// Multi-threaded: the test's thread blocks until the writer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_jobs_queued_together_commit_once_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    store
        .call(|conn| Ok(conn.execute_batch("CREATE TABLE scratch (x INTEGER)")?))
        .await
        .unwrap();
    // Holds the writer until the jobs below are queued behind it.
    let hold_writer = |store: &Store| {
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let store = store.clone();
        let held = tokio::spawn(async move {
            store
                .call(move |_| {
                    started.send(()).unwrap();
                    released.recv().unwrap();
                    Ok(())
                })
                .await
        });
        running.recv().unwrap();
        (release, held)
    };
    // Each job says whether a transaction was open before its own savepoint.
    let insert = |store: &Store, x: i64, outcome: &'static str| {
        store.call_durable(
            move |conn| {
                let shared = !conn.is_autocommit();
                let savepoint = conn.savepoint()?;
                savepoint.execute("INSERT INTO scratch (x) VALUES (?1)", [x])?;
                match outcome {
                    "fails" => {
                        return Err(StoreError::Corrupt("this job fails".into()));
                    }
                    // What SQLite does by itself after SQLITE_FULL.
                    "ends the transaction" => {
                        drop(savepoint);
                        end_the_transaction(conn);
                        return Err(StoreError::Corrupt("the disk is full".into()));
                    }
                    _ => savepoint.commit()?,
                }
                Ok(shared)
            },
            |_| {},
        )
    };
    let rows = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .call(|conn| {
                    let mut statement = conn.prepare("SELECT x FROM scratch ORDER BY x")?;
                    let rows = statement.query_map([], |row| row.get::<_, i64>(0))?;
                    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
                })
                .await
                .unwrap()
        }
    };

    let lone = insert(&store, 1, "commits").await;
    assert!(!lone.unwrap(), "a lone shared job is its own transaction");

    let (release, held) = hold_writer(&store);
    let queued = [
        insert(&store, 2, "commits"),
        insert(&store, 3, "fails"),
        insert(&store, 4, "commits"),
    ];
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let [two, three, four] = queued;
    assert!(two.await.unwrap(), "ran in the group's transaction");
    assert!(matches!(three.await, Err(StoreError::Corrupt(_))));
    assert!(four.await.unwrap(), "ran in the group's transaction");
    assert_eq!(
        rows(&store).await,
        [1, 2, 4],
        "only the failed job's row is gone"
    );

    let (release, held) = hold_writer(&store);
    let queued = [
        insert(&store, 5, "commits"),
        insert(&store, 6, "ends the transaction"),
        insert(&store, 7, "commits"),
    ];
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let [five, six, seven] = queued;
    assert!(
        matches!(five.await, Err(StoreError::Sqlite(_))),
        "its row went with the transaction: it must not be answered as stored"
    );
    assert!(six.await.is_err());
    assert!(
        !seven.await.unwrap(),
        "after the group ended, it committed alone"
    );
    assert_eq!(rows(&store).await, [1, 2, 4, 7]);
}

/// Ends the open transaction, as SQLite does on its own after some errors.
fn end_the_transaction(conn: &Connection) {
    conn.execute_batch("ROLLBACK").unwrap();
}
