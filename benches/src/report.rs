//! Results: a human summary and a JSON document.

use crate::runner::PhaseResult;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Serialize, Debug, Clone)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct PhaseReport {
    pub phase: String,
    pub seconds: f64,
    pub sent: u64,
    pub answered: u64,
    pub answered_per_s: f64,
    pub lost: u64,
    pub loss_pct: f64,
    /// Answers that did not check out (error answers, wrong content).
    pub bad: u64,
    pub late: u64,
    pub unsolicited: u64,
    pub errors: u64,
    pub latency: Latency,
    /// The generator's CPU (user + system, all threads) as % of one CPU.
    pub gen_cpu_pct: f64,
    /// The target process's CPU as % of one CPU (with --target-pid).
    pub target_cpu_pct: Option<f64>,
    /// Busy % of every CPU of the machine (softirq included).
    pub cpu_busy_pct: Vec<f64>,
    /// Bytes queued on the target's socket(s) (mean, max of 1 s samples); loopback targets only.
    pub target_queue_bytes_mean: Option<u64>,
    pub target_queue_bytes_max: Option<u64>,
    /// Datagrams the kernel dropped on the target's socket(s) while measuring (receive buffer
    /// full); loopback targets only.
    pub target_drops: Option<u64>,
    pub datagrams_per_send_call: f64,
    pub datagrams_per_recv_call: f64,
    pub gso_disabled: bool,
}

impl PhaseReport {
    pub fn new(name: &str, r: &PhaseResult) -> PhaseReport {
        let c = &r.counts;
        let secs = r.elapsed.as_secs_f64();
        let us = |q: f64| (c.latency.quantile(q) as f64 / 1e3 * 10.0).round() / 10.0;
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        let per = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                round1(a as f64 / b as f64)
            }
        };
        PhaseReport {
            phase: name.to_string(),
            seconds: (secs * 1000.0).round() / 1000.0,
            sent: c.sent,
            answered: c.answered,
            answered_per_s: (c.answered as f64 / secs).round(),
            lost: c.lost,
            loss_pct: if c.sent == 0 {
                0.0
            } else {
                (1e4 * c.lost as f64 / c.sent as f64).round() / 100.0
            },
            bad: c.bad,
            late: c.late,
            unsolicited: c.unsolicited,
            errors: c.errors,
            latency: Latency {
                p50_us: us(0.5),
                p99_us: us(0.99),
                p999_us: us(0.999),
                max_us: us(1.0),
            },
            gen_cpu_pct: round1(r.gen_cpu_pct),
            target_cpu_pct: r.target_cpu_pct.map(round1),
            cpu_busy_pct: r.cpu_busy_pct.iter().map(|&x| round1(x)).collect(),
            target_queue_bytes_mean: r.target_queue.map(|q| q.0),
            target_queue_bytes_max: r.target_queue.map(|q| q.1),
            target_drops: r.target_drops,
            datagrams_per_send_call: per(c.sent, c.send_calls),
            datagrams_per_recv_call: per(c.answered + c.bad, c.recv_calls),
            gso_disabled: c.gso_disabled,
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// Free-form name of the server under test (`--label`), for charts and tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub mode: String,
    pub target: String,
    pub threads: usize,
    pub sockets: usize,
    pub window: usize,
    pub rate: Option<f64>,
    pub gso: bool,
    pub request_bytes: usize,
    pub phases: Vec<PhaseReport>,
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rate = self.rate.map_or("max".to_string(), |r| format!("{r}/s"));
        let _ = writeln!(
            s,
            "flock-bench {} -> {}  threads={} sockets={} window={} rate={} gso={} request={} B",
            self.mode,
            self.target,
            self.threads,
            self.sockets,
            self.window,
            rate,
            self.gso,
            self.request_bytes
        );
        for p in &self.phases {
            let target = p
                .target_cpu_pct
                .map_or("-".to_string(), |x| format!("{x:.0}%"));
            let queue = match (p.target_queue_bytes_mean, p.target_queue_bytes_max) {
                (Some(m), Some(x)) => format!(
                    "  target rx queue {} KiB mean, {} KiB max",
                    m / 1024,
                    x / 1024
                ),
                _ => String::new(),
            };
            let drops = p
                .target_drops
                .map_or(String::new(), |d| format!("  target drops {d}"));
            let cpus: Vec<String> = p
                .cpu_busy_pct
                .iter()
                .enumerate()
                .map(|(i, x)| format!("cpu{i} {x:.0}%"))
                .collect();
            let _ = writeln!(
                s,
                "  {:<10} {:>7.2}s  sent {:>10}  answered {:>10}  {:>10.0}/s  loss {:.2}% ({} lost, {} bad, {} late)",
                p.phase, p.seconds, p.sent, p.answered, p.answered_per_s, p.loss_pct, p.lost, p.bad, p.late
            );
            let _ = writeln!(
                s,
                "  {:<10} latency p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
                "", p.latency.p50_us, p.latency.p99_us, p.latency.p999_us, p.latency.max_us
            );
            let _ = writeln!(
                s,
                "  {:<10} CPU: generator {:.0}%  target {}  [{}]  {:.1} dgrams/send call, {:.1}/recv call{}{}{}",
                "",
                p.gen_cpu_pct,
                target,
                cpus.join(", "),
                p.datagrams_per_send_call,
                p.datagrams_per_recv_call,
                queue,
                drops,
                if p.gso_disabled { "  (GSO refused by the kernel: fell back)" } else { "" }
            );
        }
        s
    }

    /// Writes [`to_json`](Self::to_json) to `path`, if given (`--json`).
    pub fn write_json(&self, path: Option<&std::path::Path>) -> Result<(), String> {
        match path {
            Some(path) => std::fs::write(path, self.to_json() + "\n")
                .map_err(|e| format!("{}: {e}", path.display())),
            None => Ok(()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
