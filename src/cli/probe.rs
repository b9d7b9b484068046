//! `simmask probe PORT`: one modem identified, its capabilities as JSON.
//! An absent port or one where no modem answers exits with status 2 and
//! one line naming the reason.

use std::process::ExitCode;

use crate::modem::probe::probe;
use crate::profile::Profiles;

pub fn run(port: &str, out: super::Output) -> anyhow::Result<ExitCode> {
    let profiles = Profiles::builtin();
    match super::runtime()?.block_on(probe(port, &profiles)) {
        Ok(report) => out.emit(&report, |value, _| {
            let mut text = format!("{port}:\n{}", super::output::generic(value));
            if let Some(dbm) = value.get("signal_dbm") {
                text.push_str(&format!("\nsignal: {}", super::output::signal(dbm)));
            }
            text
        }),
        Err(error) => {
            eprintln!("simmask probe: {port}: no modem: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
