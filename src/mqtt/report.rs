//! The reporter: turns the appliance's state and events into messages.
//!
//! Events go out as they are published on the bus. State is read the way
//! the API reads it (the pool's number views, as a viewer) and published
//! when it changes: at once when the bank's live view of a SIM changes
//! (state, signal, network), within two seconds of an event, and in full
//! every `state_interval_seconds`; everything (discovery included) again
//! on each connection and when Home Assistant comes online. Nothing is
//! read while the broker is away: the snapshot on reconnecting says it all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::discovery::{Discovery, SimDevice};
use super::outbox::Message;
use super::payload::{self, ApplianceState, Disclosure, SimState};
use super::topics::sim_key;
use crate::api::ApiState;
use crate::api::auth::{Caller, Role};
use crate::config::MqttConfig;
use crate::events::Envelope;

/// How often the bank's live view is looked at.
const TICK: Duration = Duration::from_secs(1);
/// The shortest gap between two refreshes caused by events.
const EVENT_REFRESH: Duration = Duration::from_secs(2);
/// The window of "messages relayed today".
const DAY: time::Duration = time::Duration::hours(24);

/// What the bank shows of a SIM that the state follows at once.
type Live = Vec<(String, String, bool, Option<i32>, String, String)>;

pub struct Reporter {
    pub shared: Arc<Shared>,
    pub state: ApiState,
    pub config: MqttConfig,
    pub appliance: String,
    pub started: Instant,
    /// The last payload queued per state topic.
    published: HashMap<String, Vec<u8>>,
    live: Live,
    /// SIMs absent from the bank already announced offline.
    announced_offline: BTreeSet<String>,
    /// When each SIM the bank shows unplugged was first seen so.
    unplugged_since: HashMap<String, Instant>,
    /// SIMs unplugged longer than the grace: they have left the bank.
    departed: BTreeSet<String>,
}

/// The API's view for a viewer: participants masked (the state names none
/// anyway), the appliance's own numbers shown.
fn viewer() -> Caller {
    Caller {
        name: super::commands::ACTOR.into(),
        role: Role::Viewer,
    }
}

impl Reporter {
    pub fn new(
        shared: Arc<Shared>,
        state: ApiState,
        config: MqttConfig,
        appliance: String,
    ) -> Self {
        Self {
            shared,
            state,
            config,
            appliance,
            started: Instant::now(),
            published: HashMap::new(),
            live: Vec::new(),
            announced_offline: BTreeSet::new(),
            unplugged_since: HashMap::new(),
            departed: BTreeSet::new(),
        }
    }

    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<Envelope>,
        shutdown: CancellationToken,
    ) {
        let mut connected = self.shared.connected.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval = Duration::from_secs(self.config.state_interval_seconds.max(1));
        let mut last_refresh: Option<Instant> = None;
        let mut dirty = false;
        loop {
            let mut everything = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = events.recv() => match received {
                    Ok(envelope) => {
                        self.event(&envelope).await;
                        dirty = true;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "mqtt: fell behind the event bus; events dropped");
                        self.shared.outbox.dropped(missed);
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = connected.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    everything = *connected.borrow_and_update();
                }
                _ = self.shared.refresh.notified() => everything = true,
                _ = self.shared.changed.notified() => dirty = true,
                _ = tick.tick() => {}
            }
            if !*connected.borrow() {
                continue;
            }
            if everything {
                self.published.clear();
                self.announced_offline.clear();
            }
            let live = self.live_view();
            let departed = self.departed(&live);
            let due = everything
                || live != self.live
                || departed != self.departed
                || last_refresh.is_none_or(|at| at.elapsed() >= interval)
                || (dirty && last_refresh.is_none_or(|at| at.elapsed() >= EVENT_REFRESH));
            if due {
                let full = last_refresh.is_none_or(|at| at.elapsed() >= interval);
                if full {
                    // Retained state is sent again now and then, so a message
                    // the queue dropped does not stay missing.
                    self.published.retain(|topic, _| topic.contains("/config"));
                }
                self.live = live;
                self.departed = departed;
                self.refresh().await;
                last_refresh = Some(Instant::now());
                dirty = false;
            }
        }
    }

    fn live_view(&self) -> Live {
        let mut live: Live = self
            .state
            .pool
            .sim_statuses()
            .into_iter()
            .map(|s| {
                (
                    s.iccid,
                    s.state,
                    s.healthy,
                    s.signal_dbm,
                    s.registration,
                    s.operator,
                )
            })
            .collect();
        live.sort();
        live
    }

    /// How long a SIM may be missing before its device is removed (none:
    /// never).
    fn grace(&self) -> Option<Duration> {
        let seconds = self.config.forget_missing_sims_seconds;
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    /// The SIMs of `live` unplugged for longer than the grace: they have
    /// left the bank (a SIM taken out for good, its modem with it).
    fn departed(&mut self, live: &Live) -> BTreeSet<String> {
        let now = Instant::now();
        let unplugged: BTreeSet<&String> = live
            .iter()
            .filter(|sim| sim.1 == "unplugged")
            .map(|sim| &sim.0)
            .collect();
        self.unplugged_since.retain(|id, _| unplugged.contains(id));
        for id in unplugged {
            self.unplugged_since.entry(id.clone()).or_insert(now);
        }
        let grace = self.grace();
        self.unplugged_since
            .iter()
            .filter(|(_, since)| grace.is_some_and(|grace| since.elapsed() >= grace))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Queues `payload` for the state `topic` unless it is what was last
    /// queued there.
    fn put(&mut self, topic: String, payload: Vec<u8>) {
        if self.published.get(&topic) == Some(&payload) {
            return;
        }
        self.published.insert(topic.clone(), payload.clone());
        self.shared.outbox.push(Message::state(topic, payload));
    }

    /// One event, with the interaction it concerns.
    async fn event(&self, envelope: &Envelope) {
        let disclosure = Disclosure {
            numbers: self.config.publish_numbers,
            bodies: self.config.publish_bodies,
        };
        let interaction = match payload::interaction_of(&envelope.event) {
            Some(id) => self
                .state
                .store
                .exported_interaction(id)
                .await
                .inspect_err(
                    |error| tracing::debug!(%error, id, "mqtt: cannot read an interaction"),
                )
                .ok()
                .flatten(),
            None => None,
        };
        let json = payload::event(envelope, interaction.as_ref(), disclosure);
        self.shared.outbox.push(Message::event(
            self.shared.topics.event(envelope.event.kind()),
            json.to_string(),
        ));
    }

    /// Reads the state and queues what changed.
    async fn refresh(&mut self) {
        self.put(self.shared.topics.availability(), b"online".to_vec());
        let numbers = match crate::api::pool::numbers_now(&self.state, &viewer()).await {
            Ok(numbers) => numbers,
            Err(error) => {
                tracing::warn!(error = %error.message, "mqtt: cannot read the pool");
                return;
            }
        };
        // The SIMs the bank shows, less those that have left it.
        let in_bank: BTreeSet<String> = self
            .live
            .iter()
            .map(|l| l.0.clone())
            .filter(|id| !self.departed.contains(id))
            .collect();
        let topics = self.shared.topics.clone();
        let discovery = Discovery {
            topics: &topics,
            appliance: &self.appliance,
            qos: self.config.qos,
            commands: self.config.commands,
        };
        let mut entities = Vec::new();
        if self.config.discovery {
            entities.extend(discovery.appliance());
        }
        let mut sims_up = 0;
        let mut sims = Vec::new();
        for view in numbers.iter().filter(|n| in_bank.contains(&n.id)) {
            let sim = SimState::new(view);
            let key = sim_key(&sim.id);
            if self.config.discovery {
                entities.extend(discovery.sim(&SimDevice {
                    id: sim.id.clone(),
                    key: key.clone(),
                    msisdn: sim.msisdn.clone(),
                    model: sim.model.clone(),
                }));
            }
            sims_up += usize::from(sim.state == "up");
            sims.push((key, sim));
        }
        for entity in entities {
            self.put(
                topics.discovery(entity.component, &entity.object),
                entity.config.to_string().into_bytes(),
            );
        }
        for (key, sim) in &sims {
            self.put(
                topics.sim_availability(key),
                sim.availability().as_bytes().to_vec(),
            );
            self.put(
                topics.sim_state(key),
                serde_json::to_vec(sim).unwrap_or_default(),
            );
        }
        let now = crate::clock::now();
        let relayed = self
            .state
            .store
            .messages_relayed_since(now - DAY)
            .await
            .unwrap_or_else(|error| {
                tracing::debug!(%error, "mqtt: cannot count today's relays");
                0
            });
        // The clock as /healthz reports it: the network's time against the
        // system's, and whether that looks wrong.
        let clock = crate::clock::status(crate::clock::system_sync(std::path::Path::new("/")));
        let appliance = ApplianceState {
            name: self.appliance.clone(),
            version: env!("CARGO_PKG_VERSION"),
            sims: sims.len(),
            sims_up,
            open_sessions: numbers.iter().map(|n| n.open_sessions).sum(),
            messages_relayed_today: relayed,
            clock_offset_seconds: clock.offset_seconds,
            clock_suspect: clock.suspect,
            events_dropped: self.shared.outbox.dropped_total(),
        };
        self.put(
            topics.state(),
            serde_json::to_vec(&appliance).unwrap_or_default(),
        );
        let keys: BTreeSet<String> = in_bank.iter().map(|id| sim_key(id)).collect();
        self.absent(&keys);
    }

    /// SIMs with discovery on the broker that are not in the bank: those
    /// the bank has not seen since the daemon started go offline at once
    /// and are removed once the grace is over; those unplugged for longer
    /// than the grace are removed at once.
    fn absent(&mut self, in_bank: &BTreeSet<String>) {
        let mut absent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (topic, key) in self.shared.configs_on_broker() {
            if let Some(key) = key.filter(|key| !in_bank.contains(key)) {
                absent.entry(key).or_default().push(topic);
            }
        }
        let since_start = self
            .grace()
            .is_some_and(|grace| self.started.elapsed() >= grace);
        let departed: BTreeSet<String> = self.departed.iter().map(|id| sim_key(id)).collect();
        let topics = self.shared.topics.clone();
        for (key, configs) in absent {
            if since_start || departed.contains(&key) {
                tracing::info!(sim = %key, "mqtt: a SIM left the bank; its Home Assistant device is removed");
                for topic in configs
                    .into_iter()
                    .chain([topics.sim_state(&key), topics.sim_availability(&key)])
                {
                    self.shared.forget_config(&topic);
                    self.published.remove(&topic);
                    self.shared.outbox.push(Message::state(topic, Vec::new()));
                }
                self.announced_offline.remove(&key);
            } else if self.announced_offline.insert(key.clone()) {
                self.put(topics.sim_availability(&key), b"offline".to_vec());
            }
        }
    }
}
