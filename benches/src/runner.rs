//! Runs one phase on all worker threads: pins them, prints progress once a second, and samples
//! CPU use (ours, the target's, each CPU's) over the measured interval.

use crate::gen::{self, Counts, LoopConfig, Progress, Sock, Workload};
use crate::proc_stat::{self, CpuTimes};
use crate::sys;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// One generator thread: its CPU, sockets and workload.
pub struct Worker<W> {
    pub cpu: Option<usize>,
    pub socks: Vec<Sock>,
    pub wl: W,
}

/// What a phase measured.
pub struct PhaseResult {
    pub counts: Counts,
    /// Length of the measured interval (shorter than asked when a finite phase ended early).
    pub elapsed: Duration,
    pub gen_cpu_pct: f64,
    pub target_cpu_pct: Option<f64>,
    pub cpu_busy_pct: Vec<f64>,
    /// Bytes waiting in the target's socket receive queue, sampled once a second while
    /// measuring (mean, max): well above zero means the target, not the generator, is the limit.
    pub target_queue: Option<(u64, u64)>,
    /// Datagrams the kernel dropped on the target's socket(s) while measuring (`drops` of
    /// `/proc/net/udp`); loopback targets only.
    pub target_drops: Option<u64>,
}

struct Sample {
    at: Instant,
    own: Duration,
    target: Option<Duration>,
    cpus: CpuTimes,
    drops: Option<u64>,
}

impl Sample {
    fn take(target_pid: Option<u32>, target: SocketAddr) -> Sample {
        Sample {
            drops: proc_stat::udp_drops(target),
            at: Instant::now(),
            own: sys::cpu_time(libc::RUSAGE_SELF),
            target: target_pid.and_then(proc_stat::process_cpu),
            cpus: CpuTimes::now(),
        }
    }
}

fn totals(progress: &[Progress]) -> (u64, u64, u64) {
    progress.iter().fold((0, 0, 0), |(s, a, l), p| {
        (
            s + p.sent.load(Relaxed),
            a + p.answered.load(Relaxed),
            l + p.lost.load(Relaxed),
        )
    })
}

/// Runs `cfg` on every worker; `name` labels the progress lines (none when `quiet`).
pub fn run_phase<W: Workload>(
    name: &str,
    workers: &mut [Worker<W>],
    cfg: &LoopConfig,
    target: SocketAddr,
    target_pid: Option<u32>,
    quiet: bool,
) -> PhaseResult {
    // Keep this (mostly sleeping) thread off the target's CPU too.
    if let Some(cpu) = workers.first().and_then(|w| w.cpu) {
        let _ = flock_udp::pin_current_thread(cpu);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let progress: Vec<Progress> = workers.iter().map(|_| Progress::default()).collect();
    let measure_start = start + cfg.warmup;
    let measure_end = measure_start + cfg.duration;
    let hard_end = measure_end + cfg.timeout + Duration::from_secs(1);

    std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .zip(&progress)
            .map(|(w, p)| {
                scope.spawn(move || {
                    if let Some(cpu) = w.cpu {
                        if let Err(e) = flock_udp::pin_current_thread(cpu) {
                            eprintln!("flock-bench: cannot pin to CPU {cpu}: {e}");
                        }
                    }
                    gen::run(&mut w.socks, &mut w.wl, cfg, start, p)
                })
            })
            .collect();
        let finished = || handles.iter().all(|h| h.is_finished());

        let mut first: Option<Sample> = None;
        let mut last_line = start;
        let mut last_queue = measure_start;
        let mut last_totals = (0, 0, 0);
        let mut second = 0;
        let mut done_at: Option<Sample> = None;
        let mut queue: Vec<u64> = Vec::new();
        // Bounded: at most hard_end, in 10 ms steps.
        while Instant::now() < hard_end {
            let now = Instant::now();
            if first.is_none() && now >= measure_start {
                first = Some(Sample::take(target_pid, target));
            }
            if done_at.is_none() && first.is_some() && (now >= measure_end || finished()) {
                done_at = Some(Sample::take(target_pid, target));
            }
            if finished() {
                break;
            }
            if !quiet && now >= last_line + Duration::from_secs(1) {
                last_line += Duration::from_secs(1);
                second += 1;
                let t = totals(&progress);
                let in_flight = t.0.saturating_sub(t.1 + t.2);
                eprintln!(
                    "[{name} {second:>3}s] sent {:>10} answered {:>10} ({:>9}/s) lost {:>6} in flight {}",
                    t.0,
                    t.1,
                    t.1 - last_totals.1,
                    t.2,
                    in_flight,
                );
                last_totals = t;
            }
            if now >= last_queue + Duration::from_secs(1) {
                last_queue += Duration::from_secs(1);
                if first.is_some() && done_at.is_none() {
                    queue.extend(proc_stat::udp_rx_queue(target));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut counts = Counts::default();
        for h in handles {
            match h.join() {
                Ok(c) => counts.merge(&c),
                Err(_) => counts.errors += 1,
            }
        }
        let first = first.unwrap_or_else(|| Sample::take(target_pid, target));
        let last = done_at.unwrap_or_else(|| Sample::take(target_pid, target));
        let elapsed = last
            .at
            .saturating_duration_since(first.at)
            .max(Duration::from_millis(1));
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / elapsed.as_secs_f64();
        PhaseResult {
            counts,
            elapsed,
            gen_cpu_pct: pct(last.own.saturating_sub(first.own)),
            target_cpu_pct: match (first.target, last.target) {
                (Some(a), Some(b)) => Some(pct(b.saturating_sub(a))),
                _ => None,
            },
            cpu_busy_pct: first.cpus.busy_since(&last.cpus),
            target_drops: match (first.drops, last.drops) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
            target_queue: (!queue.is_empty()).then(|| {
                (
                    queue.iter().sum::<u64>() / queue.len() as u64,
                    queue.iter().copied().max().unwrap_or(0),
                )
            }),
        }
    })
}
