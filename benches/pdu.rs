//! Codec throughput: `cargo bench --bench pdu`.
//!
//! Prints parts per second for decoding and encoding against a floor: the
//! rate a 16-modem bank could ever need (16 modems × ~1 part/s each is 16
//! parts/s; the floor asks for 10 000× that, 160 k parts/s, so the codec is
//! never what limits the appliance, even on a Raspberry Pi).

use std::hint::black_box;
use std::time::{Duration, Instant};

use simmask::pdu::{self, Address, SubmitOptions};

const FLOOR_PARTS_PER_SECOND: f64 = 160_000.0;

/// Runs `work` (which handles `parts` parts) for about `budget`.
fn rate(budget: Duration, parts: usize, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < budget {
        work();
        rounds += 1;
    }
    rounds as f64 * parts as f64 / start.elapsed().as_secs_f64()
}

fn report(name: &str, parts_per_second: f64) {
    println!(
        "{name:<28} {:>10.0} parts/s   floor {:>8.0}   ratio {:>6.1}x   {}",
        parts_per_second,
        FLOOR_PARTS_PER_SECOND,
        parts_per_second / FLOOR_PARTS_PER_SECOND,
        if parts_per_second >= FLOOR_PARTS_PER_SECOND {
            "ok"
        } else {
            "BELOW FLOOR"
        }
    );
}

fn main() {
    let budget = Duration::from_millis(1500);
    let to = Address::international("447911123456");
    let gsm = "The quick brown fox jumps over the lazy dog, then relays an SMS through a proxy number. €[] ".repeat(4);
    let ucs2 = "Привет! Это сообщение идёт через прокси-номер 😀 ".repeat(4);
    let options = SubmitOptions::default();

    let gsm_parts = pdu::encode_submit(&to, &gsm, 7, &options).unwrap();
    let ucs2_parts = pdu::encode_submit(&to, &ucs2, 8, &options).unwrap();

    report(
        "encode gsm7 (multipart)",
        rate(budget, gsm_parts.len(), || {
            black_box(pdu::encode_submit(&to, black_box(&gsm), 7, &options).unwrap());
        }),
    );
    report(
        "encode ucs2 (multipart)",
        rate(budget, ucs2_parts.len(), || {
            black_box(pdu::encode_submit(&to, black_box(&ucs2), 8, &options).unwrap());
        }),
    );
    report(
        "decode gsm7 part",
        rate(budget, gsm_parts.len(), || {
            for part in &gsm_parts {
                black_box(pdu::decode_hex(black_box(&part.hex), true).unwrap());
            }
        }),
    );
    report(
        "decode ucs2 part",
        rate(budget, ucs2_parts.len(), || {
            for part in &ucs2_parts {
                black_box(pdu::decode_hex(black_box(&part.hex), true).unwrap());
            }
        }),
    );
}
