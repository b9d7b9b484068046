//! The `simmask sim` subcommand: start a bank, print it as one JSON line,
//! serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

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
}

/// Runs the simulator until SIGINT or SIGTERM.
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let simulator = Simulator::start(SimConfig {
        modems: args.modems,
        profiles: args.profile,
        control: args.control,
        links: args.links,
        seed: args.seed,
    })
    .await?;
    let line = serde_json::to_string(simulator.description())?;
    println!("{line}");
    wait_for_signal().await;
    simulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
