//! `/api/v1/interactions`: every SMS and call in a time range, across
//! sessions, as CSV or JSON lines. The answer is streamed a page of
//! [`EXPORT_PAGE`] rows at a time, each page read only when the client has
//! taken the one before: memory stays bounded whatever the range. Numbers
//! are masked and bodies left out for viewers; bodies are there for admins
//! while retention still holds them. `simmask export` writes the same rows.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::store::{EXPORT_PAGE, ExportCursor, ExportedInteraction, Store};

/// What an erased or forgotten number shows as.
const ERASED: &str = "[erased]";

/// The two export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// One exported interaction (a CSV line, or a JSON line).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportRow {
    pub id: i64,
    pub session_id: Option<String>,
    /// The proxy's own number.
    pub proxy_number: Option<String>,
    /// `sms` or `call`.
    pub kind: String,
    /// The sending or calling participant's position (0 or 1) in the session.
    pub from_participant: Option<u8>,
    /// Who sent or called: masked for viewers, `[erased]` once erased.
    pub from: Option<String>,
    /// Who it went to: masked for viewers, `[erased]` once erased.
    pub to: Option<String>,
    pub status: String,
    pub reason: String,
    pub outcome: Option<String>,
    pub parts: u32,
    pub incomplete: bool,
    pub created_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    /// The text: admins only, until retention erases it.
    pub body: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl ExportRow {
    /// The row as `show_numbers` allows: real numbers and bodies, or masked
    /// numbers and no bodies.
    pub fn new(record: ExportedInteraction, show_numbers: bool) -> Self {
        let number = |n: Option<crate::number::PhoneNumber>, known: bool| match n {
            Some(n) if show_numbers => Some(n.e164().to_string()),
            Some(n) => Some(n.masked()),
            None if known => Some(ERASED.to_string()),
            None => None,
        };
        // A session's participants, or an out-of-session sender, were known
        // once: an empty field now means they were erased.
        let in_session = record.session_id.is_some();
        let inbound_stranger = record.session_id.is_none() && record.from_position.is_none();
        Self {
            id: record.id,
            from: number(record.from_number, in_session || inbound_stranger),
            to: number(record.to_number, in_session),
            session_id: record.session_id,
            proxy_number: record.proxy_number,
            kind: record.kind,
            from_participant: record.from_position,
            status: record.status,
            reason: record.reason,
            outcome: record.outcome,
            parts: record.parts,
            incomplete: record.incomplete,
            created_at: rfc3339(record.created_ms),
            answered_at: record.answered_ms.map(rfc3339),
            ended_at: record.ended_ms.map(rfc3339),
            duration_seconds: record.duration_ms.map(|ms| ms as f64 / 1000.0),
            body: record.body.filter(|_| show_numbers),
        }
    }
}

/// Whether `cell` is a phone number in E.164 (`+` and 1 to 15 digits): a
/// spreadsheet reads it as a number, never as a formula, and a program
/// reading the CSV needs it as it is.
fn is_e164(cell: &str) -> bool {
    cell.strip_prefix('+').is_some_and(|digits| {
        (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `cell` as a spreadsheet shows it rather than runs it (OWASP, "CSV
/// Injection"): a cell that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return, also after spaces (which some importers trim), gets a
/// `'` in front, so `=HYPERLINK(…)` in an SMS is text. A number in E.164
/// is left as it is.
fn neutralised(cell: String) -> String {
    let first = cell.trim_start_matches(' ').chars().next();
    let formula = matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r'));
    if formula && !is_e164(&cell) {
        format!("'{cell}")
    } else {
        cell
    }
}

impl ExportRow {
    /// The row with every text cell [`neutralised`], for CSV: bodies and
    /// reasons are anyone's text, and even a masked number (`+44****001`)
    /// would be read as a sum.
    fn for_spreadsheet(&self) -> ExportRow {
        let cell = |text: &String| neutralised(text.clone());
        let optional = |text: &Option<String>| text.clone().map(neutralised);
        ExportRow {
            id: self.id,
            session_id: optional(&self.session_id),
            proxy_number: optional(&self.proxy_number),
            kind: cell(&self.kind),
            from_participant: self.from_participant,
            from: optional(&self.from),
            to: optional(&self.to),
            status: cell(&self.status),
            reason: cell(&self.reason),
            outcome: optional(&self.outcome),
            parts: self.parts,
            incomplete: self.incomplete,
            created_at: cell(&self.created_at),
            answered_at: optional(&self.answered_at),
            ended_at: optional(&self.ended_at),
            duration_seconds: self.duration_seconds,
            body: optional(&self.body),
        }
    }
}

/// Encodes one page; the CSV header goes before the first. CSV cells are
/// [`neutralised`]; JSON lines are not read by spreadsheets and stay as
/// they are.
fn encode(rows: &[ExportRow], format: ExportFormat, header: bool) -> Result<Vec<u8>, String> {
    match format {
        ExportFormat::Jsonl => {
            let mut out = Vec::with_capacity(rows.len() * 256);
            for row in rows {
                serde_json::to_writer(&mut out, row).map_err(|e| e.to_string())?;
                out.push(b'\n');
            }
            Ok(out)
        }
        ExportFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(header)
                .from_writer(Vec::with_capacity(rows.len() * 200));
            if header && rows.is_empty() {
                writer.write_record(CSV_HEADER).map_err(|e| e.to_string())?;
            }
            for row in rows {
                writer
                    .serialize(row.for_spreadsheet())
                    .map_err(|e| e.to_string())?;
            }
            writer.into_inner().map_err(|e| e.to_string())
        }
    }
}

/// The CSV columns, in [`ExportRow`]'s order.
const CSV_HEADER: &[&str] = &[
    "id",
    "session_id",
    "proxy_number",
    "kind",
    "from_participant",
    "from",
    "to",
    "status",
    "reason",
    "outcome",
    "parts",
    "incomplete",
    "created_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "body",
];

/// What an export covers.
#[derive(Debug, Clone)]
pub struct ExportRange {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub format: ExportFormat,
    /// Real numbers and bodies (admins), or masked numbers and no bodies.
    pub show_numbers: bool,
}

struct Pages {
    store: Store,
    range: ExportRange,
    cursor: Option<ExportCursor>,
    first: bool,
    done: bool,
}

/// The export as a stream of encoded pages, each read from the store only
/// when asked for.
pub fn export_stream(
    store: Store,
    range: ExportRange,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let pages = Pages {
        store,
        range,
        cursor: None,
        first: true,
        done: false,
    };
    futures::stream::unfold(pages, |mut pages| async move {
        if pages.done {
            return None;
        }
        let page = match pages
            .store
            .interactions_between(pages.range.from, pages.range.to, pages.cursor)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "export: cannot read interactions; the export is cut short");
                pages.done = true;
                return Some((Err(std::io::Error::other(error.to_string())), pages));
            }
        };
        pages.done = page.len() < EXPORT_PAGE;
        pages.cursor = page.last().map(|r| (r.created_ms, r.id)).or(pages.cursor);
        let rows: Vec<ExportRow> = page
            .into_iter()
            .map(|r| ExportRow::new(r, pages.range.show_numbers))
            .collect();
        let encoded = encode(&rows, pages.range.format, pages.first)
            .map(Bytes::from)
            .map_err(std::io::Error::other);
        pages.first = false;
        Some((encoded, pages))
    })
}

/// Reads `2026-03-01T00:00:00Z` (RFC 3339) or `2026-03-01` (midnight UTC).
pub fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .map(|date| date.midnight().assume_utc())
        .map_err(|_| {
            format!("{text:?} is neither an RFC 3339 time (2026-03-01T08:00:00Z) nor a date (2026-03-01)")
        })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Start of the range, included: RFC 3339 or a date (midnight UTC).
    pub from: Option<String>,
    /// End of the range, excluded; now if absent.
    pub to: Option<String>,
    /// `csv` (default) or `jsonl`.
    #[param(value_type = Option<String>)]
    pub format: Option<ExportFormat>,
}

impl ExportQuery {
    /// The range asked for, or a precise 422.
    fn range(self, show_numbers: bool) -> Result<ExportRange, ApiError> {
        let invalid = |m: String| ApiError::unprocessable("invalid_range", m);
        let from = self
            .from
            .ok_or_else(|| invalid("from is required (e.g. from=2026-03-01)".into()))?;
        let from = parse_instant(&from).map_err(|e| invalid(format!("from: {e}")))?;
        let to = match self.to {
            Some(to) => parse_instant(&to).map_err(|e| invalid(format!("to: {e}")))?,
            None => OffsetDateTime::now_utc(),
        };
        if to <= from {
            return Err(invalid("to must be after from".into()));
        }
        Ok(ExportRange {
            from,
            to,
            format: self.format.unwrap_or(ExportFormat::Csv),
            show_numbers,
        })
    }
}

/// A file name for a range: dates only, never a number.
pub fn file_name(range: &ExportRange) -> String {
    let day = |t: OffsetDateTime| t.date().to_string();
    format!(
        "simmask-interactions-{}-{}.{}",
        day(range.from),
        day(range.to),
        range.format.extension()
    )
}

/// Every SMS and call created in `[from, to)`, across sessions, oldest
/// first, streamed as CSV (default) or JSON lines. Viewers get numbers
/// masked and no bodies.
#[utoipa::path(get, path = "/api/v1/interactions", params(ExportQuery),
    responses(
        (status = 200, description = "CSV (text/csv) or JSON lines (application/x-ndjson) of ExportRow",
            content_type = "text/csv"),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn interactions(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let range = query.range(caller.is_admin())?;
    tracing::info!(by = %caller.name, from = %range.from, to = %range.to, "interactions exported");
    let disposition = format!("attachment; filename=\"{}\"", file_name(&range));
    let content_type = range.format.content_type();
    let body = Body::from_stream(export_stream(state.store.clone(), range));
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::PhoneNumber;

    fn record(body: Option<&str>) -> ExportedInteraction {
        ExportedInteraction {
            id: 7,
            session_id: Some("ses_1".into()),
            proxy_number: Some("+447000000000".into()),
            kind: "sms".into(),
            from_position: Some(0),
            from_number: Some(PhoneNumber::from_e164("+447911000001").unwrap()),
            to_number: None,
            status: "sent".into(),
            reason: String::new(),
            outcome: None,
            parts: 1,
            incomplete: false,
            body: body.map(str::to_string),
            created_ms: 1_764_072_000_000,
            answered_ms: None,
            ended_ms: None,
            duration_ms: None,
        }
    }

    #[test]
    fn viewers_get_masked_numbers_and_no_bodies() {
        let row = ExportRow::new(record(Some("hello, \"world\"")), false);
        assert_eq!(row.from.as_deref(), Some("+44*******001"));
        assert_eq!(row.to.as_deref(), Some(ERASED));
        assert_eq!(row.body, None);
        let admin = ExportRow::new(record(Some("hello, \"world\"")), true);
        assert_eq!(admin.from.as_deref(), Some("+447911000001"));
        let csv = String::from_utf8(encode(&[admin], ExportFormat::Csv, true).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap(), CSV_HEADER.join(","));
        assert!(
            lines.next().unwrap().ends_with(",\"hello, \"\"world\"\"\""),
            "{csv}"
        );
        let empty = String::from_utf8(encode(&[], ExportFormat::Csv, true).unwrap()).unwrap();
        assert_eq!(empty.trim_end(), CSV_HEADER.join(","));
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text_and_numbers_stay_numbers() {
        for (text, shown) in [
            (
                "=HYPERLINK(\"http://x.example\",\"hi\")",
                "'=HYPERLINK(\"http://x.example\",\"hi\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("  =1+1", "'  =1+1"),
            ("+44*******001", "'+44*******001"),
            ("+", "'+"),
            ("+4479110000012345", "'+4479110000012345"),
            ("+447911000001", "+447911000001"),
            ("hello = world", "hello = world"),
            ("", ""),
            ("ses_1", "ses_1"),
        ] {
            assert_eq!(neutralised(text.to_string()), shown, "{text:?}");
        }
        let mut record = record(Some("=1+1"));
        record.reason = "-cme error".into();
        let admin = ExportRow::new(record.clone(), true);
        let csv = encode(&[admin], ExportFormat::Csv, true).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let headers = reader.headers().unwrap().clone();
        let row = reader.records().next().unwrap().unwrap();
        let field = |name: &str| &row[headers.iter().position(|h| h == name).unwrap()];
        assert_eq!(field("body"), "'=1+1");
        assert_eq!(field("reason"), "'-cme error");
        assert_eq!(field("from"), "+447911000001", "E.164 stays usable");
        assert_eq!(field("proxy_number"), "+447000000000");
        // Viewers' masked numbers are text too.
        let viewer = encode(
            &[ExportRow::new(record.clone(), false)],
            ExportFormat::Csv,
            true,
        )
        .unwrap();
        let viewer = String::from_utf8(viewer).unwrap();
        assert!(viewer.contains(",'+44*******001,"), "{viewer}");
        // JSON lines keep the text as it was.
        let jsonl = encode(&[ExportRow::new(record, true)], ExportFormat::Jsonl, false).unwrap();
        let row: serde_json::Value = serde_json::from_slice(&jsonl).unwrap();
        assert_eq!(row["body"], "=1+1");
    }

    #[test]
    fn instants_are_rfc3339_or_dates() {
        assert_eq!(
            parse_instant("2026-03-01").unwrap(),
            time::macros::datetime!(2026-03-01 00:00 UTC)
        );
        assert_eq!(
            parse_instant("2026-03-01T08:30:00+01:00").unwrap(),
            time::macros::datetime!(2026-03-01 07:30 UTC)
        );
        assert!(
            parse_instant("yesterday")
                .unwrap_err()
                .contains("yesterday")
        );
    }
}
