//! `/api/v1/modems` and `/api/v1/numbers`: the pool as stored, joined with
//! what the bank sees now; enabling a SIM; USSD; per-SIM charts.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ApiState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use crate::bank::{IdSource, SimId};
use crate::events::Event;
use crate::number::PhoneNumber;
use crate::store::{SimChange, SimCounters, SimRecord, SimStatusRecord};

/// Longest USSD code accepted (GSM 02.90 strings are short: `*100#`).
const MAX_USSD_LEN: usize = 32;
/// How far back the charts look.
const CHART_SPAN: time::Duration = time::Duration::hours(24);

/// A SIM of the pool with its live state and counters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberView {
    /// What the pool knows the SIM by, and what the routes below take: its
    /// ICCID, or `imsi:<IMSI>` when its modem could not read the ICCID.
    pub id: String,
    /// The ICCID, or null for a SIM known by its IMSI.
    pub iccid: Option<String>,
    /// `iccid` or `imsi`: where `id` comes from.
    #[schema(value_type = String)]
    pub id_source: IdSource,
    /// The proxy number (E.164): the appliance's own, shown to every role.
    pub msisdn: String,
    /// The modem holding the SIM now, if known.
    pub imei: Option<String>,
    /// The modem's model, e.g. `SIM800L`.
    pub model: Option<String>,
    /// Whether new sessions may be allocated to this SIM.
    pub enabled: bool,
    /// `up`, `unplugged`, `resetting`, `quarantined`, `locked`, or `unknown`
    /// when the bank has not reported the SIM.
    pub state: String,
    pub healthy: bool,
    pub signal_dbm: Option<i32>,
    /// `home`, `roaming`, `searching`, `denied`… (empty when unknown).
    pub registration: String,
    pub operator: String,
    /// `transfer`, `conference`, or null when the SIM cannot bridge calls.
    pub voice_method: Option<String>,
    pub port: String,
    pub last_error: String,
    /// Outbound SMS waiting or being sent.
    pub queue_depth: u32,
    pub sent: u32,
    pub received: u32,
    pub failed: u32,
    pub open_sessions: u32,
    /// The participant this SIM is reserved for (masked for viewers):
    /// automatic allocation gives it to nobody else, and their sessions
    /// take it first.
    pub reserved_for: Option<String>,
    /// No new sessions; the open ones continue until they end.
    pub draining: bool,
    /// While draining: the open sessions left before it can be retired.
    pub sessions_left: Option<u32>,
    /// The staff number strangers are paired with (masked for viewers).
    pub front_desk: Option<String>,
    /// Each budget's use.
    pub budgets: Budgets,
    /// When the live state was reported.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
    /// In a fleet (`[store] backend = "postgres"`): the appliance that holds
    /// the SIM. Absent on a single appliance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appliance: Option<String>,
}

/// A SIM's budgets and their use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Budgets {
    /// Messages sent in the last 24 hours against `[sms] per_day` (or the
    /// SIM's own `per_day`).
    pub messages_today: BudgetUse,
    /// Distinct numbers sent to this calendar month against
    /// `recipients_per_month`.
    pub recipients_this_month: BudgetUse,
}

/// One budget: `limit` is null when there is none.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BudgetUse {
    pub used: u32,
    pub limit: Option<u32>,
}

fn show(number: &Option<PhoneNumber>, caller: &Caller) -> Option<String> {
    number.as_ref().map(|n| {
        if caller.is_admin() {
            n.e164().to_string()
        } else {
            n.masked()
        }
    })
}

impl NumberView {
    fn new(
        sim: SimRecord,
        status: Option<&SimStatusRecord>,
        model: Option<String>,
        counters: &SimCounters,
        budgets: Budgets,
        caller: &Caller,
    ) -> Self {
        let text = |f: fn(&SimStatusRecord) -> &String| status.map(f).cloned().unwrap_or_default();
        Self {
            reserved_for: show(&sim.reserved_for, caller),
            draining: sim.draining,
            sessions_left: sim.draining.then_some(counters.open_sessions),
            front_desk: show(&sim.front_desk, caller),
            budgets,
            msisdn: sim.msisdn.e164().to_string(),
            imei: sim.modem_imei,
            model,
            enabled: sim.enabled,
            state: status.map_or_else(|| "unknown".to_string(), |s| s.state.clone()),
            healthy: status.is_some_and(|s| s.healthy),
            signal_dbm: status.and_then(|s| s.signal_dbm),
            registration: text(|s| &s.registration),
            operator: text(|s| &s.operator),
            voice_method: status.and_then(|s| s.voice_method.clone()),
            port: text(|s| &s.port),
            last_error: text(|s| &s.last_error),
            queue_depth: counters.queued,
            sent: counters.sent,
            received: counters.received,
            failed: counters.failed,
            open_sessions: counters.open_sessions,
            updated_at: status.map(|s| s.updated_at),
            appliance: None,
            iccid: SimId::parse(&sim.iccid).iccid().map(str::to_string),
            id_source: SimId::parse(&sim.iccid).source(),
            id: sim.iccid,
        }
    }
}

/// A modem the bank has seen, with the SIM in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModemView {
    pub imei: String,
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    /// The firmware profile driving it (`sim800`, `ec25`, `generic`…).
    pub profile: String,
    pub port: String,
    /// The id of the SIM in it, if any (see [`NumberView::id`]).
    pub sim_id: Option<String>,
    /// The ICCID of the SIM in it: null when there is none, or when the SIM
    /// is known by its IMSI.
    pub iccid: Option<String>,
    pub state: String,
    pub signal_dbm: Option<i32>,
    pub registration: String,
    pub operator: String,
    pub last_error: String,
}

/// A change to a SIM; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNumberRequest {
    /// Take the SIM out of (or back into) allocation.
    pub enabled: Option<bool>,
    /// Reserve the SIM for this participant (E.164 or national in the
    /// default region), or `null` to release it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub reserved_for: Option<Option<String>>,
    /// Drain the SIM: no new sessions, the open ones run to their end.
    pub draining: Option<bool>,
    /// Make the SIM a front desk for this staff number, or `null` to stop.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub front_desk: Option<Option<String>>,
}

/// A field that may be `null` (`Some(None)`) or absent (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What retiring a SIM did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Retired {
    /// The sessions it ended (`close_reason: sim_retired`).
    pub sessions_closed: Vec<String>,
    pub number: NumberView,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UssdRequest {
    /// A USSD code such as `*100#` (digits, `*` and `#`).
    pub code: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UssdReply {
    pub reply: String,
}

/// One hour of a SIM's traffic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrafficPoint {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub hour: OffsetDateTime,
    pub sent: u32,
    pub received: u32,
}

/// One signal sample.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalPoint {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub dbm: Option<i32>,
}

/// A SIM's last 24 hours, for the dashboard's charts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberHistory {
    /// Hours with traffic, oldest first.
    pub traffic: Vec<TrafficPoint>,
    /// Signal samples, oldest first.
    pub signal: Vec<SignalPoint>,
}

/// The live state of every SIM: the bank's view, or the store's last known
/// one for SIMs the bank does not report now.
async fn statuses(state: &ApiState) -> Result<HashMap<String, SimStatusRecord>, ApiError> {
    let mut statuses: HashMap<String, SimStatusRecord> = state
        .store
        .sim_statuses()
        .await?
        .into_iter()
        .map(|s| (s.iccid.clone(), s))
        .collect();
    for live in state.pool.sim_statuses() {
        statuses.insert(live.iccid.clone(), live);
    }
    Ok(statuses)
}

/// Every SIM of the pool as `caller` may see it (the MQTT door reads them
/// as a viewer).
pub async fn numbers_now(state: &ApiState, caller: &Caller) -> Result<Vec<NumberView>, ApiError> {
    let statuses = statuses(state).await?;
    let models: HashMap<String, String> = state
        .store
        .modems()
        .await?
        .into_iter()
        .map(|m| (m.imei, m.model))
        .collect();
    let counters = state.store.sim_counters().await?;
    let none = SimCounters::default();
    let pool_limits = state.limits();
    let used = state.store.sim_budget_use(crate::clock::now()).await?;
    // In a fleet, which appliance holds each SIM.
    let owners: HashMap<String, String> = match state.store.backend() {
        crate::store::Backend::Postgres => state
            .store
            .appliances()
            .await?
            .into_iter()
            .flat_map(|a| a.sims.into_iter().map(move |iccid| (iccid, a.name.clone())))
            .collect(),
        crate::store::Backend::Sqlite => HashMap::new(),
    };
    Ok(state
        .store
        .sims()
        .await?
        .into_iter()
        .map(|sim| {
            let appliance = owners.get(&sim.iccid).cloned();
            let model = sim.modem_imei.as_ref().and_then(|i| models.get(i)).cloned();
            let counters = counters.get(&sim.iccid).unwrap_or(&none);
            let status = statuses.get(&sim.iccid);
            let limits = pool_limits.of(&sim.iccid);
            let (recipients, sent) = used.get(&sim.iccid).copied().unwrap_or_default();
            let budgets = Budgets {
                messages_today: BudgetUse {
                    used: sent,
                    limit: limits.per_day,
                },
                recipients_this_month: BudgetUse {
                    used: recipients,
                    limit: limits.recipients_per_month,
                },
            };
            NumberView {
                appliance,
                ..NumberView::new(sim, status, model, counters, budgets, caller)
            }
        })
        .collect())
}

/// The proxy pool: every SIM with its state, signal and counters.
#[utoipa::path(get, path = "/api/v1/numbers",
    responses((status = 200, body = Vec<NumberView>)),
    security(("bearer" = [])))]
pub async fn numbers(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<NumberView>>, ApiError> {
    numbers_now(&state, &caller).await.map(Json)
}

/// The modems the bank has seen, with the SIM in each.
#[utoipa::path(get, path = "/api/v1/modems",
    responses((status = 200, body = Vec<ModemView>)),
    security(("bearer" = [])))]
pub async fn modems(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<Vec<ModemView>>, ApiError> {
    let statuses = statuses(&state).await?;
    let sims = state.store.sims().await?;
    let modems = state.store.modems().await?;
    Ok(Json(
        modems
            .into_iter()
            .map(|modem| {
                let sim_id = sims
                    .iter()
                    .find(|s| s.modem_imei.as_deref() == Some(modem.imei.as_str()))
                    .map(|s| s.iccid.clone());
                let status = sim_id.as_ref().and_then(|i| statuses.get(i));
                let iccid = sim_id
                    .as_deref()
                    .and_then(|id| SimId::parse(id).iccid().map(str::to_string));
                let text =
                    |f: fn(&SimStatusRecord) -> &String| status.map(f).cloned().unwrap_or_default();
                ModemView {
                    state: status.map_or_else(|| "unknown".to_string(), |s| s.state.clone()),
                    signal_dbm: status.and_then(|s| s.signal_dbm),
                    registration: text(|s| &s.registration),
                    operator: text(|s| &s.operator),
                    last_error: text(|s| &s.last_error),
                    sim_id,
                    iccid,
                    imei: modem.imei,
                    manufacturer: modem.manufacturer,
                    model: modem.model,
                    revision: modem.revision,
                    profile: modem.profile,
                    port: modem.port,
                }
            })
            .collect(),
    ))
}

/// Change a SIM: enable or disable it, reserve it for a participant (or
/// release it with `null`), drain it before retirement, make it a front
/// desk. Open sessions keep running whatever changes.
#[utoipa::path(put, path = "/api/v1/numbers/{iccid}", request_body = UpdateNumberRequest,
    params(("iccid" = String, Path, description = "the SIM's id: its ICCID, or imsi:<IMSI>")),
    responses((status = 200, body = NumberView), (status = 404, body = ErrorBody),
        (status = 422, description = "nothing to change, an invalid number, or a proxy \
            number of the pool", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn update_number(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(iccid): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateNumberRequest>,
) -> Result<Json<NumberView>, ApiError> {
    let sims = state.store.sims().await?;
    let participant = |text: Option<Option<String>>| -> Result<_, ApiError> {
        let Some(Some(text)) = text else {
            return Ok(text.map(|_| None));
        };
        let number = super::sessions::parse_number(&state, &text)?;
        if sims.iter().any(|s| s.msisdn == number) {
            return Err(ApiError::unprocessable(
                "invalid_number",
                "that is a proxy number of this appliance, not a participant",
            ));
        }
        Ok(Some(Some(number)))
    };
    let change = SimChange {
        enabled: request.enabled,
        reserved_for: participant(request.reserved_for)?,
        draining: request.draining,
        front_desk: participant(request.front_desk)?,
    };
    if change.enabled.is_none()
        && change.reserved_for.is_none()
        && change.draining.is_none()
        && change.front_desk.is_none()
    {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "nothing to change: send enabled, reserved_for, draining or front_desk",
        ));
    }
    state
        .store
        .update_sim(
            iccid.clone(),
            change.clone(),
            caller.name.clone(),
            crate::clock::now(),
        )
        .await?;
    tracing::info!(
        %iccid,
        enabled = ?change.enabled,
        reserved = ?change.reserved_for,
        draining = ?change.draining,
        front_desk = ?change.front_desk,
        by = %caller.name,
        "sim changed"
    );
    number_view(&state, &caller, &iccid).await.map(Json)
}

async fn number_view(
    state: &ApiState,
    caller: &Caller,
    iccid: &str,
) -> Result<NumberView, ApiError> {
    numbers_now(state, caller)
        .await?
        .into_iter()
        .find(|n| n.id == iccid)
        .ok_or_else(|| ApiError::not_found(format!("no SIM {iccid}")))
}

/// Retire a SIM (after draining it, or at once): its open sessions end
/// with `close_reason: sim_retired` and it is disabled.
#[utoipa::path(post, path = "/api/v1/numbers/{iccid}/retire",
    params(("iccid" = String, Path, description = "the SIM's id: its ICCID, or imsi:<IMSI>")),
    responses((status = 200, body = Retired), (status = 404, body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn retire(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(iccid): ApiPath<String>,
) -> Result<Json<Retired>, ApiError> {
    let ended = state
        .store
        .retire_sim(
            iccid.clone(),
            caller.name.clone(),
            OffsetDateTime::now_utc(),
        )
        .await?;
    tracing::info!(%iccid, sessions = ended.len(), by = %caller.name, "sim retired");
    for session in &ended {
        state.events.publish(Event::SessionClosed {
            session_id: session.id.clone(),
        });
    }
    Ok(Json(Retired {
        sessions_closed: ended.into_iter().map(|s| s.id).collect(),
        number: number_view(&state, &caller, &iccid).await?,
    }))
}

fn check_ussd(code: &str) -> Result<(), ApiError> {
    let valid = !code.is_empty()
        && code.len() <= MAX_USSD_LEN
        && code
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
    if valid {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_ussd",
            format!("a USSD code is 1 to {MAX_USSD_LEN} of 0-9, * and # (e.g. *100#)"),
        ))
    }
}

/// Send a USSD code (a balance check such as `*100#`) from a SIM; answers the network's reply.
#[utoipa::path(post, path = "/api/v1/numbers/{iccid}/ussd", request_body = UssdRequest,
    params(("iccid" = String, Path, description = "the SIM's id: its ICCID, or imsi:<IMSI>")),
    responses((status = 200, body = UssdReply), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 502, description = "the modem or network refused", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub async fn ussd(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    ApiPath(iccid): ApiPath<String>,
    ApiJson(request): ApiJson<UssdRequest>,
) -> Result<Json<UssdReply>, ApiError> {
    let reply = send_ussd(&state, &caller, iccid, request.code).await?;
    Ok(Json(UssdReply { reply }))
}

/// Sends the USSD `code` from the SIM `iccid` for `caller` (an admin: the
/// API's route and the MQTT command), recorded in the audit trail, and
/// answers the network's reply.
pub async fn send_ussd(
    state: &ApiState,
    caller: &Caller,
    iccid: String,
    code: String,
) -> Result<String, ApiError> {
    caller.require(super::auth::Role::Admin)?;
    check_ussd(&code)?;
    if !state.store.sims().await?.iter().any(|s| s.iccid == iccid) {
        return Err(ApiError::not_found(format!("no SIM {iccid}")));
    }
    tracing::info!(%iccid, %code, by = %caller.name, "ussd");
    state
        .store
        .record_action(
            caller.name.clone(),
            "sim.ussd",
            iccid.clone(),
            code.clone(),
            crate::clock::now(),
        )
        .await?;
    state
        .pool
        .ussd(iccid.clone(), code)
        .await
        .map_err(|reason| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "ussd_failed",
                format!("SIM {iccid}: ussd: {reason}"),
            )
        })
}

/// A SIM's traffic per hour and its signal over the last 24 hours.
#[utoipa::path(get, path = "/api/v1/numbers/{iccid}/history",
    params(("iccid" = String, Path, description = "the SIM's id: its ICCID, or imsi:<IMSI>")),
    responses((status = 200, body = NumberHistory), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<ApiState>,
    _caller: Caller,
    ApiPath(iccid): ApiPath<String>,
) -> Result<Json<NumberHistory>, ApiError> {
    if !state.store.sims().await?.iter().any(|s| s.iccid == iccid) {
        return Err(ApiError::not_found(format!("no SIM {iccid}")));
    }
    let since = crate::clock::now() - CHART_SPAN;
    let traffic = state
        .store
        .sim_traffic_by_hour(iccid.clone(), since)
        .await?
        .into_iter()
        .filter_map(|h| {
            let hour = OffsetDateTime::from_unix_timestamp(h.hour_ms / 1000).ok()?;
            Some(TrafficPoint {
                hour,
                sent: h.sent,
                received: h.received,
            })
        })
        .collect();
    let signal = state
        .signal_history
        .series(&iccid, since)
        .into_iter()
        .map(|(at, dbm)| SignalPoint { at, dbm })
        .collect();
    Ok(Json(NumberHistory { traffic, signal }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ussd_codes_are_short_strings_of_the_keypad() {
        for good in ["*100#", "#123#", "*135*1#", "100"] {
            assert!(check_ussd(good).is_ok(), "{good}");
        }
        for bad in ["", "*100#\"", "AT+CFUN=0", &"*".repeat(33), "*100#\r"] {
            assert_eq!(check_ussd(bad).unwrap_err().code, "invalid_ussd", "{bad:?}");
        }
    }
}
