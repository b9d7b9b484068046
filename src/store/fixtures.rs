//! Test fixtures shared by the store's test modules: one proxy SIM and a
//! session between two participants on it.

use time::OffsetDateTime;
use time::macros::datetime;

use super::{LiveSim, NewSession, Store};
use crate::masking::Mode;
use crate::number::PhoneNumber;

pub const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);
pub const A: &str = "+447911000001";
pub const B: &str = "+447911000002";
pub const PROXY: &str = "8944000000000000000";

pub fn number(s: &str) -> PhoneNumber {
    PhoneNumber::from_e164(s).unwrap()
}

/// A store in `dir` with the SIM `PROXY` and one open session A–B on it
/// (absolute lifetime `ttl`); returns the store and the session id.
pub async fn store_with_session(
    dir: &tempfile::TempDir,
    ttl: Option<time::Duration>,
) -> (Store, String) {
    let store = Store::open(&dir.path().join("simmask.db")).unwrap();
    store
        .upsert_sim(
            PROXY.into(),
            number("+447000000000"),
            "234100000000000".into(),
            None,
            NOW,
        )
        .await
        .unwrap();
    let live = LiveSim {
        iccid: PROXY.into(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    };
    let new = NewSession {
        participants: [number(A), number(B)],
        mode: Mode::Both,
        ttl,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
    };
    let session = store.open_session(new, vec![live], NOW).await.unwrap();
    (store, session.id)
}
