//! `/metrics`: the process's metrics ([`crate::metrics`]) in Prometheus text format.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;

/// Sets the per-SIM gauges from the bank and the store at scrape time, so
/// they are never staler than the scrape.
async fn collect(state: &ApiState) -> Result<(), ApiError> {
    let counters = state.store.sim_counters().await?;
    for status in state.pool.sim_statuses() {
        let iccid = status.iccid.clone();
        match status.signal_dbm {
            Some(dbm) => metrics::gauge!("simmask_sim_signal_dbm", "iccid" => iccid.clone())
                .set(f64::from(dbm)),
            None => {
                metrics::gauge!("simmask_sim_signal_dbm", "iccid" => iccid.clone()).set(f64::NAN)
            }
        }
        metrics::gauge!("simmask_sim_healthy", "iccid" => iccid.clone()).set(if status.healthy {
            1.0
        } else {
            0.0
        });
        let queued = counters.get(&iccid).map_or(0, |c| c.queued);
        metrics::gauge!("simmask_sim_queue_depth", "iccid" => iccid).set(f64::from(queued));
    }
    Ok(())
}

/// The metrics, for Prometheus (with `authorization: Bearer <token>`).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn render(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    crate::metrics::handle();
    collect(&state).await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::handle().render(),
    ))
}

/// The metrics (the same as `/metrics`).
#[utoipa::path(get, path = "/api/v1/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn render_v1(
    state: State<ApiState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    render(state, caller).await
}
