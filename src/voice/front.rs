//! Where a call goes when the caller has no open session on the SIM, before
//! the out-of-session policy: a blocked caller is refused, a former
//! participant of an expired session reaches its fallback number (AWS's
//! `FallBackPhoneNumber`), a stranger on a front desk gets a session with
//! its staff number (Twilio's auto-create). The rules are allocation's and
//! the store's; this only asks them, in that order.

use super::Lookup;
use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;
use crate::store::{LiveSim, NewSession, Store, StoreError};

/// The answer for `caller` on `iccid` before the out-of-session policy, if
/// one of the rails has one.
pub async fn before_policy(
    store: &Store,
    config: &Config,
    events: &EventBus,
    iccid: &str,
    caller: &PhoneNumber,
) -> Result<Option<Lookup>, StoreError> {
    if store.is_blocked(caller.clone()).await? {
        return Ok(Some(Lookup::Reject {
            caller: Some(caller.clone()),
            reason: "the caller is on the block list".into(),
        }));
    }
    if let Some(last) = store
        .last_ended_session_of(iccid.to_string(), caller.clone())
        .await?
        && last.status == SessionStatus::Expired
        && let Some(fallback) = last
            .fallback_number
            .clone()
            .or_else(|| config.sessions.fallback_number.clone())
        && &fallback != caller
    {
        tracing::info!(%iccid, session = %last.id, "call on an expired session: to its fallback number");
        return Ok(Some(Lookup::Bridge {
            session: Some(last.id),
            caller: caller.clone(),
            other: fallback,
        }));
    }
    let Some(staff) = store
        .sims()
        .await?
        .into_iter()
        .find(|sim| sim.iccid == iccid)
        .and_then(|sim| sim.front_desk)
    else {
        return Ok(None);
    };
    if &staff == caller {
        return Ok(None);
    }
    let new = NewSession {
        participants: [caller.clone(), staff.clone()],
        mode: Mode::Both,
        ttl: (config.sessions.default_ttl_seconds > 0).then(|| {
            time::Duration::seconds(
                i64::try_from(config.sessions.default_ttl_seconds).unwrap_or(i64::MAX),
            )
        }),
        idle_ttl: None,
        label: Some("front desk".into()),
        sticky: false,
        actor: "front-desk".into(),
        fallback_number: None,
        proxy: Some(iccid.to_string()),
        limits: config.pool_limits(),
    };
    // The SIM is ringing: it is up and takes calls.
    let live = LiveSim {
        iccid: iccid.to_string(),
        healthy: true,
        signal_dbm: None,
        voice_capable: true,
    };
    match store.open_session_on(new, live, crate::clock::now()).await {
        Ok(session) => {
            tracing::info!(%iccid, session = %session.id, "front desk: a stranger's call opens a session with the staff number");
            events.publish(Event::SessionOpened {
                session_id: session.id.clone(),
                proxy_number: session.proxy_number.e164().to_string(),
                mode: session.mode.as_str().to_string(),
            });
            Ok(Some(Lookup::Bridge {
                session: Some(session.id),
                caller: caller.clone(),
                other: staff,
            }))
        }
        Err(error @ (StoreError::Allocation(_) | StoreError::Conflict { .. })) => {
            tracing::info!(%iccid, %error, "front desk cannot open a session; the out-of-session policy applies");
            Ok(None)
        }
        Err(other) => Err(other),
    }
}
