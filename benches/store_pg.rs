//! The store on PostgreSQL beside SQLite: `cargo bench --bench store_pg`.
//!
//! Starts a PostgreSQL of its own (as the tests do: Debian's binaries, a
//! temporary cluster, as the `postgres` user when run as root), fills both
//! stores with the same 100,000 open sessions over 16 proxies, then times
//! on each: the routing lookup every inbound SMS or call makes (the open
//! session of a number on a proxy) and session opening by 8 concurrent
//! openers (allocation in one transaction). Prints p50/p99 and the ratio
//! of PostgreSQL to SQLite, against stated ceilings (a lookup within 2 ms
//! on PostgreSQL, on the LAN it is a round trip; an opening within 20 ms).
//! Then the same 8 openers open sessions with one hub: they queue on the
//! hub's lock (its codes are drawn one at a time), so the ceiling there is
//! 8 openings in a row, 50 ms.

#[path = "../tests/pg_common/mod.rs"]
mod pg_common;

use std::time::{Duration, Instant};

use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::number::PhoneNumber;
use simmask::store::{ImportedSession, LiveSim, Location, NewSession, Store};
use time::OffsetDateTime;

const SESSIONS: u32 = 100_000;
const PROXIES: u32 = 16;
const LOOKUPS: usize = 5_000;
const OPENERS: u32 = 8;
const OPENS_EACH: u32 = 25;
const LOOKUP_CEILING: Duration = Duration::from_millis(2);
const OPEN_CEILING: Duration = Duration::from_millis(20);
const HUB_OPEN_CEILING: Duration = Duration::from_millis(50);

fn number(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4479{n:08}")).expect("number")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

struct Figures {
    lookup: (Duration, Duration),
    open: (Duration, Duration),
    opens_per_second: f64,
    hub_open: (Duration, Duration),
    hub_opens_per_second: f64,
}

async fn add_proxies(store: &Store) {
    for proxy in 0..PROXIES {
        store
            .upsert_sim(
                format!("proxy{proxy}"),
                number(90_000_000 + proxy),
                String::new(),
                None,
                OffsetDateTime::now_utc(),
            )
            .await
            .expect("sim");
    }
}

/// Session i pairs numbers 2i and 2i+1 on proxy i mod 16 (as `store`).
async fn fill_sqlite(store: &Store) {
    let now = OffsetDateTime::now_utc();
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(50_000) {
        let batch = chunk
            .iter()
            .map(|&i| ImportedSession {
                proxy_iccid: format!("proxy{}", i % PROXIES),
                participants: [number(2 * i), number(2 * i + 1)],
                mode: Mode::Both,
                label: None,
                expires_at: None,
            })
            .collect();
        store.import_sessions(batch, now).await.expect("import");
    }
}

/// The same sessions written with SQL, one statement per table: the bench
/// times lookups and openings, not the import (`import_sessions` checks each
/// session against the masking rule, which 100,000 rows do not need here).
async fn fill_postgres(url: &str) {
    let client = pg_common::Postgres::client(url).await;
    let sessions = i64::from(SESSIONS);
    client
        .execute(
            "INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms) \
             SELECT 'ses_' || i, 'proxy' || (i % 16), 'both', 'open', 0, 0 \
             FROM generate_series(0, $1::BIGINT - 1) AS i",
            &[&sessions],
        )
        .await
        .expect("sessions");
    client
        .execute(
            "INSERT INTO participants (session_id, position, number, proxy_iccid, open) \
             SELECT 'ses_' || i, p, '+4479' || lpad((2 * i + p)::TEXT, 8, '0'), \
                    'proxy' || (i % 16), TRUE \
             FROM generate_series(0, $1::BIGINT - 1) AS i, generate_series(0, 1) AS p",
            &[&sessions],
        )
        .await
        .expect("participants");
    client.batch_execute("ANALYZE").await.expect("analyze");
}

async fn measure(store: &Store) -> Figures {
    let mut timings = Vec::with_capacity(LOOKUPS);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..LOOKUPS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % u64::from(SESSIONS)) as u32;
        let proxy = format!("proxy{}", i % PROXIES);
        let started = Instant::now();
        let found = store
            .open_session_of(proxy, number(2 * i + 1))
            .await
            .expect("lookup");
        timings.push(started.elapsed());
        assert!(found.is_some(), "session {i} found");
    }
    timings.sort();
    let lookup = (percentile(&timings, 0.5), percentile(&timings, 0.99));

    let live: Vec<LiveSim> = (0..PROXIES)
        .map(|proxy| LiveSim {
            iccid: format!("proxy{proxy}"),
            healthy: true,
            signal_dbm: Some(-70),
            voice_capable: true,
        })
        .collect();
    let (open, opens_per_second) = open_concurrently(store, &live, |opener, n| {
        let base = 2 * SESSIONS + 2 * (opener * OPENS_EACH + n);
        [number(base), number(base + 1)]
    })
    .await;
    // One hub (made now, on a number of its own) with a new person each time.
    let hub = number(3 * SESSIONS);
    store
        .create_hub(hub.clone(), None, "bench".into(), OffsetDateTime::now_utc())
        .await
        .expect("hub");
    let (hub_open, hub_opens_per_second) = open_concurrently(store, &live, move |opener, n| {
        [
            number(3 * SESSIONS + 1 + opener * OPENS_EACH + n),
            hub.clone(),
        ]
    })
    .await;
    Figures {
        lookup,
        open,
        opens_per_second,
        hub_open,
        hub_opens_per_second,
    }
}

/// Opens `OPENS_EACH` sessions from each of `OPENERS` concurrent openers,
/// the participants of each given by `pair(opener, n)`: p50 and p99 of an
/// opening, and openings per second.
async fn open_concurrently(
    store: &Store,
    live: &[LiveSim],
    pair: impl Fn(u32, u32) -> [PhoneNumber; 2] + Clone + Send + 'static,
) -> ((Duration, Duration), f64) {
    let started = Instant::now();
    let mut openers = Vec::new();
    for opener in 0..OPENERS {
        let (store, live, pair) = (store.clone(), live.to_vec(), pair.clone());
        openers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for n in 0..OPENS_EACH {
                let new = NewSession {
                    participants: pair(opener, n),
                    mode: Mode::Both,
                    ttl: None,
                    idle_ttl: None,
                    label: None,
                    sticky: false,
                    actor: "bench".into(),
                    fallback_number: None,
                    proxy: None,
                    limits: PoolLimits::default(),
                };
                let began = Instant::now();
                store
                    .open_session(new, live.clone(), OffsetDateTime::now_utc())
                    .await
                    .expect("allocation");
                times.push(began.elapsed());
            }
            times
        }));
    }
    let mut opens = Vec::new();
    for opener in openers {
        opens.extend(opener.await.expect("opener"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    opens.sort();
    (
        (percentile(&opens, 0.5), percentile(&opens, 0.99)),
        opens.len() as f64 / elapsed,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open(&dir.path().join("bench.db")).expect("sqlite");
        add_proxies(&sqlite).await;
        fill_sqlite(&sqlite).await;
        let on_sqlite = measure(&sqlite).await;

        let pg = pg_common::Postgres::start();
        let url = pg.database("bench").await;
        let postgres = Store::connect(
            &Location::Postgres(url.clone()),
            "bench",
            simmask::store::DEFAULT_HEARTBEAT_TIMEOUT,
        )
        .await
        .expect("postgres");
        add_proxies(&postgres).await;
        fill_postgres(&url).await;
        let on_postgres = measure(&postgres).await;

        println!("store at {SESSIONS} open sessions over {PROXIES} proxies (PostgreSQL on this machine, TCP loopback)");
        for (name, f) in [("sqlite", &on_sqlite), ("postgres", &on_postgres)] {
            println!(
                "{name:>8}: lookup p50 {:>7.3} ms p99 {:>7.3} ms | open ({OPENERS} openers) p50 {:>7.2} ms p99 {:>7.2} ms, {:>6.0}/s | with one hub p50 {:>7.2} ms p99 {:>7.2} ms, {:>6.0}/s",
                ms(f.lookup.0),
                ms(f.lookup.1),
                ms(f.open.0),
                ms(f.open.1),
                f.opens_per_second,
                ms(f.hub_open.0),
                ms(f.hub_open.1),
                f.hub_opens_per_second
            );
        }
        println!(
            "postgres/sqlite: lookup p99 {:.1}x, open p99 {:.1}x",
            on_postgres.lookup.1.as_secs_f64() / on_sqlite.lookup.1.as_secs_f64(),
            on_postgres.open.1.as_secs_f64() / on_sqlite.open.1.as_secs_f64()
        );
        println!(
            "postgres lookup p99 {:.3} ms, ceiling {} ms: {}; open p99 {:.2} ms, ceiling {} ms: {}",
            ms(on_postgres.lookup.1),
            LOOKUP_CEILING.as_millis(),
            if on_postgres.lookup.1 <= LOOKUP_CEILING { "ok" } else { "ABOVE CEILING" },
            ms(on_postgres.open.1),
            OPEN_CEILING.as_millis(),
            if on_postgres.open.1 <= OPEN_CEILING { "ok" } else { "ABOVE CEILING" }
        );
        println!(
            "postgres/sqlite: hub open p99 {:.1}x; postgres hub open p99 {:.2} ms, ceiling {} ms: {}",
            on_postgres.hub_open.1.as_secs_f64() / on_sqlite.hub_open.1.as_secs_f64(),
            ms(on_postgres.hub_open.1),
            HUB_OPEN_CEILING.as_millis(),
            if on_postgres.hub_open.1 <= HUB_OPEN_CEILING { "ok" } else { "ABOVE CEILING" }
        );
    });
}
