//! `simmask run`, `simmask demo` and `simmask bench`: the appliance, on real
//! or virtual modems, and measured.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{self, RunOptions};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Relay overhead (inbound URC to relayed AT+CMGS) and throughput on a
    /// virtual bank.
    Relay(crate::bench::relay::RelayBenchArgs),
    /// The daemon's CPU share and wake-ups with idle modems.
    Idle(crate::bench::idle::IdleBenchArgs),
}

/// The daemon until SIGINT or SIGTERM; `SIMMASK_ADMIN_TOKEN` is accepted as
/// an admin token.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    one_malloc_arena();
    let config = Config::load(path)?;
    super::runtime()?.block_on(async {
        let stop = CancellationToken::new();
        daemon::stop_on_signals(stop.clone())?;
        let options = RunOptions {
            admin_token: std::env::var("SIMMASK_ADMIN_TOKEN").ok(),
            stop,
            ready: None,
            reload_from: Some(path.to_path_buf()),
        };
        daemon::run(config, options).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn demo(args: daemon::demo::DemoArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(daemon::demo::demo(args))?;
    Ok(ExitCode::SUCCESS)
}

pub fn bench(command: BenchCommand, out: super::Output) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Relay(args) => {
            let report = super::runtime()?.block_on(crate::bench::relay::relay(args))?;
            out.emit(&report, |value, _| super::output::generic(value))
        }
        BenchCommand::Idle(args) => {
            let report = super::runtime()?.block_on(crate::bench::idle::idle(args))?;
            out.emit(&report, |value, _| super::output::generic(value))
        }
    }
}

/// glibc gives each thread that allocates its own arena, and each keeps
/// what it freed: with the runtime's workers and the store's threads that
/// was 0.9 MB of the idle daemon's 23.4 MB resident (16 modems). The
/// daemon's threads allocate little and seldom at once (the relay bench's
/// latencies with one arena stayed where they were). Set before any
/// thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the
    // daemon starts any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}
