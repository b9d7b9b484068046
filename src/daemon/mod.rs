//! `simmask run`: the appliance. Wires the bank of modems, the store, the
//! relay (inbound intake and the per-SIM outbox workers), the periodic
//! sweeps and the API, and shuts them down in order.
//!
//! ```text
//! bank ──BankEvent──► dispatch ──► relay ──► store ──► outbox worker (per SIM) ──► bank
//!                        │                       │
//!                        └──────► event bus ◄────┘──► API / SSE / metrics / MQTT
//! ```

mod clock;
pub mod demo;
mod descriptors;
mod dispatch;
mod fleet;
mod pool;
mod reload;
mod sweeper;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::bank::{Bank, BankConfig, KnownSim};
use crate::config::Config;
use crate::events::EventBus;
use crate::profile::Profiles;
use crate::store::{Store, StoreError};
use crate::voice::CallDesks;

pub use pool::LivePool;

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("api listen {listen}: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("modem profiles: {0}")]
    Profiles(#[from] crate::profile::ProfileError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("SIMMASK_ADMIN_TOKEN: {0}")]
    AdminToken(String),
}

/// How the daemon is run.
#[derive(Default)]
pub struct RunOptions {
    /// `SIMMASK_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Cancelled to shut down (SIGTERM in `simmask run`).
    pub stop: CancellationToken,
    /// Told the API's bound address once everything runs.
    pub ready: Option<oneshot::Sender<SocketAddr>>,
    /// The configuration file, re-read on SIGHUP (`simmask run`).
    pub reload_from: Option<std::path::PathBuf>,
}

/// The bank's settings from the configuration.
pub fn bank_config(config: &Config) -> Result<BankConfig, DaemonError> {
    let profiles = match &config.modems.profiles_dir {
        Some(dir) => Profiles::load_dir(dir)?,
        None => Profiles::builtin(),
    };
    Ok(BankConfig {
        ports: config.modems.ports.clone(),
        profiles,
        poll_interval: Duration::from_secs(config.modems.poll_interval_seconds.max(1)),
        power_cycle_command: config.modems.power_cycle_command.clone(),
        quarantine_after: config.modems.quarantine_after,
        pins: config
            .sims
            .iter()
            .filter_map(|sim| Some((sim.iccid.clone()?, sim.pin.clone()?)))
            .collect(),
        msisdn_for_sim: config
            .sims
            .iter()
            .filter_map(|sim| Some((sim.id(), sim.msisdn.as_ref()?.e164().to_string())))
            .collect(),
        known_sims: Vec::new(),
        baud: config.modems.baud,
    })
}

/// Runs the appliance until `options.stop` is cancelled.
pub async fn run(config: Config, options: RunOptions) -> Result<(), DaemonError> {
    // Installed first, so a reload right after start-up is not a kill.
    let hangups = match &options.reload_from {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(DaemonError::Signal)?,
        ),
        None => None,
    };
    if let Some(token) = &options.admin_token {
        crate::config::check_token(token).map_err(DaemonError::AdminToken)?;
    }
    let live = crate::config::LiveConfig::new(config);
    let config = live.get();
    let location = config
        .store
        .location()
        .map_err(|problem| crate::store::StoreError::Unavailable(format!("[store] {problem}")))?;
    let store = Store::connect(
        &location,
        &config.appliance.name(),
        config.appliance.heartbeat_timeout(),
    )
    .await?;
    let requeued = store.requeue_stuck_sending(crate::clock::now()).await?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            "messages were being sent when simmask stopped: sending them again (at most one duplicate each)"
        );
    }
    // Each start is a new run: its event ids are above every earlier run's.
    let events = EventBus::for_run(store.start_event_run().await?);
    let stop = options.stop;

    // The API (and /healthz) first, so a supervisor sees the daemon alive
    // while modems are still being found.
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            listen: config.api.listen.clone(),
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            listen: config.api.listen.clone(),
            source,
        })?;

    let mut bank_setup = bank_config(&config)?;
    // The pool as stored: a SIM keeps its id whichever half of its
    // identity its modem reads now.
    bank_setup.known_sims = store
        .sims()
        .await?
        .into_iter()
        .map(|sim| KnownSim {
            id: sim.iccid,
            imsi: sim.imsi,
        })
        .collect();
    let (bank, bank_events) = Bank::start(bank_setup).await;
    let pool = Arc::new(LivePool::new(bank.clone(), config.clone()));
    let desks = CallDesks::default();
    let mut state = ApiState::new(store.clone(), pool.clone(), events.clone());
    state.calls = desks.clone();
    state.admin_token = options.admin_token;
    state.default_region = config.numbers.default_region.clone();
    state.default_ttl = (config.sessions.default_ttl_seconds > 0).then(|| {
        time::Duration::seconds(
            i64::try_from(config.sessions.default_ttl_seconds).unwrap_or(i64::MAX),
        )
    });
    state.sticky = config.sessions.sticky;
    // Send limits and budgets as the configuration in force says (a reload
    // changes them).
    state.live = Some(live.clone());
    state.number_validation = config.numbers.validation;
    state.limits = config.pool_limits();
    state.request_timeout = config.api.request_timeout();
    state.serve_limits = config.api.serve_limits();
    state.streams = api::guard::StreamCaps::new(
        config.api.max_event_streams,
        config.api.max_event_streams_per_token,
    );
    state.failed_auth = api::guard::FailedAuth::new(
        config.api.failed_auth_burst,
        config.api.failed_auth_per_minute,
    );
    state.trusted_proxies = Arc::new(config.api.trusted_proxies());
    descriptors::fit(&state.serve_limits);
    // A crash or power cut in the middle of a write must leave a file that
    // checks clean: check it at every start, beside everything else.
    *state.integrity.write().unwrap_or_else(|e| e.into_inner()) = api::health::Integrity::Checking;
    let integrity_check = tokio::spawn(check_integrity(store.clone(), state.integrity.clone()));
    state.twilio = config
        .twilio
        .account_sid
        .clone()
        .map(|account_sid| api::twilio::Settings {
            account_sid,
            auth_token: config.twilio.auth_token.clone(),
            base_url: format!(
                "{}/twilio/v1",
                config
                    .twilio
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", config.api.listen))
                    .trim_end_matches('/')
            ),
        });
    let workers_stop = CancellationToken::new();
    let dispatch = dispatch::Dispatch::new(
        live.clone(),
        store.clone(),
        bank.clone(),
        events.clone(),
        desks,
        workers_stop.clone(),
    );
    // A message the API queues (the Twilio facade's MessageInteractions)
    // goes out at once, not when the idle worker next looks.
    let relay = dispatch.relay();
    // On a fleet, a message queued through another appliance's API for a
    // SIM this one holds (or released by its hooks) wakes it here too.
    if let Ok(mut wakes) = store.follow_outbox_wakes() {
        let (relay, stop) = (relay.clone(), workers_stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    woken = wakes.recv() => match woken {
                        Some(iccid) => relay.wake(&iccid),
                        None => return,
                    },
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    state.outbox_waker = Some(Arc::new(move |iccid: &str| relay.wake(iccid)));
    let api_stop = CancellationToken::new();
    // The fleet's events on this bus and this appliance's in the fleet
    // (PostgreSQL); it stops with the API, after the workers' last events.
    let fleet_events = fleet::spawn(&store, &events, api_stop.clone());
    let callbacks = tokio::spawn(reload::run(
        options.reload_from,
        live.clone(),
        bank.clone(),
        events.clone(),
        store.clone(),
        hangups,
        api_stop.clone(),
    ));
    // MQTT is another door beside the API; it stops with it.
    let mqtt = crate::mqtt::spawn(&config, state.clone(), api_stop.clone());
    let api_task = tokio::spawn(api::serve(listener, state, api_stop.clone()));

    let sweeper = tokio::spawn(sweeper::run(
        live.clone(),
        store.clone(),
        bank.clone(),
        events.clone(),
        dispatch.relay(),
        stop.clone(),
    ));

    let clock_task = tokio::spawn(clock::run(live.clone(), store.clone(), stop.clone()));

    if let Some(ready) = options.ready {
        let _ = ready.send(address);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(%address, "simmask running");

    let dispatch_task = tokio::spawn(dispatch.run(bank_events, stop.clone()));
    stop.cancelled().await;
    tracing::info!("shutting down: finishing sends in flight");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    workers_stop.cancel();
    if let Ok(workers) = dispatch_task.await {
        for worker in workers {
            let _ = worker.await;
        }
    }
    let _ = sweeper.await;
    let _ = clock_task.await;
    api_stop.cancel();
    let _ = api_task.await;
    if let Some(fleet_events) = fleet_events {
        let _ = fleet_events.await;
    }
    let _ = callbacks.await;
    if let Some(mqtt) = mqtt {
        let _ = mqtt.await;
    }
    integrity_check.abort();
    tracing::info!("simmask stopped");
    Ok(())
}

/// `PRAGMA quick_check` on the store, logged and kept for `/healthz` and
/// `/api/v1/status`.
async fn check_integrity(store: Store, slot: api::health::IntegritySlot) {
    if store.backend() == crate::store::Backend::Postgres {
        *slot.write().unwrap_or_else(|e| e.into_inner()) = api::health::Integrity::NotApplicable;
        return;
    }
    let outcome = match store.integrity().await {
        Ok(check) if check.ok => {
            tracing::info!(took_ms = check.took_ms, "store integrity check: ok");
            api::health::Integrity::Checked(check)
        }
        Ok(check) => {
            tracing::error!(
                took_ms = check.took_ms,
                problems = ?check.problems,
                "store integrity check FAILED: the database file is damaged; \
                 restore a backup (`simmask restore`) or see `simmask doctor`"
            );
            api::health::Integrity::Checked(check)
        }
        Err(error) => {
            tracing::error!(%error, "store integrity check could not run");
            api::health::Integrity::Failed(error.to_string())
        }
    };
    *slot.write().unwrap_or_else(|e| e.into_inner()) = outcome;
}

/// Cancels `stop` on SIGINT or SIGTERM. The handlers are installed before
/// this returns, so a signal right after start-up is never missed.
pub fn stop_on_signals(stop: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    Ok(())
}
