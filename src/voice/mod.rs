//! Masked calls: the per-SIM call-bridging state machine (pure, no tokio)
//! and its desk, which carries out what the machine asks for.
//!
//! A person X calls proxy P; if X has an open voice session on P with Y, the
//! SIM answers X, holds X, dials Y from the same SIM (so Y sees P), and when
//! Y answers joins the two legs in the network: multiparty (`AT+CHLD=3`
//! with the modem muted; it stays in the call and clears the remaining leg
//! when one side hangs up), or, where the operator opted in, explicit call
//! transfer (`AT+CHLD=4`, the modem leaves; the network may then show each
//! side the other's number, see [`method`](choose_method)). No audio passes
//! through the appliance. While the modem is in the call the appliance ends
//! it for both sides when asked ([`Input::End`]: the operator, the session
//! closed or expired) or at `[voice] max_duration_seconds`.
//!
//! ```text
//! Idle ─RING/+CLIP─► Ringing ─session─► Answered ─► HoldingCaller ─► DialingOther
//!   ▲                  │ no session / withheld / no method: hang up    │
//!   │                  ▼                                               ▼
//!   └──────────── Clearing ◄── busy, no answer, unreachable ◄── AlertingOther
//!                    ▲                                               │ Y answers
//!                    └──── one side hangs up ◄── Bridged(Conference | Transfer)
//!                    └──── ended (operator, session, maximum duration)
//! ```
//!
//! # How to drive it
//! One [`Bridge`] per SIM, fed by the modem actor:
//! - every call URC becomes an [`Input`] (`RING`/`+CRING` → [`Input::Ring`],
//!   `+CLIP` → [`Input::CallerId`], `+CCWA` → [`Input::CallWaiting`],
//!   `NO CARRIER` / `BUSY` / `NO ANSWER` → [`Input::NoCarrier`] … ),
//! - every `AT+CLCC` answer becomes [`Input::Calls`] (the truth the URC hints
//!   are reconciled with),
//! - every command it asked for reports back as [`Input::Done`] or
//!   [`Input::Failed`], in order,
//! - a timer sends [`Input::Tick`] about once a second,
//! - the SIM going down (unplugged, reset) sends [`Input::ModemLost`]: the
//!   call is recorded as cut off and the bridge is idle at once,
//! - the SIM coming up sends [`Input::NoCarrier`], so the bridge reads the
//!   modem's calls and releases any left half-made by an earlier run,
//! - the desk answers [`Command::LookupSession`] with [`Input::Session`],
//! - the operator's "end call", or the call's session closed or expired,
//!   sends [`Input::End`],
//! - a key the caller pressed (`+DTMF`, `+QTONEDET`) sends [`Input::Key`]:
//!   a hub calling its proxy keys the code of the session it wants
//!   ([`Lookup::Hub`], the `Keying` state).
//!
//! [`Bridge::step`] returns the [`Command`]s to carry out, in order: AT
//! commands for the modem, a session lookup, and [`Command::Record`] when a
//! call is over (the interaction: caller side, start, answer, end,
//! duration, outcome). Each step that changes state returns a
//! [`Transition`] to log as `old -> new (reason)`.
//!
//! [`desk`] is that loop (one desk per SIM, fed with the SIM's call events);
//! [`desks`] is how the API sees and ends the calls they carry; everything
//! else here is pure.

pub mod desk;
pub mod desks;
pub mod front;
mod machine;
mod method;

pub use desks::{CallAsk, CallDesks, CallGate, EndError, Ended, LiveCall};
pub use machine::{
    Bridge, BridgeTiming, Call, CallRecord, Clearing, Command, CommandKind, EndRequest, HubChoice,
    Input, Keying, Lookup, Outcome, Reported, Ringing, Setup, State, Step, Transition, step,
};
pub use method::{Method, NoMethod, choose_method, method_name};

#[cfg(test)]
mod tests;
