//! The event bus: one place where the daemon says what happened, so the API's
//! live feed (SSE), the metrics and the local callbacks all see the same
//! facts. Events carry ids and proxy numbers, never participants' real
//! numbers: viewers may subscribe.
//!
//! The bus depends on nothing above it: what must see every event at once
//! (the metrics' counters) registers an observer, called synchronously on
//! publish, so a counter read right after an action already includes it.
//!
//! The last [`BACKLOG`] events are kept in a ring, so that a subscriber
//! coming back (an SSE client with `Last-Event-ID`) gets what it missed
//! ([`EventBus::subscribe_since`]).
//!
//! On a fleet the other appliances' events come in too
//! ([`EventBus::publish_from`], with their `appliance`): the live feed
//! covers the fleet, while what acts on each event once (counters,
//! callbacks, MQTT, forwarding to the fleet) subscribes to this
//! appliance's own ([`EventBus::subscribe_local`]).
//!
//! Ids grow across restarts: run `r` of the daemon (a number the store
//! hands out at each start) numbers its events `r × RUN_SPAN + 1`, `+ 2`…
//! So an id from before a restart is always below this run's, a client
//! comparing ids as numbers or as the strings an `EventSource` keeps never
//! sees one repeat, and [`EventBus::subscribe_since`] can tell an id of
//! an earlier run from one of this run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Events kept for subscribers that fall behind before they miss some, and
/// for those that come back.
pub const BACKLOG: usize = 1024;

/// How many event ids each run of the daemon has: ten billion (30 years
/// at ten events a second), so that ids stay below 2^53 (exact as a
/// JavaScript number) for the first 900 000 runs.
pub const RUN_SPAN: u64 = 10_000_000_000;

/// Something operators want to know about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionOpened {
        session_id: String,
        proxy_number: String,
        mode: String,
    },
    SessionClosed {
        session_id: String,
    },
    SessionExpired {
        session_id: String,
    },
    MessageRelayed {
        session_id: Option<String>,
        interaction_id: i64,
        parts: u32,
    },
    MessageDelivered {
        session_id: Option<String>,
        interaction_id: i64,
    },
    MessageFailed {
        session_id: Option<String>,
        interaction_id: i64,
        reason: String,
    },
    CallBridged {
        session_id: String,
        method: String,
    },
    CallEnded {
        session_id: Option<String>,
        outcome: String,
        duration_seconds: Option<u64>,
    },
    ModemUp {
        imei: String,
        port: String,
    },
    ModemDown {
        imei: String,
        reason: String,
    },
    /// An intercept rule stopped a message (`block_list`, `opt_out`,
    /// `session_limit`, `participant_limit`, `keyword`, `recipient_budget`,
    /// `loop`).
    MessageBlocked {
        session_id: Option<String>,
        interaction_id: i64,
        rule: String,
    },
    /// Loop protection stopped a session: two auto-responders were
    /// answering each other through it.
    LoopDetected {
        session_id: String,
        reason: String,
    },
    /// Someone sent STOP to `proxy_number`; their open sessions closed.
    OptedOut {
        proxy_number: String,
        sessions_closed: Vec<String>,
    },
    /// Someone sent START to `proxy_number`.
    OptedIn {
        proxy_number: String,
    },
    /// A number became a hub; `sessions` are its open sessions, which got
    /// codes. `number` is masked (`+44*******500`), as everywhere events go.
    HubCreated {
        hub_id: String,
        number: String,
        sessions: Vec<String>,
    },
    /// A hub was removed and its open sessions ended. `number` is masked.
    HubRemoved {
        hub_id: String,
        number: String,
        sessions_closed: Vec<String>,
    },
}

/// Every event kind, as [`Event::kind`] names them.
pub const KINDS: &[&str] = &[
    "session_opened",
    "session_closed",
    "session_expired",
    "message_relayed",
    "message_delivered",
    "message_failed",
    "call_bridged",
    "call_ended",
    "modem_up",
    "modem_down",
    "message_blocked",
    "loop_detected",
    "opted_out",
    "opted_in",
    "hub_created",
    "hub_removed",
];

impl Event {
    /// The event's kind, as named in its JSON and the SSE `event:` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionOpened { .. } => "session_opened",
            Event::SessionClosed { .. } => "session_closed",
            Event::SessionExpired { .. } => "session_expired",
            Event::MessageRelayed { .. } => "message_relayed",
            Event::MessageDelivered { .. } => "message_delivered",
            Event::MessageFailed { .. } => "message_failed",
            Event::CallBridged { .. } => "call_bridged",
            Event::CallEnded { .. } => "call_ended",
            Event::ModemUp { .. } => "modem_up",
            Event::ModemDown { .. } => "modem_down",
            Event::MessageBlocked { .. } => "message_blocked",
            Event::LoopDetected { .. } => "loop_detected",
            Event::OptedOut { .. } => "opted_out",
            Event::OptedIn { .. } => "opted_in",
            Event::HubCreated { .. } => "hub_created",
            Event::HubRemoved { .. } => "hub_removed",
        }
    }
}

/// An event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    pub id: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub event: Event,
    /// The fleet's appliance it happened on, when not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
}

/// Called with every event as it is published.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// What a subscriber coming back missed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// The events after the one it last saw that the ring still holds, oldest first.
    pub events: Vec<Envelope>,
    /// Events it missed that the ring no longer holds (0: no gap).
    pub lost: u64,
    /// The id was given by another run of the daemon (or never given):
    /// whatever that run published after it is gone with it, so `events`
    /// is all this run keeps and `lost` what this run no longer keeps.
    pub restarted: bool,
}

/// Publishes events to every subscriber. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Envelope>,
    /// This appliance's own events only.
    local: broadcast::Sender<Envelope>,
    /// The id before this run's first: `run × RUN_SPAN`.
    base: u64,
    next_id: Arc<AtomicU64>,
    observers: Arc<RwLock<Vec<(&'static str, Observer)>>>,
    /// The last [`BACKLOG`] events. Publishing holds its lock while it sends,
    /// so a subscription taken under the lock neither misses nor repeats one.
    ring: Arc<Mutex<VecDeque<Envelope>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus whose ids start at 1 (run 0: tests and tools that keep no
    /// store).
    pub fn new() -> Self {
        Self::for_run(0)
    }

    /// The bus of run `run` of the daemon ([`crate::store`] counts them):
    /// its ids start at `run × RUN_SPAN + 1`.
    pub fn for_run(run: u64) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        let (local, _) = broadcast::channel(BACKLOG);
        let base = run.saturating_mul(RUN_SPAN);
        Self {
            sender,
            local,
            base,
            next_id: Arc::new(AtomicU64::new(base + 1)),
            observers: Arc::default(),
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(BACKLOG))),
        }
    }

    /// Registers `observer` under `name`, once: a second registration under
    /// the same name is ignored, so every event is observed exactly once.
    pub fn observe(&self, name: &'static str, observer: Observer) {
        let mut observers = self
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if observers.iter().all(|(existing, _)| *existing != name) {
            observers.push((name, observer));
        }
    }

    /// Publishes `event`; having no subscriber is normal.
    pub fn publish(&self, event: Event) {
        let observers = self
            .observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (_, observer) in &observers {
            observer(&event);
        }
        self.send(event, None);
    }

    /// Publishes what happened on another appliance of the fleet: to the
    /// subscribers of the whole feed only (not the observers nor
    /// [`EventBus::subscribe_local`], which act on this appliance's own).
    pub fn publish_from(&self, appliance: String, event: Event) {
        self.send(event, Some(appliance));
    }

    fn send(&self, event: Event, appliance: Option<String>) {
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let envelope = Envelope {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at: OffsetDateTime::now_utc(),
            event,
            appliance,
        };
        if ring.len() == BACKLOG {
            ring.pop_front();
        }
        ring.push_back(envelope.clone());
        if envelope.appliance.is_none() {
            let _ = self.local.send(envelope.clone());
        }
        let _ = self.sender.send(envelope);
    }

    /// Every event, the fleet's included.
    pub fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.sender.subscribe()
    }

    /// This appliance's own events (what it does once per event: callbacks,
    /// MQTT, forwarding to the fleet).
    pub fn subscribe_local(&self) -> broadcast::Receiver<Envelope> {
        self.local.subscribe()
    }

    /// Subscribes from the event after `last_seen`: what the ring holds of
    /// the events since, then everything new, with none missed or repeated.
    /// An id this run did not give (from an earlier run of the daemon, or
    /// never given) replays the whole ring, marked `restarted`.
    pub fn subscribe_since(&self, last_seen: u64) -> (Replay, broadcast::Receiver<Envelope>) {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        let next = self.next_id.load(Ordering::Relaxed);
        let restarted = !(self.base..next).contains(&last_seen);
        let last_seen = if restarted { self.base } else { last_seen };
        let events: Vec<Envelope> = ring.iter().filter(|e| e.id > last_seen).cloned().collect();
        let first_kept = ring.front().map_or(next, |e| e.id);
        let lost = first_kept.saturating_sub(last_seen + 1);
        let replay = Replay {
            events,
            lost,
            restarted,
        };
        (replay, receiver)
    }

    /// Subscribes with the last `count` events the ring holds first (oldest
    /// first), then everything new, with none missed or repeated: a feed
    /// opened now starts with what just happened.
    pub fn subscribe_recent(&self, count: usize) -> (Vec<Envelope>, broadcast::Receiver<Envelope>) {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        let skip = ring.len().saturating_sub(count);
        (ring.iter().skip(skip).cloned().collect(), receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_lists_every_variant_once() {
        let s = String::new;
        let every = [
            Event::SessionOpened {
                session_id: s(),
                proxy_number: s(),
                mode: s(),
            },
            Event::SessionClosed { session_id: s() },
            Event::SessionExpired { session_id: s() },
            Event::MessageRelayed {
                session_id: None,
                interaction_id: 0,
                parts: 1,
            },
            Event::MessageDelivered {
                session_id: None,
                interaction_id: 0,
            },
            Event::MessageFailed {
                session_id: None,
                interaction_id: 0,
                reason: s(),
            },
            Event::CallBridged {
                session_id: s(),
                method: s(),
            },
            Event::CallEnded {
                session_id: None,
                outcome: s(),
                duration_seconds: None,
            },
            Event::ModemUp {
                imei: s(),
                port: s(),
            },
            Event::ModemDown {
                imei: s(),
                reason: s(),
            },
            Event::MessageBlocked {
                session_id: None,
                interaction_id: 0,
                rule: s(),
            },
            Event::LoopDetected {
                session_id: s(),
                reason: s(),
            },
            Event::OptedOut {
                proxy_number: s(),
                sessions_closed: vec![],
            },
            Event::OptedIn { proxy_number: s() },
            Event::HubCreated {
                hub_id: s(),
                number: s(),
                sessions: vec![],
            },
            Event::HubRemoved {
                hub_id: s(),
                number: s(),
                sessions_closed: vec![],
            },
        ];
        let kinds: Vec<&str> = every.iter().map(Event::kind).collect();
        assert_eq!(kinds, KINDS);
    }

    #[tokio::test]
    async fn subscribers_get_events_in_order_with_ids() {
        let bus = EventBus::new();
        let mut first = bus.subscribe();
        bus.publish(Event::SessionClosed {
            session_id: "ses_1".into(),
        });
        bus.publish(Event::SessionExpired {
            session_id: "ses_2".into(),
        });
        let a = first.recv().await.unwrap();
        let b = first.recv().await.unwrap();
        assert_eq!(b.id, a.id + 1);
        assert_eq!(b.event.kind(), "session_expired");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["kind"], "session_closed");
        assert_eq!(json["session_id"], "ses_1");
    }

    #[tokio::test]
    async fn a_subscriber_coming_back_gets_what_it_missed_and_no_more() {
        let bus = EventBus::new();
        let closed = |i: usize| Event::SessionClosed {
            session_id: format!("ses_{i}"),
        };
        for i in 0..5 {
            bus.publish(closed(i));
        }
        let (replay, mut live) = bus.subscribe_since(3);
        assert_eq!(replay.lost, 0);
        assert_eq!(
            replay.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [4, 5]
        );
        bus.publish(closed(5));
        assert_eq!(live.recv().await.unwrap().id, 6);
        // Beyond the ring: the oldest are lost, and said to be.
        for i in 0..BACKLOG + 10 {
            bus.publish(closed(i));
        }
        let (replay, _) = bus.subscribe_since(2);
        assert_eq!(replay.events.len(), BACKLOG);
        assert_eq!(replay.lost, replay.events[0].id - 3);
        assert!(!replay.restarted);
        // An id this run never gave: everything kept is replayed.
        let (replay, _) = bus.subscribe_since(1_000_000);
        assert_eq!(replay.events.len(), BACKLOG);
        assert!(replay.restarted);
    }

    #[tokio::test]
    async fn ids_grow_across_runs_and_an_id_of_an_earlier_run_replays_this_one() {
        let closed = |i: usize| Event::SessionClosed {
            session_id: format!("ses_{i}"),
        };
        let first = EventBus::for_run(1);
        for i in 0..3 {
            first.publish(closed(i));
        }
        let (seen, _) = first.subscribe_recent(3);
        let last_of_first = seen.last().unwrap().id;
        assert_eq!(last_of_first, RUN_SPAN + 3);
        // The daemon restarts: run 2, whose first id is above every id of run 1.
        let second = EventBus::for_run(2);
        second.publish(closed(10));
        second.publish(closed(11));
        let (replay, mut live) = second.subscribe_since(last_of_first);
        assert!(replay.restarted);
        assert_eq!(replay.lost, 0);
        let ids: Vec<u64> = replay.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [2 * RUN_SPAN + 1, 2 * RUN_SPAN + 2]);
        assert!(ids[0] > last_of_first);
        second.publish(closed(12));
        assert_eq!(live.recv().await.unwrap().id, 2 * RUN_SPAN + 3);
        // An id of this run resumes as before, not marked.
        let (replay, _) = second.subscribe_since(2 * RUN_SPAN + 1);
        assert!(!replay.restarted);
        assert_eq!(replay.events.len(), 2);
        // Before this run's first event: everything, and nothing lost.
        let (replay, _) = second.subscribe_since(2 * RUN_SPAN);
        assert!(!replay.restarted);
        assert_eq!((replay.events.len(), replay.lost), (3, 0));
        // An id of a later run (a store restored from an older backup): as
        // one of an earlier run.
        let (replay, _) = second.subscribe_since(5 * RUN_SPAN + 7);
        assert!(replay.restarted);
        assert_eq!(replay.events.len(), 3);
        // The ring overflowed in this run: what fell out is counted.
        for i in 0..BACKLOG {
            second.publish(closed(i));
        }
        let (replay, _) = second.subscribe_since(last_of_first);
        assert_eq!(replay.events.len(), BACKLOG);
        assert_eq!(replay.lost, 3);
    }

    #[tokio::test]
    async fn a_recent_subscriber_gets_the_last_events_then_the_live_ones() {
        let bus = EventBus::new();
        let closed = |i: usize| Event::SessionClosed {
            session_id: format!("ses_{i}"),
        };
        let (none, _) = bus.subscribe_recent(10);
        assert!(none.is_empty());
        for i in 0..5 {
            bus.publish(closed(i));
        }
        let (recent, mut live) = bus.subscribe_recent(3);
        let ids: Vec<u64> = recent.iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        let (all, _) = bus.subscribe_recent(50);
        assert_eq!(all.len(), 5);
        bus.publish(closed(5));
        assert_eq!(live.recv().await.unwrap().id, 6);
    }

    #[test]
    fn an_observer_sees_each_event_once_however_often_it_registers() {
        let bus = EventBus::new();
        let seen = Arc::new(AtomicU64::new(0));
        for _ in 0..2 {
            let seen = seen.clone();
            bus.observe(
                "count",
                Arc::new(move |_| {
                    seen.fetch_add(1, Ordering::Relaxed);
                }),
            );
        }
        bus.publish(Event::SessionClosed {
            session_id: "ses_1".into(),
        });
        assert_eq!(seen.load(Ordering::Relaxed), 1);
    }
}
