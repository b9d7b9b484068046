//! The store on a real PostgreSQL (started by the test): the same calls as
//! on SQLite, the masking rule as a constraint of the database, allocation
//! across two appliances' handles, SIM ownership, heartbeats and the
//! fleet's events.

mod pg_common;

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use pg_common::{HEARTBEAT_TIMEOUT, Postgres, add_sims, connect, healthy, iccid, proxy};
use simmask::masking::Mode;
use simmask::masking::allocation::{AllocationError, PoolLimits};
use simmask::masking::lifecycle::SessionStatus;
use simmask::number::PhoneNumber;
use simmask::store::{
    Location, NewOutbound, NewSession, NextClaim, SessionFilter, Store, StoreError,
};
use time::OffsetDateTime;

fn number(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4479110{n:05}")).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn request(a: u32, b: u32) -> NewSession {
    NewSession {
        participants: [number(a), number(b)],
        mode: Mode::Sms,
        ttl: None,
        idle_ttl: None,
        label: Some(format!("{a}-{b}")),
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: PoolLimits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_open_list_close_and_expire_on_postgres() {
    let pg = Postgres::start();
    let url = pg.database("sessions").await;
    let store = connect(&url, "site-1").await;
    assert_eq!(store.appliance(), Some("site-1"));
    add_sims(&store, &[1, 2]).await;
    assert_eq!(store.sims().await.unwrap().len(), 2);

    let live = healthy(&[1, 2]);
    let first = store
        .open_session(request(1, 2), live.clone(), now())
        .await
        .unwrap();
    assert_eq!(first.status, SessionStatus::Open);
    let second = store
        .open_session(request(1, 3), live.clone(), now())
        .await
        .unwrap();
    assert_ne!(
        first.proxy_iccid, second.proxy_iccid,
        "a person is in one open session per proxy"
    );
    let refused = store
        .open_session(request(1, 4), live.clone(), now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Allocation(AllocationError::NoFreeProxy(_))
        ),
        "{refused:?}"
    );

    assert_eq!(store.session(first.id.clone()).await.unwrap(), first);
    let routed = store
        .open_session_of(first.proxy_iccid.clone(), number(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(routed.id, first.id);
    let listed = store
        .sessions(SessionFilter {
            participant: Some(number(1)),
            limit: 10,
            ..SessionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    let closed = store
        .close_session(first.id.clone(), "test".into(), now())
        .await
        .unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert!(matches!(
        store
            .close_session(first.id.clone(), "test".into(), now())
            .await,
        Err(StoreError::SessionNotOpen { .. })
    ));
    assert!(
        store
            .open_session_of(first.proxy_iccid.clone(), number(2))
            .await
            .unwrap()
            .is_none()
    );
    // The proxy is free again for person 1.
    store
        .open_session(request(1, 4), live.clone(), now())
        .await
        .unwrap();

    let mut short = request(5, 6);
    short.ttl = Some(time::Duration::seconds(10));
    let short = store.open_session(short, live, now()).await.unwrap();
    let expired = store
        .expire_due(now() + time::Duration::seconds(11))
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [short.id.as_str()]
    );
    assert_eq!(expired[0].status, SessionStatus::Expired);
    assert!(matches!(
        store.session("ses_none".into()).await,
        Err(StoreError::NoSuchSession(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_masking_rule_is_a_constraint_of_the_database() {
    let pg = Postgres::start();
    let url = pg.database("rule").await;
    let store = connect(&url, "site-1").await;
    add_sims(&store, &[1]).await;
    let session = store
        .open_session(request(1, 2), healthy(&[1]), now())
        .await
        .unwrap();
    // Raw SQL, past the store: a second open row for the same person on
    // the same proxy is refused by the partial unique index.
    let client = Postgres::client(&url).await;
    client
        .batch_execute(&format!(
            "INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms) \
             VALUES ('ses_raw', '{}', 'sms', 'open', 0, 0)",
            session.proxy_iccid
        ))
        .await
        .unwrap();
    let error = client
        .batch_execute(&format!(
            "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
             VALUES ('ses_raw', 0, '{}', '{}', TRUE)",
            number(1).e164(),
            session.proxy_iccid
        ))
        .await
        .unwrap_err();
    let db = error.as_db_error().expect("the server refused it");
    assert_eq!(db.constraint(), Some("participants_open_route"));
    // Once closed, the same row is allowed: the rule is about open ones.
    client
        .batch_execute(&format!(
            "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
             VALUES ('ses_raw', 0, '{}', '{}', FALSE)",
            number(1).e164(),
            session.proxy_iccid
        ))
        .await
        .unwrap();
    // An ended session must say why (as on SQLite).
    assert!(
        client
            .batch_execute("UPDATE sessions SET status = 'closed' WHERE id = 'ses_raw'")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_openers_on_two_appliances_never_break_the_rule() {
    let pg = Postgres::start();
    let url = pg.database("openers").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    add_sims(&site1, &[1, 2]).await;
    add_sims(&site2, &[3]).await;
    // Each site knows its own SIMs live; the other's come from the stored
    // status its appliance wrote.
    for (store, sims) in [(&site1, [1u32, 2].as_slice()), (&site2, [3].as_slice())] {
        for n in sims {
            store
                .save_sim_status(simmask::store::SimStatusRecord {
                    iccid: iccid(*n),
                    state: "up".into(),
                    healthy: true,
                    signal_dbm: Some(-70),
                    registration: "home".into(),
                    roaming: false,
                    operator: "Sim".into(),
                    voice_method: None,
                    port: format!("/dev/pts/{n}"),
                    last_error: String::new(),
                    updated_at: now(),
                })
                .await
                .unwrap();
        }
    }
    let mut tasks = Vec::new();
    for other in 0..8u32 {
        let (store, live) = if other % 2 == 0 {
            (site1.clone(), healthy(&[1, 2]))
        } else {
            (site2.clone(), healthy(&[3]))
        };
        tasks.push(tokio::spawn(async move {
            store
                .open_session(request(100, 200 + other), live, now())
                .await
        }));
    }
    let mut opened = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(session) => opened.push(session),
            Err(StoreError::Allocation(AllocationError::NoFreeProxy(_))) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    // Three proxies in the fleet: person 100 gets exactly one session on each.
    let proxies: HashSet<_> = opened.iter().map(|s| s.proxy_iccid.clone()).collect();
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert_eq!(proxies.len(), 3);
    // And the database agrees.
    let client = Postgres::client(&url).await;
    let worst: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM participants \
             WHERE open GROUP BY proxy_iccid, number) c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(worst, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_outbox_is_claimed_once_across_appliances_and_follows_its_sim() {
    let pg = Postgres::start();
    let url = pg.database("outbox").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    add_sims(&site1, &[1]).await;
    let outbound = |body: &str| NewOutbound {
        session_id: None,
        proxy_iccid: iccid(1),
        from_position: None,
        to: number(2),
        body: body.into(),
    };
    site2.queue_sms(outbound("one"), now()).await.unwrap();
    site2.queue_sms(outbound("two"), now()).await.unwrap();
    // Two claimers at once get two different rows.
    let (a, b) = tokio::join!(
        site1.claim_next_due(iccid(1), now()),
        site2.claim_next_due(iccid(1), now())
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_ne!(a.id, b.id);
    assert_eq!(site1.claim_next_due(iccid(1), now()).await.unwrap(), None);
    site1.mark_sent(a.id, vec![7], now()).await.unwrap();
    site1
        .mark_retry(
            b.id,
            "network busy".into(),
            now() + time::Duration::seconds(60),
        )
        .await
        .unwrap();
    match site1.claim_next(iccid(1), now()).await.unwrap() {
        NextClaim::NothingDue { next_due: Some(_) } => {}
        other => panic!("{other:?}"),
    }
    // A third message is being sent by site-1 when the SIM moves to site-2:
    // it goes back in the queue there (at most one duplicate, never lost).
    site1.queue_sms(outbound("three"), now()).await.unwrap();
    let sending = site1
        .claim_next_due(iccid(1), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sending.body, "three");
    add_sims(&site2, &[1]).await;
    assert_eq!(
        site2.sim_owner(iccid(1)).await.unwrap(),
        Some(("site-2".into(), true))
    );
    let again = site2
        .claim_next_due(iccid(1), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.body.as_str()), (sending.id, "three"));
    // site-1's own restart requeues nothing of a SIM it no longer holds.
    assert_eq!(site1.requeue_stuck_sending(now()).await.unwrap(), 0);
    assert_eq!(site2.requeue_stuck_sending(now()).await.unwrap(), 1);
    // Each claim was a send attempt the carrier may count, logged for the
    // SIM's rate limiter wherever it moves; the sweeper forgets them a day on.
    let day_ago = now() - time::Duration::days(1);
    assert_eq!(
        site1.recent_sends(iccid(1), day_ago).await.unwrap().len(),
        4
    );
    assert_eq!(site1.forget_old_sends(now()).await.unwrap(), 0);
    let later = now() + time::Duration::days(2);
    assert_eq!(site2.forget_old_sends(later).await.unwrap(), 4);
    assert!(
        site1
            .recent_sends(iccid(1), day_ago)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_appliance_without_heartbeat_shows_offline_and_allocation_skips_it() {
    let pg = Postgres::start();
    let url = pg.database("heartbeat").await;
    let site1 = connect(&url, "site-1").await;
    {
        let site2 = connect(&url, "site-2").await;
        add_sims(&site2, &[2]).await;
        site2
            .save_sim_status(simmask::store::SimStatusRecord {
                iccid: iccid(2),
                state: "up".into(),
                healthy: true,
                signal_dbm: Some(-60),
                registration: "home".into(),
                roaming: false,
                operator: "Sim".into(),
                voice_method: None,
                port: "/dev/pts/2".into(),
                last_error: String::new(),
                updated_at: now(),
            })
            .await
            .unwrap();
    }
    add_sims(&site1, &[1]).await;
    // site-2 is alive: a session may land on its SIM.
    let on_two = site1
        .open_session(request(1, 2), Vec::new(), now())
        .await
        .unwrap();
    assert_eq!(on_two.proxy_iccid, iccid(2));
    // site-2 is gone only once its connections are: a beat already under
    // way when its handle dropped still lands, and would undo the silence
    // below if it landed after it. The heartbeat must stop with the handle
    // (otherwise this never ends).
    let client = Postgres::client(&url).await;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'simmask site-2'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "site-2's {left} connection(s) outlive its handle: its heartbeat goes on"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    // site-2 goes silent (its last beat long ago).
    client
        .batch_execute("UPDATE appliances SET heartbeat_ms = 0 WHERE name = 'site-2'")
        .await
        .unwrap();
    let fleet = site1.appliances().await.unwrap();
    let two = fleet.iter().find(|a| a.name == "site-2").unwrap();
    assert!(!two.online);
    assert_eq!(two.sims, [iccid(2)]);
    let statuses = site1.sim_statuses().await.unwrap();
    let status = statuses.iter().find(|s| s.iccid == iccid(2)).unwrap();
    assert_eq!((status.state.as_str(), status.healthy), ("offline", false));
    // Allocation skips it, even for a SIM the caller claims is healthy.
    let on_one = site1
        .open_session(request(3, 4), healthy(&[1]), now())
        .await
        .unwrap();
    assert_eq!(on_one.proxy_iccid, iccid(1));
    let refused = site1
        .open_session(request(1, 5), healthy(&[1, 2]), now())
        .await;
    // Person 1 is on SIM 2 (waiting, not rerouted) and SIM 1 is free.
    assert_eq!(refused.unwrap().proxy_iccid, iccid(1));
    assert_eq!(
        site1.session(on_two.id.clone()).await.unwrap().status,
        SessionStatus::Open,
        "its sessions wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_from_one_appliance_reach_the_other() {
    let pg = Postgres::start();
    let url = pg.database("events").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let mut followed = site2.follow_events(0).unwrap();
    let id = site1
        .publish_event("session.opened".into(), r#"{"id":"ses_1"}"#.into(), now())
        .await
        .unwrap();
    let event = tokio::time::timeout(StdDuration::from_secs(20), followed.recv())
        .await
        .expect("the event arrives")
        .unwrap();
    assert_eq!(
        (event.id, event.appliance.as_str(), event.kind.as_str()),
        (id, "site-1", "session.opened")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let pg = Postgres::start();
    let url = pg.database("schema").await;
    let store = connect(&url, "site-1").await;
    let schema = store.health().await.unwrap().schema;
    assert!(schema >= 1);
    drop(store);
    // Two appliances starting at once both find the schema applied.
    let location = Location::Postgres(url.clone());
    let (a, b) = tokio::join!(
        Store::connect(&location, "a", HEARTBEAT_TIMEOUT),
        Store::connect(&location, "b", HEARTBEAT_TIMEOUT)
    );
    a.unwrap();
    b.unwrap();
    let client = Postgres::client(&url).await;
    client
        .batch_execute("INSERT INTO simmask_schema (version, applied_ms) VALUES (999, 0)")
        .await
        .unwrap();
    let error = Store::connect(&Location::Postgres(url.clone()), "a", HEARTBEAT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::TooNew { found: 999, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("newer simmask"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_not_on_postgres_yet_say_so_and_the_password_never_shows() {
    let pg = Postgres::start();
    let url = pg.database("unsupported").await;
    let store = connect(&url, "site-1").await;
    // Every call is on PostgreSQL but SQLite's own file check, which
    // answers as any call not there would.
    let error = store.integrity().await.unwrap_err();
    match &error {
        StoreError::Unsupported { operation, backend } => {
            assert_eq!((operation.as_str(), *backend), ("integrity", "postgres"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "`integrity` is not implemented on the postgres store yet"
    );
    // A url with a password: neither the location's Debug nor an error
    // about it shows the password.
    let secret = format!("postgres://postgres:hunter2@127.0.0.1:{}/nowhere", pg.port);
    let location = Location::Postgres(secret.clone());
    assert!(!format!("{location:?}").contains("hunter2"));
    let error = Store::connect(&location, "x", HEARTBEAT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // And the database being away is an outage, not a bug.
    drop(store);
    pg.stop();
    let error = Store::connect(&Location::Postgres(url), "x", HEARTBEAT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_going_away_is_an_outage_and_the_store_resumes() {
    let pg = Postgres::start();
    let url = pg.database("outage").await;
    let store = connect(&url, "site-1").await;
    add_sims(&store, &[1]).await;
    pg.stop();
    let error = store.sims().await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = store
        .open_session(request(1, 2), healthy(&[1]), now())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    pg.start_again();
    // The pool drops the dead connections and makes new ones.
    assert_eq!(store.sims().await.unwrap().len(), 1);
    store
        .open_session(request(1, 2), healthy(&[1]), now())
        .await
        .unwrap();
    store.heartbeat(now()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_page_through_the_fleets_interactions() {
    let pg = Postgres::start();
    let url = pg.database("exports").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    add_sims(&site1, &[1]).await;
    let session = site1
        .open_session(request(1, 2), healthy(&[1]), now())
        .await
        .unwrap();
    let new = NewOutbound {
        session_id: Some(session.id.clone()),
        proxy_iccid: iccid(1),
        from_position: Some(0),
        to: number(2),
        body: "hello".into(),
    };
    let relayed = site1.queue_sms(new, now()).await.unwrap();
    // Written on site-1, read on site-2: who sent and received, resolved.
    let one = site2
        .exported_interaction(relayed)
        .await
        .unwrap()
        .expect("the interaction");
    assert_eq!(one.session_id.as_deref(), Some(session.id.as_str()));
    assert_eq!(one.proxy_number, Some(proxy(1).e164().to_string()));
    assert_eq!(
        (one.from_number, one.to_number),
        (Some(number(1)), Some(number(2)))
    );
    assert_eq!(one.body.as_deref(), Some("hello"));
    assert_eq!(
        site2
            .exported_interaction(relayed + 1_000_000)
            .await
            .unwrap(),
        None
    );

    // 1,100 older interactions, ten of them at the same millisecond.
    let client = Postgres::client(&url).await;
    client
        .execute(
            "INSERT INTO interactions (proxy_iccid, kind, status, body, created_ms, updated_ms) \
             SELECT $1, 'sms', 'sent', 'n' || n, 1000000 + GREATEST(n, 10), 0 \
             FROM generate_series(0, 1099) AS n",
            &[&iccid(1)],
        )
        .await
        .unwrap();
    let from = OffsetDateTime::from_unix_timestamp(0).unwrap();
    let to = OffsetDateTime::from_unix_timestamp(3_000).unwrap();
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = site2.interactions_between(from, to, cursor).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        cursor = Some((last.created_ms, last.id));
        for row in &page {
            assert!(row.created_ms < 3_000_000, "{row:?}");
        }
        if page.len() < simmask::store::EXPORT_PAGE {
            break;
        }
    }
    assert_eq!(pages, [500, 500, 100]);
    let all: Vec<_> = {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = site1.interactions_between(from, to, cursor).await.unwrap();
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|r| (r.created_ms, r.id));
            all.extend(page.into_iter().map(|r| (r.created_ms, r.id)));
        }
        all
    };
    assert_eq!(all.len(), 1_100);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in order, each once");
}
