//! The PostgreSQL backend: several appliances share one database (the
//! fleet). [`super::Store`] dispatches to it when `[store] backend =
//! "postgres"`; the rest of the code does not know which one it talks to.
//!
//! Each appliance registers itself by name in `appliances` and beats a
//! heartbeat; it owns the SIMs it holds (by ICCID). The masking rule is the
//! same partial unique index as on SQLite, and allocation takes an advisory
//! lock per participant so that openers on different appliances for the
//! same person queue rather than race.

mod allocate;
mod audit;
mod callbacks;
mod calls;
mod dump;
mod export;
mod fleet;
mod hubs;
mod import;
mod inbound;
mod inbound_rails;
mod lifecycle;
mod migrate;
mod migrate_tables;
mod pool;
mod rails;
mod relay;
mod reports;
mod retention;
mod schema;
mod sessions;
mod status;
mod tls;
mod tokens;
mod twilio;
mod twilio_hooks;
mod wakes;

use std::str::FromStr as _;
use std::sync::{Arc, Weak};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;

pub use dump::{PgBackup, PgRestore, backup, restore};
pub use fleet::{ApplianceRecord, FleetEvent};
pub(in crate::store) use inbound::PgInbound;
pub use migrate::{LeftBehind, MigrationReport, TableCount};

use super::{StoreError, to_ms};

/// How often an appliance beats its heartbeat: a third of the timeout.
pub const DEFAULT_HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The handle to the fleet's database. Cheap to clone; the heartbeat stops
/// with the last handle (a beat already under way when it drops still
/// lands; the connections close after it).
#[derive(Clone)]
pub(in crate::store) struct PgStore {
    inner: Arc<Inner>,
}

pub(in crate::store) struct Inner {
    pool: Pool,
    appliance_id: i64,
    appliance: String,
    /// The url without its password, for messages.
    shown: String,
    heartbeat_timeout: std::time::Duration,
    /// For connections of their own (LISTEN).
    config: tokio_postgres::Config,
    /// TLS as the url's `sslmode` and `sslrootcert` ask.
    connector: tls::Connector,
    /// Since when, and why, the database does not answer: set by a call
    /// that could not reach it, cleared by the next heartbeat that does.
    outage: std::sync::Mutex<Option<super::DatabaseOutage>>,
    /// The inbound relay's transactions, one at a time in call order.
    inbound: tokio::sync::mpsc::UnboundedSender<inbound::InboundJob>,
}

/// `url` as it may be shown: user, host, port and database, never the
/// password.
pub fn redacted(url: &str) -> String {
    match tokio_postgres::Config::from_str(&tls::split_tls(url).0) {
        Ok(config) => {
            let user = config.get_user().unwrap_or("");
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let port = config
                .get_ports()
                .first()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let db = config.get_dbname().unwrap_or("");
            format!("postgres://{user}@{}{port}/{db}", hosts.join(","))
        }
        Err(_) => "postgres://(unreadable url)".into(),
    }
}

/// A PostgreSQL error as the store's, with the server's message when it
/// sent one; a lost connection is an outage, not a bug.
pub(in crate::store) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    use std::error::Error as _;
    let io = error
        .source()
        .is_some_and(|source| source.is::<std::io::Error>());
    if error.as_db_error().is_none() && (error.is_closed() || io) {
        // No answer from the server: it went away or never came.
        return StoreError::Unavailable(error.to_string());
    }
    StoreError::Postgres(error)
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => pg_error(error),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl PgStore {
    /// Connects to the database at `url`, applies the migrations, and
    /// registers this appliance under `appliance`.
    pub(in crate::store) async fn connect(
        url: &str,
        appliance: &str,
        heartbeat_timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let (mut config, tls, shown) = tls::parse_with_tls(url)?;
        let connector = tls::Connector::new(&tls)?;
        // What pg_stat_activity shows the database's administrator.
        if config.get_application_name() == Some("simmask") {
            config.application_name(format!("simmask {appliance}"));
        }
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Every connection names its appliance, for the trigger that stamps
        // whose clock wrote a session's deadlines (schema v8).
        let name = appliance.to_string();
        let pool = Pool::builder(manager)
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let name = name.clone();
                Box::pin(async move {
                    client
                        .execute(
                            "SELECT set_config('simmask.appliance', $1, false)",
                            &[&name],
                        )
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)?;
                    Ok(())
                })
            }))
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("{shown}: {e}")))?;
        let mut client = pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(error) => {
                StoreError::Unavailable(format!("{shown}: {}", tls::explained(&error, &tls)))
            }
            e => match pool_error(e) {
                StoreError::Unavailable(message) => {
                    StoreError::Unavailable(format!("{shown}: {message}"))
                }
                other => other,
            },
        })?;
        schema::migrate(&mut client).await?;
        let now = to_ms(OffsetDateTime::now_utc());
        let appliance_id: i64 = client
            .query_one(
                "INSERT INTO appliances (name, first_seen_ms, heartbeat_ms) VALUES ($1, $2, $2) \
                 ON CONFLICT (name) DO UPDATE SET heartbeat_ms = $2 RETURNING id",
                &[&appliance, &now],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        drop(client);
        let inbound = inbound::spawn_worker(pool.clone());
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                appliance_id,
                appliance: appliance.to_string(),
                shown,
                heartbeat_timeout,
                config,
                connector,
                outage: std::sync::Mutex::new(None),
                inbound,
            }),
        };
        store.spawn_heartbeat();
        Ok(store)
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|error| self.noted(pool_error(error)))
    }

    /// `error`, noted as an outage when it is one.
    fn noted(&self, error: StoreError) -> StoreError {
        if let StoreError::Unavailable(message) = &error {
            let mut outage = self.inner.outage.lock().unwrap_or_else(|e| e.into_inner());
            match outage.as_mut() {
                Some(outage) => outage.error = message.clone(),
                None => {
                    tracing::warn!(database = %self.inner.shown, error = %message, "fleet: the database does not answer");
                    *outage = Some(super::DatabaseOutage {
                        since: OffsetDateTime::now_utc(),
                        error: message.clone(),
                    });
                }
            }
        }
        error
    }

    /// The database answered: the outage, if any, is over.
    fn answered(&self) {
        let mut outage = self.inner.outage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(past) = outage.take() {
            tracing::info!(database = %self.inner.shown, since = %past.since, "fleet: the database answers again");
        }
    }

    /// The database's outage, while it lasts.
    pub(in crate::store) fn outage(&self) -> Option<super::DatabaseOutage> {
        self.inner
            .outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// This appliance's id in `appliances`.
    pub(in crate::store) fn appliance_id(&self) -> i64 {
        self.inner.appliance_id
    }

    /// This appliance's name.
    pub(in crate::store) fn appliance(&self) -> &str {
        &self.inner.appliance
    }

    /// The database, for messages (no password).
    pub(in crate::store) fn shown(&self) -> &str {
        &self.inner.shown
    }

    pub(in crate::store) fn heartbeat_timeout(&self) -> std::time::Duration {
        self.inner.heartbeat_timeout
    }

    /// Beats the heartbeat every third of the timeout while a handle lives;
    /// a beat that fails (the database away) is retried at the next tick.
    fn spawn_heartbeat(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = self.inner.heartbeat_timeout / 3;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period.max(std::time::Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = PgStore { inner };
                match store.heartbeat(OffsetDateTime::now_utc()).await {
                    Ok(()) => store.answered(),
                    Err(error) => {
                        let error = store.noted(error);
                        tracing::warn!(%error, "fleet: heartbeat not recorded");
                    }
                }
            }
        });
    }

    /// The schema version the database is at, and its size.
    pub(in crate::store) async fn health(&self) -> Result<(usize, u64), StoreError> {
        let client = self.client().await?;
        let schema = schema::current_version(&client).await?;
        let bytes: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok((schema, u64::try_from(bytes).unwrap_or(0)))
    }
}

/// Runs `f` in a transaction on a pooled connection and commits.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client
            .transaction()
            .await
            .map_err(crate::store::pg::pg_error)?;
        let result = $body;
        match result {
            Ok(value) => {
                $tx.commit().await.map_err(crate::store::pg::pg_error)?;
                Ok(value)
            }
            Err(error) => Err(error),
        }
    }};
}
pub(in crate::store) use in_transaction;
