//! The command line: one file per command group, each a thin door over the
//! library. `main.rs` only parses ([`Cli`]) and dispatches ([`run`]); errors
//! reach the shell with their context through `anyhow`.
//!
//! - [`pdu`]: the codec from the shell; [`probe`]: one modem identified.
//! - [`sim`]: the virtual network; [`daemon`]: `run`, `demo`, `bench`.
//! - [`session`], [`token`]: sessions and API tokens, on the store.
//! - [`data`]: backup and erasure; [`doctor`]: the installation checked.

pub mod daemon;
pub mod data;
pub mod doctor;
pub mod pdu;
pub mod probe;
pub mod session;
pub mod sim;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::logging::LogFormat;
use crate::profile::Profiles;
use crate::store::Store;

/// Where the configuration is unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/simmask/simmask.toml";

#[derive(Debug, Parser)]
#[command(
    name = "simmask",
    version,
    about = "On-premises number masking over GSM modems"
)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The SMS PDU codec from the shell, JSON out.
    Pdu {
        #[command(subcommand)]
        command: pdu::PduCommand,
    },
    /// List the modem model profiles (firmware-config/) as JSON.
    Profiles,
    /// Probe one modem port and print its identity and capabilities as JSON
    /// (exit status 2 when the port is absent or no modem answers).
    ///
    /// The probe brings the modem up exactly as the daemon does, so it also
    /// configures it: echo off, verbose results and errors, the radio
    /// switched on if it was off, PDU mode, the message storages, new-message
    /// routing (+CNMI), caller ID, registration and call-waiting reports, and
    /// the commands of the model's profile. It types no SIM PIN. A field the
    /// modem cannot give is null, and "failures" lists every command that
    /// failed, with its step and error.
    Probe {
        /// The serial port, e.g. /dev/ttyUSB2.
        port: String,
    },
    /// Run the virtual GSM network: a bank of virtual modems behind ptys.
    Sim(sim::SimArgs),
    /// The whole appliance on a virtual bank: prints the dashboard URL, the
    /// simulator control URL and the admin token.
    Demo(crate::daemon::demo::DemoArgs),
    /// Benchmarks, JSON out.
    Bench {
        #[command(subcommand)]
        command: daemon::BenchCommand,
    },
    /// Run the daemon: modems, relay, API.
    Run {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Open, list and close masking sessions (JSON in the API's shape).
    Session {
        #[command(subcommand)]
        command: session::SessionCommand,
    },
    /// Copy the database consistently while the daemon runs.
    Backup {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where to write the copy.
        out: PathBuf,
    },
    /// Erase a participant's number and messages (data-protection request).
    Erase {
        /// The participant's number.
        number: String,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check the configuration, ports, store and SIMs; exit 1 on a problem.
    Doctor {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Runs one command; the exit status says how it went.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Profiles => {
            let profiles: Vec<_> = Profiles::builtin().iter().cloned().collect();
            print_json(&profiles)
        }
        Command::Pdu { command } => Ok(pdu::run(command)),
        Command::Probe { port } => probe::run(&port),
        Command::Sim(args) => sim::run(args),
        Command::Demo(args) => daemon::demo(args),
        Command::Bench { command } => daemon::bench(command),
        Command::Run { config } => daemon::run(&config),
        Command::Token { command } => token::run(command),
        Command::Session { command } => session::run(command),
        Command::Backup { config, out } => data::backup(&config, &out),
        Command::Erase { number, config } => data::erase(&config, &number),
        Command::Doctor { config } => doctor::run(&config),
    }
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// The configuration at `path` and its store.
fn open_store(path: &Path) -> anyhow::Result<(Config, Store)> {
    let config = Config::load(path)?;
    let store = Store::open(&config.store.path).context("opening the store")?;
    Ok((config, store))
}

/// A runtime for one command's async work.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}
