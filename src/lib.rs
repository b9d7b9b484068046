//! # simmask
//!
//! A number-masking appliance: a bank of GSM modems, each SIM a proxy number;
//! sessions pair two real numbers through one proxy so that SMS and calls are
//! relayed without either side learning the other's number.
//!
//! # Layout
//!
//! Data flows from the serial ports inwards and from the operator outwards:
//!
//! ```text
//!  serial tty ──► modem (AT engine, URC demux, PDU codec, actor)
//!                   │ ModemEvent                ▲ ModemCmd
//!                   ▼                           │
//!                 bank (discovery, identity, health, hotplug)
//!                   │
//!                   ▼
//!                 router: masking rules ─► store (SQLite, one writer)
//!                         sms relay / outbox, voice bridge
//!                   │
//!                   ▼
//!                 api (axum, SSE, dashboard) ◄── operators
//! ```
//!
//! - [`pdu`]: the pure SMS PDU codec; [`profile`]: the per-model firmware
//!   profiles. Foundations shared by the driver and the simulator.
//! - [`modem`]: one modem: AT engine, URCs, the actor that owns a port.
//! - [`admin`]: the operator's shell commands: sessions, backup, erasure, doctor.
//! - [`api`]: the local web API: routes, auth, errors, OpenAPI.
//! - [`bank`]: all modems: discovery, identity, health, hotplug, reset.
//! - [`sim`]: the virtual GSM network with virtual modems behind real ptys.
//! - [`config`]: the daemon's TOML configuration and its defaults.
//! - [`events`]: the event bus behind the live feed, metrics and callbacks.
//! - [`masking`]: the pure masking rules: allocation, session lifecycle, policies.
//! - [`store`]: SQLite behind one writer thread; the only home of SQL.
//! - [`sms`]: the relay's rules: reassembly, inbound decisions, outbox
//!   scheduling and the per-SIM outbox worker.
//! - [`voice`]: the call bridge's pure per-SIM state machine (transfer or
//!   conference, never audio through the appliance).
//! - [`metrics`]: Prometheus counters fed from the event bus.
//! - [`number`]: phone numbers and their redacting `Debug`.
//! - [`logging`]: tracing set-up (human or JSON).
//!
//! Pure layers (the PDU codec, the AT digester, the masking rules) never import
//! tokio: they are plain functions over data, fast to test and easy to fuzz.

pub mod api;
pub mod bank;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod logging;
pub mod masking;
pub mod metrics;
pub mod modem;
pub mod number;
pub mod pdu;
pub mod profile;
pub mod sim;
pub mod sms;
pub mod store;
pub mod voice;
