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
    /// Probe one modem port and print its identity and capabilities as JSON
    /// (exit status 2 when the port is absent or no modem answers).
    Probe {
        /// The serial port, e.g. /dev/ttyUSB2.
        port: String,
    },
    /// Run the virtual GSM network: a bank of virtual modems behind ptys.
    Sim(simmask::sim::cli::SimArgs),
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
        Command::Probe { port } => {
            let runtime = tokio::runtime::Runtime::new()?;
            let profiles = Profiles::builtin();
            match runtime.block_on(simmask::modem::probe::probe(&port, &profiles)) {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("simmask probe: {port}: no modem: {error}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Sim(args) => {
            tokio::runtime::Runtime::new()?.block_on(simmask::sim::cli::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
