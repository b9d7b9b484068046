//! `/api/v1/events`: the live feed as server-sent events.
//!
//! A client that reconnects with `Last-Event-ID` first gets the events it
//! missed that the bus still keeps (the last [`crate::events::BACKLOG`]),
//! then the live feed; a gap the ring cannot fill is announced as a
//! `lagged` event. Ids grow across restarts ([`crate::events::RUN_SPAN`]):
//! an id from before a restart gets everything this run keeps, after a
//! `lagged` event marked `"restarted": true`. The stream checks its token every second and as soon as
//! a token is revoked through the API: a revoked or expired token gets an
//! `unauthorized` event and the stream ends.
//!
//! Streams are capped per token and overall (`[api] max_event_streams`,
//! `max_event_streams_per_token`): the newest is refused 429
//! `too_many_streams` and its connection closed, so a refused client does
//! not keep a socket either. A stream's place is given back when it ends or
//! its client goes away.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};

use super::ApiState;
use super::auth::{self, Caller};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::guard::StreamPermit;
use crate::events::{BACKLOG, Envelope};

/// How often an open stream checks that its token still works.
const TOKEN_CHECK: Duration = Duration::from_secs(1);

fn sse_event(envelope: &Envelope) -> SseEvent {
    SseEvent::default()
        .id(envelope.id.to_string())
        .event(envelope.event.kind())
        .data(serde_json::to_string(envelope).unwrap_or_default())
}

/// A gap in the feed: `missed` events the daemon no longer keeps; with
/// `restarted`, the client's last event came from an earlier run of the
/// daemon, and what that run published after it is gone too.
fn lagged(missed: u64, restarted: bool) -> SseEvent {
    let data = if restarted {
        format!("{{\"kind\":\"lagged\",\"missed\":{missed},\"restarted\":true}}")
    } else {
        format!("{{\"kind\":\"lagged\",\"missed\":{missed}}}")
    };
    SseEvent::default().event("lagged").data(data)
}

/// One subscriber's feed.
struct Feed {
    state: ApiState,
    token: String,
    /// Missed events to send before the live ones.
    replay: VecDeque<SseEvent>,
    live: broadcast::Receiver<Envelope>,
    check: tokio::time::Interval,
    revoked: Arc<Notify>,
    ended: bool,
    /// This stream's place under the caps, held while it runs.
    _permit: StreamPermit,
}

impl Feed {
    /// The next event, or `None` once the stream is over.
    async fn next(&mut self) -> Option<SseEvent> {
        if self.ended {
            return None;
        }
        if let Some(event) = self.replay.pop_front() {
            return Some(event);
        }
        loop {
            let check = tokio::select! {
                received = self.live.recv() => {
                    return match received {
                        Ok(envelope) => Some(sse_event(&envelope)),
                        // A slow client missed some: say so and carry on.
                        Err(RecvError::Lagged(missed)) => Some(lagged(missed, false)),
                        Err(RecvError::Closed) => None,
                    };
                }
                _ = self.check.tick() => true,
                () = self.revoked.notified() => true,
            };
            if check && !auth::still_valid(&self.state, &self.token).await {
                self.ended = true;
                return Some(
                    SseEvent::default().event("unauthorized").data(
                        "{\"error\":\"unauthorized\",\"message\":\"the token was revoked or has expired\"}",
                    ),
                );
            }
        }
    }
}

/// How a feed starts.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Start with up to this many of the most recent events the daemon
    /// keeps (since it started, at most 1024), oldest first. Ignored when
    /// `Last-Event-ID` resumes a feed.
    #[param(maximum = 1024)]
    pub recent: Option<usize>,
}

/// Live events (`session_opened`, `message_relayed`, `modem_down`…), each an
/// SSE message whose `id` is the event's, `event` its kind and `data` its
/// JSON. `?recent=50` starts with the latest events; `Last-Event-ID` gets
/// what was missed since that event. Ids grow across restarts of the
/// daemon: an id from before a restart gets a `lagged` event with
/// `"restarted": true`, then every event this run keeps.
#[utoipa::path(get, path = "/api/v1/events",
    params(FeedQuery, ("Last-Event-ID" = Option<u64>, Header,
        description = "the id of the last event received: the missed ones come first \
            (from before a restart: a `lagged` event with `restarted`, then all this run keeps)")),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream"),
        (status = 429, description = "too many streams open on this token or overall \
            (`too_many_streams`); the connection is closed", body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<ApiState>,
    _caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let token = auth::bearer(&headers).unwrap_or_default().to_string();
    let permit = state.streams.open(&auth::hash_token(&token))?;
    // A malformed Last-Event-ID is ignored: the client gets the live feed.
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (replay, live) = match last_seen {
        Some(last) => {
            let (replay, live) = state.events.subscribe_since(last);
            let mut events: VecDeque<SseEvent> = VecDeque::new();
            if replay.lost > 0 || replay.restarted {
                events.push_back(lagged(replay.lost, replay.restarted));
            }
            events.extend(replay.events.iter().map(sse_event));
            (events, live)
        }
        None => match query.recent {
            Some(count) if count > 0 => {
                let (recent, live) = state.events.subscribe_recent(count.min(BACKLOG));
                (recent.iter().map(sse_event).collect(), live)
            }
            _ => (VecDeque::new(), state.events.subscribe()),
        },
    };
    let mut check = tokio::time::interval(TOKEN_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        revoked: state.token_revoked.clone(),
        state,
        token,
        replay,
        live,
        check,
        ended: false,
        _permit: permit,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
