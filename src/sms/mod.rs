//! The SMS relay: what a SIM received becomes a relayed message, and the
//! outbox sends it from the same proxy.
//!
//! - [`intake`]: one PDU read from a SIM becomes a part, a delivery report,
//!   or something unroutable (pure).
//! - [`reassembly`], [`inbound`], [`schedule`]: the pure rules: concatenated
//!   parts, the routing decision, rate limits and retry backoff.
//! - [`accept`]: drives one store transaction per received part: kept,
//!   reassembled, routed, its relay queued (the store only holds rows).
//! - [`rails`]: the safety rails, pure: STOP/START keywords, the intercept
//!   rules before every relay, loop protection; `guard` gathers their facts
//!   in the inbound transaction and carries out the verdicts (and a front
//!   desk's new session).
//! - [`held`]: a stranger's message held for a Twilio service's
//!   out-of-session callback, routed once it answered.
//! - `hub`: a hub's messages, routed by the code they start with (the
//!   rules are [`crate::masking::hub`]'s), and what the hub is told.
//! - [`worker`]: the per-SIM outbox worker.
//! - [`relay`]: the relay as the daemon runs it: received PDUs to the store
//!   then off the SIM, delivery reports, one outbox worker per SIM.
//!
//! The rules take no tokio and no SQL, so the decisions are testable in
//! isolation; the store is asked only for rows.

pub mod accept;
mod guard;
pub mod held;
mod hub;
pub mod inbound;
pub mod intake;
pub mod rails;
pub mod reassembly;
pub mod relay;
pub mod schedule;
pub mod worker;
