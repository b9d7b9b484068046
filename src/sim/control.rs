//! The simulator's control API (JSON over HTTP): the bank's modems, the
//! handsets' side of the network, and fault injection. Every route is
//! listed in `router`; every error is `{error, message}` with a 4xx status.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::sim::ModemInfo;
use crate::sim::calls::{CallError, CallTiming, HandsetCall};
use crate::sim::network::{CallServiceError, FaultsUpdate, Network, NetworkError, PortCommand};

#[derive(Clone)]
struct Shared {
    network: Network,
    modems: std::sync::Arc<Vec<ModemInfo>>,
}

/// Serves the control API until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    modems: Vec<ModemInfo>,
    network: Network,
    stop: CancellationToken,
) {
    let app = router(Shared {
        network,
        modems: std::sync::Arc::new(modems),
    });
    // The same connection limits as the appliance's API: in `simmask demo`
    // both share one process and its descriptors.
    crate::serve::serve(listener, app, crate::serve::ServeLimits::default(), stop).await;
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/modems", get(list_modems))
        .route("/modems/{index}", get(one_modem))
        .route("/modems/{index}/trace", get(trace))
        .route("/modems/{index}/unplug", post(unplug))
        .route("/modems/{index}/plug", post(plug))
        .route("/modems/{index}/faults", get(faults).post(set_faults))
        .route("/handsets/{number}/sms", post(handset_sms))
        .route("/handsets/{number}/messages", get(handset_messages))
        .route("/calls/timing", get(call_timing).put(set_call_timing))
        .route("/clock", get(clock).put(set_clock))
        .route(
            "/modems/{index}/services",
            get(call_services).put(set_call_services),
        )
        .route("/handsets/{number}/dial", post(handset_dial))
        .route("/handsets/{number}/answer", post(handset_answer))
        .route("/handsets/{number}/hangup", post(handset_hangup))
        .route("/handsets/{number}/dtmf", post(handset_dtmf))
        .route("/handsets/{number}/call", get(handset_call))
        .route("/modems/{index}/calls", get(modem_calls))
        .route(
            "/handsets/{number}/state",
            get(handset_state).put(set_handset_state),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(shared)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"error": kind, "message": message}))).into_response()
}

fn network_error(e: NetworkError) -> Response {
    let (status, kind) = match &e {
        NetworkError::InvalidNumber(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_number"),
        NetworkError::NotAHandset(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_handset"),
        NetworkError::UnknownHandset(_) => (StatusCode::NOT_FOUND, "unknown_handset"),
        NetworkError::UnknownModem(_) => (StatusCode::NOT_FOUND, "unknown_modem"),
        NetworkError::Encode(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cannot_encode"),
        NetworkError::InvalidFault(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fault"),
    };
    error(status, kind, &e.to_string())
}

/// A body that is not JSON (400), or JSON of the wrong shape (422).
fn bad_json(rejection: JsonRejection) -> Response {
    let status = rejection.status();
    let kind = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::MissingJsonContentType(_) => "not_json",
        _ => "malformed_json",
    };
    error(
        status,
        kind,
        &format!("request body: {}", rejection.body_text()),
    )
}

/// A path's modem index that names no modem of the bank.
struct UnknownModem(String);

impl IntoResponse for UnknownModem {
    fn into_response(self) -> Response {
        error(
            StatusCode::NOT_FOUND,
            "unknown_modem",
            &format!("no modem with index {}", self.0),
        )
    }
}

/// The modem index in the path, if it names a modem of the bank.
fn modem_index(shared: &Shared, index: &str) -> Result<usize, UnknownModem> {
    index
        .parse::<usize>()
        .ok()
        .filter(|&i| i < shared.network.modem_count())
        .ok_or_else(|| UnknownModem(index.to_string()))
}

fn modem_json(shared: &Shared, index: usize) -> serde_json::Value {
    let Some(info) = shared.modems.get(index) else {
        return serde_json::Value::Null;
    };
    let live = shared.network.with_modem(index, |slot| {
        (
            slot.plugged,
            slot.path.clone(),
            slot.link.clone(),
            slot.signal,
            slot.faults.registration,
            slot.boots,
        )
    });
    let mut value = serde_json::to_value(info).unwrap_or_default();
    if let (Ok((plugged, path, link, signal, registration, boots)), Some(object)) =
        (live, value.as_object_mut())
    {
        object.insert("plugged".into(), json!(plugged));
        object.insert("path".into(), json!(path));
        object.insert("link".into(), json!(link));
        object.insert("signal".into(), json!(signal));
        object.insert("registration".into(), json!(registration));
        object.insert("boots".into(), json!(boots));
        object.insert(
            "registered".into(),
            json!(plugged && registration.registered()),
        );
    }
    value
}

async fn list_modems(State(shared): State<Shared>) -> Json<Vec<serde_json::Value>> {
    Json(
        (0..shared.network.modem_count())
            .map(|i| modem_json(&shared, i))
            .collect(),
    )
}

async fn one_modem(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    match modem_index(&shared, &index) {
        Ok(index) => Json(modem_json(&shared, index)).into_response(),
        Err(unknown) => unknown.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    /// Only entries after this time (µs), so a poller reads each once.
    since: Option<u64>,
}

async fn trace(
    State(shared): State<Shared>,
    Path(index): Path<String>,
    query: Result<Query<TraceQuery>, QueryRejection>,
) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                &rejection.body_text(),
            );
        }
    };
    match shared.network.trace_of(index) {
        Ok(mut entries) => {
            if let Some(since) = query.since {
                entries.retain(|entry| entry.t_us > since);
            }
            Json(entries).into_response()
        }
        Err(e) => network_error(e),
    }
}

async fn unplug(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    match shared.network.port_command(index, PortCommand::Unplug) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"index": index, "plugged": false})),
        )
            .into_response(),
        Err(e) => network_error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlugBody {
    link: Option<String>,
}

async fn plug(
    State(shared): State<Shared>,
    Path(index): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    // The body is optional: none (or empty) plugs back under the same name.
    let body: PlugBody = if body.iter().all(u8::is_ascii_whitespace) {
        PlugBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    &format!("request body: {e}"),
                );
            }
        }
    };
    if let Some(link) = &body.link {
        let valid = !link.is_empty()
            && link != "."
            && link != ".."
            && !link.contains('/')
            && !link.contains('\0');
        if !valid {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_link",
                &format!("link {link:?} must be a plain file name such as \"modem7\""),
            );
        }
    }
    match shared
        .network
        .port_command(index, PortCommand::Plug { link: body.link })
    {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"index": index, "plugged": true})),
        )
            .into_response(),
        Err(e) => network_error(e),
    }
}

async fn faults(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    match shared.network.with_modem(index, |slot| slot.faults.clone()) {
        Ok(faults) => Json(faults).into_response(),
        Err(e) => network_error(e),
    }
}

async fn set_faults(
    State(shared): State<Shared>,
    Path(index): Path<String>,
    body: Result<Json<FaultsUpdate>, JsonRejection>,
) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    let Json(update) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    match shared.network.update_faults(index, update) {
        Ok(faults) => Json(faults).into_response(),
        Err(e) => network_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsBody {
    to: String,
    text: String,
}

async fn handset_sms(
    State(shared): State<Shared>,
    Path(number): Path<String>,
    body: Result<Json<SmsBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    match shared.network.handset_sms(&number, &body.to, &body.text) {
        Ok(parts) => (
            StatusCode::ACCEPTED,
            Json(json!({"from": number, "to": body.to, "parts": parts})),
        )
            .into_response(),
        Err(e) => network_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DialBody {
    to: String,
}

/// A refused call operation: bad numbers as the network's errors, the rest
/// (nothing to answer, already in a call, calling oneself) as 409.
fn call_error(e: CallServiceError) -> Response {
    match e {
        CallServiceError::Network(e) => network_error(e),
        CallServiceError::Call(e) => {
            let kind = match e {
                CallError::NoIncomingCall => "no_incoming_call",
                CallError::AlreadyInCall => "already_in_call",
                CallError::OwnNumber => "own_number",
                CallError::NotInCall => "not_in_call",
                CallError::NotAKey(_) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_digits",
                        &e.to_string(),
                    );
                }
                _ => "call_refused",
            };
            error(StatusCode::CONFLICT, kind, &e.to_string())
        }
    }
}

fn call_json(number: &str, call: HandsetCall) -> Response {
    let mut value = serde_json::to_value(call).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("number".into(), json!(number));
    }
    Json(value).into_response()
}

async fn handset_dial(
    State(shared): State<Shared>,
    Path(number): Path<String>,
    body: Result<Json<DialBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    match shared.network.handset_dial(&number, &body.to) {
        Ok(call) => call_json(&number, call),
        Err(e) => call_error(e),
    }
}

async fn handset_answer(State(shared): State<Shared>, Path(number): Path<String>) -> Response {
    match shared.network.handset_answer(&number) {
        Ok(call) => call_json(&number, call),
        Err(e) => call_error(e),
    }
}

async fn handset_hangup(State(shared): State<Shared>, Path(number): Path<String>) -> Response {
    match shared.network.handset_hangup(&number) {
        Ok(call) => call_json(&number, call),
        Err(e) => call_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DtmfBody {
    digits: String,
}

/// The handset presses keys during its call (`0-9`, `*`, `#`, `A-D`, up
/// to 32): the modems that hear it and detect keys report them.
async fn handset_dtmf(
    State(shared): State<Shared>,
    Path(number): Path<String>,
    body: Result<Json<DtmfBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let count = body.digits.chars().count();
    if count == 0 || count > 32 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_digits",
            "digits: 1 to 32 keys of 0-9, *, #, A-D",
        );
    }
    let digits = body.digits.to_ascii_uppercase();
    match shared.network.handset_keys(&number, &digits) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"number": number, "digits": digits})),
        )
            .into_response(),
        Err(e) => call_error(e),
    }
}

async fn handset_call(State(shared): State<Shared>, Path(number): Path<String>) -> Response {
    match shared.network.handset_call(&number) {
        Ok(call) => call_json(&number, call),
        Err(e) => network_error(e),
    }
}

/// A modem's calls as the network has them, the lines of `AT+CLCC`:
/// `[{id, direction, state, multiparty, number}]` (`number` null when
/// withheld); empty when the modem is idle.
async fn modem_calls(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    let calls: Vec<serde_json::Value> = shared
        .network
        .modem_call_list(index)
        .into_iter()
        .map(|call| {
            json!({
                "id": call.id,
                "direction": call.direction,
                "state": call.state,
                "multiparty": call.multiparty,
                "number": Some(call.number).filter(|n| !n.is_empty()),
            })
        })
        .collect();
    Json(calls).into_response()
}

/// The network's call clocks, in milliseconds.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct TimingBody {
    ring_period_ms: Option<u64>,
    ring_timeout_ms: Option<u64>,
    setup_delay_ms: Option<u64>,
}

/// The network's time and how far it is ahead of this machine's clock.
async fn clock(State(shared): State<Shared>) -> Response {
    clock_json(&shared)
}

fn clock_json(shared: &Shared) -> Response {
    let time = shared
        .network
        .time()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({"offset_seconds": shared.network.clock_offset(), "time": time})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_seconds: i64,
}

/// Sets how far the network's clock is ahead of this machine's (negative:
/// behind), at most ten years either way: what an appliance that booted at
/// a stale time sees.
async fn set_clock(
    State(shared): State<Shared>,
    body: Result<Json<ClockBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    if body.offset_seconds.unsigned_abs() > MAX_CLOCK_OFFSET_SECONDS {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_clock",
            "offset_seconds must be within ten years (±315360000)",
        );
    }
    shared.network.set_clock_offset(body.offset_seconds);
    clock_json(&shared)
}

/// Ten years: the PDU timestamp has two digits of year.
pub const MAX_CLOCK_OFFSET_SECONDS: u64 = 10 * 365 * 86_400;

fn timing_json(timing: CallTiming) -> Response {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Json(TimingBody {
        ring_period_ms: Some(ms(timing.ring_period)),
        ring_timeout_ms: Some(ms(timing.ring_timeout)),
        setup_delay_ms: Some(ms(timing.setup_delay)),
    })
    .into_response()
}

async fn call_timing(State(shared): State<Shared>) -> Response {
    timing_json(shared.network.call_timing())
}

/// Changes the ringing rhythm, the no-answer timeout and the call set-up
/// delay; calls in progress keep going.
async fn set_call_timing(
    State(shared): State<Shared>,
    body: Result<Json<TimingBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let mut timing = shared.network.call_timing();
    let ms = std::time::Duration::from_millis;
    if body.ring_period_ms == Some(0) || body.ring_timeout_ms == Some(0) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_timing",
            "ring_period_ms and ring_timeout_ms must be positive",
        );
    }
    timing.ring_period = body.ring_period_ms.map_or(timing.ring_period, ms);
    timing.ring_timeout = body.ring_timeout_ms.map_or(timing.ring_timeout, ms);
    timing.setup_delay = body.setup_delay_ms.map_or(timing.setup_delay, ms);
    shared.network.set_call_timing(timing);
    timing_json(timing)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesBody {
    chld: Vec<String>,
}

/// The supplementary services (`+CHLD` values) a SIM's network offers.
async fn call_services(State(shared): State<Shared>, Path(index): Path<String>) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    match shared.network.call_services(index) {
        Ok(chld) => Json(json!({"index": index, "chld": chld})).into_response(),
        Err(e) => call_error(CallServiceError::Call(e)),
    }
}

async fn set_call_services(
    State(shared): State<Shared>,
    Path(index): Path<String>,
    body: Result<Json<ServicesBody>, JsonRejection>,
) -> Response {
    let index = match modem_index(&shared, &index) {
        Ok(index) => index,
        Err(unknown) => return unknown.into_response(),
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    match shared.network.set_call_services(index, body.chld.clone()) {
        Ok(()) => Json(json!({"index": index, "chld": body.chld})).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_service",
            &e.to_string(),
        ),
    }
}

async fn handset_messages(State(shared): State<Shared>, Path(number): Path<String>) -> Response {
    match shared.network.handset_messages(&number) {
        Ok(messages) => Json(messages).into_response(),
        Err(e) => network_error(e),
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Power {
    On,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    power: Option<Power>,
    barred: Option<bool>,
    /// Restrict the presentation of the handset's number (CLIR).
    clir: Option<bool>,
}

fn state_json(
    shared: &Shared,
    number: &str,
    (power_on, barred): (bool, bool),
) -> Json<serde_json::Value> {
    Json(json!({
        "number": number,
        "power": if power_on { "on" } else { "off" },
        "barred": barred,
        "clir": shared.network.handset_clir(number).unwrap_or(false),
    }))
}

async fn handset_state(State(shared): State<Shared>, Path(number): Path<String>) -> Response {
    match shared.network.handset_state(&number) {
        Ok(state) => state_json(&shared, &number, state).into_response(),
        Err(e) => network_error(e),
    }
}

async fn set_handset_state(
    State(shared): State<Shared>,
    Path(number): Path<String>,
    body: Result<Json<StateBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let power_on = body.power.map(|p| matches!(p, Power::On));
    if let Some(clir) = body.clir
        && let Err(e) = shared.network.set_handset_clir(&number, clir)
    {
        return network_error(e);
    }
    match shared
        .network
        .set_handset_state(&number, power_on, body.barred)
    {
        Ok(state) => state_json(&shared, &number, state).into_response(),
        Err(e) => network_error(e),
    }
}
