//! Periodic work: sessions that ran out of time are marked expired,
//! incomplete multipart messages past the reassembly timeout are relayed
//! with what arrived, message bodies past retention are erased (and the
//! send log's entries past the rate limiter's day forgotten), each SIM's
//! live state is saved for the tools beside the daemon, and systemd's
//! watchdog is fed.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::pool::{status_record, storage_record};
use crate::bank::Bank;
use crate::config::LiveConfig;
use crate::events::{Event, EventBus};
use crate::sms::relay::Relay;
use crate::store::Store;

/// Retention is enforced at most this often.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(
    config: LiveConfig,
    store: Store,
    bank: Bank,
    events: EventBus,
    relay: Relay,
    stop: CancellationToken,
) {
    let sweep_every = Duration::from_secs(config.get().sessions.sweep_interval_seconds.max(1));
    let status_every = Duration::from_secs(config.get().modems.poll_interval_seconds.max(1));
    let mut sweep = tokio::time::interval(sweep_every.min(Duration::from_secs(5)));
    let mut status = tokio::time::interval(status_every);
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    let watchdog = sd_notify::watchdog_enabled();
    // Fed at half the period systemd expects.
    let mut feed = tokio::time::interval(
        watchdog
            .unwrap_or(Duration::from_secs(2))
            .max(Duration::from_millis(200))
            / 2,
    );
    let mut last_sessions_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = feed.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = sweep.tick() => {
                let now = crate::clock::now();
                // Read each time: a reload may change it.
                let sweep_every =
                    Duration::from_secs(config.get().sessions.sweep_interval_seconds.max(1));
                if last_sessions_sweep.elapsed() >= sweep_every {
                    last_sessions_sweep = tokio::time::Instant::now();
                    expire_sessions(&store, &events, now).await;
                }
                relay.sweep_incomplete(now).await;
            }
            _ = status.tick() => {
                // One job for the bank; SIMs not yet in the pool (no
                // number) have no row and are skipped.
                let config = config.get();
                let sims = bank.sims();
                let statuses = sims
                    .iter()
                    .map(|sim| status_record(&config, &bank, sim))
                    .collect();
                let storages = sims
                    .iter()
                    .filter_map(|sim| Some((sim.id.clone(), storage_record(sim)?)))
                    .collect();
                if let Err(error) = store.save_sim_statuses(statuses, storages).await {
                    tracing::warn!(%error, "cannot save the SIMs' status");
                }
            }
            _ = retention.tick() => {
                let days = i64::from(config.get().sms.retention_days);
                let cutoff = crate::clock::now() - time::Duration::days(days);
                match store.erase_bodies_older_than(cutoff).await {
                    Ok(0) => {}
                    Ok(erased) => tracing::info!(erased, days, "message bodies past retention erased"),
                    Err(error) => tracing::error!(%error, "retention sweep failed"),
                }
                if let Some(days) = config.get().intercept.forget_after_days {
                    let cutoff = crate::clock::now() - time::Duration::days(i64::from(days));
                    match store.forget_rail_lists_older_than(cutoff).await {
                        Ok(0) => {}
                        Ok(forgotten) => tracing::info!(forgotten, days, "opt-outs and blocks past their time forgotten"),
                        Err(error) => tracing::error!(%error, "forgetting opt-outs and blocks failed"),
                    }
                }
                if let Err(error) = store.forget_past_recipients(crate::clock::now()).await {
                    tracing::error!(%error, "forgetting last month's recipients failed");
                }
                if let Err(error) = store.forget_old_sends(crate::clock::now()).await {
                    tracing::error!(%error, "forgetting the send log's past day failed");
                }
                if let Some(days) = config.get().sessions.forget_numbers_days {
                    let cutoff = crate::clock::now() - time::Duration::days(i64::from(days));
                    match store.forget_numbers_older_than(cutoff).await {
                        Ok(0) => {}
                        Ok(forgotten) => tracing::info!(forgotten, days, "numbers of sessions ended long ago forgotten"),
                        Err(error) => tracing::error!(%error, "forgetting old numbers failed"),
                    }
                }
            }
        }
    }
}

async fn expire_sessions(store: &Store, events: &EventBus, now: OffsetDateTime) {
    match store.expire_due(now).await {
        Ok(expired) => {
            for session in expired {
                tracing::info!(session = %session.id, "session expired");
                events.publish(Event::SessionExpired {
                    session_id: session.id,
                });
            }
        }
        Err(error) => tracing::error!(%error, "session expiry sweep failed"),
    }
}
