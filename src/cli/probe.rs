//! `simmask probe PORT`: one modem identified, its capabilities as JSON.
//! An absent port or one where no modem answers exits with status 2 and
//! one line naming the reason.

use std::process::ExitCode;

use crate::modem::probe::probe;
use crate::profile::Profiles;

pub fn run(port: &str) -> anyhow::Result<ExitCode> {
    let profiles = Profiles::builtin();
    match super::runtime()?.block_on(probe(port, &profiles)) {
        Ok(report) => super::print_json(&report),
        Err(error) => {
            eprintln!("simmask probe: {port}: no modem: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
