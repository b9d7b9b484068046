//! The simulator's control API (JSON over HTTP).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::sim::ModemInfo;

#[derive(Clone)]
struct Shared {
    modems: Arc<Vec<ModemInfo>>,
}

/// Serves the control API until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    modems: Vec<ModemInfo>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/modems", get(list_modems))
        .route("/modems/{index}", get(one_modem))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(Shared {
            modems: Arc::new(modems),
        });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "sim control API stopped");
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"error": kind, "message": message}))).into_response()
}

fn modem_json(modem: &ModemInfo) -> serde_json::Value {
    let mut value = serde_json::to_value(modem).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("plugged".into(), json!(true));
        object.insert("registered".into(), json!(true));
        object.insert("signal".into(), json!(20));
    }
    value
}

async fn list_modems(State(shared): State<Shared>) -> Json<Vec<serde_json::Value>> {
    Json(shared.modems.iter().map(modem_json).collect())
}

async fn one_modem(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    match index
        .parse::<usize>()
        .ok()
        .and_then(|i| shared.modems.get(i))
    {
        Some(modem) => Json(modem_json(modem)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_modem",
            &format!("no modem with index {index}"),
        ),
    }
}
