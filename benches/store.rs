//! Session lookup at scale: `cargo bench --bench store`.
//!
//! Imports 1,000,000 open sessions over 16 proxies into a real SQLite file,
//! then times the lookup every inbound SMS or call makes (the open session of
//! a number on a proxy) through the store's async handle, as the daemon
//! calls it. Prints p50/p99 against the ceiling of 100 µs.

use std::time::{Duration, Instant};

use simmask::masking::Mode;
use simmask::number::PhoneNumber;
use simmask::store::{ImportedSession, Store};
use time::OffsetDateTime;

const SESSIONS: u32 = 1_000_000;
const PROXIES: u32 = 16;
const LOOKUPS: usize = 20_000;
const CEILING: Duration = Duration::from_micros(100);

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
    });
}
