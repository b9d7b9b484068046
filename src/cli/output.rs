//! How a command speaks: to a person at a terminal, aligned tables with
//! units and states in words, participants' numbers masked as a viewer
//! sees them (unless `--show-numbers`); to a program (`--json`, or stdout
//! not a terminal), the JSON it has always printed, byte for byte.

use std::io::IsTerminal;
use std::process::ExitCode;

use comfy_table::{LineStyle, Table, TableStyle, presets};

/// Columns aligned, one rule under the header, nothing else.
const PLAIN: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));
use serde::Serialize;
use serde_json::Value;

use crate::number::PhoneNumber;

/// Where a command's output goes, and what it may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// JSON for programs rather than text for people.
    pub json: bool,
    /// Participants' real numbers in text output (the shell has the
    /// configuration, hence an admin's rights; the default hides them as
    /// from a viewer, so a screen or a screenshot shares none).
    pub show_numbers: bool,
}

impl Output {
    /// JSON with `--json` or when stdout is not a terminal.
    pub fn detect(json: bool, show_numbers: bool) -> Self {
        Self {
            json: json || !std::io::stdout().is_terminal(),
            show_numbers,
        }
    }

    /// Prints `value` as pretty JSON, or `human(value)` for a person.
    pub fn emit(
        &self,
        value: &impl Serialize,
        human: impl FnOnce(&Value, &Output) -> String,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            let value = serde_json::to_value(value)?;
            print!("{}", with_newline(human(&value, self)));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// A participant's number as this output may show it.
    pub fn number(&self, number: &str) -> String {
        if self.show_numbers || !number.starts_with('+') {
            return number.to_string();
        }
        PhoneNumber::from_e164(number)
            .map(|n| n.masked())
            .unwrap_or_else(|_| crate::number::redact(number))
    }
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A table with a header line and aligned columns, no heavy borders.
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table.load_style(PLAIN).set_header(headers);
    table
}

/// Two columns, label and value, for one object.
pub fn pairs<'a>(rows: impl IntoIterator<Item = (&'a str, String)>) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for (label, value) in rows {
        table.add_row(vec![format!("{label}:"), value]);
    }
    table
}

/// A JSON field as text: strings bare, null as `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

/// Signal in dBm with a word for it.
pub fn signal(value: &Value) -> String {
    match value.as_i64() {
        None => "unknown".into(),
        Some(dbm) => {
            let word = match dbm {
                d if d >= -73 => "excellent",
                d if d >= -83 => "good",
                d if d >= -93 => "fair",
                d if d >= -105 => "poor",
                _ => "very poor",
            };
            format!("{dbm} dBm ({word})")
        }
    }
}

/// `2 d 3 h`, `5 h 07 min`, `42 s`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match seconds {
        s if s >= 86_400 => format!("{days} d {hours} h"),
        s if s >= 3600 => format!("{hours} h {minutes:02} min"),
        s if s >= 60 => format!("{minutes} min {:02} s", s % 60),
        s => format!("{s} s"),
    }
}

/// `512 B`, `3.4 KiB`, `12.0 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An RFC 3339 time as `2026-11-25 12:00:05` (UTC, seconds).
pub fn when(value: &Value) -> String {
    let Some(text) = value.as_str() else {
        return "-".into();
    };
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(at) => {
            let format =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            at.to_offset(time::UtcOffset::UTC)
                .format(&format)
                .map(|t| t + " UTC")
                .unwrap_or_else(|_| text.to_string())
        }
        Err(_) => text.to_string(),
    }
}

/// Any JSON value for a person: an object as label/value pairs, an array of
/// objects as a table, nested values as compact JSON.
pub fn generic(value: &Value) -> String {
    match value {
        Value::Object(map) => pairs(map.iter().map(|(k, v)| (k.as_str(), cell(v)))).to_string(),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            let headers: Vec<String> = items[0]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let mut table = table(headers.iter().map(|h| h.replace('_', " ")));
            for item in items {
                table.add_row(headers.iter().map(|h| cell(&item[h])).collect::<Vec<_>>());
            }
            table.to_string()
        }
        Value::Array(items) if items.is_empty() => "(none)".into(),
        other => cell(other),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_as_words() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(3 * 3600 + 7 * 60), "3 h 07 min");
        assert_eq!(duration(2 * 86_400 + 5 * 3600), "2 d 5 h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 200_000), "3.2 MiB");
        assert_eq!(signal(&Value::from(-71)), "-71 dBm (excellent)");
        assert_eq!(signal(&Value::Null), "unknown");
        assert_eq!(
            when(&Value::from("2026-11-25T12:00:05+01:00")),
            "2026-11-25 11:00:05 UTC"
        );
    }

    #[test]
    fn numbers_are_masked_unless_asked_for() {
        let masked = Output {
            json: false,
            show_numbers: false,
        };
        assert_eq!(masked.number("+447911123456"), "+44*******456");
        assert_eq!(masked.number("[erased]"), "[erased]");
        let shown = Output {
            json: false,
            show_numbers: true,
        };
        assert_eq!(shown.number("+447911123456"), "+447911123456");
    }
}
