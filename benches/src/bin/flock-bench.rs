//! flock-bench: packet-rate load generator for flockd. See `flock-bench --help`.

use clap::Parser;
use flock_benches::cli::{Cli, Command, LoadArgs};
use flock_benches::modes::{self, stun::Check};
use flock_benches::report::Report;
use std::process::ExitCode;

fn finish(a: &LoadArgs, report: Result<Report, String>) -> Result<(), String> {
    let report = report?;
    print!("{}", report.summary());
    report.write_json(a.json.as_deref())
}

fn stalls(a: &flock_benches::cli::StallsArgs) -> Result<(), String> {
    use flock_benches::stalls;
    if !(a.duration > 0.0 && a.duration <= 3600.0) {
        return Err("stalls: --duration must be in (0, 3600] seconds".into());
    }
    let cpus = a.cpu.as_ref().map_or(&[][..], |c| &c.0[..]);
    let all = stalls::measure(cpus, std::time::Duration::from_secs_f64(a.duration));
    print!("{}", stalls::summary(&all));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
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
        Command::Login(l) => {
            flock_benches::ws::block_on(l.cpu, flock_benches::ws::login(l.clone())).and_then(|r| {
                print!("{}", flock_benches::ws::login_summary(&r, l.appliances));
                r.write_json(l.json.as_deref())
            })
        }
        Command::WsIdle(i) => flock_benches::ws::block_on(None, flock_benches::ws::idle(i.clone())),
        Command::TlsHandshakes(t) => {
            flock_benches::ws::block_on(t.cpu, flock_benches::tls::handshakes(t.clone()))
        }
        Command::Chart(c) => flock_benches::chart::run(c),
        Command::Stalls(a) => stalls(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flock-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
