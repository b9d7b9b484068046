//! `simmask export interactions`: every SMS and call in a time range, as
//! CSV or JSON lines, written as it is read (a page at a time, whatever the
//! range). Participants' numbers are masked and bodies left out unless
//! `--show-numbers`, as for an API viewer. On a fleet it reads the fleet's
//! database: every appliance's interactions.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use time::OffsetDateTime;

use super::{DEFAULT_CONFIG, Output, output};
use crate::api::export::{ExportFormat, ExportRange, export_stream, parse_instant};

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Interactions across sessions in a time range, as CSV or JSON lines.
    Interactions {
        /// Start of the range, included: `2026-03-01` (midnight UTC) or RFC 3339.
        #[arg(long)]
        from: String,
        /// End of the range, excluded (default: now).
        #[arg(long)]
        to: Option<String>,
        /// `csv` or `jsonl`.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn run(command: ExportCommand, out: Output) -> anyhow::Result<ExitCode> {
    let ExportCommand::Interactions {
        from,
        to,
        format,
        out: file,
        config,
    } = command;
    let from = parse_instant(&from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = match to {
        Some(to) => parse_instant(&to).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
        None => OffsetDateTime::now_utc(),
    };
    anyhow::ensure!(to > from, "--to must be after --from");
    let range = ExportRange {
        from,
        to,
        format,
        show_numbers: out.show_numbers,
    };
    let runtime = super::runtime()?;
    let (_, store) = runtime.block_on(super::connect_store(&config))?;
    let mut sink: Box<dyn Write> = match &file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("{}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut written = 0u64;
    runtime.block_on(async {
        let mut pages = std::pin::pin!(export_stream(store, range));
        while let Some(page) = pages.next().await {
            let page = page.context("reading the store")?;
            written += page.len() as u64;
            sink.write_all(&page).context("writing the export")?;
        }
        sink.flush().context("writing the export")?;
        anyhow::Ok(())
    })?;
    drop(sink);
    if let Some(path) = file {
        let summary = serde_json::json!({"export": path.display().to_string(), "bytes": written});
        out.emit(&summary, |_, _| {
            format!(
                "Exported to {} ({}).",
                path.display(),
                output::bytes(written)
            )
        })?;
    }
    Ok(ExitCode::SUCCESS)
}
