//! `simmask bench idle`: what the daemon costs when nothing happens.
//!
//! The simulator and the daemon run as separate processes; once every SIM
//! is up and a warm-up has passed, the daemon's CPU time and its threads'
//! context switches are read from `/proc` at the start and the end of the
//! window. A thread that sleeps and is woken switches out voluntarily once,
//! so voluntary switches per second are the wake-ups the daemon costs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rig::{Receive, Rig, RigOptions, process_usage};
use super::timing::round3;

/// The target for the idle daemon's CPU share, in percent.
pub const TARGET_CPU_PERCENT: f64 = 1.0;

/// Options of `simmask bench idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleBenchArgs {
    /// Virtual modems, all idle.
    #[arg(long, default_value_t = 16)]
    pub modems: usize,
    /// The measured window.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Wait this long after the bank is up before measuring.
    #[arg(long, default_value_t = 5)]
    pub warmup_seconds: u64,
    /// The modems' profile.
    #[arg(long, default_value = "generic")]
    pub profile: String,
    /// Open sessions seeded in the store.
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
}

/// The result, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub modems: usize,
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    pub target_cpu_percent: f64,
    pub within_target: bool,
    /// Voluntary context switches per second, all threads.
    pub wakeups_per_second: f64,
    /// The same by thread name.
    pub wakeups_by_thread: BTreeMap<String, f64>,
    pub involuntary_switches_per_second: f64,
    pub peak_rss_mb: f64,
}

/// Context switches of every thread of `pid`, by thread name: (voluntary,
/// involuntary).
fn switches(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let entry = out.entry(name).or_default();
        entry.0 += field("voluntary_ctxt_switches:");
        entry.1 += field("nonvoluntary_ctxt_switches:");
    }
    out
}

/// Runs the benchmark.
pub async fn idle(args: IdleBenchArgs) -> anyhow::Result<IdleReport> {
    let rig = Rig::start(&RigOptions {
        modems: args.modems,
        profile: args.profile.clone(),
        baud: None,
        separate_processes: true,
        receive: Receive::Profile,
        seed_sessions: args.sessions,
        delivery_reports: true,
    })
    .await?;
    let result = measure(&rig, &args).await;
    rig.stop().await;
    result
}

async fn measure(rig: &Rig, args: &IdleBenchArgs) -> anyhow::Result<IdleReport> {
    let pid = rig
        .daemon_pid()
        .ok_or_else(|| anyhow::anyhow!("the daemon runs in this process"))?;
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
    let before = process_usage(&pid.to_string());
    let switches_before = switches(pid);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds.max(1))).await;
    let seconds = started.elapsed().as_secs_f64();
    let after = process_usage(&pid.to_string());
    let switches_after = switches(pid);
    let mut by_thread = BTreeMap::new();
    let (mut voluntary, mut involuntary) = (0u64, 0u64);
    for (name, (v, i)) in &switches_after {
        let (v0, i0) = switches_before.get(name).copied().unwrap_or((0, 0));
        let dv = v.saturating_sub(v0);
        voluntary += dv;
        involuntary += i.saturating_sub(i0);
        by_thread.insert(name.clone(), round3(dv as f64 / seconds));
    }
    let cpu_seconds = after.cpu_seconds - before.cpu_seconds;
    let cpu_percent = cpu_seconds / seconds * 100.0;
    Ok(IdleReport {
        modems: args.modems,
        seconds: round3(seconds),
        cpu_seconds: round3(cpu_seconds),
        cpu_percent: round3(cpu_percent),
        target_cpu_percent: TARGET_CPU_PERCENT,
        within_target: cpu_percent < TARGET_CPU_PERCENT,
        wakeups_per_second: round3(voluntary as f64 / seconds),
        wakeups_by_thread: by_thread,
        involuntary_switches_per_second: round3(involuntary as f64 / seconds),
        peak_rss_mb: round3(after.peak_rss_mb),
    })
}
