//! `simmask hub add|list|remove`: hubs from the shell, as `/api/v1/hubs`
//! does them. The commands open the same store as the daemon (the SQLite
//! file or the fleet's database, whose constraints keep the masking rule
//! for everyone but a hub's coded side) and print the API's JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::session::CliError;
use super::{DEFAULT_CONFIG, Output, output};
use crate::api::auth::{Caller, Role};
use crate::api::hubs::{RemovedHub, view};
use crate::number::PhoneNumber;
use crate::store::{SessionRecord, Store};

/// Longest label accepted, in characters (as the API).
const MAX_LABEL: usize = 200;

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Make a number a hub: it may then be in any number of open sessions
    /// on one proxy, each told apart by a short code (`K7`). Its open
    /// sessions get codes at once.
    Add {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The hub's number (E.164, or national in the default region).
        number: String,
        /// A name to know it by (never a number).
        #[arg(long)]
        label: Option<String>,
    },
    /// List the hubs with their open sessions and codes.
    List {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Remove a hub; its open sessions end (close reason `operator`).
    Remove {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The hub's id (`hub_…`).
        id: String,
    },
}

/// The shell acts with the operator's full rights.
fn operator() -> Caller {
    Caller {
        name: "cli".into(),
        role: Role::Admin,
    }
}

pub fn run(command: HubCommand, out: Output) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let value = match command {
            HubCommand::Add {
                config,
                number,
                label,
            } => {
                let (config, store) = super::connect_store(&config).await?;
                let region = config.numbers.default_region.as_deref();
                let number = PhoneNumber::parse_as(&number, region, config.numbers.validation)
                    // Redacted like every number: stderr of scripted
                    // runs ends up in the journal.
                    .map_err(|e| {
                        anyhow::anyhow!("hub number {:?}: {e}", crate::number::redact(&number))
                    })?;
                add(&store, number, label).await?
            }
            HubCommand::List { config } => {
                let (_, store) = super::connect_store(&config).await?;
                list(&store).await?
            }
            HubCommand::Remove { config, id } => {
                let (_, store) = super::connect_store(&config).await?;
                let (hub, ended) = store
                    .remove_hub(id, "cli".into(), OffsetDateTime::now_utc())
                    .await
                    .map_err(CliError::from)?;
                json!(RemovedHub {
                    id: hub.id,
                    number: hub.number.e164().to_string(),
                    label: hub.label,
                    sessions_closed: ended.into_iter().map(|s| s.id).collect(),
                })
            }
        };
        out.emit(&value, |value, out| {
            if value.is_array() {
                hubs_table(value, out)
            } else {
                hub_card(value, out)
            }
        })
    })
}

async fn add(store: &Store, number: PhoneNumber, label: Option<String>) -> anyhow::Result<Value> {
    if label
        .as_ref()
        .is_some_and(|l| l.chars().count() > MAX_LABEL)
    {
        bail!("--label is longer than {MAX_LABEL} characters");
    }
    if store.sims().await?.iter().any(|sim| sim.msisdn == number) {
        bail!("that is a proxy number of this appliance, not a person's");
    }
    let (hub, converted) = store
        .create_hub(number, label, "cli".into(), OffsetDateTime::now_utc())
        .await
        .map_err(CliError::from)?;
    let sessions: Vec<(String, SessionRecord)> = converted
        .into_iter()
        .map(|session| (hub.id.clone(), session))
        .collect();
    Ok(json!(view(hub, &sessions, &operator())))
}

async fn list(store: &Store) -> anyhow::Result<Value> {
    let hubs = store.hubs().await.map_err(CliError::from)?;
    let sessions = store.hub_sessions().await.map_err(CliError::from)?;
    let caller = operator();
    let views: Vec<_> = hubs
        .into_iter()
        .map(|hub| view(hub, &sessions, &caller))
        .collect();
    Ok(json!(views))
}

/// One row per hub session (a hub without sessions gets one row too),
/// numbers masked unless `--show-numbers`.
fn hubs_table(value: &Value, out: &Output) -> String {
    let hubs = value.as_array().cloned().unwrap_or_default();
    if hubs.is_empty() {
        return "No hubs.".into();
    }
    let mut table = output::table([
        "hub",
        "label",
        "number",
        "code",
        "counterpart",
        "proxy",
        "session",
    ]);
    for hub in hubs {
        let head = |table: &mut comfy_table::Table, rest: [String; 4]| {
            let [code, counterpart, proxy, session] = rest;
            table.add_row(vec![
                output::text(&hub["id"]),
                output::text(&hub["label"]),
                out.number(hub["number"].as_str().unwrap_or("?")),
                code,
                counterpart,
                proxy,
                session,
            ]);
        };
        let sessions = hub["sessions"].as_array().cloned().unwrap_or_default();
        if sessions.is_empty() {
            head(&mut table, ["-".into(), "-".into(), "-".into(), "-".into()]);
        }
        for session in sessions {
            head(
                &mut table,
                [
                    output::text(&session["hub_code"]),
                    out.number(session["counterpart"].as_str().unwrap_or("?")),
                    output::text(&session["proxy_number"]),
                    output::text(&session["session_id"]),
                ],
            );
        }
    }
    table.to_string()
}

fn hub_card(hub: &Value, out: &Output) -> String {
    let sessions = hub["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| output::text(&s["hub_code"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let closed = hub["sessions_closed"]
        .as_array()
        .map(|s| s.len().to_string());
    let mut rows = vec![
        ("hub", output::text(&hub["id"])),
        ("label", output::text(&hub["label"])),
        ("number", out.number(hub["number"].as_str().unwrap_or("?"))),
    ];
    match closed {
        Some(count) => rows.push(("sessions ended", count)),
        None => rows.push((
            "codes",
            if sessions.is_empty() {
                "-".into()
            } else {
                sessions
            },
        )),
    }
    output::pairs(rows).to_string()
}
