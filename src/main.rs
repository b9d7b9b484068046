//! The `simmask` command line: parses and dispatches, nothing else. Each
//! command is a thin door in [`simmask::cli`] onto the library.

use std::process::ExitCode;

use clap::Parser;
use simmask::cli::{self, Cli, Output};
use simmask::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, "info");
    let output = Output::detect(cli.json, cli.show_numbers);
    match cli::run(cli.command, output) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("simmask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
