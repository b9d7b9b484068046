//! The `simmask` command line: one binary for the daemon, the simulator, the
//! demo and the operator's tools. Each subcommand is a thin door onto the
//! library; errors are reported with their context by `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use simmask::api::auth;
use simmask::config::Config;
use simmask::logging::{self, LogFormat};
use simmask::modem::profile::Profiles;
use simmask::store::{Role, Store};

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
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it, once: only its hash is stored.
    Create {
        /// A name for the token (who or what uses it).
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Viewer)]
        role: Role,
        #[arg(long, default_value = "/etc/simmask/simmask.toml")]
        config: PathBuf,
    },
    /// List the tokens (names and roles, never the tokens).
    List {
        #[arg(long, default_value = "/etc/simmask/simmask.toml")]
        config: PathBuf,
    },
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
        Command::Token { command } => token(command),
    }
}

fn open_store(config: &std::path::Path) -> anyhow::Result<Store> {
    let config = Config::load(config)?;
    Store::open(&config.store.path).context("opening the store")
}

fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match command {
            TokenCommand::Create { name, role, config } => {
                let store = open_store(&config)?;
                let token = auth::generate_token();
                let record = store
                    .create_token(
                        name,
                        role,
                        auth::hash_token(&token),
                        time::OffsetDateTime::now_utc(),
                    )
                    .await?;
                let shown = serde_json::json!({
                    "name": record.name,
                    "role": record.role,
                    "token": token,
                    "note": "shown once: store it now, only its hash is kept",
                });
                println!("{shown}");
            }
            TokenCommand::List { config } => {
                let store = open_store(&config)?;
                println!("{}", serde_json::to_string_pretty(&store.tokens().await?)?);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
