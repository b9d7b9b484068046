//! `/api/v1/status`: the appliance at a glance, in one answer (what
//! `simmask status` shows): every SIM with its signal, registration,
//! operator, queue and rate-limit use; the open sessions; the last relays
//! and calls; the clock and the store's health.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::export::ExportRow;
use super::health::StoreCondition;
use super::pool::{NumberView, numbers_now};
use super::sessions::SessionView;
use crate::masking::lifecycle::SessionStatus;
use crate::store::SessionFilter;

/// The open sessions listed at most; `open_sessions` counts them all.
const SESSIONS_SHOWN: usize = 20;
/// The last interactions shown.
const RECENT: usize = 10;

/// A SIM with how much of its send budget it used.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SimLine {
    #[serde(flatten)]
    pub number: NumberView,
    /// Send attempts in the last 60 s and 24 h.
    pub sends_last_minute: u32,
    pub sends_last_day: u32,
}

/// Per-SIM send limits (`[sms] per_minute`, `per_day`).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct SendLimits {
    pub per_minute: u32,
    pub per_day: u32,
}

/// The store's health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreHealth {
    /// A query answered.
    pub ok: bool,
    /// How long that took, in milliseconds.
    pub latency_ms: f64,
    /// The schema version of the database and of this binary.
    pub schema: usize,
    pub schema_latest: usize,
    /// Sizes of the database file and its write-ahead log.
    pub database_bytes: u64,
    pub wal_bytes: u64,
    /// What went wrong, when not ok.
    pub error: Option<String>,
    /// The integrity check at start and whether the disk takes writes (as
    /// on `/healthz`).
    pub condition: StoreCondition,
}

/// The appliance now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub version: &'static str,
    /// The appliance's clock (compare with yours: SMS times come from it).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub now: OffsetDateTime,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    pub store: StoreHealth,
    pub limits: Option<SendLimits>,
    pub sims: Vec<SimLine>,
    /// Open sessions in all.
    pub open_sessions: usize,
    /// The newest open sessions (numbers masked for viewers).
    pub sessions: Vec<SessionView>,
    /// The last SMS and calls, newest first (numbers masked for viewers).
    pub recent: Vec<ExportRow>,
}

async fn store_health(state: &ApiState) -> StoreHealth {
    let started = std::time::Instant::now();
    let health = state.store.health().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let condition = StoreCondition::now(state);
    match health {
        Ok(h) => StoreHealth {
            ok: !condition.degraded(),
            latency_ms,
            schema: h.schema,
            schema_latest: crate::store::latest_version(),
            database_bytes: h.database_bytes,
            wal_bytes: h.wal_bytes,
            error: condition
                .write_error
                .clone()
                .or_else(|| condition.database_error.clone())
                .or_else(|| condition.problems.first().cloned()),
            condition,
        },
        Err(error) => StoreHealth {
            ok: false,
            latency_ms,
            schema: 0,
            schema_latest: crate::store::latest_version(),
            database_bytes: 0,
            wal_bytes: 0,
            error: Some(error.to_string()),
            condition,
        },
    }
}

/// Everything `simmask status` shows, in one answer.
#[utoipa::path(get, path = "/api/v1/status",
    responses((status = 200, body = StatusView)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<StatusView>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let store = store_health(&state).await;
    let sends = state.store.send_counts(now).await?;
    let sims: Vec<SimLine> = numbers_now(&state, &caller)
        .await?
        .into_iter()
        .map(|number| {
            let used = sends.get(&number.id).copied().unwrap_or_default();
            SimLine {
                number,
                sends_last_minute: used.last_minute,
                sends_last_day: used.last_day,
            }
        })
        .collect();
    let open: Vec<SessionView> = state
        .store
        .sessions(SessionFilter {
            status: Some(SessionStatus::Open),
            label: None,
            participant: None,
            limit: SESSIONS_SHOWN,
            offset: 0,
        })
        .await?
        .into_iter()
        .map(|record| SessionView::new(record, &caller))
        .collect();
    let recent = state
        .store
        .recent_interactions(RECENT)
        .await?
        .into_iter()
        .map(|record| ExportRow::new(record, caller.is_admin()))
        .collect();
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        now,
        uptime_seconds: u64::try_from((now - state.started_at).whole_seconds()).unwrap_or(0),
        store,
        limits: state.send_limits(),
        open_sessions: sims.iter().map(|s| s.number.open_sessions as usize).sum(),
        sessions: open,
        recent,
        sims,
    }))
}
