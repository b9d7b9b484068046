//! `simmask migrate --from sqlite:PATH --to postgres:URL`: one appliance's
//! SQLite store moved into a fleet's PostgreSQL database (see
//! `store::pg::migrate`). The url's password is never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::{Output, output};
use crate::store::{Store, redacted_url};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The appliance's SQLite store, as `sqlite:PATH` (stop its daemon
    /// first: what it writes after the copy is not moved).
    #[arg(long, value_name = "sqlite:PATH")]
    pub from: String,
    /// The fleet's database, as `postgres://user:password@host:port/db`
    /// (or `postgres:` before it).
    #[arg(long, value_name = "postgres:URL")]
    pub to: String,
    /// The appliance the SIMs and modems belong to from now on: its
    /// `[appliance] name` (default: this host's name).
    #[arg(long)]
    pub appliance: Option<String>,
}

/// `--from`'s file.
fn sqlite_path(from: &str) -> anyhow::Result<PathBuf> {
    match from.strip_prefix("sqlite:") {
        Some(path) if !path.trim().is_empty() => Ok(PathBuf::from(path)),
        _ => bail!(
            "--from takes sqlite:PATH, the appliance's SQLite file (e.g. sqlite:/var/lib/simmask/simmask.db)"
        ),
    }
}

/// `--to`'s url: `postgres://…`, `postgresql://…`, or either after
/// `postgres:`. Never echoed with its password.
fn postgres_url(to: &str) -> anyhow::Result<String> {
    let url = match to.strip_prefix("postgres:") {
        Some(rest) if rest.starts_with("postgres://") || rest.starts_with("postgresql://") => rest,
        _ => to,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "--to takes postgres:URL, the fleet's database (e.g. postgres://simmask@db.lan:5432/simmask)"
        );
    }
    Ok(url.to_string())
}

pub fn run(args: MigrateArgs, out: Output) -> anyhow::Result<ExitCode> {
    let source = sqlite_path(&args.from)?;
    let url = postgres_url(&args.to)?;
    let shown = redacted_url(&url);
    let appliance = args
        .appliance
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| crate::config::ApplianceConfig::default().name());
    let report = super::runtime()?
        .block_on(Store::migrate_sqlite_to_postgres(&source, &url, &appliance))
        .with_context(|| format!("migrating {} into {shown}", source.display()))?;
    out.emit(&report, |value, _| summary(value))
}

/// What was moved and what was not, as lines.
fn summary(value: &Value) -> String {
    let mut table = output::table(["table", "rows moved"]);
    for moved in value["moved"].as_array().into_iter().flatten() {
        table.add_row(vec![
            output::text(&moved["table"]),
            moved["rows"].to_string(),
        ]);
    }
    let mut text = format!(
        "Moved the store (schema {}) into {} as appliance {}, in one transaction:\n\n{table}\n",
        value["sqlite_schema"],
        output::text(&value["database"]),
        value["appliance"],
    );
    let left = value["not_moved"].as_array().cloned().unwrap_or_default();
    if !left.is_empty() {
        text.push_str("\nNot moved (still in the SQLite file):\n");
        for row in left {
            text.push_str(&format!(
                "  {}: {} rows ({})\n",
                output::text(&row["table"]),
                row["rows"],
                output::text(&row["reason"])
            ));
        }
    }
    text.push_str(
        "\nStart the appliance with [store] backend = \"postgres\" and this url; keep the SQLite file until you have checked.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_take_their_prefixes_and_never_echo_a_password() {
        assert_eq!(
            sqlite_path("sqlite:/var/lib/simmask/simmask.db").unwrap(),
            PathBuf::from("/var/lib/simmask/simmask.db")
        );
        assert!(sqlite_path("/var/lib/simmask/simmask.db").is_err());
        assert!(sqlite_path("sqlite:").is_err());
        let url = "postgres://simmask:s3cret@db.lan:5432/simmask";
        assert_eq!(postgres_url(url).unwrap(), url);
        assert_eq!(postgres_url(&format!("postgres:{url}")).unwrap(), url);
        let error = postgres_url("mysql://simmask:s3cret@db.lan/simmask")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
