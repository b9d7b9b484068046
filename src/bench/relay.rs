//! `simmask bench relay`: the relay measured from outside.
//!
//! A virtual bank of N modems and the daemon run in this process, or as
//! two processes with `--separate-processes` (`simmask sim` and `simmask
//! run`, as an operator runs them). One session is opened per proxy (on top
//! of `--sessions` seeded ones), then two phases run on every modem at
//! once:
//!
//! 1. **Overhead.** Each proxy's handset sends its share of M short
//!    messages, one every `--interval-ms`, so the figure is the relay's
//!    own overhead under load, not a backlog. The simulator timestamps every
//!    line on every port; for each message the overhead is the time from
//!    the end of the URC that brought it (`+CMTI`, or `+CMT` with its PDU)
//!    to the first byte of the relayed `AT+CMGS`: reading it back (stored
//!    path), committing it with its fsync, routing, and starting the send.
//! 2. **Throughput.** Each handset sends `--burst` full-length (160
//!    character) messages as fast as the network accepts them; the rate of
//!    completed relayed sends per modem is compared with what the line can
//!    carry at `--baud` ([`super::wire`]).
//!
//! The report is one JSON object: the overhead's p50/p99/max against the
//! targets, throughput per modem, the wire ceiling and ratio, and the
//! daemon's CPU time and peak memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::rig::{Receive, Rig, RigOptions};
use super::timing::{self, Spread, round3};
use super::wire::{self, Path};

/// Targets for the relay overhead: p50 and p99, in milliseconds.
pub const TARGET_P50_MS: f64 = 2.0;
pub const TARGET_P99_MS: f64 = 5.0;

/// Options of `simmask bench relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayBenchArgs {
    /// Virtual modems, each with one busy session.
    #[arg(long, default_value_t = 16)]
    pub modems: usize,
    /// Messages sent in the overhead phase, spread over the modems.
    #[arg(long, default_value_t = 320)]
    pub messages: usize,
    /// Pace every pty at this serial speed, as real USB modems run.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Each handset sends a message this often in the overhead phase.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
    /// Run the simulator and the daemon as separate processes.
    #[arg(long)]
    pub separate_processes: bool,
    /// The modems' profile.
    #[arg(long, default_value = "generic")]
    pub profile: String,
    /// How new messages reach the daemon: as the profile says, stored
    /// (`+CMTI`), or direct (`+CMT`, acknowledged with `AT+CNMA`).
    #[arg(long, value_enum, default_value_t = Receive::Profile)]
    pub receive: Receive,
    /// Open sessions seeded in the store before the daemon starts.
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
    /// Full-length messages each handset sends at once in the throughput
    /// phase (0 skips it).
    #[arg(long, default_value_t = 40)]
    pub burst: usize,
    /// Also print every overhead sample (for plots).
    #[arg(long)]
    pub samples: bool,
    /// Whether the daemon asks for a status report on each send (`[sms]
    /// delivery_reports`); the wire ceiling counts their bytes when it does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub delivery_reports: bool,
    /// Spread the handsets' sends evenly over the interval instead of all
    /// at once: handset i starts i/N of an interval later. The default
    /// (lockstep) brings every modem's message in the same millisecond,
    /// the worst case; staggered is the same load arriving as people send.
    #[arg(long)]
    pub stagger: bool,
    /// Write each modem's port trace of the overhead phase into this
    /// directory (`modem-<n>.json`: every line with its time and
    /// direction), to see where a slow relay spent its time.
    #[arg(long)]
    pub traces: Option<std::path::PathBuf>,
}

/// The benchmark's result, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    pub modems: usize,
    pub messages: usize,
    pub baud: Option<u32>,
    pub separate_processes: bool,
    pub profile: String,
    /// What the ports showed: `stored` (`+CMTI`) or `direct` (`+CMT`).
    pub receive_path: &'static str,
    pub interval_ms: u64,
    /// `lockstep` (every handset at once) or `staggered` (spread over the
    /// interval).
    pub arrivals: &'static str,
    /// Whether each send asked for a status report (`+CDS` on the line).
    pub delivery_reports: bool,
    /// Open sessions in the store (seeded and the bench's own).
    pub open_sessions: usize,
    pub relayed: usize,
    pub samples: usize,
    /// Inbound URC complete → first byte of the relayed `AT+CMGS`.
    pub overhead_ms: Option<Spread>,
    /// The same from the URC's first byte (a `+CMT` carries the PDU).
    pub overhead_from_urc_start_ms: Option<Spread>,
    pub target_ms: Targets,
    pub within_target: bool,
    pub burst_per_modem: usize,
    /// How long the handsets took to hand the whole burst to the network.
    pub burst_submit_seconds: Option<f64>,
    /// Every burst message reached the other party once, text intact.
    pub burst_intact: Option<bool>,
    /// Relays per second per modem when every handset sends as fast as
    /// the network accepts (median over the modems), and the slowest.
    pub throughput_per_modem: Option<f64>,
    pub throughput_min_per_modem: Option<f64>,
    /// What one line carries at `baud` for those messages, and the share
    /// of it reached.
    pub wire_bytes_per_relay: Option<usize>,
    pub wire_ceiling_per_modem: Option<f64>,
    pub wire_ratio: Option<f64>,
    /// CPU seconds over both phases, and peak resident memory.
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
    pub measured_process: &'static str,
    pub wall_seconds: f64,
    /// Every overhead sample in ms, with `--samples`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_samples_ms: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Targets {
    pub p50: f64,
    pub p99: f64,
}

fn handset(side: u32, index: usize) -> String {
    format!("+44791{side}{:06}", 100_000 + index)
}

/// A full-length GSM 7-bit text (one part).
fn full_text(modem: usize, n: usize) -> String {
    let head = format!("burst {modem} {n} ");
    format!("{head}{}", "x".repeat(160 - head.len()))
}

/// Runs the benchmark.
pub async fn relay(args: RelayBenchArgs) -> anyhow::Result<RelayReport> {
    anyhow::ensure!(args.modems > 0, "--modems must be at least 1");
    let rig = Rig::start(&RigOptions {
        modems: args.modems,
        profile: args.profile.clone(),
        baud: args.baud,
        separate_processes: args.separate_processes,
        receive: args.receive,
        seed_sessions: args.sessions,
        delivery_reports: args.delivery_reports,
    })
    .await?;
    let result = phases(&rig, &args).await;
    rig.stop().await;
    result
}

async fn phases(rig: &Rig, args: &RelayBenchArgs) -> anyhow::Result<RelayReport> {
    let mut proxies = Vec::new();
    for i in 0..args.modems {
        proxies.push(rig.open_session(&handset(1, i), &handset(2, i)).await?);
    }
    let started = Instant::now();
    let usage_before = rig.daemon_usage();

    // Phase 1: a steady pace on every modem at once.
    let shares: Vec<usize> = (0..args.modems)
        .map(|i| args.messages / args.modems + usize::from(i < args.messages % args.modems))
        .collect();
    let mut senders = Vec::new();
    for (i, proxy) in proxies.iter().enumerate() {
        let (rig_control, client) = (rig.control.clone(), rig.client.clone());
        let (proxy, share) = (proxy.clone(), shares[i]);
        let interval = Duration::from_millis(args.interval_ms.max(1));
        let offset = if args.stagger {
            interval * u32::try_from(i).unwrap_or(0) / u32::try_from(args.modems).unwrap_or(1)
        } else {
            Duration::ZERO
        };
        senders.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            for n in 0..share {
                tick.tick().await;
                let _ = client
                    .post(format!("{rig_control}/handsets/{}/sms", handset(1, i)))
                    .json(&serde_json::json!({"to": proxy, "text": format!("bench {i} {n}")}))
                    .send()
                    .await;
            }
        }));
    }
    for sender in senders {
        sender.await?;
    }
    let relayed = wait_relayed(rig, &shares).await?;
    let mut overheads = Vec::new();
    let mut marks = Vec::new();
    let mut direct = false;
    if let Some(dir) = &args.traces {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for i in 0..args.modems {
        let trace = rig.trace(i, 0).await?;
        if let Some(dir) = &args.traces {
            let path = dir.join(format!("modem-{i}.json"));
            std::fs::write(&path, serde_json::to_vec(&trace)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let lines = timing::lines(&trace);
        direct |= lines.iter().any(|l| l.tx && l.line.starts_with("+CMT:"));
        overheads.extend(timing::overheads(&lines, args.baud));
        marks.push(lines.last().map_or(0, |l| l.t_us + 1));
    }

    // Phase 2: every handset sends a burst of full-length messages.
    let mut rates = Vec::new();
    let mut burst_submit = None;
    let mut burst_intact = None;
    if args.burst > 0 {
        let submitted = Instant::now();
        let mut senders = Vec::new();
        for (i, proxy) in proxies.iter().enumerate() {
            let (rig_control, client) = (rig.control.clone(), rig.client.clone());
            let (proxy, burst) = (proxy.clone(), args.burst);
            senders.push(tokio::spawn(async move {
                for n in 0..burst {
                    let _ = client
                        .post(format!("{rig_control}/handsets/{}/sms", handset(1, i)))
                        .json(&serde_json::json!({"to": proxy, "text": full_text(i, n)}))
                        .send()
                        .await;
                }
            }));
        }
        for sender in senders {
            sender.await?;
        }
        burst_submit = Some(round3(submitted.elapsed().as_secs_f64()));
        let totals: Vec<usize> = shares.iter().map(|s| s + args.burst).collect();
        wait_relayed(rig, &totals).await?;
        let mut intact = true;
        for i in 0..args.modems {
            let texts = rig.received_texts(&handset(2, i)).await?;
            intact &= (0..args.burst).all(|n| {
                let text = full_text(i, n);
                texts.iter().filter(|t| **t == text).count() == 1
            });
        }
        burst_intact = Some(intact);
        for (i, mark) in marks.iter().enumerate() {
            let lines = timing::lines(&rig.trace(i, *mark).await?);
            if let Some((_, rate)) = timing::send_rate(&lines, *mark) {
                rates.push(rate);
            }
        }
    }
    let usage_after = rig.daemon_usage();
    let wall_seconds = started.elapsed().as_secs_f64();

    rates.sort_by(f64::total_cmp);
    let throughput = (!rates.is_empty()).then(|| rates[rates.len() / 2]);
    let path = if direct { Path::Direct } else { Path::Stored };
    let wire_bytes = (args.burst > 0 && args.baud.is_some()).then(|| {
        wire::bytes_per_relay(
            path,
            &handset(1, 0),
            &handset(2, 0),
            &full_text(0, 0),
            args.delivery_reports,
        )
    });
    let ceiling = args
        .baud
        .zip(wire_bytes)
        .map(|(baud, bytes)| wire::ceiling_per_second(baud, bytes));
    let from_end: Vec<f64> = overheads.iter().map(|o| o.from_urc_end_ms).collect();
    let from_start: Vec<f64> = overheads.iter().map(|o| o.from_urc_start_ms).collect();
    let spread = Spread::of(&from_end);
    let open_sessions = args.sessions + args.modems;
    Ok(RelayReport {
        modems: args.modems,
        messages: args.messages,
        baud: args.baud,
        separate_processes: args.separate_processes,
        profile: args.profile.clone(),
        receive_path: if direct { "direct" } else { "stored" },
        interval_ms: args.interval_ms,
        arrivals: if args.stagger {
            "staggered"
        } else {
            "lockstep"
        },
        delivery_reports: args.delivery_reports,
        open_sessions,
        relayed,
        samples: overheads.len(),
        overhead_ms: spread,
        overhead_from_urc_start_ms: Spread::of(&from_start),
        target_ms: Targets {
            p50: TARGET_P50_MS,
            p99: TARGET_P99_MS,
        },
        within_target: spread.is_some_and(|s| s.p50 <= TARGET_P50_MS && s.p99 <= TARGET_P99_MS),
        burst_per_modem: args.burst,
        burst_submit_seconds: burst_submit,
        burst_intact,
        throughput_per_modem: throughput.map(round3),
        throughput_min_per_modem: rates.first().copied().map(round3),
        wire_bytes_per_relay: wire_bytes,
        wire_ceiling_per_modem: ceiling.map(round3),
        wire_ratio: throughput.zip(ceiling).map(|(t, c)| round3(t / c)),
        cpu_seconds: round3(usage_after.cpu_seconds - usage_before.cpu_seconds),
        peak_rss_mb: round3(usage_after.peak_rss_mb),
        measured_process: rig.measured_process(),
        wall_seconds: round3(wall_seconds),
        overhead_samples_ms: args
            .samples
            .then(|| from_end.iter().copied().map(round3).collect()),
    })
}

/// Waits until each modem's second handset has `want[i]` messages (or five
/// minutes pass); returns how many arrived in all, capped at what was sent.
async fn wait_relayed(rig: &Rig, want: &[usize]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut relayed = 0;
    for (i, want) in want.iter().enumerate() {
        loop {
            let got = rig.received(&handset(2, i)).await?;
            if got >= *want || Instant::now() > deadline {
                relayed += got.min(*want);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(relayed)
}
