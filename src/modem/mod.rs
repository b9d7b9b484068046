//! One modem: the AT engine and the modem actor that owns a serial port.
//! The PDU codec and the model profiles it uses are foundations of their own
//! ([`crate::pdu`], [`crate::profile`]), shared with the simulator.
//!
//! Bytes flow up through the layers, requests down:
//!
//! - [`digest`]: pure; splits bytes into echo, lines, final results, the
//!   `> ` prompt and URCs (a URC may sit inside a response).
//! - [`parse`], [`urc`]: pure; one parser per response, URCs typed.
//! - [`command`]: commands as values with their timeout; builders that
//!   validate what they put on the line.
//! - [`port`]: one serial port (tokio-serial), one command at a time.
//! - [`init`]: bringing a modem up, one path for the driver and the probe:
//!   identity (each field found or missing on its own), profile, SIM PIN,
//!   capabilities probed, storages and network, as an [`init::InitReport`]
//!   that keeps what failed. The driver takes its identity from it.
//! - `network`: signal, registration and operator, read the same way at
//!   bring-up and on request.
//! - [`actor`]: the task that owns a port, its [`actor::ModemHandle`] and
//!   [`actor::ModemEvent`]s, reopening the port when it vanishes.
//! - [`probe`]: `simmask probe`: brings the modem up as the driver does and
//!   renders the report as JSON.

pub mod actor;
pub mod command;
pub mod digest;
pub mod error;
pub mod init;
pub(crate) mod network;
pub mod parse;
pub mod port;
pub mod probe;
#[cfg(test)]
mod transcripts;
pub mod urc;
