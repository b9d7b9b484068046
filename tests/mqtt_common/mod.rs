//! A real MQTT broker for end-to-end tests: Debian's `mosquitto`, started
//! on a free port with its own configuration (users, ACL, TLS), killed and
//! restarted at will; and a watcher, an MQTT client that records every
//! message it gets, as Home Assistant would see them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;

/// How the broker is set up.
#[derive(Default)]
pub struct Setup {
    /// Users and passwords; none: anonymous clients are allowed.
    pub users: Vec<(&'static str, &'static str)>,
    /// The ACL file's text.
    pub acl: Option<String>,
    /// TLS on the listener, with a certificate for `localhost` signed by a
    /// test CA (its PEM is [`Mosquitto::ca`]).
    pub tls: bool,
}

/// A running `mosquitto`.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    config: PathBuf,
    /// The CA that signed the broker's certificate, when TLS is on.
    pub ca: Option<PathBuf>,
    log: PathBuf,
}

fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "simmask test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    let (ca_path, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_path, ca.pem()).expect("ca.pem");
    std::fs::write(&cert, server.pem()).expect("server.pem");
    std::fs::write(&key, server_key.serialize_pem()).expect("server.key");
    (ca_path, cert, key)
}

impl Mosquitto {
    pub fn start(dir: &Path, setup: &Setup) -> Mosquitto {
        let dir = dir.join("mosquitto");
        std::fs::create_dir_all(&dir).expect("broker dir");
        let port = super::common::free_port();
        let log = dir.join("mosquitto.log");
        // `user root`: stay the user we are (mosquitto started as root
        // would become `mosquitto`, who cannot read a test's files).
        let mut text = format!(
            "user root\nlistener {port} 127.0.0.1\npersistence false\nlog_dest file {}\n",
            log.display()
        );
        let mut ca = None;
        if setup.tls {
            let (ca_path, cert, key) = tls_files(&dir);
            text.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                ca_path.display(),
                cert.display(),
                key.display()
            ));
            ca = Some(ca_path);
        }
        if setup.users.is_empty() {
            text.push_str("allow_anonymous true\n");
        } else {
            let passwords = dir.join("passwd");
            for (i, (user, password)) in setup.users.iter().enumerate() {
                let mut command = Command::new("mosquitto_passwd");
                if i == 0 {
                    command.arg("-c");
                }
                let status = command
                    .arg("-b")
                    .arg(&passwords)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd (Debian's mosquitto; scripts/test installs it)");
                assert!(status.success(), "mosquitto_passwd");
            }
            text.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                passwords.display()
            ));
        }
        if let Some(acl) = &setup.acl {
            let path = dir.join("acl");
            std::fs::write(&path, acl).expect("acl");
            text.push_str(&format!("acl_file {}\n", path.display()));
        }
        let config = dir.join("mosquitto.conf");
        std::fs::write(&config, text).expect("mosquitto.conf");
        let mut broker = Mosquitto {
            child: None,
            port,
            config,
            ca,
            log,
        };
        broker.restart();
        broker
    }

    /// Starts it again (after [`Mosquitto::kill`]) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian's mosquitto; scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto never listened on {}: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the broker dies without a word to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One message as a client got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    /// When this watcher got it.
    pub arrived: time::OffsetDateTime,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

/// An MQTT client recording everything under its filters.
pub struct Watcher {
    pub client: AsyncClient,
    messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Connects (as `user`, when given) and subscribes to `filters`.
    pub async fn connect(
        broker: &Mosquitto,
        user: Option<(&str, &str)>,
        filters: &[&str],
    ) -> Watcher {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!(
            "watcher-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let host = if broker.ca.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut options = MqttOptions::new(id, host, broker.port);
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = user {
            options.set_credentials(user, password);
        }
        if let Some(ca) = &broker.ca {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca).expect("ca") {
                roots.add(certificate.expect("ca pem")).expect("ca root");
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("tls versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let messages: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let task = tokio::spawn({
            let messages = messages.clone();
            let client = client.clone();
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for filter in &filters {
                                let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            messages.lock().unwrap().push(Received {
                                topic: publish.topic.clone(),
                                payload: String::from_utf8_lossy(&publish.payload).into_owned(),
                                retain: publish.retain,
                                arrived: time::OffsetDateTime::now_utc(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), subscribed_rx)
            .await
            .expect("the watcher subscribed")
            .expect("subscribed");
        Watcher {
            client,
            messages,
            task,
        }
    }

    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// The last payload received on `topic`.
    pub fn last(&self, topic: &str) -> Option<String> {
        self.all()
            .into_iter()
            .rev()
            .find(|m| m.topic == topic)
            .map(|m| m.payload)
    }

    /// The latest payload of every topic (empty: removed).
    pub fn latest(&self) -> std::collections::BTreeMap<String, String> {
        self.all()
            .into_iter()
            .map(|m| (m.topic, m.payload))
            .collect()
    }

    /// Waits until `done` holds of what was received.
    pub async fn wait(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            if Instant::now() > deadline {
                let topics: Vec<String> = all
                    .iter()
                    .rev()
                    .take(40)
                    .map(|m| format!("{} = {}", m.topic, m.payload))
                    .collect();
                panic!(
                    "waited {within:?} for {what}; the last messages:\n{}",
                    topics.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the last payload on `topic` satisfies `done`.
    pub async fn wait_value(
        &self,
        topic: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        self.wait(topic, within, |_| {
            self.last(topic).is_some_and(|p| done(&p))
        })
        .await;
        self.last(topic).unwrap_or_default()
    }

    pub async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("publish");
    }
}
