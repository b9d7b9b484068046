//! The virtual GSM network: a bank of virtual modems behind real
//! pseudo-terminals, handsets, and the control API.
//!
//! ```text
//!  client ─pty─► pty (port task: pacing, trace, faults, boot/periodic noise)
//!                 │ bytes                    ▲ URCs (queue + Notify)
//!                 ▼                          │
//!               interpreter (V.250, 27.007, 27.005; pure) ──► network
//!                                                  (SIMs, handsets, SMSC,
//!  control API (axum) ─────────────────────────────►  storages, calls)
//! ```
//!
//! The modules:
//!
//! - [`network`]: the state every modem, the control API and the ticker
//!   share, behind one lock, and what the network does with it: each bank
//!   modem's record and port (URC queue, boot, plug, trace), the SMSC
//!   (routing, held messages, concatenation, delivery as `+CMT`/`+CMTI`,
//!   status reports), handsets, faults with registration and the PIN
//!   lock, and the call service around [`calls`].
//! - [`calls`]: the pure model of voice calls: set-up, release,
//!   supplementary services (`+CHLD`) and the notifications the network
//!   sends of them (`+CSSI`/`+CSSU`), ring and set-up timers, and what
//!   each party is shown and hears.
//! - [`interpreter`]: one modem's AT commands: V.250 framing, the general
//!   27.007 commands, SMS commands, call commands.
//! - [`storage`]: each SIM's message storages; [`textmode`]: text-mode
//!   renderings of messages; [`trace`]: the lines seen on each port;
//!   [`identity`]: IMEI, IMSI, ICCID and MSISDN derived from the seed.
//! - [`pty`]: one task per modem owning its pty across unplug and plug.
//! - [`control`]: the HTTP control API (`simmask sim` itself is `crate::cli::sim`).
//!
//! From the rest of the crate the simulator uses only [`crate::pdu`],
//! [`crate::profile`] and [`crate::number`].

pub mod calls;
pub mod control;
pub mod identity;
pub mod interpreter;
mod line_clock;
pub mod network;
pub mod pty;
pub mod storage;
pub mod textmode;
pub mod trace;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::profile::{ProfileError, Profiles};
use identity::Identity;
use network::Network;

/// Errors starting or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A pseudo-terminal could not be opened or configured.
    #[error("sim pty: {0}")]
    Pty(String),
    /// The requested model profile does not exist.
    #[error("sim profile: {0}")]
    Profile(#[from] ProfileError),
    /// The link directory or a link could not be created.
    #[error("sim link {path}: {source}")]
    Link {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The SIGINT/SIGTERM handlers could not be installed.
    #[error("sim signal handlers: {0}")]
    Signal(std::io::Error),
    /// The bank description could not be serialised.
    #[error("sim describe: {0}")]
    Describe(#[from] serde_json::Error),
    /// The control address could not be bound.
    #[error("sim control {addr}: {source}")]
    Control {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How to start a simulated bank.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of virtual modems.
    pub modems: usize,
    /// Profile names, cycled over the modems.
    pub profiles: Vec<String>,
    /// Control API address (port 0 picks a free port).
    pub control: SocketAddr,
    /// Directory for `modem0`… symlinks to the ptys, if any.
    pub links: Option<PathBuf>,
    /// Seed for the identities.
    pub seed: u64,
    /// Pace each pty at this many bits per second (`--baud`), as a real
    /// serial line at 8N1 carries `baud / 10` bytes per second.
    pub baud: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            modems: 1,
            profiles: vec!["generic".into()],
            control: SocketAddr::from(([127, 0, 0, 1], 0)),
            links: None,
            seed: 1,
            baud: None,
        }
    }
}

/// One modem as the bank description shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModemInfo {
    pub index: usize,
    pub path: PathBuf,
    pub link: Option<PathBuf>,
    pub imei: String,
    pub iccid: String,
    pub imsi: String,
    pub msisdn: String,
    pub model: String,
    pub profile: String,
}

/// The bank description printed as one JSON line when the simulator is ready.
#[derive(Debug, Clone, Serialize)]
pub struct BankDescription {
    pub control: String,
    pub modems: Vec<ModemInfo>,
}

/// How often the network retries held messages and expires
/// unacknowledged direct deliveries.
const TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// A running simulator.
pub struct Simulator {
    description: BankDescription,
    network: Network,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Opens the ptys, creates the links and serves the control API.
    pub async fn start(config: SimConfig) -> Result<Simulator, SimError> {
        let profiles = Profiles::builtin();
        let names = if config.profiles.is_empty() {
            vec!["generic".to_string()]
        } else {
            config.profiles.clone()
        };
        if let Some(dir) = &config.links {
            std::fs::create_dir_all(dir).map_err(|source| SimError::Link {
                path: dir.clone(),
                source,
            })?;
        }
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut bank = Vec::new();
        for index in 0..config.modems {
            let name = &names[index % names.len()];
            bank.push((
                profiles.get(name)?.clone(),
                Identity::generate(config.seed, index),
            ));
        }
        let network = Network::new(bank.clone());
        let mut modems = Vec::new();
        for (index, (profile, identity)) in bank.into_iter().enumerate() {
            let pty = pty::Pty::open()?;
            let link_name = format!("modem{index}");
            let link = match &config.links {
                Some(dir) => {
                    let link = dir.join(&link_name);
                    pty::make_link(&link, &pty.path)?;
                    Some(link)
                }
                None => None,
            };
            modems.push(ModemInfo {
                index,
                path: pty.path.clone(),
                link,
                imei: identity.imei.clone(),
                iccid: identity.iccid.clone(),
                imsi: identity.imsi.clone(),
                msisdn: identity.msisdn.clone(),
                model: profile.identity.model.clone(),
                profile: profile.name.clone(),
            });
            let (port_tx, port_rx) = tokio::sync::mpsc::unbounded_channel();
            network.attach_port(index, port_tx);
            // Recorded as plugged before the task runs, so that a client
            // reading the description sees the port at once.
            network.set_plugged(index, Some(pty.path.clone()), modems[index].link.clone());
            let setup = pty::PortSetup {
                network: network.clone(),
                index,
                links: config.links.clone(),
                link_name,
                baud: config.baud,
            };
            tasks.push(tokio::spawn(pty::run_port(
                setup,
                pty,
                port_rx,
                stop.child_token(),
            )));
        }
        let ticker = network.clone();
        let ticker_stop = stop.child_token();
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    () = ticker_stop.cancelled() => return,
                    _ = interval.tick() => ticker.tick(),
                }
            }
        }));
        let listener = tokio::net::TcpListener::bind(config.control)
            .await
            .map_err(|source| SimError::Control {
                addr: config.control,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| SimError::Control {
            addr: config.control,
            source,
        })?;
        tasks.push(tokio::spawn(control::serve(
            listener,
            modems.clone(),
            network.clone(),
            stop.child_token(),
        )));
        Ok(Simulator {
            description: BankDescription {
                control: format!("http://{bound}"),
                modems,
            },
            network,
            stop,
            tasks,
        })
    }

    /// The bank as printed on start.
    pub fn description(&self) -> &BankDescription {
        &self.description
    }

    /// The network, for tests and the demo that drive it in-process.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The control API base URL.
    pub fn control_url(&self) -> &str {
        &self.description.control
    }

    /// Stops every modem and the control API and removes the links.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        // Each port task removed its current link; the first ones are
        // removed too in case a task had already ended.
        for modem in &self.description.modems {
            if let Some(link) = &modem.link {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}
