//! The fleet's events on this appliance's bus (PostgreSQL backend): this
//! appliance's own go to the database (`fleet_events` + NOTIFY), the other
//! appliances' come back through LISTEN and are published with their
//! `appliance`, so one SSE stream covers the fleet. Its own never come back
//! (skipped by name), and what came from the fleet is never sent again
//! (only [`EventBus::subscribe_local`] is forwarded).

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventBus};
use crate::store::{Backend, Store};

/// Starts both directions on a PostgreSQL store; nothing on SQLite.
pub fn spawn(
    store: &Store,
    events: &EventBus,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if store.backend() != Backend::Postgres {
        return None;
    }
    let own = store.appliance()?.to_string();
    // Subscribed now, so nothing published after start is missed.
    let mut local = events.subscribe_local();
    let (store, events) = (store.clone(), events.clone());
    Some(tokio::spawn(async move {
        // From the newest event at start: the fleet's history is not news.
        let after = loop {
            match store.last_event_id().await {
                Ok(id) => break id,
                Err(error) => {
                    tracing::warn!(%error, "fleet events: cannot read where to start; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        };
        let mut fleet = match store.follow_events(after) {
            Ok(fleet) => fleet,
            Err(error) => {
                tracing::error!(%error, "fleet events: cannot follow");
                return;
            }
        };
        loop {
            tokio::select! {
                received = local.recv() => match received {
                    Ok(envelope) => {
                        let payload = match serde_json::to_string(&envelope.event) {
                            Ok(payload) => payload,
                            Err(error) => {
                                tracing::error!(%error, "fleet events: cannot encode an event");
                                continue;
                            }
                        };
                        // The database away: the event stays on this
                        // appliance's own feed; the fleet misses it.
                        if let Err(error) = store
                            .publish_event(envelope.event.kind().to_string(), payload, envelope.at)
                            .await
                        {
                            tracing::warn!(%error, kind = envelope.event.kind(), "fleet events: not shared with the fleet");
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "fleet events: fell behind this appliance's events; not shared");
                    }
                    Err(RecvError::Closed) => return,
                },
                received = fleet.recv() => match received {
                    Some(event) if event.appliance == own => {}
                    Some(event) => match serde_json::from_str::<Event>(&event.payload) {
                        Ok(decoded) => events.publish_from(event.appliance, decoded),
                        // A newer appliance's kind this one does not know.
                        Err(error) => tracing::debug!(%error, kind = %event.kind, "fleet events: skipped"),
                    },
                    None => return,
                },
                () = shutdown.cancelled() => return,
            }
        }
    }))
}
