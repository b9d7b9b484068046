//! Guards the house as `src/lib.rs` documents it: every module may use only
//! the layers below it, never one above or beside it, and no file of logic
//! grows past what a reader can hold.
//!
//! It reads the crate's sources (every `crate::<module>` path outside
//! comments, including inside `use crate::{…}` groups) rather than trusting
//! a tool, so a new module must be given its place here and in `lib.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may use modules of lower layers only;
/// modules of one layer are siblings and do not use each other.
const LAYERS: &[&[&str]] = &[
    &["clock", "events", "number", "serve"],
    &["logging", "pdu", "profile"],
    &["masking", "modem", "sim"],
    &["bank", "store"],
    &["config", "metrics"],
    &["sms", "voice"],
    &["api"],
    &["mqtt"],
    &["daemon"],
    &["bench", "doctor"],
    &["cli"],
];

/// Logic beyond this many lines (before a file's tests) is split.
const MAX_LOGIC_LINES: usize = 800;

/// Files that are mostly tables (character sets of TS 23.038), allowed long.
const TABLES: &[&str] = &["pdu/indian.rs"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The source without `//` comments (doc links may name any module).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            // A `//` inside a string literal ("http://…") is not a comment.
            let comment = line
                .match_indices("//")
                .map(|(at, _)| at)
                .find(|&at| line[..at].matches('"').count() % 2 == 0);
            comment.map_or(line, |at| &line[..at])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a source refers to through `crate::`.
fn referenced_modules(code: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first name of each
            // top-level entry of the group.
            let mut depth = 0;
            let mut entry_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && (c.is_ascii_lowercase() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()
                            })
                            .collect();
                        modules.push(name);
                        entry_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                modules.push(name);
            }
        }
    }
    modules
}

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = top_module(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            problems.push(format!(
                "src/{module}: not in the documented layers (tests/layering.rs, src/lib.rs)"
            ));
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        for used in referenced_modules(&code) {
            if used == module {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(layer) => problems.push(format!(
                    "{}: `{module}` (layer {own}) uses `{used}` (layer {layer}): only lower layers may be used",
                    file.strip_prefix(&src).unwrap().display()
                )),
                None => problems.push(format!(
                    "{}: uses `crate::{used}`, which is not a documented module",
                    file.strip_prefix(&src).unwrap().display()
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layering is broken:\n{}\n\nmodule graph:\n{}",
        problems.join("\n"),
        graph
            .iter()
            .map(|(from, to)| format!(
                "  {from} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(" ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_map_in_lib_rs_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .map(|name| name.trim_end_matches(';'))
        .collect();
    let layered: Vec<&str> = LAYERS
        .iter()
        .flat_map(|layer| layer.iter().copied())
        .collect();
    let mut declared_sorted = declared.clone();
    declared_sorted.sort_unstable();
    let mut layered_sorted = layered.clone();
    layered_sorted.sort_unstable();
    assert_eq!(declared_sorted, layered_sorted, "lib.rs and LAYERS differ");
    for module in declared {
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "src/lib.rs's map does not describe `{module}`"
        );
    }
}

#[test]
fn no_file_of_logic_is_longer_than_a_reader_can_hold() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut long = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        if TABLES.contains(&relative.as_str())
            || relative.ends_with("/tests.rs")
            || relative.contains("/tests/")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let logic = text
            .lines()
            .take_while(|line| !line.starts_with("#[cfg(test)]"))
            .count();
        if logic > MAX_LOGIC_LINES {
            long.push(format!("src/{relative}: {logic} lines of logic"));
        }
    }
    assert!(
        long.is_empty(),
        "split these along their concerns (at most {MAX_LOGIC_LINES} lines of logic each):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reader_finds_groups_and_paths() {
    let code =
        "use crate::{store::{A, B}, masking::Mode, number};\nlet x = crate::events::Event::X;";
    assert_eq!(
        referenced_modules(code),
        ["store", "masking", "number", "events"]
    );
    assert_eq!(without_comments("a // crate::api\nb"), "a \nb");
    assert_eq!(
        without_comments("let u = \"http://x\"; // crate::api"),
        "let u = \"http://x\"; "
    );
}
