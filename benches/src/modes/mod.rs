//! Load modes, and what they share: source sockets dealt to threads, phase settings.

pub mod appliance;
pub mod keepalive;
pub mod register;
pub mod stun;

use crate::cli::LoadArgs;
use crate::gen::{LoopConfig, Sock};
use crate::inflight::Inflight;
use crate::report::{PhaseReport, Report};
use crate::runner::{run_phase, Worker};
use crate::sys;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Each thread's CPU and source sockets.
pub type ThreadSockets = Vec<(Option<usize>, Vec<Sock>)>;

/// Most source sockets (the socket index is 16 bits of the transaction id).
pub const MAX_SOCKETS: usize = 4096;

pub fn check_args(a: &LoadArgs) -> Result<(), String> {
    if !a.allow_remote && !sys::is_loopback(&a.target) {
        return Err(format!(
            "{} is not a loopback address (pass --allow-remote to load it anyway)",
            a.target
        ));
    }
    if a.sockets == 0 || a.sockets > MAX_SOCKETS {
        return Err(format!("--sockets must be 1..={MAX_SOCKETS}"));
    }
    if a.threads == 0 || a.threads > a.sockets {
        return Err("--threads must be 1..=--sockets".into());
    }
    if a.window == 0 || a.window > 4096 {
        return Err("--window must be 1..=4096".into());
    }
    if a.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    for (flag, v) in [("--duration", a.duration), ("--warmup", a.warmup)] {
        if !(0.0..=86_400.0).contains(&v) {
            return Err(format!("{flag} must be 0..=86400 seconds"));
        }
    }
    Ok(())
}

/// CPU of generator thread `t`: the listed CPUs, then consecutive ones after the last.
pub fn cpu_of_thread(cpus: Option<&[usize]>, t: usize) -> Option<usize> {
    let cpus = cpus?;
    let last = *cpus.last()?;
    Some(cpus.get(t).copied().unwrap_or(last + (t + 1 - cpus.len())))
}

/// Thread and thread-local index of global socket `g`.
pub fn place(g: usize, threads: usize) -> (usize, usize) {
    (g % threads, g / threads)
}

/// Opens the K source sockets, connected to the target, dealt round-robin to the threads.
pub fn open_sockets(a: &LoadArgs) -> Result<ThreadSockets, String> {
    let mut out: ThreadSockets = (0..a.threads)
        .map(|t| {
            (
                cpu_of_thread(a.cpu.as_ref().map(|c| &c.0[..]), t),
                Vec::new(),
            )
        })
        .collect();
    let local: SocketAddr = if a.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    for g in 0..a.sockets {
        let err = |e: std::io::Error| format!("source socket {g}: {e}");
        let udp = UdpSocket::bind(local).map_err(err)?;
        flock_udp::set_buffer_sizes(&udp, a.sock_buf, a.sock_buf).map_err(err)?;
        // Best effort: without stamps, answers are timed when the generator reads them.
        let _ = flock_udp::enable_rx_timestamps(&udp);
        udp.connect(a.target).map_err(err)?;
        udp.set_nonblocking(true).map_err(err)?;
        out[place(g, a.threads).0].1.push(Sock {
            udp,
            global: g as u16,
            inflight: Inflight::new(a.window),
        });
    }
    Ok(out)
}

/// Whether UDP GSO will be used (asked for and supported).
pub fn gso(a: &LoadArgs, socks: &ThreadSockets) -> bool {
    !a.no_gso
        && socks
            .iter()
            .flat_map(|(_, s)| s.first())
            .all(|s| flock_udp::gso_supported(&s.udp))
}

/// A transaction-id tag for this run, so stale answers from an earlier run (almost) never match.
pub fn run_magic() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let x =
        t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16) ^ std::process::id().rotate_left(8);
    (x ^ x >> 16) as u16 | 1
}

/// The measured phase of a load mode.
pub fn measured(a: &LoadArgs, gso: bool, magic: u16) -> LoopConfig {
    LoopConfig {
        magic,
        rate_per_thread: a.rate.map(|r| r / a.threads as f64),
        gso,
        busy_poll: a.busy_poll,
        timeout: Duration::from_millis(a.timeout_ms),
        warmup: Duration::from_secs_f64(a.warmup),
        duration: Duration::from_secs_f64(a.duration),
        stop_when_done: false,
    }
}

/// A finite setup phase (registrations): no warm-up, ends when the work is done or at `limit`.
pub fn setup_phase(a: &LoadArgs, gso: bool, magic: u16, limit_secs: f64) -> LoopConfig {
    LoopConfig {
        warmup: Duration::ZERO,
        duration: Duration::from_secs_f64(limit_secs.clamp(0.1, 3600.0)),
        stop_when_done: true,
        rate_per_thread: None,
        ..measured(a, gso, magic)
    }
}

/// Builds per-thread workloads in parallel (key derivation and signing are the slow part).
pub fn build_workers<W: Send>(
    socks: ThreadSockets,
    make: impl Fn(usize, &[Sock]) -> W + Sync,
) -> Vec<Worker<W>> {
    let make = &make;
    std::thread::scope(|scope| {
        let handles: Vec<_> = socks
            .into_iter()
            .enumerate()
            .map(|(t, (cpu, socks))| {
                scope.spawn(move || {
                    let wl = make(t, &socks);
                    Worker { cpu, socks, wl }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("workload construction panicked"))
            .collect()
    })
}

/// Runs the measured phase and adds it to the report.
pub fn run_measured<W: crate::gen::Workload>(
    name: &str,
    a: &LoadArgs,
    workers: &mut [Worker<W>],
    cfg: &LoopConfig,
    report: &mut Report,
) {
    let r = run_phase(name, workers, cfg, a.target, a.target_pid, a.quiet);
    report.phases.push(PhaseReport::new(name, &r));
}

fn new_report(mode: &str, a: &LoadArgs, gso: bool, request_bytes: usize) -> Report {
    Report {
        label: a.label.clone(),
        mode: mode.into(),
        target: a.target.to_string(),
        threads: a.threads,
        sockets: a.sockets,
        window: a.window,
        rate: a.rate,
        gso,
        request_bytes,
        phases: Vec::new(),
    }
}

/// `stun` and `echo` modes.
pub fn binding(a: &LoadArgs, check: stun::Check) -> Result<Report, String> {
    check_args(a)?;
    let socks = open_sockets(a)?;
    let gso = gso(a, &socks);
    let mut workers = build_workers(socks, |_, s| stun::Binding::new(check, s));
    let name = if check == stun::Check::Stun {
        "stun"
    } else {
        "echo"
    };
    let mut report = new_report(name, a, gso, stun::binding_request().len());
    run_measured(
        name,
        a,
        &mut workers,
        &measured(a, gso, run_magic()),
        &mut report,
    );
    Ok(report)
}

/// Registration phase shared by `keepalive` and `register`: registers appliances `0..n`
/// (each on socket i mod K) and reports the phase as "register-setup".
fn register_all(
    a: &LoadArgs,
    prefix: &str,
    n: usize,
    limit_secs: f64,
    gso: bool,
    report: &mut Report,
) -> Result<Vec<Worker<appliance::Registrar>>, String> {
    let (threads, sockets) = (a.threads, a.sockets);
    let socks = open_sockets(a)?;
    let built = build_workers(socks, |t, _| {
        appliance::Fleet::new(prefix, n, sockets, threads, t).map(appliance::Registrar::new)
    });
    let mut workers = Vec::with_capacity(built.len());
    for w in built {
        workers.push(Worker {
            cpu: w.cpu,
            socks: w.socks,
            wl: w.wl?,
        });
    }
    let cfg = setup_phase(a, gso, run_magic(), limit_secs);
    let r = run_phase(
        "register-setup",
        &mut workers,
        &cfg,
        a.target,
        a.target_pid,
        a.quiet,
    );
    report.phases.push(PhaseReport::new("register-setup", &r));
    let registered: usize = workers.iter().map(|w| w.wl.registered).sum();
    let refused: usize = workers.iter().map(|w| w.wl.refused).sum();
    if !a.quiet {
        let last = workers
            .iter()
            .find_map(|w| w.wl.last_refusal)
            .map_or(String::new(), |c| format!(" (last error {c})"));
        eprintln!(
            "registered {registered}/{n} appliances in {:.2} s, {refused} refused{last}",
            r.elapsed.as_secs_f64()
        );
    }
    if registered == 0 && n > 0 {
        return Err(format!(
            "no appliance could register ({refused} refused, {} lost)",
            r.counts.lost
        ));
    }
    Ok(workers)
}

/// `keepalive` mode.
pub fn keepalive(k: &crate::cli::KeepaliveArgs) -> Result<Report, String> {
    let a = &k.load;
    check_args(a)?;
    let flock_key = k
        .flock_key_dir
        .as_deref()
        .map(keepalive::read_flock_key)
        .transpose()?;
    let gso = !a.no_gso;
    let mut report = new_report("keepalive", a, gso, 0);
    let setup = register_all(
        a,
        &k.name_prefix,
        k.appliances,
        k.register_timeout,
        gso,
        &mut report,
    )?;
    let mut workers: Vec<Worker<keepalive::Keepalives>> = setup
        .into_iter()
        .map(|w| Worker {
            cpu: w.cpu,
            socks: w.socks,
            wl: keepalive::Keepalives::new(w.wl.fleet, flock_key),
        })
        .collect();
    report.request_bytes = workers
        .iter()
        .map(|w| w.wl.request_bytes())
        .max()
        .unwrap_or(0);
    run_measured(
        "keepalive",
        a,
        &mut workers,
        &measured(a, gso, run_magic()),
        &mut report,
    );
    let checks: u64 = workers.iter().map(|w| w.wl.checks_answered).sum();
    if checks > 0 && !a.quiet {
        eprintln!("answered {checks} CHECKs");
    }
    Ok(report)
}

/// `register` mode.
pub fn register(r: &crate::cli::RegisterArgs) -> Result<Report, String> {
    let a = &r.load;
    check_args(a)?;
    let gso = !a.no_gso;
    let mut report = new_report("register", a, gso, 0);
    let setup = register_all(
        a,
        &r.name_prefix,
        r.appliances,
        r.register_timeout,
        gso,
        &mut report,
    )?;
    let mut workers: Vec<Worker<register::Reregister>> = setup
        .into_iter()
        .map(|w| {
            let wl = register::Reregister::new(&w.wl.fleet);
            Worker {
                cpu: w.cpu,
                socks: w.socks,
                wl,
            }
        })
        .collect();
    report.request_bytes = workers
        .iter()
        .map(|w| w.wl.request_bytes())
        .max()
        .unwrap_or(0);
    run_measured(
        "register",
        a,
        &mut workers,
        &measured(a, gso, run_magic()),
        &mut report,
    );
    Ok(report)
}
