//! The API under test: a real server on port 0 over a fresh store with a
//! pool of SIMs, an in-memory bank ([`MemoryPool`]) and a viewer and an
//! admin token. Shared by the `api_*` tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use simmask::api::limits::RateLimit;
use simmask::api::{self, ApiState, PoolView, auth};
use simmask::events::EventBus;
use simmask::number::PhoneNumber;
use simmask::store::{ModemRecord, Role, SimStatusRecord, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub const BOOTSTRAP: &str = "bootstrap-token-for-tests";

/// The bank as the API sees it, held in memory: tests change the SIMs'
/// live state and the USSD answers.
pub struct MemoryPool {
    pub statuses: Mutex<Vec<SimStatusRecord>>,
    /// The reply to every USSD code, or the modem's refusal.
    pub ussd_reply: Mutex<Result<String, String>>,
    /// The USSD requests seen, as (iccid, code).
    pub ussd_seen: Mutex<Vec<(String, String)>>,
}

impl Default for MemoryPool {
    fn default() -> Self {
        Self {
            statuses: Mutex::default(),
            ussd_reply: Mutex::new(Ok("Your balance is 4.20".into())),
            ussd_seen: Mutex::default(),
        }
    }
}

impl PoolView for MemoryPool {
    fn sim_statuses(&self) -> Vec<SimStatusRecord> {
        self.statuses.lock().unwrap().clone()
    }

    fn ussd(&self, iccid: String, code: String) -> BoxFuture<'static, Result<String, String>> {
        self.ussd_seen.lock().unwrap().push((iccid, code));
        let reply = self.ussd_reply.lock().unwrap().clone();
        Box::pin(async move { reply })
    }
}

pub fn iccid(i: usize) -> String {
    format!("894400000000000000{i}")
}

pub fn imei(i: usize) -> String {
    format!("35000000000000{i}")
}

pub fn status(i: usize) -> SimStatusRecord {
    SimStatusRecord {
        iccid: iccid(i),
        state: "up".into(),
        healthy: true,
        signal_dbm: Some(-70 - i as i32),
        registration: "home".into(),
        roaming: false,
        operator: "Virtual Mobile".into(),
        voice_method: Some("transfer".into()),
        port: format!("/dev/ttyUSB{i}"),
        last_error: String::new(),
        updated_at: OffsetDateTime::now_utc(),
    }
}

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub viewer: String,
    pub admin: String,
    pub store: Store,
    pub pool: Arc<MemoryPool>,
    pub events: EventBus,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An API over `sims` SIMs, each in its own modem, all up.
pub async fn start(sims: usize) -> Api {
    start_with(sims, RateLimit::default()).await
}

pub async fn start_with(sims: usize, rate_limit: RateLimit) -> Api {
    start_configured(sims, |state| state.rate_limit = rate_limit).await
}

/// An API over `sims` SIMs whose state `configure` adjusts before serving.
pub async fn start_configured(sims: usize, configure: impl FnOnce(&mut ApiState)) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("api.db")).unwrap();
    let now = OffsetDateTime::now_utc();
    let pool = Arc::new(MemoryPool::default());
    for i in 0..sims {
        store
            .upsert_modem(
                ModemRecord {
                    imei: imei(i),
                    manufacturer: "SIMCOM".into(),
                    model: "SIM800L".into(),
                    revision: "1418B05".into(),
                    profile: "sim800".into(),
                    port: format!("/dev/ttyUSB{i}"),
                },
                now,
            )
            .await
            .unwrap();
        let msisdn = PhoneNumber::from_e164(&format!("+44700900000{i}")).unwrap();
        store
            .upsert_sim(iccid(i), msisdn, String::new(), Some(imei(i)), now)
            .await
            .unwrap();
        pool.statuses.lock().unwrap().push(status(i));
    }
    let mut tokens = Vec::new();
    for (name, role) in [("dash", Role::Viewer), ("ops", Role::Admin)] {
        let token = auth::generate_token();
        store
            .create_token(name.into(), role, auth::hash_token(&token), now)
            .await
            .unwrap();
        tokens.push(token);
    }
    let events = EventBus::new();
    let mut state = ApiState::new(store.clone(), pool.clone(), events.clone());
    state.admin_token = Some(BOOTSTRAP.into());
    state.default_region = Some("GB".into());
    configure(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(api::serve(listener, state, shutdown.clone()));
    Api {
        base,
        client: reqwest::Client::new(),
        viewer: tokens[0].clone(),
        admin: tokens[1].clone(),
        store,
        pool,
        events,
        shutdown,
        _dir: dir,
    }
}

impl Api {
    /// Sends a request; answers the status and the body as JSON (or a JSON
    /// string when the body is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Sends `body` as is, as the admin, labelled JSON or not.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
        json: bool,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.admin)
            .body(body);
        if json {
            request = request.header("content-type", "application/json");
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

/// A JSON error answer `{error, message}` with `expected` status and `code`.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
