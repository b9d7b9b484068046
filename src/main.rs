//! The `simmask` command line: one binary for the daemon, the simulator, the
//! demo and the operator's tools. Each subcommand is a thin door onto the
//! library; errors are reported with their context by `anyhow`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use simmask::logging::{self, LogFormat};
use simmask::modem::profile::Profiles;

#[derive(Debug, Parser)]
#[command(
    name = "simmask",
    version,
    about = "On-premises number masking over GSM modems"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the modem model profiles (firmware-config/) as JSON.
    Profiles,
    /// Run the virtual GSM network: a bank of virtual modems behind ptys.
    Sim(simmask::sim::cli::SimArgs),
    /// Demo: a simulated bank of mixed modems, its control URL and links.
    Demo(simmask::sim::cli::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, "info");
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("simmask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Profiles => {
            let profiles: Vec<_> = Profiles::builtin().iter().cloned().collect();
            println!("{}", serde_json::to_string_pretty(&profiles)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => {
            tokio::runtime::Runtime::new()?.block_on(simmask::sim::cli::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            tokio::runtime::Runtime::new()?.block_on(simmask::sim::cli::demo(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
