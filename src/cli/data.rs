//! `simmask backup`, `simmask restore` and `simmask erase`: the data an
//! appliance holds, copied consistently, brought back onto a fresh
//! installation, or erased for a data-protection request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::session::CliError;
use super::{Output, output};
use crate::config::Config;
use crate::number::PhoneNumber;
use crate::store::{Location, Store};

/// `simmask erase NUMBER`.
pub fn erase(config: &Path, number: &str, out: Output) -> anyhow::Result<ExitCode> {
    // On a fleet's database too: the person is erased fleet-wide.
    let erased = super::runtime()?.block_on(async {
        let (config, store) = super::connect_store(config).await?;
        anyhow::Ok(erase_participant(&store, &config, number).await?)
    })?;
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
    let report = match config.store.location() {
        Ok(Location::Postgres(url)) => super::runtime()?.block_on(backup_fleet(&url, file))?,
        _ => backup_store(&config, file)?,
    };
    out.emit(&report, |value, _| {
        let of = match value["database"].as_str() {
            Some(database) => format!(" of {database} (pg_dump's custom format)"),
            None => String::new(),
        };
        format!(
            "Backed up{of} to {} ({}).",
            output::text(&value["backup"]),
            output::bytes(value["bytes"].as_u64().unwrap_or(0))
        )
    })
}

/// A fleet's backup: `pg_dump` of its database into `file`.
async fn backup_fleet(url: &str, file: &Path) -> Result<Value, CliError> {
    let done = Store::backup_postgres(url, file).await?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    Ok(json!({
        "backup": file.display().to_string(),
        "bytes": bytes,
        "database": done.database,
        "schema": done.schema,
        "pg_dump": done.pg_dump,
    }))
}

/// A fleet's restore: the `pg_dump` archive `backup` into the configured,
/// empty database.
fn restore_fleet(url: &str, backup: &Path, replace: bool, out: Output) -> anyhow::Result<ExitCode> {
    if replace {
        anyhow::bail!(
            "--replace sets an SQLite file aside; a fleet's database is never restored over: \
             create a new, empty database, point [store] url at it and restore into it"
        );
    }
    let done = super::runtime()?.block_on(Store::restore_postgres(url, backup))?;
    let report = json!({
        "restored": done.database,
        "from": backup.display().to_string(),
        "backup_schema": done.backup_schema,
        "schema": done.schema,
        "set_aside": null,
    });
    out.emit(&report, |value, _| {
        format!(
            "Restored {} into {}. Start the fleet's appliances now.",
            output::text(&value["from"]),
            output::text(&value["restored"])
        )
    })
}

/// `simmask restore BACKUP`: onto a stopped appliance, into `[store] path`.
pub fn restore(
    config: &Path,
    backup: &Path,
    replace: bool,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    if let Ok(Location::Postgres(url)) = config.store.location() {
        // A running daemon of the fleet has made its tables: the database
        // is not empty, and the restore refuses it.
        return restore_fleet(&url, backup, replace, out);
    }
    if super::runtime()?
        .block_on(crate::doctor::daemon_clock(&config))
        .is_some()
    {
        anyhow::bail!(
            "simmask is running on {}: stop it first (sudo systemctl stop simmask), restore, then start it",
            config.api.listen
        );
    }
    // Nothing is moved before the backup is known to be good.
    Store::check_backup(backup)?;
    let path = config
        .store
        .sqlite_path()
        .map_err(|problem| anyhow::anyhow!("store: {problem}"))?;
    let set_aside = if path.exists() {
        if !replace {
            anyhow::bail!(
                "a database is already at {}: pass --replace to set it aside and restore over it",
                path.display()
            );
        }
        let stamp = OffsetDateTime::now_utc().unix_timestamp();
        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", path.display()));
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", path.display()));
            if from.exists() {
                std::fs::rename(&from, format!("{}{suffix}", aside.display()))
                    .with_context(|| format!("setting {} aside", from.display()))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    let version = Store::restore_file(backup, path)?;
    // Brought to this binary's schema, then given to whoever owns the
    // state directory (the service user), so the service can write it.
    drop(Store::open(path)?);
    give_to_directory_owner(path)?;
    let report = json!({
        "restored": path.display().to_string(),
        "from": backup.display().to_string(),
        "backup_schema": version,
        "schema": crate::store::latest_version(),
        "set_aside": set_aside.map(|p| p.display().to_string()),
    });
    out.emit(&report, |value, _| {
        let aside = match value["set_aside"].as_str() {
            Some(aside) => format!(" The database that was there is now {aside}."),
            None => String::new(),
        };
        format!(
            "Restored {} into {}.{aside} Start simmask now.",
            output::text(&value["from"]),
            output::text(&value["restored"])
        )
    })
}

/// Hands the database files to the owner of their directory (run as root,
/// a restore would otherwise leave them root's).
fn give_to_directory_owner(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let owner = std::fs::metadata(dir)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::os::unix::fs::chown(&file, Some(owner.uid()), Some(owner.gid())) {
            // The store's threads close their connections after the handle
            // is dropped, and the last one removes the log and its index:
            // a file gone meanwhile needs no owner.
            Err(error) if !suffix.is_empty() && error.kind() == std::io::ErrorKind::NotFound => {}
            other => other
                .with_context(|| format!("giving {} to its directory's owner", file.display()))?,
        }
    }
    Ok(())
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
    let file = config
        .store
        .sqlite_path()
        .map_err(|_| crate::store::StoreError::Unsupported {
            operation: "backup".into(),
            backend: config.store.backend.as_str(),
        })?;
    Store::backup_file(file, out)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"backup": out.display().to_string(), "bytes": bytes}))
}
