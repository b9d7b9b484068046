//! The open sessions per SIM on PostgreSQL (`sim_load`, schema v10): the
//! counter the opening reads instead of counting every open session stays
//! equal to a count of the rows through every way a session opens, ends,
//! moves or goes, and the migration fills it from the sessions already
//! there.

mod pg_common;

use std::collections::BTreeMap;

use pg_common::{Postgres, add_sims, connect, healthy, iccid, proxy};
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::masking::lifecycle::SessionStatus;
use simmask::number::PhoneNumber;
use simmask::store::{LiveSim, NewSession, Store};
use time::{Duration, OffsetDateTime};

fn number(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4479110{n:05}")).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn request(a: u32, b: u32, ttl: Option<Duration>) -> NewSession {
    NewSession {
        participants: [number(a), number(b)],
        mode: Mode::Sms,
        ttl,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: PoolLimits::default(),
    }
}

/// The counter and a count of the open rows, SIM by SIM (a SIM at zero
/// may keep its counter row); returns the count.
async fn assert_exact(client: &tokio_postgres::Client, when: &str) -> BTreeMap<String, i64> {
    let counted: BTreeMap<String, i64> = client
        .query(
            "SELECT proxy_iccid, COUNT(*) FROM sessions WHERE status = 'open' \
             GROUP BY proxy_iccid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let kept: BTreeMap<String, i64> = client
        .query(
            "SELECT iccid, open_sessions FROM sim_load WHERE open_sessions <> 0",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(kept, counted, "sim_load after {when}");
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_open_sessions_counter_follows_every_change_of_the_sessions() {
    let pg = Postgres::start();
    let url = pg.database("load").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let client = Postgres::client(&url).await;
    add_sims(&site1, &[1, 2, 3]).await;
    let live = healthy(&[1, 2, 3]);

    // Openings, some from each appliance, some at once.
    let mut opened = Vec::new();
    for (a, b) in [(1, 2), (3, 4), (5, 6), (7, 8)] {
        let store = if a % 4 == 1 { &site1 } else { &site2 };
        opened.push(
            store
                .open_session(request(a, b, None), live.clone(), now())
                .await
                .unwrap(),
        );
    }
    let at_once = futures_join(&site1, &site2, &live).await;
    opened.extend(at_once);
    let counted = assert_exact(&client, "openings").await;
    assert_eq!(counted.values().sum::<i64>(), 6);

    // A close, then its reopening, from the other appliance.
    let closed = site1
        .close_session(opened[0].id.clone(), "test".into(), now())
        .await
        .unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert_exact(&client, "a close").await;
    // Closing twice changes nothing.
    site2
        .close_session(opened[0].id.clone(), "test".into(), now())
        .await
        .unwrap_err();
    assert_exact(&client, "a second close").await;
    let reopened = site2
        .reopen_session(opened[0].id.clone(), None, None, "test".into(), now())
        .await
        .unwrap();
    assert_eq!(reopened.status, SessionStatus::Open);
    assert_exact(&client, "a reopening").await;

    // Expiry: two sessions with a deadline, swept past it.
    for (a, b) in [(20, 21), (22, 23)] {
        site1
            .open_session(
                request(a, b, Some(Duration::minutes(5))),
                live.clone(),
                now(),
            )
            .await
            .unwrap();
    }
    assert_exact(&client, "openings with a deadline").await;
    let expired = site2
        .expire_due(now() + Duration::minutes(6))
        .await
        .unwrap();
    assert_eq!(expired.len(), 2);
    assert_exact(&client, "the expiry sweep").await;

    // An erasure closes the person's open sessions.
    site1
        .erase_participant(number(3), "test".into(), now())
        .await
        .unwrap();
    assert_exact(&client, "an erasure").await;

    // The SIM moves to the other appliance: its sessions stay open on it.
    let before = assert_exact(&client, "before the move").await;
    site2
        .upsert_sim(iccid(2), proxy(2), "imsi2".into(), None, now())
        .await
        .unwrap();
    assert_eq!(assert_exact(&client, "the SIM's move").await, before);

    // Rows changed by hand in bulk: a session's proxy, then deletions.
    client
        .batch_execute(&format!(
            "UPDATE sessions SET proxy_iccid = '{}' WHERE id = '{}'",
            iccid(3),
            opened[2].id
        ))
        .await
        .unwrap();
    assert_exact(&client, "a session moved to another proxy").await;
    let deleted = client
        .execute(
            "DELETE FROM sessions WHERE status <> 'open' OR proxy_iccid = $1",
            &[&iccid(3)],
        )
        .await
        .unwrap();
    assert!(deleted > 0);
    let left = assert_exact(&client, "deletions").await;
    assert_eq!(left.get(&iccid(3)), None);

    // Retiring a SIM ends its sessions.
    let on_one = left.get(&iccid(1)).copied().unwrap_or(0);
    let retired = site1
        .retire_sim(iccid(1), "test".into(), now())
        .await
        .unwrap();
    assert_eq!(i64::try_from(retired.len()).unwrap(), on_one);
    let after = assert_exact(&client, "a retirement").await;
    assert_eq!(after.get(&iccid(1)), None);
}

/// Two openings at the same instant on the two appliances.
async fn futures_join(
    site1: &Store,
    site2: &Store,
    live: &[LiveSim],
) -> Vec<simmask::store::SessionRecord> {
    let (a, b) = tokio::join!(
        site1.open_session(request(9, 10, None), live.to_vec(), now()),
        site2.open_session(request(11, 12, None), live.to_vec(), now()),
    );
    vec![a.unwrap(), b.unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migration_counts_the_sessions_already_open() {
    let pg = Postgres::start();
    let url = pg.database("backfill").await;
    let client = Postgres::client(&url).await;
    {
        let store = connect(&url, "site-1").await;
        add_sims(&store, &[1, 2]).await;
        for (a, b) in [(1, 2), (3, 4), (5, 6)] {
            store
                .open_session(request(a, b, None), healthy(&[1, 2]), now())
                .await
                .unwrap();
        }
        let first = store
            .open_session(request(7, 8, None), healthy(&[1, 2]), now())
            .await
            .unwrap();
        store
            .close_session(first.id, "test".into(), now())
            .await
            .unwrap();
    }
    // The database as v9 left it: sessions, and no counter.
    client
        .batch_execute(
            "DROP TABLE sim_load; DROP FUNCTION sim_load_apply CASCADE; \
             DROP INDEX outbox_sent; DELETE FROM simmask_schema WHERE version = 10",
        )
        .await
        .unwrap();
    let store = connect(&url, "site-1").await;
    let counted = assert_exact(&client, "the migration").await;
    assert_eq!(counted.values().sum::<i64>(), 3);
    // And the opening reads it: each SIM has room for person 1 only once.
    let next = store
        .open_session(request(1, 9, None), healthy(&[1, 2]), now())
        .await
        .unwrap();
    assert_exact(&client, "an opening after the migration").await;
    assert_eq!(next.status, SessionStatus::Open);
}

/// A SIM's sends in the last day and recipients this month, as allocation
/// counts them (up to the limit, on `outbox_sent` and the recipients' key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_opening_weighs_each_sims_budgets_up_to_their_limits() {
    let pg = Postgres::start();
    let url = pg.database("budgets").await;
    let store = connect(&url, "site-1").await;
    let client = Postgres::client(&url).await;
    add_sims(&store, &[1, 2]).await;
    let at = now();
    let ms = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap();
    // SIM 1: two sends within the day (its limit), five older ones.
    for (n, sent) in [(0, 1), (1, 2), (2, 30), (3, 31), (4, 40), (5, 50), (6, 60)] {
        let sent = ms(at - Duration::hours(sent));
        client
            .execute(
                "WITH i AS (INSERT INTO interactions (proxy_iccid, kind, status, created_ms, \
                 updated_ms) VALUES ($1, 'sms', 'sent', $2, $2) RETURNING id) \
                 INSERT INTO outbox (interaction_id, proxy_iccid, to_number, body, state, \
                 next_attempt_ms, created_ms, sent_ms) \
                 SELECT id, $1, $3, 'x', 'sent', $2, $2, $2 FROM i",
                &[&iccid(1), &sent, &number(100 + n).e164()],
            )
            .await
            .unwrap();
    }
    let limits = PoolLimits {
        per_day: Some(2),
        ..PoolLimits::default()
    };
    let limited = |a, b| NewSession {
        limits: limits.clone(),
        ..request(a, b, None)
    };
    // SIM 1 is spent for the day: every opening goes to SIM 2, however
    // loaded it gets.
    for (a, b) in [(1, 2), (3, 4)] {
        let opened = store
            .open_session(limited(a, b), healthy(&[1, 2]), at)
            .await
            .unwrap();
        assert_eq!(opened.proxy_iccid, iccid(2));
    }
    // SIM 2 has used its recipients of the month (one, its own limit).
    let month = format!("{:04}-{:02}", at.year(), u8::from(at.month()));
    client
        .execute(
            "INSERT INTO sim_recipients (iccid, month, number) VALUES ($1, $2, $3)",
            &[&iccid(2), &month, &number(200).e164()],
        )
        .await
        .unwrap();
    let mut tight = limits.clone();
    tight.per_sim.insert(
        iccid(2),
        simmask::masking::allocation::SimLimits {
            per_day: None,
            recipients_per_month: Some(1),
        },
    );
    let refused = store
        .open_session(
            NewSession {
                limits: tight.clone(),
                ..request(5, 6, None)
            },
            healthy(&[1, 2]),
            at,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            simmask::store::StoreError::Allocation(
                simmask::masking::allocation::AllocationError::NoFreeProxy(_)
            )
        ),
        "{refused:?}"
    );
    // One of SIM 1's sends of the day goes (older ones never counted): it
    // has room for one more, and as the less loaded SIM it takes the next.
    client
        .execute(
            "DELETE FROM outbox WHERE proxy_iccid = $1 AND sent_ms = $2",
            &[&iccid(1), &ms(at - Duration::hours(1))],
        )
        .await
        .unwrap();
    let opened = store
        .open_session(
            NewSession {
                limits: tight,
                ..request(5, 6, None)
            },
            healthy(&[1, 2]),
            at,
        )
        .await
        .unwrap();
    assert_eq!(opened.proxy_iccid, iccid(1));
}
