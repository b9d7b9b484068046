//! `/api/v1/fleet`: the appliances that share the pool, each with its last
//! heartbeat, whether it is online (by `[appliance]
//! heartbeat_timeout_seconds`) and the SIMs it holds. On SQLite the fleet
//! is this appliance alone.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::store::Backend;

/// The fleet as one API sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetView {
    /// `sqlite` (one appliance) or `postgres` (a fleet).
    pub backend: &'static str,
    /// How long an appliance may be silent before it is offline (its SIMs
    /// then take no new sessions); null on SQLite.
    pub heartbeat_timeout_seconds: Option<u64>,
    /// Every appliance, by name.
    pub appliances: Vec<ApplianceView>,
}

/// One appliance of the fleet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplianceView {
    /// Its number in the fleet's database; null on SQLite.
    pub id: Option<i64>,
    /// `[appliance] name` (default: its host name).
    pub name: String,
    /// Whether this is the appliance answering.
    pub this: bool,
    /// Its heartbeat is within the timeout.
    pub online: bool,
    /// Its last heartbeat, on the database's clock (now, on SQLite).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat: OffsetDateTime,
    /// How many SIMs it holds.
    pub sims: usize,
    /// The SIMs it holds, by ICCID (as `/api/v1/numbers` names them).
    pub iccids: Vec<String>,
}

/// The appliances sharing the pool: name, last heartbeat, online or
/// offline, SIMs held.
#[utoipa::path(get, path = "/api/v1/fleet",
    responses((status = 200, body = FleetView),
        (status = 503, description = "the fleet's database does not answer", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn fleet(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<FleetView>, ApiError> {
    let store = &state.store;
    let view = match store.backend() {
        Backend::Postgres => {
            let this = store.appliance().unwrap_or_default().to_string();
            let appliances = store
                .appliances()
                .await?
                .into_iter()
                .map(|a| ApplianceView {
                    id: Some(a.id),
                    this: a.name == this,
                    name: a.name,
                    online: a.online,
                    last_heartbeat: a.last_heartbeat,
                    sims: a.sims.len(),
                    iccids: a.sims,
                })
                .collect();
            FleetView {
                backend: Backend::Postgres.as_str(),
                heartbeat_timeout_seconds: store.heartbeat_timeout().map(|t| t.as_secs()),
                appliances,
            }
        }
        Backend::Sqlite => {
            let name = match &state.live {
                Some(live) => live.get().appliance.name(),
                None => crate::config::ApplianceConfig::default().name(),
            };
            let iccids: Vec<String> = store.sims().await?.into_iter().map(|s| s.iccid).collect();
            FleetView {
                backend: Backend::Sqlite.as_str(),
                heartbeat_timeout_seconds: None,
                appliances: vec![ApplianceView {
                    id: None,
                    name,
                    this: true,
                    online: true,
                    last_heartbeat: crate::clock::now(),
                    sims: iccids.len(),
                    iccids,
                }],
            }
        }
    };
    Ok(Json(view))
}
