//! Periodic work: sessions that ran out of time are marked expired,
//! incomplete multipart messages past the reassembly timeout are relayed
//! with what arrived, message bodies past retention are erased, each SIM's
//! live state is saved for the tools beside the daemon, and systemd's
//! watchdog is fed.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::pool::status_record;
use crate::bank::Bank;
use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::sms::relay::Relay;
use crate::store::Store;

/// Retention is enforced at most this often.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(
    config: Arc<Config>,
    store: Store,
    bank: Bank,
    events: EventBus,
    relay: Relay,
    stop: CancellationToken,
) {
    let sweep_every = Duration::from_secs(config.sessions.sweep_interval_seconds.max(1));
    let status_every = Duration::from_secs(config.modems.poll_interval_seconds.max(1));
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
                let now = OffsetDateTime::now_utc();
                if last_sessions_sweep.elapsed() >= sweep_every {
                    last_sessions_sweep = tokio::time::Instant::now();
                    expire_sessions(&store, &events, now).await;
                }
                relay.sweep_incomplete(now).await;
            }
            _ = status.tick() => {
                // One job for the bank; SIMs not yet in the pool (no
                // number) have no row and are skipped.
                let statuses = bank
                    .sims()
                    .iter()
                    .map(|sim| status_record(&config, &bank, sim))
                    .collect();
                if let Err(error) = store.save_sim_statuses(statuses).await {
                    tracing::warn!(%error, "cannot save the SIMs' status");
                }
            }
            _ = retention.tick() => {
                let days = i64::from(config.sms.retention_days);
                let cutoff = OffsetDateTime::now_utc() - time::Duration::days(days);
                match store.erase_bodies_older_than(cutoff).await {
                    Ok(0) => {}
                    Ok(erased) => tracing::info!(erased, days, "message bodies past retention erased"),
                    Err(error) => tracing::error!(%error, "retention sweep failed"),
                }
                if let Some(days) = config.sessions.forget_numbers_days {
                    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
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
