//! `flock-bench stalls`: how often, and for how long, the machine takes a CPU away from a
//! thread that never blocks. One spinning thread per CPU reads the clock in a tight loop; a gap
//! between two reads is time the thread did not run (hypervisor steal, interrupts, softirqs,
//! other tasks). On a shared virtual machine these pauses reach milliseconds and set a floor
//! under every server's tail latency, so `benches/compare.sh` records them beside its results.

use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Gap thresholds of the histogram, in microseconds.
pub const BUCKETS_US: [u64; 7] = [20, 100, 500, 1_000, 2_000, 5_000, 10_000];

/// Pauses seen on one CPU.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct CpuStalls {
    pub cpu: Option<usize>,
    pub seconds: f64,
    /// `counts[i]`: pauses of at least `BUCKETS_US[i]` µs and less than the next threshold.
    pub counts: [u64; BUCKETS_US.len()],
    /// Sum of all pauses of at least 100 µs.
    pub stalled_ms: f64,
    /// Sum of all pauses of at least 1 ms.
    pub stalled_over_1ms_ms: f64,
    pub longest_us: f64,
}

impl CpuStalls {
    /// Counts one gap between two clock reads.
    pub fn record(&mut self, gap: Duration) {
        let us = gap.as_micros() as u64;
        let Some(i) = BUCKETS_US.iter().rposition(|&t| us >= t) else {
            return;
        };
        self.counts[i] += 1;
        let ms = gap.as_secs_f64() * 1e3;
        if us >= 100 {
            self.stalled_ms += ms;
        }
        if us >= 1_000 {
            self.stalled_over_1ms_ms += ms;
        }
        self.longest_us = self.longest_us.max(gap.as_secs_f64() * 1e6);
    }

    /// Pauses of at least `us` microseconds (`us` one of the thresholds).
    pub fn at_least(&self, us: u64) -> u64 {
        BUCKETS_US
            .iter()
            .zip(&self.counts)
            .filter(|(t, _)| **t >= us)
            .map(|(_, c)| c)
            .sum()
    }

    /// One line: pauses per second by size, and the share of the time lost to them.
    pub fn summary(&self) -> String {
        let per_s = |us| self.at_least(us) as f64 / self.seconds.max(1e-9);
        format!(
            "cpu {}: pauses/s ≥0.1 ms {:.1}, ≥0.5 ms {:.1}, ≥1 ms {:.1}, ≥2 ms {:.1}, ≥5 ms {:.2}; \
             longest {:.2} ms; lost {:.2} ms/s ({:.2} ms/s in pauses ≥1 ms)",
            self.cpu.map_or("-".to_string(), |c| c.to_string()),
            per_s(100),
            per_s(500),
            per_s(1_000),
            per_s(2_000),
            per_s(5_000),
            self.longest_us / 1e3,
            self.stalled_ms / self.seconds.max(1e-9),
            self.stalled_over_1ms_ms / self.seconds.max(1e-9),
        )
    }
}

/// Spins on the calling thread for `duration`, recording every gap between clock reads.
pub fn spin(cpu: Option<usize>, duration: Duration) -> CpuStalls {
    let mut s = CpuStalls {
        cpu,
        ..CpuStalls::default()
    };
    if let Some(c) = cpu {
        if let Err(e) = flock_udp::pin_current_thread(c) {
            eprintln!("flock-bench: cannot pin to CPU {c}: {e}");
            s.cpu = None;
        }
    }
    let start = Instant::now();
    let mut last = start;
    loop {
        let now = Instant::now();
        s.record(now - last);
        last = now;
        if now - start >= duration {
            break;
        }
    }
    s.seconds = (last - start).as_secs_f64();
    s
}

/// Spins one thread per CPU at the same time; returns their results in CPU order.
pub fn measure(cpus: &[usize], duration: Duration) -> Vec<CpuStalls> {
    if cpus.is_empty() {
        return vec![spin(None, duration)];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|&c| scope.spawn(move || spin(Some(c), duration)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The report of all CPUs.
pub fn summary(all: &[CpuStalls]) -> String {
    let mut s = String::new();
    for c in all {
        let _ = writeln!(s, "{}", c.summary());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_land_in_their_buckets() {
        let mut s = CpuStalls {
            seconds: 2.0,
            ..CpuStalls::default()
        };
        for us in [5, 19, 20, 150, 999, 1_000, 3_000, 12_000] {
            s.record(Duration::from_micros(us));
        }
        assert_eq!(s.counts, [1, 1, 1, 1, 1, 0, 1]);
        assert_eq!(s.at_least(1_000), 3);
        assert_eq!(s.at_least(100), 5);
        assert!((s.stalled_ms - (0.15 + 0.999 + 1.0 + 3.0 + 12.0)).abs() < 1e-9);
        assert!((s.stalled_over_1ms_ms - 16.0).abs() < 1e-9);
        assert!((s.longest_us - 12_000.0).abs() < 1e-6);
        assert!(s.summary().contains("≥1 ms 1.5"), "{}", s.summary());
    }

    #[test]
    fn a_short_spin_reports_its_length() {
        let r = measure(&[], Duration::from_millis(30));
        assert_eq!(r.len(), 1);
        assert!(r[0].seconds >= 0.03 && r[0].seconds < 5.0, "{:?}", r[0]);
    }
}
