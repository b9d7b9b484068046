//! `/metrics`: the process's metrics ([`crate::metrics`]) in Prometheus text format.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::auth::Caller;

/// The metrics, for Prometheus (with `authorization: Bearer <token>`).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn render(_caller: Caller) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::handle().render(),
    )
}

/// The metrics (the same as `/metrics`).
#[utoipa::path(get, path = "/api/v1/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn render_v1(caller: Caller) -> impl IntoResponse {
    render(caller).await
}
