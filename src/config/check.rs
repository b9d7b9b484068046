//! `simmask config check`: every problem of a configuration, each with its
//! key and line. The TOML is read again after each structural error with
//! the offending line left out, so one typo does not hide the next; then
//! the values are checked all at once.

use serde::Serialize;

use super::Config;

/// One problem of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key, dotted (`modems.poll_interval_seconds`).
    pub key: String,
    /// Its line in the file, when it is there.
    pub line: Option<usize>,
    pub message: String,
}

/// Structural errors looked at before giving up on finding more.
const MAX_PROBLEMS: usize = 100;

pub fn check(text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    while problems.len() < MAX_PROBLEMS {
        let current = lines.join("\n");
        let error = match toml::from_str::<Config>(&current) {
            Ok(config) => {
                problems.extend(config.problems().into_iter().map(|(key, message)| Problem {
                    line: line_of_key(text, &key),
                    key,
                    message,
                }));
                break;
            }
            Err(error) => error,
        };
        let span = error.span();
        let line = span.clone().map(|span| line_at(&current, span.start));
        let message = error.message().trim().to_string();
        // An error spanning the whole file is about the top level.
        let whole_file = span.is_some_and(|s| s.start == 0 && s.end >= current.trim_end().len());
        let here = line.filter(|_| !whole_file).and_then(|l| key_at(&lines, l));
        let key = missing_key(&message, here.clone())
            .or(here)
            .unwrap_or_default();
        // A missing field, or an error on a table header, cannot be left
        // out without misreading what follows: the rest is not checked.
        let skippable = !message.starts_with("missing field")
            && line.is_some_and(|l| !lines[l - 1].trim_start().starts_with('['));
        problems.push(Problem { key, line, message });
        match line {
            Some(l) if skippable => lines[l - 1] = format!("# {}", lines[l - 1]),
            _ => break,
        }
    }
    // In file order; problems on no line (missing sections) first.
    problems.sort_by_key(|p| p.line);
    problems
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The table a header line opens (`[a.b]`, `[[sims]]`).
fn header(line: &str) -> Option<String> {
    let line = line.trim();
    if !line.starts_with('[') {
        return None;
    }
    let end = line.find(']').unwrap_or(line.len());
    Some(line[..end].trim_start_matches('[').trim().replace('"', ""))
}

/// The key a `key = value` line sets.
fn assigned(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(
        key.split('.')
            .map(|part| part.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn dotted(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// The dotted key written on line `number` (1-based), or the table a header opens.
fn key_at(lines: &[String], number: usize) -> Option<String> {
    let mut table = String::new();
    for line in lines.iter().take(number) {
        if let Some(name) = header(line) {
            table = name;
        }
    }
    let line = lines.get(number.checked_sub(1)?)?;
    if header(line).is_some() {
        return Some(table);
    }
    assigned(line).map(|key| dotted(&table, &key))
}

/// `missing field `listen`` in table `api` → `api.listen`.
fn missing_key(message: &str, table: Option<String>) -> Option<String> {
    let field = message.strip_prefix("missing field `")?.split('`').next()?;
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{field}"),
        _ => field.to_string(),
    })
}

/// The line where `key` is set (or its table opened), if it is in the text.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut table_line = None;
    for (index, line) in text.lines().enumerate() {
        if let Some(name) = header(line) {
            table = name;
            if key == table {
                table_line = table_line.or(Some(index + 1));
            }
            continue;
        }
        if let Some(assigned) = assigned(line) {
            let full = dotted(&table, &assigned);
            if full == key || key.starts_with(&format!("{full}.")) {
                return Some(index + 1);
            }
        }
    }
    table_line.or_else(|| {
        // A key whose table is there but not the key itself (a default
        // that is refused by another value): the table's line.
        let (parent, _) = key.rsplit_once('.')?;
        line_of_key(text, parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[api]\nlisten = \"127.0.0.1:8080\"\n\n[store]\npath = \"/tmp/s.db\"\n\n[modems]\nports = [\"/dev/ttyUSB*\"]\n";

    #[test]
    fn a_valid_file_has_no_problem() {
        assert_eq!(check(MINIMAL), []);
    }

    #[test]
    fn every_problem_is_named_with_its_key_and_line() {
        let text = format!(
            "{MINIMAL}poll_intervall = 5\nbaud = \"fast\"\n\n[sms]\nper_day = 0\n\n[numbers]\ndefault_region = \"XX\"\n"
        );
        let problems = check(&text);
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [
                ("modems.poll_intervall", Some(9)),
                ("modems.baud", Some(10)),
                ("sms.per_day", Some(13)),
                ("numbers.default_region", Some(16)),
            ],
            "{problems:#?}"
        );
        assert!(
            problems[0].message.contains("unknown field"),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_missing_key_is_named_and_stops_the_check() {
        let text = MINIMAL.replace("listen = \"127.0.0.1:8080\"\n", "");
        let problems = check(&text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].key, "api.listen");
        assert_eq!(problems[0].line, Some(1));
    }

    #[test]
    fn a_missing_section_is_named() {
        let text = MINIMAL.replace("[api]\nlisten = \"127.0.0.1:8080\"\n", "");
        let problems = check(&text);
        assert_eq!(problems[0].key, "api", "{problems:#?}");
    }

    #[test]
    fn a_syntax_error_is_named_with_its_line() {
        let text = format!("{MINIMAL}[sms\nper_day = 3\n");
        let problems = check(&text);
        assert_eq!(problems[0].line, Some(9), "{problems:#?}");
    }
}
