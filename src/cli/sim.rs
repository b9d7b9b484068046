//! The `simmask sim` subcommand: start a bank, print it as one JSON line,
//! serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::sim::{SimConfig, SimError, Simulator};

/// Options of `simmask sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Number of virtual modems.
    #[arg(long, default_value_t = 1)]
    pub modems: usize,
    /// Profile name, or a comma-separated list cycled over the modems.
    #[arg(long, default_value = "generic", value_delimiter = ',')]
    pub profile: Vec<String>,
    /// Control API address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Directory for `modem0`… symlinks to the ptys.
    #[arg(long)]
    pub links: Option<PathBuf>,
    /// Seed for the modem identities.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pace each pty like a serial line at this many bits per second.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Seconds the network's clock is ahead of this machine's (negative:
    /// behind), as SMSC timestamps and `+CCLK?` tell it; also `PUT /clock`.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-(MAX as i64)..=(MAX as i64)))]
    pub clock_offset: i64,
}

const MAX: u64 = crate::sim::control::MAX_CLOCK_OFFSET_SECONDS;

/// Runs the simulator until SIGINT or SIGTERM.
pub fn run(args: SimArgs, out: super::Output) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(serve(args, out))?;
    Ok(ExitCode::SUCCESS)
}

/// The bank for a person: where to control it, and each modem.
fn bank_table(bank: &serde_json::Value) -> String {
    let mut table =
        super::output::table(["#", "link", "number", "model", "profile", "IMEI", "ICCID"]);
    for modem in bank["modems"].as_array().into_iter().flatten() {
        let link = if modem["link"].is_null() {
            &modem["path"]
        } else {
            &modem["link"]
        };
        table.add_row(vec![
            super::output::text(&modem["index"]),
            super::output::text(link),
            super::output::text(&modem["msisdn"]),
            super::output::text(&modem["model"]),
            super::output::text(&modem["profile"]),
            super::output::text(&modem["imei"]),
            super::output::text(&modem["iccid"]),
        ]);
    }
    format!(
        "Virtual GSM network running; control API at {}\n{table}\nPress Ctrl-C to stop.",
        super::output::text(&bank["control"])
    )
}

async fn serve(args: SimArgs, out: super::Output) -> Result<(), SimError> {
    let mut signals = StopSignals::install()?;
    let simulator = Simulator::start(SimConfig {
        modems: args.modems,
        profiles: args.profile,
        control: args.control,
        links: args.links,
        seed: args.seed,
        baud: args.baud,
    })
    .await?;
    simulator.network().set_clock_offset(args.clock_offset);
    let line = serde_json::to_string(simulator.description())?;
    if out.json {
        println!("{line}");
    } else {
        println!("{}", bank_table(&serde_json::from_str(&line)?));
    }
    signals.wait().await;
    simulator.shutdown().await;
    Ok(())
}

/// SIGINT and SIGTERM handlers, installed before the ready line is printed
/// so that a signal sent right after it is never missed.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self, SimError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).map_err(SimError::Signal)?,
            terminate: signal(SignalKind::terminate()).map_err(SimError::Signal)?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
