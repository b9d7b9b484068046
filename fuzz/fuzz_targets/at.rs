#![no_main]
//! cargo +nightly fuzz run at (see fuzz/README.md)

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::at(data));
