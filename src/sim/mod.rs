//! The virtual GSM network: a bank of virtual modems behind real
//! pseudo-terminals, handsets, and the control API.

pub mod identity;
pub mod interpreter;
