//! One modem: the SMS PDU codec, the model profiles, and (with the driver)
//! the AT engine and the modem actor that owns a serial port.

pub mod actor;
pub mod command;
pub mod digest;
pub mod error;
pub mod init;
pub mod parse;
pub mod pdu;
pub mod port;
pub mod probe;
pub mod profile;
pub mod urc;
