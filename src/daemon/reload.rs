//! `systemctl reload simmask` (SIGHUP): re-reads the configuration file and
//! puts in force what can change while the daemon runs (port globs, send
//! limits and budgets, the out-of-session policy and the rails, the ring
//! timeout, sweeps and retention, callbacks, the clock setting: the list is
//! `crate::config::live`), and says in the log what
//! changed but waits for a restart. API tokens are read from the store at
//! each request: they need no reload. A file that does not parse changes
//! nothing.

use std::path::PathBuf;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::bank::Bank;
use crate::config::{Config, LiveConfig};
use crate::events::EventBus;
use crate::store::Store;

/// The callbacks task, restarted when its settings change.
struct Callbacks {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl Callbacks {
    fn start(config: &Config, events: &EventBus, store: &Store) -> Self {
        let stop = CancellationToken::new();
        let task = api::callbacks::spawn_callbacks(
            config.callbacks.clone(),
            events,
            store.clone(),
            stop.clone(),
        );
        Callbacks { task, stop }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs the callbacks, and reloads on each `reload` signal, until `stop`.
pub async fn run(
    path: Option<PathBuf>,
    live: LiveConfig,
    bank: Bank,
    events: EventBus,
    store: Store,
    mut hangups: Option<tokio::signal::unix::Signal>,
    stop: CancellationToken,
) {
    let mut callbacks = Callbacks::start(&live.get(), &events, &store);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            _ = hangup => {}
        }
        let Some(path) = &path else { continue };
        let new = match Config::load(path) {
            Ok(new) => new,
            Err(error) => {
                tracing::warn!(%error, "reload: the file was not applied; the configuration in force is kept");
                continue;
            }
        };
        let reload = live.reload(new);
        let now = live.get();
        if reload.applied.contains(&"modems.ports") {
            bank.set_ports(now.modems.ports.clone());
        }
        if reload.applied.contains(&"callbacks") {
            callbacks.stop().await;
            callbacks = Callbacks::start(&now, &events, &store);
        }
        tracing::info!(
            applied = ?reload.applied,
            "configuration reloaded (API tokens are read from the store at each request)"
        );
        if !reload.needs_restart.is_empty() {
            tracing::warn!(
                not_applied = ?reload.needs_restart,
                "changed in the file but not applied: restart simmask for these"
            );
        }
    }
    callbacks.stop().await;
}
