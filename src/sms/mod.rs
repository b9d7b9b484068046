//! The pure SMS relay rules: reassembly of concatenated parts and outbox
//! scheduling (rate limits, retry backoff, which send errors are permanent).
//!
//! No tokio and no SQL here: the store loads what these rules need, calls
//! them and writes the result, so the decisions are testable in isolation.

pub mod inbound;
pub mod intake;
pub mod reassembly;
pub mod schedule;
pub mod worker;
