//! `simmask doctor`: checks what an operator would check by hand, each with
//! a verdict and a hint, as JSON.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::Config;
use crate::store::Store;

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

/// Expands the configured port globs (without opening the ports: the daemon
/// may hold them).
pub fn matched_ports(config: &Config) -> Vec<String> {
    let mut ports = Vec::new();
    for pattern in &config.modems.ports {
        match glob::glob(pattern) {
            Ok(paths) => ports.extend(paths.flatten().map(|p| p.display().to_string())),
            Err(_) => ports.push(pattern.clone()),
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

/// `simmask doctor`: every check, as a table or JSON; exit 1 when one fails.
pub fn run(config: &Path, out: super::Output) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let checks = super::runtime()?.block_on(checks(&config));
    out.emit(&checks, |_, _| {
        let mut table = super::output::table(["check", "", "detail"]);
        for check in &checks {
            table.add_row(vec![
                check.name.clone(),
                if check.ok { "ok" } else { "FAIL" }.to_string(),
                check.detail.clone(),
            ]);
        }
        let failed = checks.iter().filter(|c| !c.ok).count();
        let verdict = match failed {
            0 => "Everything looks right.".to_string(),
            1 => "1 problem.".to_string(),
            n => format!("{n} problems."),
        };
        format!("{table}\n{verdict}")
    })?;
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `PRAGMA quick_check` on the database file (read-only: the daemon may be
/// writing it).
fn integrity(path: &Path) -> Check {
    match crate::store::quick_check_file(path) {
        Ok(found) if found.ok => check(
            "integrity",
            true,
            format!("quick_check ok ({} ms)", found.took_ms),
        ),
        Ok(found) => check(
            "integrity",
            false,
            format!(
                "the database file is damaged ({}): stop simmask and restore a backup",
                found.problems.join("; ")
            ),
        ),
        Err(error) => check("integrity", false, format!("cannot be checked: {error}")),
    }
}

/// Runs every check.
pub async fn checks(config: &Config) -> Vec<Check> {
    let mut checks = vec![check("config", true, "parsed and valid")];
    let ports = matched_ports(config);
    checks.push(check(
        "ports",
        !ports.is_empty(),
        if ports.is_empty() {
            format!(
                "no device matches {:?}: are the modems plugged in, and the udev rules of hw/ installed?",
                config.modems.ports
            )
        } else {
            ports.join(", ")
        },
    ));
    // Never created nor migrated here: a missing store is the finding.
    let path = &config.store.path;
    let opened = if path.exists() {
        Store::open_existing(path).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "no database at {}: `simmask run` creates it when it first starts",
            path.display()
        ))
    };
    if path.exists() {
        checks.push(integrity(path));
    }
    match opened {
        Err(error) => checks.push(check("store", false, error)),
        Ok(store) => {
            checks.push(check(
                "store",
                true,
                format!(
                    "{} (schema {})",
                    store.path().display(),
                    crate::store::latest_version()
                ),
            ));
            let now = OffsetDateTime::now_utc();
            let max_age = super::session::status_max_age(config);
            match store.sim_statuses().await {
                Err(error) => checks.push(check("sims", false, error.to_string())),
                Ok(statuses) if statuses.is_empty() => checks.push(check(
                    "sims",
                    false,
                    "no SIM has been seen yet: start `simmask run`",
                )),
                Ok(statuses) => {
                    for status in statuses {
                        let live = status.live(now, max_age);
                        let detail = if live.healthy {
                            format!(
                                "{} on {}, {} dBm, {}",
                                status.state,
                                status.port,
                                status.signal_dbm.map_or("?".into(), |s| s.to_string()),
                                status.registration
                            )
                        } else if status.healthy {
                            format!("last seen {} (is the daemon running?)", status.updated_at)
                        } else {
                            format!("{}: {}", status.state, status.last_error)
                        };
                        checks.push(check(
                            &format!("sim {}", status.iccid),
                            live.healthy,
                            detail,
                        ));
                    }
                }
            }
        }
    }
    checks
}
