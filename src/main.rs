//! The `simmask` command line: one binary for the daemon, the simulator, the
//! demo and the operator's tools. Each subcommand is a thin door onto the
//! library; errors are reported with their context by `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use simmask::admin;
use simmask::api::auth;
use simmask::config::Config;
use simmask::logging::{self, LogFormat};
use simmask::masking::Mode;
use simmask::masking::lifecycle::SessionStatus;
use simmask::profile::Profiles;
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
    /// The SMS PDU codec from the shell, JSON out.
    Pdu {
        #[command(subcommand)]
        command: PduCommand,
    },
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
    /// The whole appliance on a virtual bank: prints the dashboard URL, the
    /// simulator control URL and the admin token.
    Demo(simmask::daemon::demo::DemoArgs),
    /// Benchmarks, JSON out.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Run the daemon: modems, relay, API.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Open, list and close masking sessions (JSON in the API's shape).
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Copy the database consistently while the daemon runs.
    Backup {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where to write the copy.
        out: PathBuf,
    },
    /// Erase a participant's number and messages (data-protection request).
    Erase {
        /// The participant's number.
        number: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check the configuration, ports, store and SIMs; exit 1 on a problem.
    Doctor {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

const DEFAULT_CONFIG: &str = "/etc/simmask/simmask.toml";

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Open a session between two numbers on a free proxy.
    Open {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The first participant (E.164, or national in the default region).
        a: String,
        /// The second participant.
        b: String,
        /// Absolute lifetime, e.g. `2h`, `30m`, `1d`.
        #[arg(long)]
        ttl: Option<String>,
        /// End after this long without traffic.
        #[arg(long)]
        idle_ttl: Option<String>,
        #[arg(long, value_enum, default_value_t = ModeArg::Both)]
        mode: ModeArg,
        #[arg(long)]
        label: Option<String>,
    },
    /// List sessions, newest first.
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// `open`, `closed` or `expired`.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Close a session.
    Close {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Relay overhead (inbound URC to relayed AT+CMGS) on a virtual bank.
    Relay(simmask::daemon::bench::RelayBenchArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Sms,
    Voice,
    Both,
}

#[derive(Debug, Subcommand)]
enum PduCommand {
    /// Decode a PDU as AT+CMGR/AT+CMGL print it (with the SMSC field).
    Decode {
        /// The PDU has no leading SMSC field (a bare TPDU).
        #[arg(long)]
        no_smsc: bool,
        /// The PDU in hexadecimal.
        hex: String,
    },
    /// Encode a text as the SMS-SUBMIT PDUs AT+CMGS takes in PDU mode.
    Encode {
        /// The destination: `+` and digits for international, else as given.
        #[arg(long)]
        to: String,
        #[arg(long)]
        text: String,
        /// The service centre; without it the SIM's own is used (`00`).
        #[arg(long)]
        smsc: Option<String>,
        /// Ask the network for a delivery report.
        #[arg(long)]
        status_report: bool,
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
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List the tokens (names and roles, never the tokens).
    List {
        #[arg(long, default_value = DEFAULT_CONFIG)]
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
        Command::Pdu { command } => Ok(pdu(command)),
        Command::Token { command } => token(command),
        Command::Session { command } => session(command),
        Command::Backup { config, out } => {
            let config = Config::load(&config)?;
            print_json(&admin::backup(&config, &out)?)
        }
        Command::Erase { number, config } => {
            let config = Config::load(&config)?;
            let store = Store::open(&config.store.path).context("opening the store")?;
            let runtime = tokio::runtime::Runtime::new()?;
            print_json(&runtime.block_on(admin::erase(&store, &config, &number))?)
        }
        Command::Doctor { config } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let checks = runtime.block_on(admin::doctor::run(&config));
            println!("{}", serde_json::to_string_pretty(&checks)?);
            Ok(if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
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
        Command::Demo(args) => {
            tokio::runtime::Runtime::new()?.block_on(simmask::daemon::demo::demo(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command: BenchCommand::Relay(args),
        } => {
            let report =
                tokio::runtime::Runtime::new()?.block_on(simmask::daemon::bench::relay(args))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = Config::load(&config)?;
            tokio::runtime::Runtime::new()?.block_on(async {
                let stop = tokio_util::sync::CancellationToken::new();
                simmask::daemon::stop_on_signals(stop.clone())?;
                let options = simmask::daemon::RunOptions {
                    admin_token: std::env::var("SIMMASK_ADMIN_TOKEN").ok(),
                    stop,
                    ready: None,
                };
                simmask::daemon::run(config, options).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

fn session(command: SessionCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let value = match command {
            SessionCommand::Open {
                config,
                a,
                b,
                ttl,
                idle_ttl,
                mode,
                label,
            } => {
                let config = Config::load(&config)?;
                let store = Store::open(&config.store.path).context("opening the store")?;
                let request = admin::OpenRequest {
                    participants: [a, b],
                    ttl: ttl.map(|t| admin::parse_duration("ttl", &t)).transpose()?,
                    idle_ttl: idle_ttl
                        .map(|t| admin::parse_duration("idle-ttl", &t))
                        .transpose()?,
                    mode: match mode {
                        ModeArg::Sms => Mode::Sms,
                        ModeArg::Voice => Mode::Voice,
                        ModeArg::Both => Mode::Both,
                    },
                    label,
                };
                admin::open_session(&store, &config, request).await?
            }
            SessionCommand::List {
                config,
                status,
                label,
                limit,
            } => {
                let status = status
                    .map(|s| s.parse::<SessionStatus>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                let store = open_store(&config)?;
                admin::list_sessions(&store, status, label, limit).await?
            }
            SessionCommand::Close { config, id } => {
                let store = open_store(&config)?;
                admin::close_session(&store, id).await?
            }
        };
        print_json(&value)
    })
}

/// Invalid input exits with status 2 and one line naming the problem.
fn pdu(command: PduCommand) -> ExitCode {
    use simmask::pdu::{self, Address, SubmitOptions};
    let result = match command {
        PduCommand::Decode { no_smsc, hex } => pdu::decode_hex(&hex, !no_smsc)
            .map(|decoded| pdu::decoded_json(&decoded))
            .map_err(|e| format!("pdu decode: {e}")),
        PduCommand::Encode {
            to,
            text,
            smsc,
            status_report,
        } => (|| {
            let destination = Address::from_number(&to).map_err(|e| format!("--to: {e}"))?;
            let smsc = smsc
                .map(|s| Address::from_number(&s))
                .transpose()
                .map_err(|e| format!("--smsc: {e}"))?;
            let options = SubmitOptions {
                smsc,
                status_report,
                ..SubmitOptions::default()
            };
            let encoding = pdu::segment(&text).encoding;
            let parts =
                pdu::encode_submit(&destination, &text, 1, &options).map_err(|e| e.to_string())?;
            Ok(serde_json::json!({
                "encoding": encoding.as_str(),
                "parts": parts
                    .iter()
                    .map(|p| serde_json::json!({"pdu": p.hex, "tpdu_length": p.tpdu_length}))
                    .collect::<Vec<_>>(),
            }))
        })()
        .map_err(|e: String| format!("pdu encode: {e}")),
    };
    match result {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("simmask: {message}");
            ExitCode::from(2)
        }
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
