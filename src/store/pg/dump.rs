//! `simmask backup` and `simmask restore` on a fleet: PostgreSQL's own
//! tools, `pg_dump` in its custom format (one consistent snapshot, taken
//! while the daemons keep writing) and `pg_restore` (into an empty database
//! only, in one transaction). They run as child processes; the connection
//! reaches them through libpq's environment (`PGHOST`, `PGPASSWORD`…),
//! never on their command line where `ps` would show it, and the password
//! is never printed.
//!
//! The tools are looked for in `SIMMASK_PG_BIN` when set (a directory),
//! else in Debian's `/usr/lib/postgresql/<major>/bin` and the `PATH`; the
//! newest found is used, and refused when older than the server (pg_dump
//! cannot read a newer server's catalogue).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::tls::{RootCert, Tls};
use super::{pg_error, redacted, schema};
use crate::store::StoreError;

/// A PostgreSQL client tool found on this machine.
#[derive(Debug, Clone)]
struct Tool {
    path: PathBuf,
    major: u32,
    version: String,
}

fn tool_error(message: impl Into<String>) -> StoreError {
    StoreError::PgTool(message.into())
}

/// The major version in `pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`.
fn major_of(version_line: &str) -> Option<(u32, String)> {
    let version = version_line
        .split_whitespace()
        .find(|word| word.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = version.split(['.', '-']).next()?.parse().ok()?;
    Some((major, version.to_string()))
}

/// Every `name` on this machine that answers `--version`, newest first.
fn candidates(name: &str) -> Vec<Tool> {
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("SIMMASK_PG_BIN") {
        paths.push(PathBuf::from(dir).join(name));
    } else {
        if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
            for entry in entries.flatten() {
                paths.push(entry.path().join("bin").join(name));
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
        }
    }
    let mut found: Vec<Tool> = paths
        .into_iter()
        .filter(|path| path.is_file())
        .filter_map(|path| {
            let output = Command::new(&path)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let line = String::from_utf8_lossy(&output.stdout).to_string();
            let (major, version) = major_of(&line)?;
            Some(Tool {
                path,
                major,
                version,
            })
        })
        .collect();
    found.sort_by_key(|tool| std::cmp::Reverse(tool.major));
    found
}

/// The newest `name`, refused when older than the server's `server_major`.
fn find_tool(name: &str, server_major: u32) -> Result<Tool, StoreError> {
    let found = candidates(name);
    let Some(best) = found.first() else {
        let place = match std::env::var_os("SIMMASK_PG_BIN") {
            Some(dir) => format!("in SIMMASK_PG_BIN ({})", Path::new(&dir).display()),
            None => "in /usr/lib/postgresql/*/bin or the PATH".into(),
        };
        return Err(tool_error(format!(
            "{name} is not installed ({place}): install PostgreSQL's client tools of \
             version {server_major} or newer (Debian: apt-get install postgresql-client-{server_major})"
        )));
    };
    if best.major < server_major {
        return Err(tool_error(format!(
            "{name} {} ({}) is older than the database server (PostgreSQL {server_major}) and \
             cannot {} it: install postgresql-client-{server_major} or newer",
            best.version,
            best.path.display(),
            if name == "pg_dump" {
                "dump"
            } else {
                "restore into"
            }
        )));
    }
    Ok(best.clone())
}

/// libpq's environment for the connection `config`: the tools connect
/// with it and nothing of it is on their command line. Inherited `PG*`
/// variables are cleared first, so only the configured database is used.
fn libpq_env(config: &tokio_postgres::Config, tls: &Tls) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&'static str, OsString)> = vec![("PGSSLMODE", tls.mode.as_str().into())];
    match &tls.root {
        Some(RootCert::File(path)) => env.push(("PGSSLROOTCERT", path.into())),
        Some(RootCert::System) => env.push(("PGSSLROOTCERT", "system".into())),
        None => {}
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        env.push(("PGHOST", hosts.join(",").into()));
    }
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    if !addrs.is_empty() {
        env.push(("PGHOSTADDR", addrs.join(",").into()));
    }
    let ports: Vec<String> = config.get_ports().iter().map(ToString::to_string).collect();
    if !ports.is_empty() {
        env.push(("PGPORT", ports.join(",").into()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.into()));
    }
    if let Some(password) = config.get_password() {
        use std::os::unix::ffi::OsStringExt;
        env.push(("PGPASSWORD", OsString::from_vec(password.to_vec())));
    }
    if let Some(db) = config.get_dbname() {
        env.push(("PGDATABASE", db.into()));
    }
    if let Some(options) = config.get_options() {
        env.push(("PGOPTIONS", options.into()));
    }
    if let Some(timeout) = config.get_connect_timeout() {
        env.push((
            "PGCONNECT_TIMEOUT",
            timeout.as_secs().max(1).to_string().into(),
        ));
    }
    env.push(("PGAPPNAME", "simmask".into()));
    env
}

/// `tool ARGS` with the connection in its environment; its error output
/// (which names the server, never the password) on failure.
fn run(
    tool: &Tool,
    args: &[&std::ffi::OsStr],
    env: &[(&str, OsString)],
) -> Result<Output, StoreError> {
    let mut command = Command::new(&tool.path);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_error(format!("{}: {e}", tool.path.display())))?;
    if !output.status.success() {
        let name = tool
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        return Err(tool_error(format!(
            "{name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output)
}

/// The server's major version and how many tables the database holds
/// outside PostgreSQL's own schemas.
async fn server_facts(url: &str) -> Result<(u32, i64, usize), StoreError> {
    let (client, connection) = super::tls::connect_url(url).await?;
    let task = tokio::spawn(connection);
    let version: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let major = version.parse::<u32>().unwrap_or(0) / 10_000;
    let tables: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    let schema = if tables > 0 {
        schema::current_version(&client).await.unwrap_or(0)
    } else {
        0
    };
    drop(client);
    let _ = task.await;
    Ok((major, tables, schema))
}

/// What `simmask backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBackup {
    /// The database, without its password.
    pub database: String,
    pub schema: usize,
    pub pg_dump: String,
}

/// `pg_dump --format=custom` of the fleet's database at `url` into `out`.
pub async fn backup(url: &str, out: &Path) -> Result<PgBackup, StoreError> {
    let (config, tls, shown) = super::tls::parse_with_tls(url)?;
    let (major, tables, schema) = server_facts(url).await?;
    if tables == 0 || schema == 0 {
        return Err(tool_error(format!(
            "{shown} holds no simmask data: nothing to back up"
        )));
    }
    let tool = find_tool("pg_dump", major)?;
    let env = libpq_env(&config, &tls);
    let file = out.as_os_str().to_owned();
    let mut target = OsString::from("--file=");
    target.push(&file);
    tokio::task::spawn_blocking(move || {
        run(
            &tool,
            &[
                "--format=custom".as_ref(),
                "--no-password".as_ref(),
                target.as_os_str(),
            ],
            &env,
        )
        .map(|_| tool.version)
    })
    .await
    .map_err(|e| tool_error(format!("pg_dump: {e}")))?
    .map(|version| PgBackup {
        database: shown,
        schema,
        pg_dump: version,
    })
}

/// The simmask schema version recorded in the custom-format archive
/// `backup` (its `simmask_schema` rows), read with `pg_restore` without
/// touching any database.
fn archive_schema(tool: &Tool, backup: &Path) -> Result<usize, StoreError> {
    let not_a_backup = |reason: String| StoreError::NotABackup {
        path: backup.display().to_string(),
        reason,
    };
    if !backup.is_file() {
        return Err(not_a_backup("no such file".into()));
    }
    let output = Command::new(&tool.path)
        .args(["--data-only", "--table=simmask_schema", "--file=-"])
        .arg(backup)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_error(format!("{}: {e}", tool.path.display())))?;
    if !output.status.success() {
        return Err(not_a_backup(format!(
            "pg_restore cannot read it: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut rows = text
        .lines()
        .skip_while(|line| !line.starts_with("COPY ") || !line.contains("simmask_schema"))
        .skip(1)
        .take_while(|line| *line != "\\.");
    let versions: Vec<usize> = rows
        .by_ref()
        .filter_map(|line| line.split('\t').next()?.parse().ok())
        .collect();
    versions
        .into_iter()
        .max()
        .ok_or_else(|| not_a_backup("a PostgreSQL archive without simmask's tables".into()))
}

/// What `simmask restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgRestore {
    pub database: String,
    pub backup_schema: usize,
    pub schema: usize,
}

/// Restores the archive `backup` (as [`backup`] wrote it) into the empty
/// database at `url`, in one transaction, then brings it to this
/// simmask's schema.
pub async fn restore(url: &str, backup: &Path) -> Result<PgRestore, StoreError> {
    let (config, tls, shown) = super::tls::parse_with_tls(url)?;
    let (major, tables, _) = server_facts(url).await?;
    let tool = find_tool("pg_restore", major)?;
    // Nothing is touched before the archive is known to be good.
    let backup_schema = archive_schema(&tool, backup)?;
    if backup_schema > schema::latest_version() {
        return Err(StoreError::TooNew {
            found: backup_schema,
            known: schema::latest_version(),
        });
    }
    if tables > 0 {
        return Err(tool_error(format!(
            "{shown} is not empty ({tables} tables): restore into a new, empty database \
             (createdb -O <role> <name>) and point [store] url at it"
        )));
    }
    let env = libpq_env(&config, &tls);
    // The database by name, as a conninfo string libpq will not take for
    // anything else; where and as whom come from the environment.
    let db = config
        .get_dbname()
        .unwrap_or("")
        .replace('\\', "\\\\")
        .replace('\'', "\\'");
    let mut target = OsString::from(format!("--dbname=dbname='{db}'"));
    if db.is_empty() {
        target = OsString::from("--dbname=");
    }
    let file = backup.as_os_str().to_owned();
    tokio::task::spawn_blocking(move || {
        run(
            &tool,
            &[
                "--no-owner".as_ref(),
                "--no-privileges".as_ref(),
                "--single-transaction".as_ref(),
                "--exit-on-error".as_ref(),
                "--no-password".as_ref(),
                target.as_os_str(),
                file.as_os_str(),
            ],
            &env,
        )
    })
    .await
    .map_err(|e| tool_error(format!("pg_restore: {e}")))??;
    // Brought to this binary's schema.
    let (mut client, connection) = super::tls::connect_url(url).await?;
    let task = tokio::spawn(connection);
    let schema = schema::migrate(&mut client).await?;
    drop(client);
    let _ = task.await;
    Ok(PgRestore {
        database: redacted(url),
        backup_schema,
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_banner() {
        assert_eq!(
            major_of("pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"),
            Some((15, "15.14".into()))
        );
        assert_eq!(
            major_of("pg_restore (PostgreSQL) 9.6.24"),
            Some((9, "9.6.24".into()))
        );
        assert_eq!(major_of("pg_dump (PostgreSQL) 17devel"), None);
        assert_eq!(major_of("nonsense"), None);
    }

    #[test]
    fn the_password_is_in_the_environment_only() {
        let config: tokio_postgres::Config =
            "postgres://ops:s3cret@db.lan:5433/fleet".parse().unwrap();
        let env = libpq_env(
            &config,
            &Tls {
                mode: super::super::tls::SslMode::VerifyFull,
                root: Some(RootCert::File("/etc/ca.pem".into())),
            },
        );
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string_lossy().to_string())
        };
        assert_eq!(get("PGPASSWORD").as_deref(), Some("s3cret"));
        assert_eq!(get("PGHOST").as_deref(), Some("db.lan"));
        assert_eq!(get("PGPORT").as_deref(), Some("5433"));
        assert_eq!(get("PGUSER").as_deref(), Some("ops"));
        assert_eq!(get("PGDATABASE").as_deref(), Some("fleet"));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/etc/ca.pem"));
    }
}
