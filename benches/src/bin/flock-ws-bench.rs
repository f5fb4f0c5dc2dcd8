//! flock-ws-bench: the old name of `flock-bench login` and `flock-bench ws-idle`, kept as a thin
//! alias (`flock-ws-bench logins …`, `flock-ws-bench idle …`); the code is in
//! `flock_benches::ws`. Its last line of output stays a one-line JSON summary, as before.

use clap::{Parser, Subcommand};
use flock_benches::ws::{self, IdleArgs, LoginArgs};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "flock-ws-bench",
    version,
    about = "Websocket load for flockd (alias of `flock-bench login` / `flock-bench ws-idle`; loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open N idle websockets and report flockd's resident memory per socket (`flock-bench ws-idle`).
    Idle(IdleArgs),
    /// Full log-ins in a loop from C concurrent browsers to in-process appliances (`flock-bench login`).
    Logins(LoginArgs),
}

fn main() -> ExitCode {
    let r = match Cli::parse().command {
        Cmd::Idle(a) => ws::block_on(None, ws::idle(a)),
        Cmd::Logins(a) => ws::block_on(a.cpu, ws::login(a.clone())).and_then(|r| {
            print!("{}", ws::login_summary(&r, a.appliances));
            let p = &r.phases[0];
            println!(
                "{}",
                serde_json::json!({"mode": "logins", "done": p.answered, "failed": p.lost, "per_second": p.answered_per_s,
                    "p50_us": p.latency.p50_us, "p99_us": p.latency.p99_us, "concurrency": a.concurrency, "appliances": a.appliances})
            );
            r.write_json(a.json.as_deref())
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flock-ws-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
