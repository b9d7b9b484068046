//! The simulator in-process, reached through its real doors: ptys for the
//! modems, its HTTP control API for handsets, unplug/plug and faults.

#![allow(dead_code)]

pub mod scripted;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use simmask::sim::{ModemInfo, SimConfig, Simulator};

pub const PROFILES: [&str; 4] = ["generic", "simcom-sim800", "quectel-ec25", "huawei-e173"];

pub struct Sim {
    pub sim: Simulator,
    pub links: Option<PathBuf>,
    client: reqwest::Client,
}

impl Sim {
    /// One modem per profile, linked as `modem0`… under `links` if given.
    pub async fn start(profiles: &[&str], links: Option<&Path>, seed: u64) -> Sim {
        let sim = Simulator::start(SimConfig {
            modems: profiles.len(),
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            links: links.map(Path::to_path_buf),
            seed,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        Sim {
            sim,
            links: links.map(Path::to_path_buf),
            client: reqwest::Client::new(),
        }
    }

    pub fn modem(&self, index: usize) -> &ModemInfo {
        &self.sim.description().modems[index]
    }

    /// The path a client opens: the link when there is one, else the pty.
    pub fn port(&self, index: usize) -> String {
        let modem = self.modem(index);
        modem
            .link
            .as_ref()
            .unwrap_or(&modem.path)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.sim.control_url());
        let response = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("control API answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    pub async fn unplug(&self, index: usize) {
        self.post(&format!("/modems/{index}/unplug"), json!({}))
            .await;
    }

    /// Plugs modem `index` back, under `link` (a new name) when given.
    pub async fn plug(&self, index: usize, link: Option<&str>) {
        let body = match link {
            Some(link) => json!({ "link": link }),
            None => json!({}),
        };
        self.post(&format!("/modems/{index}/plug"), body).await;
    }

    pub async fn faults(&self, index: usize, update: Value) {
        self.post(&format!("/modems/{index}/faults"), update).await;
    }

    /// A handset outside the bank sends `text` to `to`.
    pub async fn handset_sms(&self, from: &str, to: &str, text: &str) {
        self.post(
            &format!("/handsets/{from}/sms"),
            json!({ "to": to, "text": text }),
        )
        .await;
    }

    /// The messages a handset received.
    pub async fn messages(&self, number: &str) -> Vec<Value> {
        let url = format!("{}/handsets/{number}/messages", self.sim.control_url());
        let response = self.client.get(&url).send().await.expect("control API");
        response.json().await.expect("messages JSON")
    }

    /// Waits until a handset has received `count` messages.
    pub async fn wait_messages(&self, number: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.messages(number).await;
            if messages.len() >= count || tokio::time::Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn handset_dial(&self, from: &str, to: &str) {
        self.post(&format!("/handsets/{from}/dial"), json!({ "to": to }))
            .await;
    }

    pub async fn handset_answer(&self, number: &str) {
        self.post(&format!("/handsets/{number}/answer"), json!({}))
            .await;
    }

    pub async fn handset_hangup(&self, number: &str) {
        self.post(&format!("/handsets/{number}/hangup"), json!({}))
            .await;
    }

    /// `{state, caller_id, connected_to}` as the handset's screen shows it.
    pub async fn handset_call(&self, number: &str) -> Value {
        let url = format!("{}/handsets/{number}/call", self.sim.control_url());
        let response = self.client.get(&url).send().await.expect("control API");
        response.json().await.expect("call JSON")
    }

    /// Waits until the handset's call is in `state`.
    pub async fn wait_handset_state(&self, number: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let call = self.handset_call(number).await;
            if call["state"] == state {
                return call;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{number} never reached {state}: {call}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The lines on a modem's port: `[{t_us, dir, line}]`.
    pub async fn trace(&self, index: usize) -> Vec<Value> {
        let url = format!("{}/modems/{index}/trace", self.sim.control_url());
        let response = self.client.get(&url).send().await.expect("control API");
        response.json().await.expect("trace JSON")
    }

    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}
