//! Wiring: the bank as the API sees it (the pool for allocation and the
//! number views), and a SIM's live state as the store keeps it.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::api::PoolView;
use crate::bank::{Bank, SimStatus};
use crate::config::Config;
use crate::store::{LiveSim, SimStatusRecord, SimStorage};
use crate::voice::Method;

/// The live pool, read from the bank on each call.
pub struct LivePool {
    bank: Bank,
    config: Arc<Config>,
}

impl LivePool {
    pub fn new(bank: Bank, config: Arc<Config>) -> Self {
        Self { bank, config }
    }
}

impl PoolView for LivePool {
    fn sim_statuses(&self) -> Vec<SimStatusRecord> {
        self.bank
            .sims()
            .iter()
            .map(|sim| status_record(&self.config, &self.bank, sim))
            .collect()
    }

    fn ussd(&self, iccid: String, code: String) -> BoxFuture<'static, Result<String, String>> {
        let handle = self.bank.handle(&iccid);
        Box::pin(async move {
            let Some(handle) = handle else {
                return Err(format!("SIM {iccid} is not in a working modem now"));
            };
            handle.ussd(&code).await.map_err(|error| error.to_string())
        })
    }

    fn live_sims(&self) -> Vec<LiveSim> {
        self.bank
            .sims()
            .iter()
            .map(|sim| LiveSim {
                iccid: sim.id.clone(),
                healthy: sim.healthy,
                signal_dbm: sim.signal_dbm.map(i32::from),
                voice_capable: voice_method(&self.config, &self.bank, sim).is_some(),
            })
            .collect()
    }
}

/// How the SIM bridges calls, chosen by the voice layer from what the bank
/// reports of its services and what the operator chose for it.
fn voice_method(config: &Config, bank: &Bank, sim: &SimStatus) -> Option<String> {
    let preferred = Method::preferred(
        config
            .sim_of(&sim.id, sim.iccid.as_deref(), sim.imsi.as_deref())
            .and_then(|s| s.voice_method),
        bank.profile(&sim.profile).and_then(|p| p.voice.method),
    );
    crate::voice::method_name(sim.voice, &sim.profile_chld, sim.chld.as_deref(), preferred)
}

/// How full the SIM's receiving storage is, when the bank has read it.
pub fn storage_record(sim: &SimStatus) -> Option<SimStorage> {
    sim.storage
        .as_ref()
        .map(|(storage, used, total)| SimStorage {
            storage: storage.clone(),
            used: *used,
            total: *total,
            updated_at: crate::clock::now(),
        })
}

/// What the store keeps of a SIM's live state.
pub fn status_record(config: &Config, bank: &Bank, sim: &SimStatus) -> SimStatusRecord {
    SimStatusRecord {
        iccid: sim.id.clone(),
        state: sim.state.as_str().to_string(),
        healthy: sim.healthy,
        signal_dbm: sim.signal_dbm.map(i32::from),
        registration: sim.registration.clone().unwrap_or_default(),
        roaming: sim.roaming,
        operator: sim.operator.clone().unwrap_or_default(),
        voice_method: voice_method(config, bank, sim),
        port: sim.port.clone(),
        last_error: sim.last_error.clone().unwrap_or_default(),
        updated_at: crate::clock::now(),
    }
}
