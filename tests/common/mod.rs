//! Processes for end-to-end tests: `simmask sim` (the virtual network) and
//! `simmask run` (the daemon), driven through their real doors: the
//! simulator's control API, the daemon's HTTP API, ptys in between.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "smk_test_admin_token_for_end_to_end_tests";

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = kill(pid, signal);
    }
}

impl Process {
    /// SIGTERM, then waits for the exit; `true` when it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `simmask sim`.
pub struct Sim {
    pub process: Process,
    pub control: String,
    pub bank: Value,
    pub links: PathBuf,
}

impl Sim {
    pub fn start(dir: &Path, modems: usize, profile: &str) -> Sim {
        Self::start_with(dir, modems, profile, &[])
    }

    pub fn start_with(dir: &Path, modems: usize, profile: &str, extra: &[&str]) -> Sim {
        let links = dir.join("links");
        let mut child = Command::new(env!("CARGO_BIN_EXE_simmask"))
            .args(["sim", "--modems", &modems.to_string(), "--profile", profile])
            .arg("--links")
            .arg(&links)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("simmask sim runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bank line");
        let bank: Value = serde_json::from_str(&line).expect("bank JSON");
        Sim {
            process: Process { child },
            control: bank["control"].as_str().expect("control").to_string(),
            bank,
            links,
        }
    }

    pub fn iccid(&self, index: usize) -> String {
        self.bank["modems"][index]["iccid"]
            .as_str()
            .expect("iccid")
            .to_string()
    }

    /// `[[sims]]` entries opting every SIM of the bank in to bridging by
    /// explicit call transfer (the default is multiparty).
    pub fn transfer_opt_in(&self) -> String {
        let count = self.bank["modems"].as_array().map_or(0, Vec::len);
        (0..count)
            .map(|i| {
                format!(
                    "\n[[sims]]\niccid = \"{}\"\nvoice_method = \"transfer\"\n",
                    self.iccid(i)
                )
            })
            .collect()
    }

    pub fn msisdn(&self, index: usize) -> String {
        self.bank["modems"][index]["msisdn"]
            .as_str()
            .expect("msisdn")
            .to_string()
    }

    /// A handset sends an SMS.
    pub async fn handset_sms(&self, from: &str, to: &str, text: &str) {
        let response = client()
            .post(format!("{}/handsets/{from}/sms", self.control))
            .json(&json!({"to": to, "text": text}))
            .send()
            .await
            .expect("sim control");
        assert!(
            response.status().is_success(),
            "handset sms: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// What a handset has received.
    pub async fn messages(&self, number: &str) -> Vec<Value> {
        let response = client()
            .get(format!("{}/handsets/{number}/messages", self.control))
            .send()
            .await
            .expect("sim control");
        response.json::<Vec<Value>>().await.expect("messages JSON")
    }

    /// Waits until `number` has at least `count` messages.
    pub async fn wait_messages(&self, number: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages(number).await;
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `number` has received every one of `texts` (repeats
    /// allowed: a count of messages could be reached by a repeat before the
    /// last text arrives); answers everything it received.
    pub async fn wait_texts(&self, number: &str, texts: &[String], within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages(number).await;
            let all_in = texts
                .iter()
                .all(|text| messages.iter().any(|m| m["text"] == text.as_str()));
            if all_in || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        client()
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .expect("sim control")
    }

    /// A handset's call, as the simulator's control API shows it.
    pub async fn call_state(&self, number: &str) -> Value {
        client()
            .get(format!("{}/handsets/{number}/call", self.control))
            .send()
            .await
            .expect("sim control")
            .json()
            .await
            .expect("call JSON")
    }

    /// Polls a handset until `done` holds for its call (60 s at most).
    pub async fn wait_call(
        &self,
        number: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_call_within(number, what, Duration::from_secs(60), done)
            .await
    }

    pub async fn wait_call_within(
        &self,
        number: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.call_state(number).await;
            if done(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "{number} never {what}: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A handset acts on a call (`dial`, `answer`, `hangup`, `dtmf`…).
    pub async fn act(&self, number: &str, action: &str, body: Value) {
        let response = self
            .post(&format!("/handsets/{number}/{action}"), body)
            .await;
        let status = response.status();
        assert!(
            status.is_success(),
            "{action} by {number}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// `callee` rings showing `proxy` and answers; returns once each of
    /// `caller` and `callee` hears only the other, each shown the proxy
    /// as the other end, with their call states.
    pub async fn answer_through(&self, proxy: &str, caller: &str, callee: &str) -> (Value, Value) {
        let ringing = self
            .wait_call(callee, "rings", |s| s["state"] == "ringing")
            .await;
        assert_eq!(
            ringing["caller_id"], proxy,
            "the callee sees the proxy only"
        );
        self.act(callee, "answer", json!({})).await;
        let mut talking = Vec::new();
        for (number, other) in [(caller, callee), (callee, caller)] {
            let state = self
                .wait_call(number, "hears the other", |s| {
                    s["connected_to"] == json!([other])
                })
                .await;
            assert_eq!(state["caller_id"], proxy, "{number}: {state}");
            talking.push(state);
        }
        let callee_state = talking.pop().expect("two");
        (talking.pop().expect("two"), callee_state)
    }

    /// `caller` dials `proxy`, then [`Sim::answer_through`].
    pub async fn bridge(&self, proxy: &str, caller: &str, callee: &str) -> (Value, Value) {
        self.act(caller, "dial", json!({"to": proxy})).await;
        self.answer_through(proxy, caller, callee).await
    }

    /// `caller` hangs up; both it and `callee` are idle again.
    pub async fn hang_up(&self, caller: &str, callee: &str) {
        self.act(caller, "hangup", json!({})).await;
        self.wait_call(callee, "hung up too", |s| s["state"] == "idle")
            .await;
        self.wait_call(caller, "idle", |s| s["state"] == "idle")
            .await;
    }

    pub async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        client()
            .put(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .expect("sim control")
    }
}

/// Messages' senders and texts.
pub fn texts(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap_or_default().to_string(),
                m["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `simmask sim` with `modems` modems of `profile` (a comma-separated list)
/// and `simmask run` on them with `extra` appended to its configuration,
/// every SIM up.
pub async fn start_bank(dir: &Path, modems: usize, profile: &str, extra: &str) -> (Sim, Daemon) {
    let sim = Sim::start(dir, modems, profile);
    let daemon = Daemon::start_on(dir, &sim, extra).await;
    (sim, daemon)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A running `simmask run`.
pub struct Daemon {
    pub process: Process,
    pub url: String,
    pub config: PathBuf,
}

/// A daemon configuration for the simulator's links in `dir`.
pub fn write_config(dir: &Path, sim: &Sim, port: u16, extra: &str) -> PathBuf {
    let config = dir.join("simmask.toml");
    let text = format!(
        r#"
[api]
listen = "127.0.0.1:{port}"

[store]
path = "{db}"

[modems]
ports = ["{links}/modem*"]
poll_interval_seconds = 2

[sms]
per_minute = 600
per_day = 100000

[sessions]
sweep_interval_seconds = 1
{extra}
"#,
        db = dir.join("simmask.db").display(),
        links = sim.links.display(),
    );
    std::fs::write(&config, text).expect("config");
    config
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Daemon {
    /// Starts the daemon and waits for `/healthz` and for `sims` SIMs up.
    pub async fn start(config: &Path, port: u16, sims: usize) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
            .args(["run", "--config"])
            .arg(config)
            .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "simmask=debug")
            .stdout(Stdio::null())
            .spawn()
            .expect("simmask run");
        let daemon = Daemon {
            process: Process { child },
            url: format!("http://127.0.0.1:{port}"),
            config: config.to_path_buf(),
        };
        daemon.wait_ready(sims).await;
        daemon
    }

    /// Starts the daemon on `sim`'s modems, on a free port, with `extra`
    /// appended to its configuration, and waits for all its SIMs up.
    pub async fn start_on(dir: &Path, sim: &Sim, extra: &str) -> Daemon {
        let port = free_port();
        let config = write_config(dir, sim, port, extra);
        let modems = sim.bank["modems"].as_array().map_or(0, Vec::len);
        Daemon::start(&config, port, modems).await
    }

    /// The port the daemon listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Calls the API as an admin: the status and the JSON answer (null when
    /// there is none).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = client()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("api");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A session's interactions.
    pub async fn interactions(&self, session: &str) -> Vec<Value> {
        let body = self
            .get(&format!("/api/v1/sessions/{session}/interactions"))
            .await;
        body.as_array()
            .or_else(|| body["interactions"].as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// The session's call interactions, once there are `count` of them.
    pub async fn wait_calls(&self, session: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.interactions(session).await;
            let calls: Vec<Value> = list
                .iter()
                .filter(|i| i["kind"] == "call")
                .cloned()
                .collect();
            if calls.len() >= count {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "not {count} calls recorded: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_ready(&self, sims: usize) {
        self.wait_ready_within(sims, Duration::from_secs(60)).await;
    }

    /// Waits for `/api/v1/numbers` to show `sims` healthy SIMs.
    pub async fn wait_ready_within(&self, sims: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            assert!(Instant::now() < deadline, "daemon never got {sims} SIMs up");
            if let Ok(response) = client()
                .get(format!("{}/api/v1/numbers", self.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                && response.status().is_success()
                && let Ok(body) = response.json::<Value>().await
            {
                let up = body
                    .as_array()
                    .or_else(|| body["numbers"].as_array())
                    .map(|numbers| {
                        numbers
                            .iter()
                            .filter(|n| n["healthy"] == json!(true))
                            .count()
                    })
                    .unwrap_or(0);
                if up >= sims {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `simmask run` as an operator runs it: logs at info level,
    /// appended to `log` (so that a test reads everything every run of a
    /// storm wrote), and waits for `sims` SIMs up.
    pub async fn start_logged(
        config: &Path,
        port: u16,
        sims: usize,
        log: &Path,
        within: Duration,
    ) -> Daemon {
        let daemon = Self::spawn_logged(config, port, log);
        daemon.wait_ready_within(sims, within).await;
        daemon
    }

    /// Like [`Daemon::start_logged`], without waiting for anything.
    pub fn spawn_logged(config: &Path, port: u16, log: &Path) -> Daemon {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_simmask"))
            .args(["run", "--config"])
            .arg(config)
            .env("SIMMASK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("simmask run");
        Daemon {
            process: Process { child },
            url: format!("http://127.0.0.1:{port}"),
            config: config.to_path_buf(),
        }
    }

    pub async fn open_session(&self, a: &str, b: &str, extra: Value) -> Value {
        let mut body = json!({"participants": [a, b]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = client()
            .post(format!("{}/api/v1/sessions", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("api");
        let status = response.status();
        let body: Value = response.json().await.expect("session JSON");
        assert_eq!(status.as_u16(), 201, "{body}");
        body
    }

    /// GETs `path` as an admin, as a well-behaved client does: a 429 is
    /// waited out (its `Retry-After`, at least 100 ms) and asked again, so
    /// a test that reads hundreds of records is not stopped by the API's
    /// rate limit, which is not what it tests.
    pub async fn get(&self, path: &str) -> Value {
        loop {
            let response = client()
                .get(format!("{}{path}", self.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("api");
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let seconds = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis((seconds * 1000).max(100))).await;
                continue;
            }
            return response.json().await.expect("JSON");
        }
    }
}

/// Every form in which `number` could leak into a log: E.164, international
/// digits, the national number (the subscriber part any prefix would show),
/// and the swapped semi-octets of a PDU's address field (3GPP TS 23.040
/// §9.1.2.3) as a hex dump would show them. UK numbers only (`+44…`).
pub fn number_forms(number: &str) -> Vec<String> {
    let digits = number.trim_start_matches('+');
    let national = &digits[2..];
    let mut nibbles: Vec<char> = digits.chars().collect();
    if nibbles.len() % 2 == 1 {
        nibbles.push('F');
    }
    let semi_octets: String = nibbles.chunks(2).flat_map(|p| [p[1], p[0]]).collect();
    vec![digits.to_string(), national.to_string(), semi_octets]
}

/// The lines of `text` that contain any form of `number`.
pub fn leaks(text: &str, number: &str) -> Vec<String> {
    let forms = number_forms(number);
    text.lines()
        .filter(|line| {
            let upper = line.to_ascii_uppercase();
            forms.iter().any(|form| upper.contains(form.as_str()))
        })
        .map(str::to_string)
        .collect()
}

/// Fails with the offending lines when `log` holds any form of any of
/// `numbers`.
pub fn assert_no_numbers_in(log: &str, numbers: &[String], what: &str) {
    let found: Vec<(String, Vec<String>)> = numbers
        .iter()
        .map(|n| (n.clone(), leaks(log, n)))
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    assert!(
        found.is_empty(),
        "participants' numbers in {what}: {:#?}",
        found.iter().take(5).collect::<Vec<_>>()
    );
}

/// The daemon's live feed (`/api/v1/events`), read as an `EventSource`
/// reads it: frames split on blank lines, `id:` and `data:` fields.
pub struct Feed {
    response: reqwest::Response,
    buffer: String,
}

/// One event of the feed: its SSE `id` (none for `lagged`) and its data.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl Feed {
    /// Opens the feed as an admin, resuming after `last_event_id` if given.
    pub async fn open(daemon: &Daemon, last_event_id: Option<&str>) -> Feed {
        let mut request = client()
            .get(format!("{}/api/v1/events", daemon.url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("event feed");
        assert_eq!(response.status().as_u16(), 200, "event feed");
        Feed {
            response,
            buffer: String::new(),
        }
    }

    /// The next event within `within`, or `None`.
    pub async fn next_within(&mut self, within: Duration) -> Option<FeedEvent> {
        let deadline = Instant::now() + within;
        loop {
            let text = self.buffer.replace("\r\n", "\n");
            if let Some(end) = text.find("\n\n") {
                let frame = text[..end].to_string();
                self.buffer = text[end + 2..].to_string();
                let mut event = FeedEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in frame.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = value.to_string(),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = serde_json::from_str(&data).expect("event JSON");
                return Some(event);
            }
            self.buffer = text;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => return None,
                Err(_) => return None,
            }
        }
    }

    /// Reads until an event of `kind` arrives (30 s at most) and returns it.
    pub async fn wait_kind(&mut self, kind: &str) -> FeedEvent {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(event) if event.event == kind => return event,
                Some(event) => seen.push(event.event),
                None => panic!("no {kind} event; saw {seen:?}"),
            }
        }
    }
}
