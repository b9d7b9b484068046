//! The fleet's database administered through simmask, on a real
//! PostgreSQL started by the test: `simmask backup` and `simmask restore`
//! with a fleet's configuration (PostgreSQL's own `pg_dump` and
//! `pg_restore`, the password never shown).

mod pg_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration as StdDuration;

use pg_common::Postgres;
use serde_json::Value;
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::number::PhoneNumber;
use simmask::store::{
    LiveSim, Location, NewSession, NewToken, Role, SessionFilter, Store, StoreError,
};
use time::OffsetDateTime;

const TIMEOUT: StdDuration = StdDuration::from_secs(30);
/// Trust authentication ignores it, which lets the test look for it in
/// everything simmask prints.
const PASSWORD: &str = "s3cret-Pa55";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn number(text: &str) -> PhoneNumber {
    PhoneNumber::from_e164(text).unwrap()
}

/// An appliance's configuration on the fleet's database `url`.
fn config(dir: &Path, name: &str, url: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nbackend = \"postgres\"\n\
             url = \"{url}\"\n\n[modems]\nports = [\"{dir}/none*\"]\n\n\
             [appliance]\nname = \"site-1\"\n",
            port = free_port(),
            dir = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// `simmask ARGS --config CONFIG --json` with `env`: exit code, JSON on
/// stdout, everything printed.
fn simmask(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .envs(env.iter().copied())
        .output()
        .expect("simmask runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(!all.contains(PASSWORD), "the password was printed: {all}");
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        all,
    )
}

async fn open(store: &Store, a: &str, b: &str) -> Result<String, StoreError> {
    store
        .open_session(
            NewSession {
                participants: [number(a), number(b)],
                mode: Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: Some("kept".into()),
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: PoolLimits::default(),
            },
            vec![LiveSim {
                iccid: "p1".into(),
                healthy: true,
                signal_dbm: Some(-70),
                voice_capable: true,
            }],
            OffsetDateTime::now_utc(),
        )
        .await
        .map(|s| s.id)
}

async fn session(store: &Store, a: &str, b: &str) -> String {
    open(store, a, b).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_backed_up_with_pg_dump_and_restored_into_an_empty_database() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let with_password = |url: String| url.replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let url = with_password(pg.database("fleet").await);
    let now = OffsetDateTime::now_utc();
    let fleet = Store::connect(&Location::Postgres(url.clone()), "site-1", TIMEOUT)
        .await
        .unwrap();
    fleet
        .upsert_sim(
            "p1".into(),
            number("+447700900001"),
            String::new(),
            None,
            now,
        )
        .await
        .unwrap();
    let kept = session(&fleet, "+447911000001", "+447911000002").await;
    fleet
        .add_token(
            NewToken {
                name: "ops".into(),
                role: Role::Admin,
                hash: "h-ops".into(),
                expires_at: None,
                actor: "test".into(),
            },
            now,
        )
        .await
        .unwrap();
    let fleet_config = config(dir.path(), "fleet", &url);

    // The backup, while the appliance's store is connected.
    let archive = dir.path().join("fleet.dump");
    let (code, report, printed) =
        simmask(&fleet_config, &["backup", archive.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(
        report["database"],
        format!("postgres://postgres@127.0.0.1:{}/fleet", pg.port),
        "{report}"
    );
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["pg_dump"].as_str().is_some(), "{report}");
    // What happens after the backup is not in it.
    let later = session(&fleet, "+447911000003", "+447911000004").await;

    // Never over a database with data: the fleet's own is refused.
    let (code, _, printed) = simmask(&fleet_config, &["restore", archive.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(printed.contains("is not empty"), "{printed}");
    let (code, _, printed) = simmask(
        &fleet_config,
        &["restore", "--replace", archive.to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(printed.contains("never restored over"), "{printed}");

    // Into a new, empty database: everything the backup held comes back.
    let restored_url = with_password(pg.database("restored").await);
    let restored_config = config(dir.path(), "restored", &restored_url);
    let not_a_dump = dir.path().join("notes.txt");
    std::fs::write(&not_a_dump, "hello").unwrap();
    let (code, _, printed) = simmask(
        &restored_config,
        &["restore", not_a_dump.to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(printed.contains("not a simmask backup"), "{printed}");
    let (code, report, printed) = simmask(
        &restored_config,
        &["restore", archive.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{printed}");
    assert_eq!(report["backup_schema"], report["schema"], "{report}");
    let restored = Store::connect(&Location::Postgres(restored_url), "site-1", TIMEOUT)
        .await
        .unwrap();
    let sessions: Vec<String> = restored
        .sessions(SessionFilter {
            limit: 100,
            ..SessionFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(sessions, [kept]);
    assert!(!sessions.contains(&later));
    assert_eq!(restored.tokens().await.unwrap().len(), 1);
    assert_eq!(restored.sims().await.unwrap().len(), 1);
    // The restored fleet allocates under the masking rule: the restored
    // session's participant is busy on the only SIM, a stranger is not.
    assert!(
        open(&restored, "+447911000001", "+447911000005")
            .await
            .is_err()
    );
    session(&restored, "+447911000006", "+447911000005").await;
    // Once restored it is not empty: a second restore is refused.
    let (code, _, printed) = simmask(
        &restored_config,
        &["restore", archive.to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(printed.contains("is not empty"), "{printed}");

    // Without pg_dump, or with one older than the server: said precisely.
    let elsewhere = dir.path().join("no-tools");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (code, _, printed) = simmask(
        &fleet_config,
        &["backup", dir.path().join("x.dump").to_str().unwrap()],
        &[("SIMMASK_PG_BIN", elsewhere.to_str().unwrap())],
    );
    assert_ne!(code, 0);
    assert!(printed.contains("pg_dump is not installed"), "{printed}");
    let old = dir.path().join("old-tools");
    std::fs::create_dir_all(&old).unwrap();
    let fake = old.join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, printed) = simmask(
        &fleet_config,
        &["backup", dir.path().join("y.dump").to_str().unwrap()],
        &[("SIMMASK_PG_BIN", old.to_str().unwrap())],
    );
    assert_ne!(code, 0);
    assert!(
        printed.contains("pg_dump 9.6.24") && printed.contains("older than the database server"),
        "{printed}"
    );
    assert!(!dir.path().join("y.dump").exists());

    // What the tool is given: the connection in its environment, nothing
    // of it on its command line (where `ps` shows it).
    let spy_dir = dir.path().join("spy-tools");
    std::fs::create_dir_all(&spy_dir).unwrap();
    let spy = spy_dir.join("pg_dump");
    let seen = dir.path().join("seen.txt");
    std::fs::write(
        &spy,
        format!(
            "#!/bin/sh
if [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 99.1'; exit 0; fi
             echo \"args: $*\" > {seen}
echo \"password: $PGPASSWORD\" >> {seen}
             echo \"host: $PGHOST port: $PGPORT db: $PGDATABASE\" >> {seen}
",
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, printed) = simmask(
        &fleet_config,
        &["backup", dir.path().join("z.dump").to_str().unwrap()],
        &[
            ("SIMMASK_PG_BIN", spy_dir.to_str().unwrap()),
            ("PGPASSWORD", "inherited"),
        ],
    );
    assert_eq!(code, 0, "{printed}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    let args = seen.lines().next().unwrap();
    assert!(args.starts_with("args: --format=custom"), "{seen}");
    assert!(
        !args.contains(PASSWORD) && !args.contains("127.0.0.1"),
        "{seen}"
    );
    assert!(seen.contains(&format!("password: {PASSWORD}")), "{seen}");
    assert!(
        seen.contains(&format!("host: 127.0.0.1 port: {} db: fleet", pg.port)),
        "{seen}"
    );
}

/// A CA of the test's own, and a server certificate it signed for `names`.
fn certificates(dir: &Path, names: &[&str], ca_name: &str) -> (PathBuf, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
    let ca_path = dir.join(format!("{ca_name}.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    (ca_path, server.pem(), key.serialize_pem())
}

/// Whether the pool's connections of `appliance` are encrypted, as the
/// server sees them.
async fn encrypted(raw: &tokio_postgres::Client, appliance: &str) -> Vec<bool> {
    raw.query(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = $1",
        &[&format!("simmask {appliance}")],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

async fn connect_error(url: &str) -> String {
    match Store::connect(&Location::Postgres(url.into()), "site-9", TIMEOUT).await {
        Ok(_) => panic!("connected to {url}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_follows_libpqs_sslmode_and_sslrootcert() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.database("tls").await;
    let raw = Postgres::client(&url).await;

    // `require` against a server without TLS: refused, and said why.
    let refused = connect_error(&format!("{url}?sslmode=require")).await;
    assert!(refused.contains("does not offer TLS"), "{refused}");
    // Verifying needs a root.
    let refused = connect_error(&format!("{url}?sslmode=verify-full")).await;
    assert!(refused.contains("needs sslrootcert"), "{refused}");

    let (ca, cert, key) = certificates(dir.path(), &["127.0.0.1"], "fleet-ca");
    let (other_ca, _, _) = certificates(dir.path(), &["127.0.0.1"], "other-ca");
    pg.enable_ssl(&cert, &key);
    let raw = {
        drop(raw);
        Postgres::client(&url).await
    };
    let with = |query: &str| format!("{url}?{query}");

    // verify-full with the CA that signed the server's certificate.
    let full = with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let site1 = Store::connect(&Location::Postgres(full.clone()), "site-1", TIMEOUT)
        .await
        .unwrap();
    site1.sims().await.unwrap();
    let seen = encrypted(&raw, "site-1").await;
    assert!(!seen.is_empty() && seen.iter().all(|ssl| *ssl), "{seen:?}");
    // A root that did not sign it: refused, naming the settings.
    let refused = connect_error(&with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    )))
    .await;
    assert!(
        refused.contains("sslmode=verify-full") && refused.contains("certificate"),
        "{refused}"
    );
    let refused = connect_error(&with("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")).await;
    assert!(refused.contains("/nonexistent/ca.pem"), "{refused}");
    // The certificate names 127.0.0.1, not localhost: verify-full through
    // `localhost` is refused, verify-ca (the chain only) is not.
    let by_name = url.replace("127.0.0.1", "localhost");
    let refused = connect_error(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await;
    assert!(refused.contains("certificate"), "{refused}");
    let site2 = Store::connect(
        &Location::Postgres(format!(
            "{by_name}?sslmode=verify-ca&sslrootcert={}",
            ca.display()
        )),
        "site-2",
        TIMEOUT,
    )
    .await
    .unwrap();
    site2.sims().await.unwrap();
    assert!(encrypted(&raw, "site-2").await.iter().all(|ssl| *ssl));
    // Without sslmode, libpq's default `prefer`: encrypted when offered.
    let site3 = Store::connect(&Location::Postgres(url.clone()), "site-3", TIMEOUT)
        .await
        .unwrap();
    site3.sims().await.unwrap();
    let seen = encrypted(&raw, "site-3").await;
    assert!(!seen.is_empty() && seen.iter().all(|ssl| *ssl), "{seen:?}");
    let site4 = Store::connect(
        &Location::Postgres(with("sslmode=disable")),
        "site-4",
        TIMEOUT,
    )
    .await
    .unwrap();
    site4.sims().await.unwrap();
    let seen = encrypted(&raw, "site-4").await;
    assert!(!seen.is_empty() && seen.iter().all(|ssl| !*ssl), "{seen:?}");

    // The fleet's backup over the same verified TLS (pg_dump is told
    // sslmode and sslrootcert through its environment).
    let config = config(dir.path(), "tls", &full);
    let archive = dir.path().join("tls.dump");
    let (code, report, printed) = simmask(&config, &["backup", archive.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{printed}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
}
