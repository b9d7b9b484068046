//! The bench's rig: a virtual bank and the daemon on it, either in this
//! process or as two separate processes (`simmask sim` and `simmask run`,
//! the way an operator runs them), with the same handles to both: the
//! simulator's control URL, the daemon's API, the modems, and the daemon's
//! CPU time and peak memory as the kernel accounts them. With separate
//! processes, `SIMMASK_BENCH_DAEMON=/path/to/simmask` runs that build's
//! daemon instead, to compare builds on the same bench.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{RunOptions, run};
use crate::masking::Mode;
use crate::number::PhoneNumber;
use crate::profile::Profiles;
use crate::sim::{SimConfig, Simulator};
use crate::store::{ImportedSession, Store};

/// The admin token the rig's daemon accepts.
pub const TOKEN: &str = "smk_bench_admin_token_for_this_rig_only";

/// How long every port must stay silent before the start-up counts as
/// over (see [`Rig::wait_quiet`]).
const QUIET: Duration = Duration::from_millis(300);

/// How new messages reach the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Receive {
    /// As the modem's profile says.
    Profile,
    /// Stored on the SIM and announced by `+CMTI` (`+CNMI` mt=1).
    Stored,
    /// Routed to the host as `+CMT`, acknowledged by `AT+CNMA` (mt=2).
    Direct,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub modems: usize,
    pub profile: String,
    pub baud: Option<u32>,
    pub separate_processes: bool,
    pub receive: Receive,
    /// Open sessions to seed the store with before the daemon starts, on
    /// top of those the bench opens.
    pub seed_sessions: usize,
    /// `[sms] delivery_reports` of the daemon.
    pub delivery_reports: bool,
}

/// One virtual modem as `simmask sim` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct RigModem {
    pub index: usize,
    pub link: Option<PathBuf>,
    pub imei: String,
    pub iccid: String,
    pub imsi: String,
    pub msisdn: String,
}

#[derive(Debug, Deserialize)]
struct Description {
    control: String,
    modems: Vec<RigModem>,
}

enum Running {
    InProcess {
        simulator: Simulator,
        stop: CancellationToken,
        daemon: JoinHandle<Result<(), crate::daemon::DaemonError>>,
    },
    Processes {
        simulator: Process,
        daemon: Process,
    },
}

/// A running rig. Stop it with [`Rig::stop`].
pub struct Rig {
    pub control: String,
    pub api: String,
    pub modems: Vec<RigModem>,
    pub client: reqwest::Client,
    running: Running,
    _dir: tempfile::TempDir,
}

/// CPU time and peak resident memory of a process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
}

/// A child process stopped (SIGTERM, then its whole group) when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// SIGTERM, a few seconds to go, then SIGKILL to its process group.
fn stop_child(child: &mut Child) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

impl Rig {
    /// Starts the simulator, seeds the store, starts the daemon and waits
    /// until every SIM is healthy in its pool.
    pub async fn start(options: &RigOptions) -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir()?;
        let links = dir.path().join("links");
        let db = dir.path().join("bench.db");
        let (control, modems, simulator) = if options.separate_processes {
            let (process, description) = spawn_simulator(options, &links)?;
            (description.control, description.modems, Err(process))
        } else {
            let simulator = Simulator::start(SimConfig {
                modems: options.modems,
                profiles: vec![options.profile.clone()],
                control: "127.0.0.1:0".parse()?,
                links: Some(links.clone()),
                seed: 7,
                baud: options.baud,
            })
            .await?;
            let description: Description =
                serde_json::from_value(serde_json::to_value(simulator.description())?)?;
            (description.control, description.modems, Ok(simulator))
        };
        seed_store(&db, &modems, options.seed_sessions).await?;
        let profiles_dir = receive_override(dir.path(), &options.profile, options.receive)?;
        let listen = crate::bench::free_local_port()?;
        let config_text = format!(
            "[api]\nlisten = \"{listen}\"\n[store]\npath = \"{db}\"\n[modems]\nports = [\"{links}/modem*\"]\npoll_interval_seconds = 30\n{profiles}{baud}[sms]\nper_minute = 100000\nper_day = 10000000\ndelivery_reports = {reports}\n",
            db = db.display(),
            links = links.display(),
            profiles = profiles_dir
                .map(|d| format!("profiles_dir = \"{}\"\n", d.display()))
                .unwrap_or_default(),
            baud = options
                .baud
                .map(|b| format!("baud = {b}\n"))
                .unwrap_or_default(),
            reports = options.delivery_reports,
        );
        let config_path = dir.path().join("simmask.toml");
        std::fs::write(&config_path, &config_text)?;
        let api = format!("http://{listen}/api/v1");
        let running = match simulator {
            Ok(simulator) => {
                let config = Config::parse(&config_text, "bench")?;
                let stop = CancellationToken::new();
                let (ready, bound) = oneshot::channel::<SocketAddr>();
                let daemon = tokio::spawn(run(
                    config,
                    RunOptions {
                        admin_token: Some(TOKEN.into()),
                        stop: stop.clone(),
                        ready: Some(ready),
                        reload_from: None,
                    },
                ));
                bound.await.context("the daemon did not start")?;
                Running::InProcess {
                    simulator,
                    stop,
                    daemon,
                }
            }
            Err(simulator) => {
                let daemon = Command::new(daemon_binary()?)
                    .args(["run", "--config"])
                    .arg(&config_path)
                    .env("SIMMASK_ADMIN_TOKEN", TOKEN)
                    .env("RUST_LOG", "simmask=warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .context("starting simmask run")?;
                Running::Processes {
                    simulator,
                    daemon: Process(daemon),
                }
            }
        };
        let rig = Rig {
            control,
            api,
            modems,
            client: reqwest::Client::new(),
            running,
            _dir: dir,
        };
        rig.wait_healthy().await?;
        rig.wait_quiet().await?;
        Ok(rig)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let healthy = match self.api_get("/numbers").await {
                Ok(numbers) => numbers
                    .as_array()
                    .map(|n| n.iter().filter(|n| n["healthy"] == true).count())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if healthy == self.modems.len() {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the bank did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no port has carried a line for [`QUIET`]: the daemon's
    /// start-up exchange with each modem (listing stored messages, the
    /// first health poll) is over. Traffic sent during it measured the
    /// start-up, not the relay: the first message of a run queued behind
    /// those commands on a paced line (23 ms where the others took 1).
    async fn wait_quiet(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let mut lengths = Vec::with_capacity(self.modems.len());
            for index in 0..self.modems.len() {
                lengths.push(self.trace(index, 0).await?.len());
            }
            if lengths == seen {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the modems' lines did not fall quiet after the start"
            );
            seen = lengths;
            tokio::time::sleep(QUIET).await;
        }
    }

    pub async fn api_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Opens a session between `a` and `b`; returns its proxy number.
    pub async fn open_session(&self, a: &str, b: &str) -> anyhow::Result<String> {
        let session: Value = self
            .client
            .post(format!("{}/sessions", self.api))
            .bearer_auth(TOKEN)
            .json(&json!({"participants": [a, b], "mode": "sms"}))
            .send()
            .await?
            .json()
            .await?;
        session["proxy_number"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("session not opened: {session}"))
    }

    /// A handset sends `text` to `to` through the network.
    pub async fn handset_sms(&self, from: &str, to: &str, text: &str) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/handsets/{from}/sms", self.control))
            .json(&json!({"to": to, "text": text}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// How many messages `handset` has received.
    pub async fn received(&self, handset: &str) -> anyhow::Result<usize> {
        Ok(self.received_texts(handset).await?.len())
    }

    /// The texts a handset received, in order.
    pub async fn received_texts(&self, handset: &str) -> anyhow::Result<Vec<String>> {
        let got: Vec<Value> = self
            .client
            .get(format!("{}/handsets/{handset}/messages", self.control))
            .send()
            .await?
            .json()
            .await?;
        Ok(got
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The trace of modem `index` after `since_us`.
    pub async fn trace(&self, index: usize, since_us: u64) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .client
            .get(format!(
                "{}/modems/{index}/trace?since={since_us}",
                self.control
            ))
            .send()
            .await?
            .json()
            .await?)
    }

    /// The daemon's CPU time and peak memory so far. In process, that is
    /// this whole process (simulator and bench included).
    pub fn daemon_usage(&self) -> Usage {
        match &self.running {
            Running::InProcess { .. } => process_usage("self"),
            Running::Processes { daemon, .. } => process_usage(&daemon.0.id().to_string()),
        }
    }

    /// The daemon's process id when it runs apart.
    pub fn daemon_pid(&self) -> Option<u32> {
        match &self.running {
            Running::InProcess { .. } => None,
            Running::Processes { daemon, .. } => Some(daemon.0.id()),
        }
    }

    /// Which process [`Rig::daemon_usage`] measures.
    pub fn measured_process(&self) -> &'static str {
        match &self.running {
            Running::InProcess { .. } => "the whole bench process (simulator and daemon)",
            Running::Processes { .. } => "the daemon process (simmask run)",
        }
    }

    /// Stops the daemon (cleanly) and the simulator.
    pub async fn stop(self) {
        match self.running {
            Running::InProcess {
                simulator,
                stop,
                daemon,
            } => {
                stop.cancel();
                let _ = daemon.await;
                simulator.shutdown().await;
            }
            Running::Processes { simulator, daemon } => {
                tokio::task::spawn_blocking(move || {
                    drop(daemon);
                    drop(simulator);
                })
                .await
                .ok();
            }
        }
    }
}

/// The `simmask` that runs the daemon apart: this one, or the build named
/// by `SIMMASK_BENCH_DAEMON` (to measure an older or newer daemon on the
/// same simulator and bench).
fn daemon_binary() -> std::io::Result<PathBuf> {
    match std::env::var_os("SIMMASK_BENCH_DAEMON") {
        Some(path) => Ok(PathBuf::from(path)),
        None => std::env::current_exe(),
    }
}

fn spawn_simulator(options: &RigOptions, links: &Path) -> anyhow::Result<(Process, Description)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["sim", "--modems", &options.modems.to_string()])
        .args(["--profile", &options.profile, "--seed", "7"])
        .arg("--links")
        .arg(links)
        .args(["--control", "127.0.0.1:0"]);
    if let Some(baud) = options.baud {
        command.args(["--baud", &baud.to_string()]);
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting simmask sim")?;
    let stdout = child.stdout.take().context("the simulator's stdout")?;
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let description: Description =
        serde_json::from_str(&line).context("the simulator's description line")?;
    Ok((process, description))
}

/// Records the bank's SIMs and imports `sessions` open sessions spread over
/// them, between numbers the bench's handsets never use.
async fn seed_store(db: &Path, modems: &[RigModem], sessions: usize) -> anyhow::Result<()> {
    if sessions == 0 {
        return Ok(());
    }
    let store = Store::open(db)?;
    let now = OffsetDateTime::now_utc();
    for modem in modems {
        store
            .upsert_sim(
                modem.iccid.clone(),
                PhoneNumber::from_e164(&modem.msisdn)?,
                modem.imsi.clone(),
                // The daemon records the modem (and links it) when it finds it.
                None,
                now,
            )
            .await?;
    }
    let all: Vec<usize> = (0..sessions).collect();
    for chunk in all.chunks(50_000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                Ok(ImportedSession {
                    proxy_iccid: modems[i % modems.len()].iccid.clone(),
                    participants: [
                        PhoneNumber::from_e164(&format!("+4475{:08}", 2 * i))?,
                        PhoneNumber::from_e164(&format!("+4475{:08}", 2 * i + 1))?,
                    ],
                    mode: Mode::Sms,
                    label: None,
                    expires_at: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.import_sessions(batch, now).await?;
    }
    Ok(())
}

/// A profiles directory whose copy of `profile` routes new messages the
/// way `receive` asks, or `None` to keep the profile as it is.
fn receive_override(
    dir: &Path,
    profile: &str,
    receive: Receive,
) -> anyhow::Result<Option<PathBuf>> {
    let mt = match receive {
        Receive::Profile => return Ok(None),
        Receive::Stored => "1",
        Receive::Direct => "2",
    };
    let mut copy = Profiles::builtin().get(profile)?.clone();
    let mut fields: Vec<String> = copy.sms.cnmi.split(',').map(str::to_string).collect();
    if let Some(field) = fields.get_mut(1) {
        *field = mt.to_string();
    }
    copy.sms.cnmi = fields.join(",");
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles)?;
    std::fs::write(
        profiles.join(format!("{profile}.toml")),
        toml::to_string(&copy)?,
    )?;
    Ok(Some(profiles))
}

/// CPU seconds (user + system) and peak RSS of `/proc/<pid>`.
pub fn process_usage(pid: &str) -> Usage {
    // /proc reports CPU times in USER_HZ, 100 on every Linux architecture.
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after ')'.
    let cpu_seconds = (ticks(11) + ticks(12)) / USER_HZ;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    Usage {
        cpu_seconds,
        peak_rss_mb: peak_kb / 1024.0,
    }
}
