//! Session lookup at scale: `cargo bench --bench store`.
//!
//! Imports 1,000,000 open sessions over 16 proxies into a real SQLite file,
//! then times the lookup every inbound SMS or call makes (the open session of
//! a number on a proxy) through the store's async handle, as the daemon
//! calls it. Prints p50/p99 against the ceiling of 100 µs. Then 8 openers
//! at once allocate new sessions (a proxy free for both numbers, chosen
//! among the 16) on top of the million, and the time of each opening is
//! printed with the openings per second.

use std::time::{Duration, Instant};

use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::number::PhoneNumber;
use simmask::store::{ImportedSession, LiveSim, NewSession, Store};
use time::OffsetDateTime;

const SESSIONS: u32 = 1_000_000;
const PROXIES: u32 = 16;
const LOOKUPS: usize = 20_000;
const CEILING: Duration = Duration::from_micros(100);
const OPENERS: u32 = 8;
const OPENS_EACH: u32 = 25;
/// An opening (allocation, the session's rows, one fsync) should stay
/// within what an API caller notices.
const OPEN_CEILING: Duration = Duration::from_millis(10);

fn number(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4479{n:08}")).expect("number")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("bench.db")).expect("store");
        let now = OffsetDateTime::now_utc();
        for proxy in 0..PROXIES {
            store
                .upsert_sim(format!("proxy{proxy}"), number(90_000_000 + proxy), String::new(), None, now)
                .await
                .expect("sim");
        }
        let started = Instant::now();
        // Session i pairs numbers 2i and 2i+1 on proxy i mod 16.
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
        println!(
            "imported {SESSIONS} sessions over {PROXIES} proxies in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let mut timings = Vec::with_capacity(LOOKUPS);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..LOOKUPS {
            // xorshift: a spread of sessions, not a cached few.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % u64::from(SESSIONS)) as u32;
            let proxy = format!("proxy{}", i % PROXIES);
            let from = number(2 * i + 1);
            let started = Instant::now();
            let found = store.open_session_of(proxy, from).await.expect("lookup");
            timings.push(started.elapsed());
            assert!(found.is_some(), "session {i} found");
        }
        timings.sort();
        let p50 = percentile(&timings, 0.50);
        let p99 = percentile(&timings, 0.99);
        println!(
            "session lookup at {SESSIONS} sessions: p50 {:>6.1} µs  p99 {:>6.1} µs   ceiling {} µs   ratio {:.1}x   {}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            CEILING.as_micros(),
            CEILING.as_secs_f64() / p99.as_secs_f64(),
            if p99 <= CEILING { "ok" } else { "ABOVE CEILING" }
        );

        // Allocation under 8 concurrent openers, fresh numbers each.
        let live: Vec<LiveSim> = (0..PROXIES)
            .map(|proxy| LiveSim {
                iccid: format!("proxy{proxy}"),
                healthy: true,
                signal_dbm: Some(-70),
                voice_capable: true,
            })
            .collect();
        let started = Instant::now();
        let mut openers = Vec::new();
        for opener in 0..OPENERS {
            let (store, live) = (store.clone(), live.clone());
            openers.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for n in 0..OPENS_EACH {
                    let base = 2 * SESSIONS + 2 * (opener * OPENS_EACH + n);
                    let new = NewSession {
                        participants: [number(base), number(base + 1)],
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
        let p50 = percentile(&opens, 0.50);
        let p99 = percentile(&opens, 0.99);
        println!(
            "allocation by {OPENERS} concurrent openers at {SESSIONS} sessions: {} opened, {:.0}/s, p50 {:>6.2} ms  p99 {:>6.2} ms   ceiling {} ms   ratio {:.1}x   {}",
            opens.len(),
            opens.len() as f64 / elapsed,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            OPEN_CEILING.as_millis(),
            OPEN_CEILING.as_secs_f64() / p99.as_secs_f64(),
            if p99 <= OPEN_CEILING { "ok" } else { "ABOVE CEILING" }
        );
    });
}
