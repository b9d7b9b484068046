//! The command line: one file per command group, each a thin door over the
//! library. `main.rs` only parses ([`Cli`]) and dispatches ([`run`]); errors
//! reach the shell with their context through `anyhow`.
//!
//! - [`pdu`]: the codec from the shell; [`probe`]: one modem identified.
//! - [`sim`]: the virtual network; [`daemon`]: `run`, `demo`, `bench`.
//! - [`session`], [`token`]: sessions and API tokens, on the store.
//! - [`data`]: backup, restore and erasure; [`doctor`]: the installation checked;
//!   [`config`]: a configuration checked without touching anything.
//! - [`status`]: a running appliance, through its API; [`export`]:
//!   interactions by time range.
//! - [`docs`]: shell completions and man pages from these definitions.
//!
//! Every command speaks to people at a terminal and to programs through a
//! pipe or `--json` ([`output`]).

pub mod config;
pub mod daemon;
pub mod data;
pub mod docs;
pub mod doctor;
pub mod export;
pub mod hub;
pub mod migrate;
pub mod output;
pub mod pdu;
pub mod probe;
pub mod session;
pub mod sim;
pub mod status;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::styling::{AnsiColor, Effects, Styles};
use clap::{Parser, Subcommand};

use crate::logging::LogFormat;
use crate::profile::Profiles;
use crate::store::Store;
pub use output::Output;

/// The help's colours: headings and literals stand out.
const STYLES: Styles = Styles::styled()
    .header(AnsiColor::Green.on_default().effects(Effects::BOLD))
    .usage(AnsiColor::Green.on_default().effects(Effects::BOLD))
    .literal(AnsiColor::Cyan.on_default().effects(Effects::BOLD))
    .placeholder(AnsiColor::Cyan.on_default())
    .error(AnsiColor::Red.on_default().effects(Effects::BOLD))
    .valid(AnsiColor::Cyan.on_default())
    .invalid(AnsiColor::Yellow.on_default());

/// Where the configuration is unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/simmask/simmask.toml";

#[derive(Debug, Parser)]
#[command(
    name = "simmask",
    version,
    about = "On-premises number masking over GSM modems",
    long_about = "On-premises number masking over GSM modems: each SIM of a bank of USB modems is a \
                  proxy number; sessions pair two real numbers through one proxy, SMS are relayed \
                  and calls bridged. Output is a readable summary at a terminal and JSON when piped \
                  or with --json.",
    styles = STYLES
)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Print JSON even at a terminal (it is printed whenever stdout is not one).
    #[arg(long, global = true)]
    pub json: bool,
    /// Show participants' real numbers in text output (masked by default, as a viewer sees them).
    #[arg(long, global = true)]
    pub show_numbers: bool,
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
    /// Add, list and remove hubs: numbers in many sessions on one proxy,
    /// each session told apart by a short code (JSON in the API's shape).
    Hub {
        #[command(subcommand)]
        command: hub::HubCommand,
    },
    /// Copy the database consistently while the daemon runs (on a fleet:
    /// `pg_dump` of its PostgreSQL database, in the custom format).
    Backup {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where to write the copy.
        out: PathBuf,
    },
    /// Restore a backup onto this installation (the daemon stopped): the
    /// sessions, their interactions and the API tokens come back. On a
    /// fleet: `pg_restore` into the configured database, which must be
    /// empty.
    Restore {
        /// The configuration file (its [store] path receives the backup).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Set an existing database aside (as `<path>.before-restore-<time>`)
        /// instead of refusing.
        #[arg(long)]
        replace: bool,
        /// The backup, as `simmask backup` wrote it.
        backup: PathBuf,
    },
    /// Move this appliance's SQLite store into a fleet's PostgreSQL
    /// database, in one transaction: SIMs, modems, sessions (open and
    /// closed), interactions, the outbox, tokens and the audit trail. Runs
    /// once per database; the url's password is never printed.
    Migrate(migrate::MigrateArgs),
    /// Erase a participant's number and messages (data-protection request).
    Erase {
        /// The participant's number.
        number: String,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check the installation: configuration, ports, service user, udev
    /// rules, ModemManager, clock, disk, store and SIMs; exit 1 on a problem.
    Doctor(doctor::DoctorArgs),
    /// A running appliance at a glance, read from its API: SIMs, sessions,
    /// the last relays and calls, clock and store (as `mmcli -m 0`).
    Status(status::StatusArgs),
    /// Check a configuration file.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Export data from the store.
    Export {
        #[command(subcommand)]
        command: export::ExportCommand,
    },
    /// Print a shell completion script (e.g. `simmask completions bash > /etc/bash_completion.d/simmask`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a directory.
    Man {
        /// Write `simmask.1`, `simmask-status.1`… into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs one command; the exit status says how it went.
pub fn run(command: Command, output: Output) -> anyhow::Result<ExitCode> {
    match command {
        Command::Profiles => {
            let profiles: Vec<_> = Profiles::builtin().iter().cloned().collect();
            output.emit(&profiles, |value, _| profiles_table(value))
        }
        Command::Pdu { command } => Ok(pdu::run(command, output)),
        Command::Probe { port } => probe::run(&port, output),
        Command::Sim(args) => sim::run(args, output),
        Command::Demo(args) => daemon::demo(args),
        Command::Bench { command } => daemon::bench(command, output),
        Command::Run { config } => daemon::run(&config),
        Command::Token { command } => token::run(command, output),
        Command::Session { command } => session::run(command, output),
        Command::Hub { command } => hub::run(command, output),
        Command::Backup { config, out } => data::backup(&config, &out, output),
        Command::Restore {
            config,
            replace,
            backup,
        } => data::restore(&config, &backup, replace, output),
        Command::Migrate(args) => migrate::run(args, output),
        Command::Erase { number, config } => data::erase(&config, &number, output),
        Command::Doctor(args) => doctor::run(&args, output),
        Command::Status(args) => status::run(args, output),
        Command::Config { command } => config::run(command, output),
        Command::Export { command } => export::run(command, output),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(out.as_deref()),
    }
}

/// The model profiles, one line each.
fn profiles_table(value: &serde_json::Value) -> String {
    let mut table = output::table(["profile", "description", "detected by", "boot"]);
    for profile in value.as_array().into_iter().flatten() {
        let detect = &profile["detect"];
        let words: Vec<String> = ["manufacturer", "model"]
            .iter()
            .flat_map(|k| detect[k].as_array().cloned().unwrap_or_default())
            .map(|v| output::text(&v))
            .collect();
        table.add_row(vec![
            output::text(&profile["name"]),
            output::text(&profile["description"]),
            if words.is_empty() {
                "-".into()
            } else {
                words.join(", ")
            },
            format!("{} ms", profile["boot"]["reset_ms"]),
        ]);
    }
    table.to_string()
}

/// The configuration at `path` and its store, whichever the backend (the
/// commands that open the store themselves all work on a fleet's database
/// too).
async fn connect_store(path: &Path) -> anyhow::Result<(crate::config::Config, Store)> {
    let config = crate::config::Config::load(path)?;
    let location = config
        .store
        .location()
        .map_err(|problem| anyhow::anyhow!("store: {problem}"))?;
    let store = Store::connect(
        &location,
        &config.appliance.name(),
        config.appliance.heartbeat_timeout(),
    )
    .await
    .context("opening the store")?;
    Ok((config, store))
}

/// A runtime for one command's async work.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}
