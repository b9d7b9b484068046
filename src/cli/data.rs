//! `simmask backup` and `simmask erase`: the data an appliance holds, copied
//! consistently or erased for a data-protection request.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::session::CliError;
use super::{Output, output};
use crate::config::Config;
use crate::number::PhoneNumber;
use crate::store::Store;

/// `simmask erase NUMBER`.
pub fn erase(config: &Path, number: &str, out: Output) -> anyhow::Result<ExitCode> {
    let (config, store) = super::open_store(config)?;
    let erased = super::runtime()?.block_on(erase_participant(&store, &config, number))?;
    out.emit(&erased, |value, _| {
        let counts = &value["erased"];
        let rows: Vec<(&str, String)> = counts
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), output::text(v)))
            .collect();
        format!(
            "Erased {}: open sessions closed, texts and every occurrence removed.\n{}",
            crate::number::redact(number),
            output::pairs(rows.iter().map(|(k, v)| (*k, v.replace('_', " "))))
        )
    })
}

/// `simmask backup OUT`.
pub fn backup(config: &Path, file: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    out.emit(&backup_store(&config, file)?, |value, _| {
        format!(
            "Backed up to {} ({}).",
            output::text(&value["backup"]),
            output::bytes(value["bytes"].as_u64().unwrap_or(0))
        )
    })
}

/// Erases a participant for a data-protection request.
pub async fn erase_participant(
    store: &Store,
    config: &Config,
    number: &str,
) -> Result<Value, CliError> {
    let number =
        PhoneNumber::parse(number, config.numbers.default_region.as_deref()).map_err(|e| {
            CliError::Number {
                input: number.into(),
                reason: e.to_string(),
            }
        })?;
    let counts = store
        .erase_participant(number, "cli".into(), OffsetDateTime::now_utc())
        .await?;
    Ok(json!({
        "erased": {
            "sessions_closed": counts.sessions_closed,
            "interactions": counts.interactions,
            "inbound_parts": counts.inbound_parts,
            "outbox": counts.outbox,
            "participants": counts.participants,
            "auto_replies": counts.auto_replies,
            "opt_outs_blocks_and_recipients": counts.rails,
            "audit": counts.audit,
        }
    }))
}

/// Takes a consistent copy of the database while the daemon runs.
pub fn backup_store(config: &Config, out: &Path) -> Result<Value, CliError> {
    Store::backup_file(&config.store.path, out)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"backup": out.display().to_string(), "bytes": bytes}))
}
