//! `simmask doctor`: every check of [`crate::doctor`] as a table at a
//! terminal or JSON (piped, `--json`), each with a verdict and what to do;
//! exit 1 when one fails.

use std::path::PathBuf;
use std::process::ExitCode;

use time::OffsetDateTime;

use crate::config::Config;
use crate::doctor::{self, Check, System, check};

/// Options of `simmask doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The configuration file.
    #[arg(long, default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Free space wanted for the store, in MiB.
    #[arg(long, default_value_t = 200)]
    pub min_free_mib: u64,
    /// Look at the system under this directory instead of `/` (its
    /// /etc/passwd, /etc/group, udev rules, /proc and /run): for tests and
    /// for checking a mounted SD card.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
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
pub fn run(args: &DoctorArgs, out: super::Output) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let system = System {
        root: args.root.clone(),
        min_free_bytes: args.min_free_mib << 20,
    };
    let checks = super::runtime()?.block_on(checks(&config, &system));
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

/// Runs every check.
pub async fn checks(config: &Config, system: &System) -> Vec<Check> {
    let mut checks = vec![check("config", true, "parsed and valid")];
    let ports = matched_ports(config);
    checks.push(check(
        "ports",
        !ports.is_empty(),
        if ports.is_empty() {
            format!(
                "no device matches {:?}: are the modems plugged in (lsusb), and the udev rules installed (ls /dev/simmask/)?",
                config.modems.ports
            )
        } else {
            ports.join(", ")
        },
    ));
    checks.push(doctor::service_user(system));
    checks.push(doctor::udev_rules(system));
    checks.push(doctor::modemmanager(system, &ports));
    let daemon = doctor::daemon_clock(config).await;
    checks.push(doctor::clock(system, daemon.as_ref()));
    let file = match config.store.sqlite_path() {
        Ok(file) => file,
        // A fleet's database is not this appliance's to check: say so
        // rather than fail every appliance's doctor.
        Err(_) if config.store.backend == crate::store::Backend::Postgres => {
            let url = config.store.url.as_deref().unwrap_or_default();
            checks.push(check(
                "store",
                true,
                format!(
                    "PostgreSQL at {} (the fleet's database): not checked here, see /healthz",
                    crate::store::redacted_url(url)
                ),
            ));
            return checks;
        }
        Err(problem) => {
            checks.push(check("store", false, problem));
            return checks;
        }
    };
    checks.push(doctor::disk(system, file));
    if file.exists() {
        checks.push(doctor::integrity(file));
    }
    let store = match doctor::open_store(file) {
        Ok(store) => store,
        Err(finding) => {
            checks.push(finding);
            return checks;
        }
    };
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
    let storages = store.sim_storages().await.unwrap_or_default();
    match store.sim_statuses().await {
        Err(error) => checks.push(check("sims", false, error.to_string())),
        Ok(statuses) if statuses.is_empty() => checks.push(check(
            "sims",
            false,
            "no SIM has been seen yet: start the service (sudo systemctl enable --now simmask) with the modems plugged in",
        )),
        Ok(statuses) => {
            for status in statuses {
                let live = now - status.updated_at <= max_age;
                checks.extend(doctor::sim(&status, live, storages.get(&status.iccid)));
            }
        }
    }
    checks
}
