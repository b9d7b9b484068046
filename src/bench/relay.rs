//! `simmask bench relay`: the relay's own overhead, measured from outside.
//!
//! A virtual bank of N modems and the daemon run in this process; N
//! sessions are opened (one per proxy) and every proxy's handset sends
//! its share of M messages at a steady pace, all modems at once. The simulator timestamps every line on every port,
//! so for each relayed message the overhead is the time from the end of the
//! `+CMTI` URC announcing it to the relayed `AT+CMGS` on the same modem:
//! reading the message, committing it, routing it, queueing it and
//! starting the send. The report states p50/p99 against a ceiling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{RunOptions, run};
use crate::sim::{SimConfig, Simulator};

/// The ceiling the relay overhead's p99 must stay under.
pub const CEILING_MS: f64 = 10.0;

/// Options of `simmask bench relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayBenchArgs {
    /// Virtual modems, each with one busy session.
    #[arg(long, default_value_t = 16)]
    pub modems: usize,
    /// Messages sent in total, spread over the modems.
    #[arg(long, default_value_t = 320)]
    pub messages: usize,
    /// Pace every pty at this serial speed, as real USB modems run.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Each handset sends a message this often (all modems at once), so
    /// the figure is the relay's overhead under load, not a backlog.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
}

/// The benchmark's result, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    pub modems: usize,
    pub messages: usize,
    pub baud: Option<u32>,
    pub interval_ms: u64,
    pub relayed: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub ceiling_ms: f64,
    /// `ceiling / p99`: above 1 is within the target.
    pub ratio: f64,
    pub within_ceiling: bool,
    pub wall_seconds: f64,
}

const TOKEN: &str = "smk_bench_relay_admin_token";

fn handset(side: u32, index: usize) -> String {
    format!("+44791{side}{:06}", 100_000 + index)
}

/// Runs the benchmark.
pub async fn relay(args: RelayBenchArgs) -> anyhow::Result<RelayReport> {
    let dir = tempfile::tempdir()?;
    let simulator = Simulator::start(SimConfig {
        modems: args.modems,
        profiles: vec!["generic".into()],
        control: "127.0.0.1:0".parse()?,
        links: Some(dir.path().join("links")),
        seed: 7,
        baud: args.baud,
    })
    .await?;
    let control = simulator.control_url().to_string();
    let config = Config::parse(
        &format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[modems]\nports = [\"{}/modem*\"]\npoll_interval_seconds = 30\n[sms]\nper_minute = 100000\nper_day = 1000000\n",
            dir.path().join("bench.db").display(),
            dir.path().join("links").display()
        ),
        "bench",
    )?;
    let stop = CancellationToken::new();
    let (ready, bound) = oneshot::channel();
    let daemon = tokio::spawn(run(
        config,
        RunOptions {
            admin_token: Some(TOKEN.into()),
            stop: stop.clone(),
            ready: Some(ready),
            reload_from: None,
        },
    ));
    let address: SocketAddr = bound.await?;
    let api = format!("http://{address}/api/v1");
    let client = reqwest::Client::new();

    // Every SIM in the pool, then one session per proxy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let numbers: Value = client
            .get(format!("{api}/numbers"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let healthy = numbers
            .as_array()
            .map(|n| n.iter().filter(|n| n["healthy"] == true).count())
            .unwrap_or(0);
        if healthy == args.modems {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the bank did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut proxies = Vec::new();
    for i in 0..args.modems {
        let session: Value = client
            .post(format!("{api}/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({"participants": [handset(1, i), handset(2, i)], "mode": "sms"}))
            .send()
            .await?
            .json()
            .await?;
        let proxy = session["proxy_number"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("session not opened: {session}"))?
            .to_string();
        proxies.push(proxy);
    }

    // All messages at once: each modem's handset sends its share.
    let started = Instant::now();
    let mut senders = Vec::new();
    for (i, proxy) in proxies.iter().enumerate() {
        let share = args.messages / args.modems + usize::from(i < args.messages % args.modems);
        let client = client.clone();
        let control = control.clone();
        let proxy = proxy.clone();
        let interval = Duration::from_millis(args.interval_ms);
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for n in 0..share {
                tick.tick().await;
                let _ = client
                    .post(format!("{control}/handsets/{}/sms", handset(1, i)))
                    .json(&json!({"to": proxy, "text": format!("bench {i} {n}")}))
                    .send()
                    .await;
            }
            share
        }));
    }
    let mut expected = Vec::new();
    for sender in senders {
        expected.push(sender.await?);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut relayed = 0;
    for (i, want) in expected.iter().enumerate() {
        loop {
            let got: Vec<Value> = client
                .get(format!("{control}/handsets/{}/messages", handset(2, i)))
                .send()
                .await?
                .json()
                .await?;
            if got.len() >= *want || Instant::now() > deadline {
                relayed += got.len().min(*want);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();

    let mut overheads = Vec::new();
    for i in 0..args.modems {
        let trace: Vec<Value> = client
            .get(format!("{control}/modems/{i}/trace"))
            .send()
            .await?
            .json()
            .await?;
        overheads.extend(pair_overheads(&trace));
    }
    stop.cancel();
    let _ = daemon.await;
    simulator.shutdown().await;

    overheads.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if overheads.is_empty() {
            f64::NAN
        } else {
            overheads[((overheads.len() - 1) as f64 * p).round() as usize]
        }
    };
    let p99 = at(0.99);
    Ok(RelayReport {
        modems: args.modems,
        messages: args.messages,
        baud: args.baud,
        interval_ms: args.interval_ms,
        relayed,
        samples: overheads.len(),
        p50_ms: at(0.50),
        p99_ms: p99,
        max_ms: overheads.last().copied().unwrap_or(f64::NAN),
        ceiling_ms: CEILING_MS,
        ratio: CEILING_MS / p99,
        within_ceiling: p99 <= CEILING_MS,
        wall_seconds,
    })
}

/// Pairs the k-th `+CMTI` sent on a port with the k-th `AT+CMGS` received
/// after it (each inbound message here is relayed as one part, in order);
/// returns the gaps in milliseconds.
pub fn pair_overheads(trace: &[Value]) -> Vec<f64> {
    let mut announced = std::collections::VecDeque::new();
    let mut gaps = Vec::new();
    for entry in trace {
        let line = entry["line"].as_str().unwrap_or_default();
        let t_us = entry["t_us"].as_u64().unwrap_or(0);
        match entry["dir"].as_str() {
            Some("tx") if line.starts_with("+CMTI:") => announced.push_back(t_us),
            Some("rx") if line.to_ascii_uppercase().starts_with("AT+CMGS=") => {
                if let Some(at) = announced.pop_front() {
                    gaps.push(t_us.saturating_sub(at) as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_announcement_pairs_with_the_next_send() {
        let trace = json!([
            {"t_us": 1000, "dir": "tx", "line": "+CMTI: \"SM\",1"},
            {"t_us": 1500, "dir": "tx", "line": "+CMTI: \"SM\",2"},
            {"t_us": 2000, "dir": "rx", "line": "AT+CMGR=1"},
            {"t_us": 4000, "dir": "rx", "line": "AT+CMGS=20"},
            {"t_us": 9500, "dir": "rx", "line": "AT+CMGS=21"},
            {"t_us": 9900, "dir": "rx", "line": "AT+CMGS=22"}
        ]);
        let gaps = pair_overheads(trace.as_array().unwrap());
        assert_eq!(gaps, vec![3.0, 8.0]);
    }
}
