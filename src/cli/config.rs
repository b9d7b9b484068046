//! `simmask config check`: a configuration checked, every problem named
//! with its key and line, without opening, creating or migrating anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::{DEFAULT_CONFIG, Output, output};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: every problem with its key and line; exit 1 if any.
    Check {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn run(command: ConfigCommand, out: Output) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config } = command;
    let text = std::fs::read_to_string(&config)
        .map_err(|e| anyhow::anyhow!("config {}: {e}", config.display()))?;
    let problems = Config::check(&text);
    let file = config.display().to_string();
    let report = json!({
        "config": file,
        "ok": problems.is_empty(),
        "problems": problems,
    });
    out.emit(&report, |_, _| {
        if problems.is_empty() {
            return format!("{file}: no problem found\n");
        }
        let mut table = output::table(["line", "key", "problem"]);
        for problem in &problems {
            table.add_row(vec![
                problem.line.map_or("-".into(), |l| l.to_string()),
                problem.key.clone(),
                problem.message.clone(),
            ]);
        }
        let count = problems.len();
        format!(
            "{file}: {count} problem{}\n{table}\n",
            if count == 1 { "" } else { "s" }
        )
    })?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
