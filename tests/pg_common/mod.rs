//! A real PostgreSQL for the tests, started by the test itself: Debian's
//! `postgresql` binaries (`/usr/lib/postgresql/*/bin`, or `SIMMASK_PG_BIN`),
//! `initdb` into a temporary directory, `pg_ctl` on a free port with its
//! unix socket in that directory. `initdb` refuses to run as root: as root
//! the server runs as the package's `postgres` user, which owns the
//! directory. The server is stopped and the directory removed when the
//! guard drops, a panicking test included.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use simmask::number::PhoneNumber;
use simmask::store::{LiveSim, Location, Store};
use time::OffsetDateTime;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`, newest version first.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIMMASK_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL is not installed: `apt-get install postgresql` (scripts/test installs it)",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// A new server with an empty cluster (user `postgres`, trust auth on
    /// 127.0.0.1 only).
    pub fn start() -> Self {
        let as_postgres = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").unwrap().uid() == 0
        };
        let dir = tempfile::Builder::new()
            .prefix("simmask-pg")
            .tempdir()
            .unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the data directory to postgres");
        }
        let mut server = Self {
            dir,
            bin: bin_dir(),
            port: free_port(),
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // The free port can be taken by another test's server between
        // choosing it and binding it: then the server is started on another.
        for _ in 0..4 {
            match server.try_start() {
                Ok(()) => return server,
                Err(problem)
                    if problem.contains("could not bind") || problem.contains("in use") =>
                {
                    server.port = free_port();
                }
                Err(problem) => panic!("{problem}"),
            }
        }
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        if let Err(problem) = self.try_run(tool, args) {
            panic!("{problem}");
        }
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().unwrap();
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits until
    /// it accepts connections.
    pub fn start_again(&self) {
        if let Err(problem) = self.try_start() {
            panic!("{problem}");
        }
    }

    /// Starts the server; on failure, says why with the server's log.
    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.try_run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map_err(|problem| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{problem}\nserver log:\n{log}")
        })
    }

    /// Stops the server at once (as a crash or a pulled cable would).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// The url of the database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new empty database and returns its url.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        self.url(name)
    }

    /// A plain client on `url`, for raw SQL.
    pub async fn client(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

/// Turns the SQLite appliance configuration at `config` (as the tests'
/// `write_config` writes it) into one on the fleet's database at `url`:
/// `[store] path` goes (refused beside `backend = "postgres"`).
pub fn store_in_postgres(config: &Path, url: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("path = "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "[store]\n",
            &format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        );
    std::fs::write(config, text).unwrap();
}

impl Postgres {
    /// Turns TLS on with the certificate `cert_pem` and its key `key_pem`
    /// (PEM), restarting the server: `ssl = on` in its configuration, the
    /// files in its data directory as PostgreSQL wants them (the server's
    /// own, mode 0600).
    pub fn enable_ssl(&self, cert_pem: &str, key_pem: &str) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data();
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if self.as_postgres {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(status.success(), "chown {name} to postgres");
            }
        }
        let conf = data.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf).unwrap() + "\nssl = on\n";
        std::fs::write(&conf, text).unwrap();
        self.stop();
        self.start_again();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        // Best effort: already stopped is fine.
        let _ = command
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// How long an appliance of the store tests may go without a heartbeat.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

/// The ICCID of test SIM `n`.
pub fn iccid(n: u32) -> String {
    format!("89440000000000000{n:02}")
}

/// The proxy number of test SIM `n`.
pub fn proxy(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4470000{n:05}")).unwrap()
}

/// SIMs `sims` as allocation sees healthy, voice-capable ones.
pub fn healthy(sims: &[u32]) -> Vec<LiveSim> {
    sims.iter()
        .map(|n| LiveSim {
            iccid: iccid(*n),
            healthy: true,
            signal_dbm: Some(-70),
            voice_capable: true,
        })
        .collect()
}

/// The store of appliance `appliance` on the fleet database at `url`.
pub async fn connect(url: &str, appliance: &str) -> Store {
    Store::connect(
        &Location::Postgres(url.into()),
        appliance,
        HEARTBEAT_TIMEOUT,
    )
    .await
    .unwrap()
}

/// Puts SIMs `sims` in the pool as held by `store`'s appliance.
pub async fn add_sims(store: &Store, sims: &[u32]) {
    for n in sims {
        store
            .upsert_sim(
                iccid(*n),
                proxy(*n),
                format!("imsi{n}"),
                None,
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
    }
}
