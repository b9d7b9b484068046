//! `/healthz`: liveness without a token, the clock, and what an operator
//! must know of the store even when nothing else answers: whether the file checked
//! clean at start (`PRAGMA quick_check`) and whether the disk takes writes.
//!
//! It answers 200 while the process serves: a supervisor that restarted the
//! appliance over a full disk or a damaged file would fix neither. `status`
//! is `degraded` then, and `store` says why. On a fleet (PostgreSQL) the
//! same holds of a database that does not answer.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;

use super::ApiState;
use crate::store::IntegrityCheck;

/// Where the start-up integrity check stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Integrity {
    /// Nobody asked (an API served without the daemon).
    #[default]
    Unchecked,
    Checking,
    Checked(IntegrityCheck),
    /// The check itself could not run.
    Failed(String),
    /// The store is the fleet's PostgreSQL: `PRAGMA quick_check` is
    /// SQLite's; the server checks its own pages.
    NotApplicable,
}

/// The start-up check's result, shared with the daemon that runs it.
pub type IntegritySlot = Arc<RwLock<Integrity>>;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store is damaged or cannot write.
    pub status: &'static str,
    pub version: &'static str,
    pub store: StoreCondition,
    /// The system clock against the network's time (a Pi has no real-time
    /// clock): `suspect` when they disagree and nothing synchronises it.
    pub clock: crate::clock::ClockStatus,
    /// The bank's SIMs as it sees them now: counts only (this route needs
    /// no token), so that a monitor sees a modem resetting, quarantined or
    /// without network; `/api/v1/numbers` says which.
    pub sims: SimsCondition,
}

/// How many SIMs are in each state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SimsCondition {
    pub total: usize,
    /// Up and registered: usable for traffic.
    pub healthy: usize,
    /// By state (`up`, `resetting`, `quarantined`, `unplugged`, `locked`…).
    pub states: std::collections::BTreeMap<String, usize>,
    /// Up but not registered on a network (searching, denied).
    pub no_network: usize,
}

impl SimsCondition {
    pub fn now(state: &ApiState) -> Self {
        let statuses = state.pool.sim_statuses();
        let mut states = std::collections::BTreeMap::new();
        for status in &statuses {
            *states.entry(status.state.clone()).or_insert(0) += 1;
        }
        Self {
            total: statuses.len(),
            healthy: statuses.iter().filter(|s| s.healthy).count(),
            no_network: statuses
                .iter()
                .filter(|s| {
                    s.state == "up"
                        && !s.registration.is_empty()
                        && !matches!(s.registration.as_str(), "home" | "roaming")
                })
                .count(),
            states,
        }
    }
}

/// The store's file and disk.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreCondition {
    /// `PRAGMA quick_check` at start: `ok`, `failed` (see `problems`),
    /// `checking`, `error` (the check could not run), `unchecked`, or
    /// `not_applicable` (PostgreSQL: the server checks its own pages).
    pub integrity: &'static str,
    /// What the check found, or why it could not run.
    pub problems: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checked_at: Option<OffsetDateTime>,
    /// The last write worked (or none failed since start).
    pub writable: bool,
    /// The disk is full: received messages stay on the SIMs (none is
    /// deleted before it is stored) until space returns.
    pub disk_full: bool,
    /// Why writes fail, while they do.
    pub write_error: Option<String>,
    /// Since when writes fail.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    /// `sqlite` or `postgres` (a fleet's shared database).
    pub backend: &'static str,
    /// The database answers (always on SQLite, a local file). On
    /// PostgreSQL, false from a call that could not reach it until a
    /// heartbeat (every third of the heartbeat timeout) reaches it again;
    /// meanwhile received messages stay on the SIMs.
    pub database_reachable: bool,
    /// Why it does not answer, while it does not.
    pub database_error: Option<String>,
    /// Since when it does not answer.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub unreachable_since: Option<OffsetDateTime>,
}

impl StoreCondition {
    pub fn now(state: &ApiState) -> Self {
        let integrity = state
            .integrity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (word, problems, checked_at) = match integrity {
            Integrity::Unchecked => ("unchecked", Vec::new(), None),
            Integrity::Checking => ("checking", Vec::new(), None),
            Integrity::Checked(check) if check.ok => ("ok", Vec::new(), Some(check.checked_at)),
            Integrity::Checked(check) => ("failed", check.problems, Some(check.checked_at)),
            Integrity::Failed(error) => ("error", vec![error], None),
            Integrity::NotApplicable => ("not_applicable", Vec::new(), None),
        };
        let failure = state.store.write_failure();
        let outage = state.store.database_outage();
        Self {
            integrity: word,
            problems,
            checked_at,
            writable: failure.is_none(),
            disk_full: failure.as_ref().is_some_and(|f| f.disk_full),
            write_error: failure.as_ref().map(|f| f.message.clone()),
            failing_since: failure.map(|f| f.since),
            backend: state.store.backend().as_str(),
            database_reachable: outage.is_none(),
            database_error: outage.as_ref().map(|o| o.error.clone()),
            unreachable_since: outage.map(|o| o.since),
        }
    }

    /// Damaged, not writing, or its database away.
    pub fn degraded(&self) -> bool {
        !self.writable || !self.database_reachable || matches!(self.integrity, "failed" | "error")
    }
}

/// Liveness, without a token, with the store's condition and the clock.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz(State(state): State<ApiState>) -> Json<Health> {
    let store = StoreCondition::now(&state);
    let sync = crate::clock::system_sync(std::path::Path::new("/"));
    Json(Health {
        status: if store.degraded() { "degraded" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        store,
        clock: crate::clock::status(sync),
        sims: SimsCondition::now(&state),
    })
}

/// Liveness, without a token (the same as `/healthz`).
#[utoipa::path(get, path = "/api/v1/healthz", responses((status = 200, body = Health)))]
pub async fn healthz_v1(state: State<ApiState>) -> Json<Health> {
    healthz(state).await
}
