//! `/api/v1/events`: the live feed as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use super::auth::Caller;

/// Live events (`session_opened`, `message_relayed`, `modem_down`…), each an
/// SSE message whose `event` is the kind and whose `data` is the JSON.
#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.events.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(envelope) => SseEvent::default()
                .id(envelope.id.to_string())
                .event(envelope.event.kind())
                .data(serde_json::to_string(&envelope).unwrap_or_default()),
            // A slow client missed some: say so and carry on.
            Err(RecvError::Lagged(missed)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{missed}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
