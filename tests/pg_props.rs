//! Property: however many openers race on two appliances sharing one
//! PostgreSQL, for whichever people, no proxy ever carries two open
//! sessions of one number, and every refusal is one of allocation's.

mod pg_common;

use pg_common::Postgres;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use simmask::masking::Mode;
use simmask::masking::allocation::{AllocationError, PoolLimits};
use simmask::number::PhoneNumber;
use simmask::store::{LiveSim, NewSession, Store, StoreError};
use time::OffsetDateTime;

fn number(n: u8) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+44791100{n:04}")).unwrap()
}

struct Fleet {
    runtime: tokio::runtime::Runtime,
    _pg: Postgres,
    url: String,
    stores: [Store; 2],
}

fn fleet() -> Fleet {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let pg = Postgres::start();
    let (url, stores) = runtime.block_on(async {
        let url = pg.database("props").await;
        let one = pg_common::connect(&url, "site-1").await;
        let two = pg_common::connect(&url, "site-2").await;
        pg_common::add_sims(&one, &[1, 2]).await;
        pg_common::add_sims(&two, &[3, 4]).await;
        (url, [one, two])
    });
    Fleet {
        runtime,
        _pg: pg,
        url,
        stores,
    }
}

fn live(site: usize) -> Vec<LiveSim> {
    // Each site's bank sees its own two SIMs; the other site's SIMs have no
    // stored status here, so each opener allocates among its own, and the
    // two sites' SIMs are disjoint... except that site 2 also claims SIM 1
    // healthy: the sites overlap on it, where races would show.
    pg_common::healthy(if site == 0 { &[1, 2] } else { &[1, 3, 4] })
}

/// One server and fleet for every case (the guard stops it at the end,
/// which a `static` would never do), so the cases run on a plain runner.
#[test]
fn racing_openers_never_break_the_masking_rule() {
    let fleet = fleet();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let openers = prop::collection::vec((0usize..2, 0u8..4, 0u8..4), 2..12);
    runner
        .run(&openers, |openers| {
            let worst = race(&fleet, openers);
            prop_assert!(
                worst <= 1,
                "a number has {worst} open sessions on one proxy"
            );
            Ok(())
        })
        .unwrap();
}

/// Runs the openers at once; the most open sessions a number has on one
/// proxy afterwards.
fn race(fleet: &Fleet, openers: Vec<(usize, u8, u8)>) -> i64 {
    fleet.runtime.block_on(async {
        let client = Postgres::client(&fleet.url).await;
        client
            .batch_execute("TRUNCATE sessions, participants, audit CASCADE")
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (site, a, b) in openers {
            let store = fleet.stores[site].clone();
            tasks.push(tokio::spawn(async move {
                let new = NewSession {
                    participants: [number(a), number(b)],
                    mode: Mode::Sms,
                    ttl: None,
                    idle_ttl: None,
                    label: None,
                    sticky: false,
                    actor: "prop".into(),
                    fallback_number: None,
                    proxy: None,
                    limits: PoolLimits::default(),
                };
                store
                    .open_session(new, live(site), OffsetDateTime::now_utc())
                    .await
            }));
        }
        for task in tasks {
            match task.await.unwrap() {
                Ok(_)
                | Err(StoreError::Allocation(
                    AllocationError::NoFreeProxy(_) | AllocationError::SameParticipants,
                )) => {}
                Err(other) => panic!("an opener failed otherwise: {other:?}"),
            }
        }
        client
            .query_one(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM participants \
                 WHERE open GROUP BY proxy_iccid, number) c",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    })
}
