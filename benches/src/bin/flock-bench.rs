//! flock-bench: packet-rate load generator for flockd. See `flock-bench --help`.

use clap::Parser;
use flock_benches::cli::{Cli, Command, LoadArgs};
use flock_benches::modes::{self, stun::Check};
use flock_benches::report::Report;
use std::process::ExitCode;

fn finish(a: &LoadArgs, report: Result<Report, String>) -> Result<(), String> {
    let report = report?;
    print!("{}", report.summary());
    if let Some(path) = &a.json {
        std::fs::write(path, report.to_json() + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::EchoServer(a) => flock_benches::echo::serve(a)
            .map(drop)
            .map_err(|e| format!("echo-server: {e}")),
        Command::Stun(a) => finish(a, modes::binding(a, Check::Stun)),
        Command::Echo(a) => finish(a, modes::binding(a, Check::Echo)),
        Command::Keepalive(k) => finish(&k.load, modes::keepalive(k)),
        Command::Register(r) => finish(&r.load, modes::register(r)),
        Command::Chart(c) => flock_benches::chart::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flock-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
