//! The connection to the broker: rumqttc's event loop, polled by one task
//! that reconnects with backoff, and a feeder that hands queued messages to
//! it while it is connected.
//!
//! The last will publishes `offline` (retained) on the appliance's
//! availability topic when the broker loses us; a clean stop publishes it
//! before disconnecting. What a broken connection had not delivered (the
//! unacknowledged and the not yet sent) goes back to the front of the
//! outbox, so a broker restarted mid-traffic loses nothing the queue could
//! hold; the session is clean, so commands sent while the appliance was
//! away are not run late.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Request, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::outbox::{Class, Message};
use crate::config::{Broker, MqttConfig};

/// Requests rumqttc holds between the feeder and the socket.
const CHANNEL: usize = 64;
/// The largest packet sent or received (discovery, events with texts).
const MAX_PACKET: usize = 256 * 1024;
/// The first wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean stop waits for the broker.
const GOODBYE: Duration = Duration::from_secs(2);

/// The client's options: broker, credentials, last will, TLS.
pub fn options(
    config: &MqttConfig,
    broker: &Broker,
    client_id: String,
    will_topic: String,
    qos: QoS,
) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_seconds.max(5)))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(will_topic, "offline", qos, true));
    if let Some(username) = &config.username {
        options.set_credentials(
            username.clone(),
            config.password.clone().unwrap_or_default(),
        );
    }
    if broker.tls {
        let tls = tls_config(config.ca_file.as_deref())?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    Ok(options)
}

/// rustls trusting the system's CAs and `ca_file`'s certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is no reason to stop.
        let _ = roots.add(certificate);
    }
    if let Some(path) = ca_file {
        let problem = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", path.display());
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| problem(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| problem(&e))?;
        if certificates.is_empty() {
            return Err(problem(&"no certificate in it"));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| problem(&e))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificate: the system has none; set [mqtt] ca_file".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client and its event loop.
pub fn client(options: MqttOptions) -> (AsyncClient, EventLoop) {
    AsyncClient::new(options, CHANNEL)
}

/// The wait before connection attempt `failures + 1`: 1 s doubling to 30 s,
/// each between half and all of that so appliances do not come back at once.
fn backoff(failures: u32, random: f64) -> Duration {
    let wait = FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF);
    wait / 2 + (wait / 2).mul_f64(random.clamp(0.0, 1.0))
}

/// The messages a broken connection had not delivered.
fn undelivered(eventloop: &mut EventLoop) -> Vec<Message> {
    eventloop
        .pending
        .drain(..)
        .filter_map(|request| match request {
            Request::Publish(publish) => Some(Message {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
                retain: publish.retain,
                class: if publish.retain {
                    Class::State
                } else {
                    Class::Event
                },
            }),
            _ => None,
        })
        .collect()
}

/// What arrives from the broker, for the other tasks.
pub enum Incoming {
    Command { name: String, payload: Vec<u8> },
}

/// Polls the event loop until `shutdown`: connects, reconnects, routes what
/// arrives.
pub async fn connection(
    shared: Arc<Shared>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    commands: Option<mpsc::Sender<Incoming>>,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = shutdown.cancelled() => break,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!(broker = %shared.broker, "mqtt connected");
                let filters = shared.subscriptions(commands.is_some());
                let subscriber = client.clone();
                let qos = shared.qos;
                // Not awaited here: the event loop must keep being polled.
                tokio::spawn(async move {
                    let filters = filters
                        .into_iter()
                        .map(|path| rumqttc::SubscribeFilter::new(path, qos));
                    if let Err(error) = subscriber.subscribe_many(filters).await {
                        tracing::debug!(%error, "mqtt: cannot subscribe");
                    }
                });
                shared.set_connected(true);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                route(&shared, commands.as_ref(), &publish.topic, &publish.payload);
            }
            Ok(_) => {}
            Err(error) => {
                let was_connected = shared.set_connected(false);
                shared.outbox.requeue(undelivered(&mut eventloop));
                failures += 1;
                let wait = backoff(failures, rand::random::<f64>());
                // Said once, and again now and then while it lasts (about
                // every ten minutes once the backoff is at its longest).
                if was_connected || failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(broker = %shared.broker, error = %describe(&error),
                        retry_in = ?wait, "mqtt: no connection to the broker; retrying with backoff");
                } else {
                    tracing::debug!(broker = %shared.broker, error = %describe(&error), retry_in = ?wait,
                        "mqtt: still no connection");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    if shared.set_connected(false) {
        goodbye(&shared, &client, &mut eventloop).await;
    }
    tracing::info!("mqtt stopped");
}

/// Says `offline` and disconnects cleanly (else the last will says it).
async fn goodbye(shared: &Shared, client: &AsyncClient, eventloop: &mut EventLoop) {
    let offline = client.try_publish(shared.topics.availability(), shared.qos, true, "offline");
    if offline.is_err() || client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(GOODBYE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            format!(
                "the broker refused the connection ({code:?}): check username, password and client_id"
            )
        }
        other => other.to_string(),
    }
}

/// Sends what arrived where it belongs.
fn route(shared: &Shared, commands: Option<&mpsc::Sender<Incoming>>, topic: &str, payload: &[u8]) {
    if let (Some(commands), Some(name)) = (commands, shared.topics.command_name(topic)) {
        let incoming = Incoming::Command {
            name: name.to_string(),
            payload: payload.to_vec(),
        };
        if commands.try_send(incoming).is_err() {
            tracing::warn!(
                command = name,
                "mqtt: too many commands waiting; this one is refused"
            );
            let result = serde_json::json!({
                "command": name, "ok": false, "error": "busy",
                "message": "too many commands waiting: send it again later",
            });
            shared.outbox.push(Message::event(
                shared.topics.command_result(name),
                result.to_string(),
            ));
        }
    } else if topic == shared.topics.home_assistant_status() {
        if payload == b"online" {
            // Home Assistant (re)started: it is told everything again.
            shared.refresh.notify_one();
        }
    } else if shared.topics.discovery_object(topic).is_some() {
        shared.seen_config(topic, payload);
    }
}

/// Hands queued messages to the client while connected.
pub async fn feed(shared: Arc<Shared>, client: AsyncClient, shutdown: CancellationToken) {
    let mut connected = shared.connected.subscribe();
    loop {
        tokio::select! {
            up = connected.wait_for(|up| *up) => if up.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let message = tokio::select! {
            message = shared.outbox.next() => message,
            _ = shutdown.cancelled() => return,
        };
        if !*connected.borrow() {
            shared.outbox.requeue(vec![message]);
            continue;
        }
        let sent = client
            .publish(
                message.topic.clone(),
                shared.qos,
                message.retain,
                message.payload.clone(),
            )
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, topic = %message.topic, "mqtt: cannot queue a publish");
            if shutdown.is_cancelled() {
                return;
            }
            shared.outbox.requeue(vec![message]);
            tokio::time::sleep(FIRST_BACKOFF).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_half_a_minute_with_jitter() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(40, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(4, 0.0), Duration::from_secs(4));
    }

    #[test]
    fn a_tls_broker_gets_rustls_with_the_configured_ca() {
        let config = MqttConfig {
            url: Some("mqtts://broker.lan".into()),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..MqttConfig::default()
        };
        let broker = crate::config::parse_broker("mqtts://broker.lan").unwrap();
        let error = options(
            &config,
            &broker,
            "id".into(),
            "t/availability".into(),
            QoS::AtLeastOnce,
        )
        .unwrap_err();
        assert!(error.starts_with("ca_file /nonexistent/ca.pem"), "{error}");
    }
}
