//! The voice desks as the operator reaches them: which call each SIM's desk
//! carries now, and a way to ask it to end that call for both sides. The
//! API reads and ends calls through [`CallDesks`]; each desk keeps its own
//! entry up to date after every step of its bridge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{EndRequest, Method, State};

/// Every SIM's voice desk, by ICCID. Cheap to clone.
#[derive(Clone, Default)]
pub struct CallDesks {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    /// Asked before a call in a session is bridged, when set.
    gate: Arc<Mutex<Option<CallGate>>>,
}

/// A call in a session about to be bridged, as a [`CallGate`] is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAsk {
    pub iccid: String,
    pub session_id: String,
    pub caller: crate::number::PhoneNumber,
    pub other: crate::number::PhoneNumber,
}

/// Decides whether a call in a session may be bridged (the Twilio
/// facade's intercept callback): `Some(reason)` refuses it.
pub type CallGate = Arc<
    dyn Fn(CallAsk) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync,
>;

impl std::fmt::Debug for CallDesks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallDesks")
            .field("desks", &self.lock().len())
            .finish()
    }
}

struct Entry {
    requests: mpsc::Sender<DeskRequest>,
    call: Option<LiveCall>,
}

/// A call a desk carries now, as the API shows it: no numbers, so viewers
/// may see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveCall {
    /// The session it belongs to (`null` when forwarded by policy).
    pub session_id: Option<String>,
    /// `connecting` (the caller is answered and held while the other
    /// participant is dialled), `ringing` (the other participant's phone
    /// rings) or `bridged` (they talk).
    pub state: &'static str,
    /// `conference` or `transfer`, once bridged.
    pub method: Option<&'static str>,
    /// The first ring at the proxy.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// When the other participant answered.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<OffsetDateTime>,
}

impl LiveCall {
    /// The call in `state`, if the bridge holds one.
    pub(super) fn of(state: &State) -> Option<LiveCall> {
        let call = state.call()?;
        let (phase, method) = match state {
            State::AlertingOther(_) => ("ringing", None),
            State::Bridged(_, method) => ("bridged", Some(*method)),
            _ => ("connecting", None),
        };
        Some(LiveCall {
            session_id: call.session().map(str::to_string),
            state: phase,
            method: method.map(Method::name),
            started_at: call.started_at(),
            answered_at: call.answered_at(),
        })
    }
}

/// A call the appliance ended.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ended {
    pub session_id: String,
    /// `ended_by_operator`, `session_ended`…, as the call's interaction
    /// records it.
    pub outcome: String,
    /// The conversation's length, when the other side had answered.
    pub duration_seconds: Option<f64>,
}

/// Why a call could not be ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndError {
    #[error(
        "no call in progress that the appliance holds on this session (a call bridged by transfer is carried by the network alone)"
    )]
    NoCall,
    #[error("the voice desk of the session's SIM has stopped")]
    DeskGone,
}

/// What a desk is asked through [`CallDesks`].
pub(super) enum DeskRequest {
    End {
        session: String,
        request: EndRequest,
        reply: oneshot::Sender<Result<Ended, EndError>>,
    },
}

impl CallDesks {
    /// Sets the gate every desk asks before bridging a session's call.
    pub fn set_gate(&self, gate: CallGate) {
        *self.gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate);
    }

    pub(super) fn gate(&self) -> Option<CallGate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A desk starts taking requests for `iccid`.
    pub(super) fn register(&self, iccid: &str, requests: mpsc::Sender<DeskRequest>) {
        self.lock().insert(
            iccid.to_string(),
            Entry {
                requests,
                call: None,
            },
        );
    }

    /// The call `iccid`'s desk carries now.
    pub(super) fn set_call(&self, iccid: &str, call: Option<LiveCall>) {
        if let Some(entry) = self.lock().get_mut(iccid) {
            entry.call = call;
        }
    }

    /// The call in progress on `session`, if the appliance holds one.
    pub fn call_of_session(&self, session: &str) -> Option<LiveCall> {
        self.lock()
            .values()
            .filter_map(|entry| entry.call.clone())
            .find(|call| call.session_id.as_deref() == Some(session))
    }

    /// Ends the call in progress on `session` for both sides, and answers
    /// once it is over and recorded.
    pub async fn end_call(&self, session: &str, request: EndRequest) -> Result<Ended, EndError> {
        let requests = self
            .lock()
            .values()
            .find(|entry| {
                entry
                    .call
                    .as_ref()
                    .is_some_and(|call| call.session_id.as_deref() == Some(session))
            })
            .map(|entry| entry.requests.clone())
            .ok_or(EndError::NoCall)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(DeskRequest::End {
                session: session.to_string(),
                request,
                reply,
            })
            .await
            .map_err(|_| EndError::DeskGone)?;
        answer.await.map_err(|_| EndError::DeskGone)?
    }
}
