//! `/metrics`: the process's metrics ([`crate::metrics`]) in Prometheus
//! text format, with the per-SIM gauges read at scrape time. Any token may
//! scrape, `metrics` tokens (made for a Prometheus server) only this.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use time::OffsetDateTime;

use super::ApiState;
use super::auth::Scraper;
use super::error::ApiError;
use crate::metrics::SimGauges;

/// Each SIM's gauges from the bank and the store now, so they are never
/// staler than the scrape.
async fn sim_gauges(state: &ApiState) -> Result<Vec<SimGauges>, ApiError> {
    let counters = state.store.sim_counters().await?;
    let sends = state.store.send_counts(OffsetDateTime::now_utc()).await?;
    Ok(state
        .pool
        .sim_statuses()
        .into_iter()
        .map(|status| {
            let sent = sends.get(&status.iccid).copied().unwrap_or_default();
            SimGauges {
                signal_dbm: status.signal_dbm,
                healthy: status.healthy,
                queue_depth: counters.get(&status.iccid).map_or(0, |c| c.queued),
                sends_last_minute: sent.last_minute,
                sends_last_day: sent.last_day,
                iccid: status.iccid,
            }
        })
        .collect())
}

/// The metrics, for Prometheus (with `authorization: Bearer <token>`; a
/// `metrics` token suffices).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = ["metrics"])))]
pub async fn render(
    State(state): State<ApiState>,
    _scraper: Scraper,
) -> Result<impl IntoResponse, ApiError> {
    let gauges = sim_gauges(&state).await?;
    let mut text = crate::metrics::handle().render();
    text.push('\n');
    text.push_str(&crate::metrics::render_sim_gauges(&gauges));
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    ))
}

/// The metrics (the same as `/metrics`).
#[utoipa::path(get, path = "/api/v1/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = ["metrics"])))]
pub async fn render_v1(
    state: State<ApiState>,
    scraper: Scraper,
) -> Result<impl IntoResponse, ApiError> {
    render(state, scraper).await
}
