//! How a facade session opens: its participants read, the service's
//! numbers it may use (reserved ones only when asked for), the appliance's
//! session allocated under the masking rule. Shared by `Sessions` creates,
//! `Participants` adds and the out-of-session callback's auto-create.

use std::collections::HashSet;

use axum::http::StatusCode;
use time::{Duration, OffsetDateTime};

use super::sessions::parse_number;
use super::{Client, TwilioError, ms, new_sid};
use crate::api::ApiState;
use crate::events::Event;
use crate::masking::Mode;
use crate::number::PhoneNumber;
use crate::store::{
    Backend, LiveSim, NewSession, SessionRecord, TwilioParticipantRow, TwilioService,
    TwilioSessionRow,
};

/// What allocation needs of every SIM the facade may use: this bank's,
/// and on a fleet the other appliances' as their appliance last stored
/// them (offline once it stops beating its heartbeat): one facade for the
/// fleet.
pub(super) async fn live_sims(state: &ApiState) -> Result<Vec<LiveSim>, TwilioError> {
    let mut live = state.pool.live_sims();
    if state.store.backend() == Backend::Postgres {
        let now = crate::clock::now();
        let here: HashSet<String> = live.iter().map(|s| s.iccid.clone()).collect();
        live.extend(
            state
                .store
                .sim_statuses()
                .await?
                .iter()
                .filter(|status| !here.contains(&status.iccid))
                .map(|status| status.live(now, Duration::MAX)),
        );
    }
    Ok(live)
}

/// The live SIMs of `service` a new session may use: its numbers, the
/// reserved ones only when asked for by `ProxyIdentifier`.
pub(super) async fn pool_of(
    state: &ApiState,
    service: &TwilioService,
    requested: Option<&str>,
) -> Result<Vec<LiveSim>, TwilioError> {
    let numbers = state
        .store
        .twilio_numbers(service.sid.clone(), 0, 0)
        .await?;
    let usable: Vec<&str> = numbers
        .iter()
        .filter(|n| !n.is_reserved || requested == Some(n.iccid.as_str()))
        .map(|n| n.iccid.as_str())
        .collect();
    let live: Vec<LiveSim> = live_sims(state)
        .await?
        .into_iter()
        .filter(|s| s.healthy && usable.contains(&s.iccid.as_str()))
        .collect();
    if live.is_empty() {
        return Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            80402,
            "The service has no number that can take a session now: add PhoneNumbers (reserved \
             ones are used only when a participant asks for them by ProxyIdentifier)",
        ));
    }
    Ok(live)
}

/// The SIM a participant asks for by `ProxyIdentifier` or
/// `ProxyIdentifierSid`: one of the service's numbers.
async fn requested_proxy(
    state: &ApiState,
    service: &TwilioService,
    identifier: Option<&str>,
    sid: Option<&str>,
) -> Result<Option<String>, TwilioError> {
    let key = match (identifier, sid) {
        (None, None) => return Ok(None),
        (Some(number), _) => parse_number(state, "ProxyIdentifier", number)?
            .e164()
            .to_string(),
        (None, Some(sid)) => sid.to_string(),
    };
    let number = super::services::service_number(state, &service.sid, &key)
        .await
        .map_err(|_| {
            TwilioError::new(
                StatusCode::BAD_REQUEST,
                80402,
                format!("ProxyIdentifier {key} is not a number of this service"),
            )
        })?;
    Ok(Some(number.iccid))
}

/// A participant given at session creation or added later.
pub(super) struct NewParticipant {
    pub identifier: PhoneNumber,
    pub friendly_name: Option<String>,
    pub proxy_iccid: Option<String>,
}

pub(super) async fn participant_from(
    state: &ApiState,
    service: &TwilioService,
    get: impl Fn(&str) -> Option<String>,
) -> Result<NewParticipant, TwilioError> {
    let identifier = get("Identifier")
        .ok_or_else(|| TwilioError::invalid("Missing required parameter Identifier"))?;
    let friendly_name = get("FriendlyName");
    if friendly_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 255)
    {
        return Err(TwilioError::invalid(
            "Invalid parameter FriendlyName: longer than 255 characters",
        ));
    }
    Ok(NewParticipant {
        identifier: parse_number(state, "Identifier", &identifier)?,
        friendly_name,
        proxy_iccid: requested_proxy(
            state,
            service,
            get("ProxyIdentifier").as_deref(),
            get("ProxyIdentifierSid").as_deref(),
        )
        .await?,
    })
}

/// The appliance session for two participants.
#[allow(clippy::too_many_arguments)]
pub(super) fn new_session(
    state: &ApiState,
    client: &Client,
    service: &TwilioService,
    row: &TwilioSessionRow,
    participants: [PhoneNumber; 2],
    proxy: Option<String>,
    mode: Mode,
    now: OffsetDateTime,
) -> NewSession {
    NewSession {
        participants,
        mode,
        ttl: row
            .expiry_ms
            .map(|expiry| Duration::milliseconds(expiry - ms(now)).max(Duration::seconds(1))),
        idle_ttl: row.ttl.filter(|t| *t > 0).map(Duration::seconds),
        label: Some(match &row.unique_name {
            Some(name) => format!(
                "proxy {}: {name}",
                service.unique_name.as_deref().unwrap_or(&service.sid)
            ),
            None => format!(
                "proxy {}",
                service.unique_name.as_deref().unwrap_or(&service.sid)
            ),
        })
        .map(|label| label.chars().take(200).collect()),
        sticky: service.number_selection_behavior == "prefer-sticky",
        actor: client.caller.name.clone(),
        fallback_number: None,
        proxy,
        limits: state.limits.clone(),
    }
}

pub(super) fn opened(state: &ApiState, record: &SessionRecord) {
    tracing::info!(session = %record.id, proxy = ?record.proxy_number, "session opened (twilio)");
    state.events.publish(Event::SessionOpened {
        session_id: record.id.clone(),
        proxy_number: record.proxy_number.e164().to_string(),
        mode: record.mode.as_str().to_string(),
    });
}

/// What a new session is made of (a create's parameters, or an
/// out-of-session callback's auto-create answer).
pub(super) struct SessionSpec {
    pub unique_name: Option<String>,
    pub ttl: Option<i64>,
    pub expiry_ms: Option<i64>,
    pub mode: Mode,
    pub participants: Vec<NewParticipant>,
}

/// Records a facade session and, with two participants, opens the
/// appliance's session; answers the facade's row.
pub(super) async fn open_session(
    state: &ApiState,
    client: &Client,
    service: &TwilioService,
    spec: SessionSpec,
    now: OffsetDateTime,
) -> Result<TwilioSessionRow, TwilioError> {
    let row = TwilioSessionRow {
        sid: new_sid("KC"),
        service_sid: service.sid.clone(),
        session_id: None,
        unique_name: spec.unique_name,
        ttl: spec.ttl.or(service.default_ttl).filter(|t| *t > 0),
        expiry_ms: spec.expiry_ms,
        mode: spec.mode.as_str().to_string(),
        closed_ms: None,
        deleted_ms: None,
        created_ms: ms(now),
        updated_ms: ms(now),
    };
    let rows: Vec<TwilioParticipantRow> = spec
        .participants
        .iter()
        .enumerate()
        .map(|(position, p)| TwilioParticipantRow {
            sid: new_sid("KP"),
            session_sid: row.sid.clone(),
            position: position as u8,
            identifier: Some(p.identifier.e164().to_string()),
            friendly_name: p.friendly_name.clone(),
            proxy_iccid: p.proxy_iccid.clone(),
            created_ms: ms(now),
            deleted_ms: None,
        })
        .collect();
    let open = match spec.participants.as_slice() {
        [a, b] => {
            let proxy = one_proxy(a.proxy_iccid.clone(), b.proxy_iccid.clone())?;
            let live = pool_of(state, service, proxy.as_deref()).await?;
            let numbers = [a.identifier.clone(), b.identifier.clone()];
            Some((
                new_session(state, client, service, &row, numbers, proxy, spec.mode, now),
                live,
            ))
        }
        _ => None,
    };
    let record = state
        .store
        .twilio_create_session(row.clone(), rows, open, now)
        .await?;
    if let Some(record) = &record {
        opened(state, record);
    }
    Ok(row)
}

pub(super) fn too_many() -> TwilioError {
    TwilioError::new(
        StatusCode::BAD_REQUEST,
        80609,
        "Too many participants: a session has two (the masking rule: each pair talks through \
         its own proxy number)",
    )
}

pub(super) fn one_proxy(
    a: Option<String>,
    b: Option<String>,
) -> Result<Option<String>, TwilioError> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(TwilioError::new(
            StatusCode::BAD_REQUEST,
            80402,
            "The participants ask for different ProxyIdentifiers: a session has one proxy number",
        )),
        (a, b) => Ok(a.or(b)),
    }
}
