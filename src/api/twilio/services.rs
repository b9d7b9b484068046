//! `/twilio/v1/Services` and their `PhoneNumbers`: a Service is a pool of
//! the appliance's SIMs with Proxy's settings; its phone numbers are SIMs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};

use super::{Client, Form, Paging, TwilioError, date_ms, derived_sid, ms, new_sid};
use crate::api::ApiState;
use crate::number::PhoneNumber;
use crate::store::{LiveSim, Role, TwilioNumber, TwilioService};

const SERVICE_PARAMS: &[&str] = &[
    "UniqueName",
    "DefaultTtl",
    "CallbackUrl",
    "GeoMatchLevel",
    "NumberSelectionBehavior",
    "InterceptCallbackUrl",
    "OutOfSessionCallbackUrl",
    "ChatInstanceSid",
];

/// Longest unique name, as Proxy allows.
const MAX_UNIQUE_NAME: usize = 191;

pub(super) fn service_path(sid: &str) -> String {
    format!("/Services/{sid}")
}

pub(super) fn service_view(client: &Client, service: &TwilioService) -> Value {
    let path = service_path(&service.sid);
    json!({
        "sid": service.sid,
        "unique_name": service.unique_name,
        "account_sid": client.account_sid,
        "chat_instance_sid": null,
        "callback_url": service.callback_url,
        "default_ttl": service.default_ttl.unwrap_or(0),
        "number_selection_behavior": service.number_selection_behavior,
        "geo_match_level": service.geo_match_level,
        "intercept_callback_url": service.intercept_callback_url,
        "out_of_session_callback_url": service.out_of_session_callback_url,
        "date_created": date_ms(service.created_ms),
        "date_updated": date_ms(service.updated_ms),
        "url": client.url(&path),
        "links": {
            "sessions": client.url(&format!("{path}/Sessions")),
            "phone_numbers": client.url(&format!("{path}/PhoneNumbers")),
            "short_codes": client.url(&format!("{path}/ShortCodes")),
        },
    })
}

/// The service `key` (SID or unique name), or Twilio's 404.
pub(super) async fn service(state: &ApiState, key: &str) -> Result<TwilioService, TwilioError> {
    state
        .store
        .twilio_service(key.to_string())
        .await?
        .ok_or_else(|| {
            TwilioError::not_found(format!(
                "The requested resource /Services/{key} was not found"
            ))
        })
}

fn url_param(form: &Form, key: &str) -> Result<Option<Option<String>>, TwilioError> {
    form.get(key)
        .map(|value| {
            if value.is_empty() {
                return Ok(None);
            }
            match reqwest::Url::parse(value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Some(value.to_string())),
                _ => Err(TwilioError::invalid(format!(
                    "Invalid parameter {key}: {value:?} is not an http(s) URL"
                ))),
            }
        })
        .transpose()
}

/// Applies the parameters of a create or update to `service`.
fn apply(form: &Form, service: &mut TwilioService, signed: bool) -> Result<(), TwilioError> {
    form.only(SERVICE_PARAMS)?;
    if let Some(name) = form.get("UniqueName") {
        if name.is_empty() || name.chars().count() > MAX_UNIQUE_NAME {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter UniqueName: 1 to {MAX_UNIQUE_NAME} characters"
            )));
        }
        if name.starts_with("KS") && name.len() == 34 {
            return Err(TwilioError::invalid(
                "Invalid parameter UniqueName: it must not look like a Service SID",
            ));
        }
        service.unique_name = Some(name.to_string());
    }
    if let Some(ttl) = form.seconds("DefaultTtl")? {
        service.default_ttl = (ttl > 0).then_some(ttl);
    }
    // The receivers check the signature; without the key there is none.
    // The intercept and out-of-session callbacks decide held messages
    // (`hooks`).
    for key in [
        "CallbackUrl",
        "InterceptCallbackUrl",
        "OutOfSessionCallbackUrl",
    ] {
        if let Some(url) = url_param(form, key)? {
            if url.is_some() && !signed {
                return Err(TwilioError::invalid(format!(
                    "Invalid parameter {key}: set [twilio] auth_token in the appliance's \
                     configuration first (it signs the callbacks)"
                )));
            }
            match key {
                "CallbackUrl" => service.callback_url = url,
                "InterceptCallbackUrl" => service.intercept_callback_url = url,
                _ => service.out_of_session_callback_url = url,
            }
        }
    }
    if let Some(behavior) = form.get("NumberSelectionBehavior") {
        if !matches!(behavior, "prefer-sticky" | "avoid-sticky") {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter NumberSelectionBehavior: {behavior:?} is not \
                 prefer-sticky or avoid-sticky"
            )));
        }
        service.number_selection_behavior = behavior.to_string();
    }
    if let Some(level) = form.get("GeoMatchLevel") {
        // The appliance's pool is the SIMs in one box: it has no numbers of
        // other areas to choose from, so only `country` describes it.
        if level != "country" {
            return Err(TwilioError::invalid(format!(
                "Invalid parameter GeoMatchLevel: {level:?}: this appliance matches by \
                 country only (its pool is its SIMs)"
            )));
        }
        service.geo_match_level = level.to_string();
    }
    if form.get("ChatInstanceSid").is_some_and(|v| !v.is_empty()) {
        return Err(TwilioError::invalid(
            "Invalid parameter ChatInstanceSid: chat channels are not supported (SMS and calls only)",
        ));
    }
    Ok(())
}

/// Whether callbacks can be signed (`[twilio] auth_token`).
fn signs(state: &ApiState) -> bool {
    state
        .twilio
        .as_ref()
        .is_some_and(|t| t.auth_token.is_some())
}

#[utoipa::path(post, path = "/twilio/v1/Services", tag = "twilio",
    params(),
    request_body(content = super::doc::ServiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Creates a service (a pool of the bank's SIMs)", body = super::doc::Service),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    client: Client,
    form: Form,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    client.require(Role::Admin)?;
    let now = ms(crate::clock::now());
    let mut service = TwilioService {
        sid: new_sid("KS"),
        unique_name: None,
        default_ttl: None,
        callback_url: None,
        intercept_callback_url: None,
        out_of_session_callback_url: None,
        number_selection_behavior: "prefer-sticky".into(),
        geo_match_level: "country".into(),
        created_ms: now,
        updated_ms: now,
    };
    apply(&form, &mut service, signs(&state))?;
    if service.unique_name.is_none() {
        return Err(TwilioError::invalid(
            "Missing required parameter UniqueName",
        ));
    }
    state.store.twilio_create_service(service.clone()).await?;
    tracing::info!(service = %service.sid, actor = %client.caller.name, "twilio service created");
    Ok((StatusCode::CREATED, Json(service_view(&client, &service))))
}

#[utoipa::path(get, path = "/twilio/v1/Services", tag = "twilio",
    params(),
    responses(
        (status = 200, description = "Services, newest first (paged: PageSize, PageToken, Page)", body = super::doc::ServiceList),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    client: Client,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let paging = Paging::from_query(uri.query())?;
    let services = state
        .store
        .twilio_services(paging.fetch(), paging.offset)
        .await?;
    let items = services.iter().map(|s| service_view(&client, s)).collect();
    Ok(Json(paging.answer(&client, "/Services", "services", items)))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}", tag = "twilio",
    params(("service" = String, Path)),
    responses(
        (status = 200, description = "A service by SID or unique name", body = super::doc::Service),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn fetch(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
) -> Result<Json<Value>, TwilioError> {
    let service = service(&state, &key).await?;
    Ok(Json(service_view(&client, &service)))
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}", tag = "twilio",
    params(("service" = String, Path)),
    request_body(content = super::doc::ServiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Changes a service", body = super::doc::Service),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn update(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
    form: Form,
) -> Result<Json<Value>, TwilioError> {
    client.require(Role::Admin)?;
    let mut service = service(&state, &key).await?;
    apply(&form, &mut service, signs(&state))?;
    service.updated_ms = ms(crate::clock::now());
    state.store.twilio_update_service(service.clone()).await?;
    Ok(Json(service_view(&client, &service)))
}

/// Deletes a service: its open sessions are closed first (Proxy deletes a
/// service's sessions with it); the appliance keeps their records.
#[utoipa::path(delete, path = "/twilio/v1/Services/{service}", tag = "twilio",
    params(("service" = String, Path)),
    responses(
        (status = 204, description = "Deletes a service (its numbers leave the pool; its sessions stay in the appliance)"),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
) -> Result<StatusCode, TwilioError> {
    client.require(Role::Admin)?;
    let service = service(&state, &key).await?;
    loop {
        let refs = state
            .store
            .twilio_service_sessions(service.sid.clone(), 500, 0)
            .await?;
        let mut closed = 0;
        for session_id in refs.iter().filter_map(|r| r.session_id.clone()) {
            let record = state.store.session(session_id.clone()).await?;
            if record.status == crate::masking::lifecycle::SessionStatus::Open {
                super::sessions::close(&state, &client, &record.id).await?;
                closed += 1;
            }
        }
        if closed == 0 {
            break;
        }
    }
    state
        .store
        .twilio_delete_service(service.sid.clone())
        .await?;
    tracing::info!(service = %service.sid, actor = %client.caller.name, "twilio service deleted");
    Ok(StatusCode::NO_CONTENT)
}

const NUMBER_PARAMS: &[&str] = &["Sid", "PhoneNumber", "IsReserved"];

pub(super) fn number_sid(iccid: &str) -> String {
    derived_sid("PN", iccid)
}

fn number_view(client: &Client, live: &[LiveSim], number: &TwilioNumber) -> Value {
    let sid = number_sid(&number.iccid);
    let live = live.iter().find(|s| s.iccid == number.iccid);
    let voice = live.as_ref().is_some_and(|s| s.voice_capable);
    let iso_country = PhoneNumber::from_e164(&number.msisdn)
        .ok()
        .and_then(|n| n.region());
    json!({
        "sid": sid,
        "account_sid": client.account_sid,
        "service_sid": number.service_sid,
        "date_created": date_ms(number.created_ms),
        "date_updated": date_ms(number.updated_ms),
        "phone_number": number.msisdn,
        "friendly_name": number.msisdn,
        "iso_country": iso_country,
        "capabilities": {
            "sms_inbound": true,
            "sms_outbound": true,
            "voice_inbound": voice,
            "voice_outbound": voice,
            "mms_inbound": false,
            "mms_outbound": false,
            "fax_inbound": false,
            "fax_outbound": false,
            "restriction_sms_domestic": false,
            "restriction_voice_domestic": false,
        },
        "url": client.url(&format!("/Services/{}/PhoneNumbers/{sid}", number.service_sid)),
        "is_reserved": number.is_reserved,
        "in_use": number.in_use,
    })
}

/// The service's number `sid` (or its phone number), or Twilio's 404.
pub(super) async fn service_number(
    state: &ApiState,
    service_sid: &str,
    key: &str,
) -> Result<TwilioNumber, TwilioError> {
    let numbers = state
        .store
        .twilio_numbers(service_sid.to_string(), 0, 0)
        .await?;
    numbers
        .into_iter()
        .find(|n| number_sid(&n.iccid) == key || n.msisdn == key)
        .ok_or_else(|| {
            TwilioError::not_found(format!(
                "The requested resource /Services/{service_sid}/PhoneNumbers/{key} was not found"
            ))
        })
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}/PhoneNumbers", tag = "twilio",
    params(("service" = String, Path)),
    request_body(content = super::doc::PhoneNumberForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Adds one of the bank's SIMs to the pool", body = super::doc::PhoneNumber),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn add_number(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
    form: Form,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    client.require(Role::Admin)?;
    form.only(NUMBER_PARAMS)?;
    let service = service(&state, &key).await?;
    let sims = state.store.sims().await?;
    let sim = match (form.get("Sid"), form.get("PhoneNumber")) {
        (Some(sid), None) => sims.into_iter().find(|s| number_sid(&s.iccid) == sid),
        (None, Some(number)) => {
            let number = super::sessions::parse_number(&state, "PhoneNumber", number)?;
            sims.into_iter().find(|s| s.msisdn == number)
        }
        _ => {
            return Err(TwilioError::invalid(
                "Give exactly one of Sid and PhoneNumber",
            ));
        }
    }
    .ok_or_else(|| {
        TwilioError::new(
            StatusCode::BAD_REQUEST,
            21452,
            "No SIM of this appliance has that number (GET /api/v1/numbers lists them)",
        )
    })?;
    let is_reserved = form.boolean("IsReserved")?.unwrap_or(false);
    state
        .store
        .twilio_add_number(
            service.sid.clone(),
            sim.iccid.clone(),
            is_reserved,
            crate::clock::now(),
        )
        .await?;
    let number = service_number(&state, &service.sid, &number_sid(&sim.iccid)).await?;
    Ok((
        StatusCode::CREATED,
        Json(number_view(
            &client,
            &super::opening::live_sims(&state).await?,
            &number,
        )),
    ))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/PhoneNumbers", tag = "twilio",
    params(("service" = String, Path)),
    responses(
        (status = 200, description = "The service's numbers", body = super::doc::PhoneNumberList),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn list_numbers(
    State(state): State<ApiState>,
    client: Client,
    Path(key): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let paging = Paging::from_query(uri.query())?;
    let service = service(&state, &key).await?;
    let numbers = state
        .store
        .twilio_numbers(service.sid.clone(), paging.fetch(), paging.offset)
        .await?;
    let live = super::opening::live_sims(&state).await?;
    let items = numbers
        .iter()
        .map(|n| number_view(&client, &live, n))
        .collect();
    let path = format!("/Services/{}/PhoneNumbers", service.sid);
    Ok(Json(paging.answer(&client, &path, "phone_numbers", items)))
}

#[utoipa::path(get, path = "/twilio/v1/Services/{service}/PhoneNumbers/{sid}", tag = "twilio",
    params(("service" = String, Path), ("sid" = String, Path)),
    responses(
        (status = 200, description = "A number of the pool", body = super::doc::PhoneNumber),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn fetch_number(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
) -> Result<Json<Value>, TwilioError> {
    let (key, sid) = path;
    let service = service(&state, &key).await?;
    let number = service_number(&state, &service.sid, &sid).await?;
    let live = super::opening::live_sims(&state).await?;
    Ok(Json(number_view(&client, &live, &number)))
}

#[utoipa::path(post, path = "/twilio/v1/Services/{service}/PhoneNumbers/{sid}", tag = "twilio",
    params(("service" = String, Path), ("sid" = String, Path)),
    request_body(content = super::doc::PhoneNumberForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Sets IsReserved", body = super::doc::PhoneNumber),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn update_number(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
    form: Form,
) -> Result<Json<Value>, TwilioError> {
    let (key, sid) = path;
    client.require(Role::Admin)?;
    form.only(&["IsReserved"])?;
    let service = service(&state, &key).await?;
    let number = service_number(&state, &service.sid, &sid).await?;
    if let Some(reserved) = form.boolean("IsReserved")? {
        state
            .store
            .twilio_update_number(number.iccid.clone(), reserved, crate::clock::now())
            .await?;
    }
    let number = service_number(&state, &service.sid, &sid).await?;
    let live = super::opening::live_sims(&state).await?;
    Ok(Json(number_view(&client, &live, &number)))
}

/// Takes a SIM out of the pool: its open sessions run to their end.
#[utoipa::path(delete, path = "/twilio/v1/Services/{service}/PhoneNumbers/{sid}", tag = "twilio",
    params(("service" = String, Path), ("sid" = String, Path)),
    responses(
        (status = 204, description = "Removes a number from the pool"),
        (status = 400, description = "a parameter Twilio would refuse", body = super::doc::Error),
        (status = 401, description = "wrong account SID or token", body = super::doc::Error),
        (status = 404, description = "not found", body = super::doc::Error)
    ),
    security(("twilio_basic" = [])))]
pub async fn remove_number(
    State(state): State<ApiState>,
    client: Client,
    Path(path): Path<(String, String)>,
) -> Result<StatusCode, TwilioError> {
    let (key, sid) = path;
    client.require(Role::Admin)?;
    let service = service(&state, &key).await?;
    let number = service_number(&state, &service.sid, &sid).await?;
    state.store.twilio_remove_number(number.iccid).await?;
    Ok(StatusCode::NO_CONTENT)
}
