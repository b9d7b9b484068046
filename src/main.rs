//! The `simmask` command line: parses and dispatches, nothing else. Each
//! command is a thin door in [`simmask::cli`] onto the library.

use std::process::ExitCode;

use clap::Parser;
use simmask::cli::{self, Cli};
use simmask::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, "info");
    match cli::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("simmask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
