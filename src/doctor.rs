//! `simmask doctor`: the installation checked the way an operator would by
//! hand, each finding with what to do about it in plain words.
//!
//! Every check of the machine reads its files under a [`System`] root
//! (`/` on the appliance), so a test can present a good and a broken
//! installation: `/etc/passwd` and `/etc/group` for the service user,
//! `/lib/udev/rules.d` and `/etc/udev/rules.d` for the rules, `/proc` for
//! ModemManager and the ports it holds, `/run/systemd/timesync` for the
//! clock. The store is opened only when it exists: the doctor never creates
//! one. Layer: beside [`crate::bench`], the product looked at from outside.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::{self, Sync};
use crate::config::Config;
use crate::store::{SimStatusRecord, SimStorage, Store};

/// One check's verdict; `detail` says what was found and, when it is not
/// `ok`, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

/// The machine the checks look at.
#[derive(Debug, Clone)]
pub struct System {
    /// `/` on the appliance; a directory shaped like one in tests.
    pub root: PathBuf,
    /// Free space below this on the store's file system is a problem.
    pub min_free_bytes: u64,
}

impl Default for System {
    fn default() -> Self {
        System {
            root: PathBuf::from("/"),
            min_free_bytes: 200 << 20,
        }
    }
}

impl System {
    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// The service user exists and is in `dialout` (the modems' ttys).
pub fn service_user(system: &System) -> Check {
    const FIX: &str = "reinstall the package, or: sudo adduser --system --group simmask && sudo adduser simmask dialout";
    let passwd = std::fs::read_to_string(system.path("/etc/passwd")).unwrap_or_default();
    let Some(user) = passwd.lines().find(|l| l.starts_with("simmask:")) else {
        return check("service user", false, format!("no user simmask: {FIX}"));
    };
    let primary_gid = user.split(':').nth(3).unwrap_or_default();
    let group = std::fs::read_to_string(system.path("/etc/group")).unwrap_or_default();
    let dialout = group.lines().find(|l| l.starts_with("dialout:"));
    let member = dialout.is_some_and(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.get(2) == Some(&primary_gid)
            || fields
                .get(3)
                .is_some_and(|members| members.split(',').any(|m| m == "simmask"))
    });
    if member {
        check("service user", true, "simmask, in dialout")
    } else {
        check(
            "service user",
            false,
            "user simmask is not in group dialout, so it cannot open the modems: sudo adduser simmask dialout, then restart simmask",
        )
    }
}

/// The udev rules are installed (packaged or copied by hand).
pub fn udev_rules(system: &System) -> Check {
    let found = [
        "/etc/udev/rules.d/99-simmask.rules",
        "/lib/udev/rules.d/99-simmask.rules",
        "/usr/lib/udev/rules.d/99-simmask.rules",
    ]
    .into_iter()
    .find(|path| system.path(path).exists());
    match found {
        Some(path) => check("udev rules", true, path),
        None => check(
            "udev rules",
            false,
            "99-simmask.rules is not installed: ModemManager may grab the modems and /dev/simmask/ stays empty; install the package, or: sudo cp hw/99-simmask.rules /etc/udev/rules.d/ && sudo udevadm control --reload-rules && sudo udevadm trigger",
        ),
    }
}

/// ModemManager, if it runs, holds none of the configured ports.
pub fn modemmanager(system: &System, ports: &[String]) -> Check {
    let proc = system.path("/proc");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(&proc).into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "ModemManager" {
            pids.push(entry.path());
        }
    }
    if pids.is_empty() {
        return check("modemmanager", true, "not running");
    }
    let ports: Vec<PathBuf> = ports
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
        .collect();
    let mut held = Vec::new();
    for pid in &pids {
        // Another user's descriptors are readable by root only.
        let Ok(fds) = std::fs::read_dir(pid.join("fd")) else {
            return check(
                "modemmanager",
                false,
                "ModemManager is running and its open ports cannot be read: run doctor with sudo to see whether it holds a modem",
            );
        };
        held.extend(
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| ports.contains(target))
                .map(|target| target.display().to_string()),
        );
    }
    if held.is_empty() {
        check(
            "modemmanager",
            true,
            "running, and keeps away from the modems (the udev rules tell it to)",
        )
    } else {
        check(
            "modemmanager",
            false,
            format!(
                "ModemManager holds {}: it sends its own AT commands and deletes messages; install the udev rules and replug the modems, or stop it: sudo systemctl disable --now ModemManager",
                held.join(", ")
            ),
        )
    }
}

/// The system clock: synchronised, or agreeing with the network's time as
/// the running daemon heard it (`daemon`, from its `/healthz`).
pub fn clock(system: &System, daemon: Option<&clock::ClockStatus>) -> Check {
    let sync = clock::system_sync(&system.root);
    const FIX: &str = "give systemd-timesyncd an NTP server on the LAN (NTP= in /etc/systemd/timesyncd.conf), or set [clock] set_system_clock = true (README, Offline time)";
    match (sync, daemon) {
        (_, Some(status)) if status.suspect => {
            check("clock", false, format!("{}: {FIX}", status.summary))
        }
        (Sync::Synchronized, _) => check("clock", true, "synchronised (systemd-timesyncd)"),
        (_, Some(status)) if status.offset_seconds.is_some() => {
            check("clock", true, status.summary.clone())
        }
        (Sync::Unsynchronized, _) => check(
            "clock",
            false,
            format!(
                "not synchronised, and no network time heard yet: TTLs, expiry and timestamps may be off; {FIX}"
            ),
        ),
        (Sync::Unknown, _) => check(
            "clock",
            true,
            "synchronisation unknown (no systemd-timesyncd); start simmask to compare with the network's time",
        ),
    }
}

/// Room for the store to grow on its file system.
pub fn disk(system: &System, store: &Path) -> Check {
    let dir = store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match nix::sys::statvfs::statvfs(dir) {
        Err(error) => check("disk", false, format!("{}: {error}", dir.display())),
        Ok(stats) => {
            let free = stats.blocks_available() * stats.fragment_size();
            let mib = |bytes: u64| bytes >> 20;
            if free < system.min_free_bytes {
                check(
                    "disk",
                    false,
                    format!(
                        "only {} MiB free for the store in {} (at least {} MiB wanted): the database stops taking messages when the disk is full; free space or move [store] path",
                        mib(free),
                        dir.display(),
                        mib(system.min_free_bytes)
                    ),
                )
            } else {
                check(
                    "disk",
                    true,
                    format!("{} MiB free in {}", mib(free), dir.display()),
                )
            }
        }
    }
}

/// `PRAGMA quick_check` on the database file (read-only: the daemon may be
/// writing it).
pub fn integrity(path: &Path) -> Check {
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
                "the database file is damaged ({}): stop simmask and restore a backup (simmask restore)",
                found.problems.join("; ")
            ),
        ),
        Err(error) => check("integrity", false, format!("cannot be checked: {error}")),
    }
}

/// The store, opened only when it exists.
pub fn open_store(path: &Path) -> Result<Store, Check> {
    if !path.exists() {
        return Err(check(
            "store",
            false,
            format!(
                "no database at {}: `simmask run` (or the service) creates it when it first starts",
                path.display()
            ),
        ));
    }
    Store::open_existing(path).map_err(|error| check("store", false, error.to_string()))
}

/// A SIM's health, registration and storage fill; `live` says whether the
/// running daemon saw it lately.
pub fn sim(status: &SimStatusRecord, live: bool, storage: Option<&SimStorage>) -> Vec<Check> {
    let name = format!("sim {}", status.iccid);
    let mut checks = Vec::new();
    let registered = matches!(status.registration.as_str(), "home" | "roaming");
    checks.push(if !live && status.healthy {
        check(
            &name,
            false,
            format!(
                "last seen {} on {}: is the daemon running? (systemctl status simmask)",
                status.updated_at, status.port
            ),
        )
    } else if status.healthy {
        check(
            &name,
            true,
            format!(
                "{} on {}, {} dBm, {}",
                status.state,
                status.port,
                status.signal_dbm.map_or("?".into(), |s| s.to_string()),
                status.registration
            ),
        )
    } else if !registered && status.state == "up" {
        check(
            &name,
            false,
            format!(
                "not registered ({}): check the antenna, the coverage, and that the carrier activated the SIM",
                if status.registration.is_empty() { "unknown" } else { &status.registration }
            ),
        )
    } else {
        check(
            &name,
            false,
            format!(
                "{}: {}",
                status.state,
                if status.last_error.is_empty() { "no answer" } else { &status.last_error }
            ),
        )
    });
    if let Some(storage) = storage {
        checks.push(storage_fill(&status.iccid, storage));
    }
    checks
}

/// A storage 90 % full or more is a problem: the network holds messages
/// back once it is full.
pub fn storage_fill(iccid: &str, storage: &SimStorage) -> Check {
    let name = format!("sim {iccid} storage");
    let fill = format!("{} {}/{}", storage.storage, storage.used, storage.total);
    if storage.total > 0 && storage.used * 10 >= storage.total * 9 {
        check(
            &name,
            false,
            format!(
                "{fill}: nearly full, and the network holds new messages back when it is full; messages are deleted once relayed, so look at the lines above for why they are not"
            ),
        )
    } else {
        check(&name, true, fill)
    }
}

/// The running daemon's view of the clock, from its `/healthz` (no token
/// needed); `None` when no daemon answers on `[api] listen`.
pub async fn daemon_clock(config: &Config) -> Option<clock::ClockStatus> {
    #[derive(serde::Deserialize)]
    struct Health {
        clock: clock::ClockStatus,
    }
    let url = format!(
        "http://{}/healthz",
        config.api.listen.replace("0.0.0.0", "127.0.0.1")
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .ok()?;
    let health: Health = client.get(url).send().await.ok()?.json().await.ok()?;
    Some(health.clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(used: u32, total: u32) -> SimStorage {
        SimStorage {
            storage: "SM".into(),
            used,
            total,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_storage_nine_tenths_full_is_a_problem() {
        assert!(storage_fill("1", &storage(0, 50)).ok);
        assert!(storage_fill("1", &storage(44, 50)).ok);
        let full = storage_fill("1", &storage(45, 50));
        assert!(!full.ok);
        assert!(full.detail.starts_with("SM 45/50: nearly full"));
        assert!(storage_fill("1", &storage(0, 0)).ok);
    }
}
