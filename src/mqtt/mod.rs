//! MQTT: the appliance's events and health on a broker, the way Home
//! Assistant discovers them, and (opt-in) commands. Another door beside
//! the web API, and built on it: the state is the API's number views as a
//! viewer reads them, events are the bus's as `/api/v1/events` streams them,
//! commands run the API's admin actions. Hence its layer, above the API.
//!
//! ```text
//!  event bus ──► reporter ──┐                 ┌──► connection (rumqttc event loop,
//!  pool, store ─┘           ├──► outbox ──► feeder     reconnects with backoff) ◄──► broker
//!  commands task ◄──────────┘   (bounded)                 │ commands
//!        ▲                                                │
//!        └────────────────────────────────────────────────┘
//! ```
//!
//! A broker that is down or slow never slows the relay: the relay only
//! publishes on the bus (never waits for a subscriber), and everything on
//! the way to the broker goes through the [`outbox::Outbox`], bounded, the
//! oldest state dropped first, dropped events counted
//! (`simmask_mqtt_events_dropped_total`). State is not even read while the
//! broker is away.
//!
//! The client is rumqttc: pure Rust on tokio (no C library to cross-build
//! for the Pi), TLS through rustls as the rest of the crate, maintained and
//! widely used; its event loop is ours to poll, so reconnection, backoff
//! and what happens to undelivered messages are decided here.

mod commands;
mod discovery;
mod link;
mod outbox;
mod payload;
mod report;
mod topics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rumqttc::QoS;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use topics::{Topics, sim_key};

use crate::api::ApiState;
use crate::config::{Broker, Config};
use link::Incoming;
use outbox::{Message, Outbox};

/// Commands waiting their turn; more are refused (`busy`).
const COMMANDS_WAITING: usize = 16;

/// What the tasks share.
struct Shared {
    topics: Topics,
    qos: QoS,
    broker: Broker,
    outbox: Outbox,
    /// True while the broker has accepted the connection.
    connected: watch::Sender<bool>,
    /// Everything is to be published again (Home Assistant came online).
    refresh: Notify,
    /// The state changed outside the bus's events (a command).
    changed: Notify,
    /// Our discovery configurations the broker holds, by topic, with the
    /// SIM key they belong to (none: the appliance's).
    configs: Mutex<BTreeMap<String, Option<String>>>,
}

impl Shared {
    /// Sets the connection's state; answers whether it was connected.
    fn set_connected(&self, connected: bool) -> bool {
        crate::metrics::mqtt_connected(connected);
        self.connected.send_replace(connected)
    }

    /// The topics subscribed to on each connection.
    fn subscriptions(&self, commands: bool) -> Vec<String> {
        let mut filters = vec![
            self.topics.home_assistant_status(),
            self.topics.discoveries(),
        ];
        if commands {
            filters.push(self.topics.commands());
        }
        filters
    }

    /// A discovery configuration the broker holds (empty: removed).
    fn seen_config(&self, topic: &str, payload: &[u8]) {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if payload.is_empty() {
            configs.remove(topic);
            return;
        }
        let sim_prefix = format!("{}_sim_", self.topics.node);
        let key = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|config| {
                config["device"]["identifiers"][0]
                    .as_str()
                    .and_then(|id| id.strip_prefix(&sim_prefix))
                    .map(str::to_string)
            });
        configs.insert(topic.to_string(), key);
    }

    fn forget_config(&self, topic: &str) {
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
    }

    fn configs_on_broker(&self) -> Vec<(String, Option<String>)> {
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(topic, key)| (topic.clone(), key.clone()))
            .collect()
    }
}

/// Starts publishing to the configured broker until `shutdown`, or returns
/// `None` when `[mqtt]` names no broker (or its TLS cannot be set up, which
/// is logged).
pub fn spawn(
    config: &Config,
    state: ApiState,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let mqtt = config.mqtt.clone();
    let broker = mqtt.broker()?;
    let appliance = config.appliance.name();
    let topics = Topics::new(
        mqtt.prefix(&appliance),
        mqtt.discovery_prefix.clone(),
        &appliance,
    );
    let qos = match mqtt.qos {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    };
    let options = match link::options(
        &mqtt,
        &broker,
        mqtt.client_id(&appliance),
        topics.availability(),
        qos,
    ) {
        Ok(options) => options,
        Err(error) => {
            tracing::error!(%error, "mqtt: cannot set up the connection; MQTT is off");
            return None;
        }
    };
    tracing::info!(%broker, prefix = %topics.prefix, discovery = mqtt.discovery,
        commands = mqtt.commands, "mqtt: publishing to the broker");
    let (connected, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        topics,
        qos,
        broker,
        outbox: Outbox::new(mqtt.queue_size),
        connected,
        refresh: Notify::new(),
        changed: Notify::new(),
        configs: Mutex::default(),
    });
    crate::metrics::mqtt_connected(false);
    let events = state.events.subscribe_local();
    let (client, eventloop) = link::client(options);
    let tasks = TaskTracker::new();
    let commands = mqtt.commands.then(|| {
        let (sender, receiver) = mpsc::channel(COMMANDS_WAITING);
        tasks.spawn(serve_commands(
            shared.clone(),
            state.clone(),
            receiver,
            shutdown.clone(),
        ));
        sender
    });
    let reporter = report::Reporter::new(shared.clone(), state, mqtt, appliance);
    tasks.spawn(reporter.run(events, shutdown.clone()));
    tasks.spawn(link::feed(shared.clone(), client.clone(), shutdown.clone()));
    tasks.spawn(link::connection(
        shared, client, eventloop, commands, shutdown,
    ));
    tasks.close();
    Some(tokio::spawn(async move { tasks.wait().await }))
}

/// Runs commands one at a time, each result published.
async fn serve_commands(
    shared: Arc<Shared>,
    state: ApiState,
    mut incoming: mpsc::Receiver<Incoming>,
    shutdown: CancellationToken,
) {
    loop {
        let Incoming::Command { name, payload } = tokio::select! {
            received = incoming.recv() => match received {
                Some(command) => command,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let (id, parsed) = commands::parse(&name, &payload);
        let ussd_sim = match &parsed {
            Ok(commands::Command::Ussd { sim, code }) => Some((sim.clone(), code.clone())),
            _ => None,
        };
        let outcome = match parsed {
            Ok(command) => commands::run(&state, command).await,
            Err(refused) => Err(refused),
        };
        match &outcome {
            Ok(_) => tracing::debug!(command = %name, "mqtt: command done"),
            Err(refused) => {
                tracing::info!(command = %name, error = refused.error, message = %refused.message,
                    "mqtt: command refused")
            }
        }
        let result = commands::result(&name, id, &outcome);
        if let Some((sim, code)) = ussd_sim {
            let mut reply = result.clone();
            if let Some(object) = reply.as_object_mut() {
                object.insert("code".into(), code.into());
            }
            shared.outbox.push(Message::event(
                shared.topics.sim_ussd(&sim_key(&sim)),
                reply.to_string(),
            ));
        }
        shared.outbox.push(Message::event(
            shared.topics.command_result(&name),
            result.to_string(),
        ));
        if outcome.is_ok() {
            shared.changed.notify_one();
        }
    }
}
