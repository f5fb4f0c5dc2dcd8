//! The engine's clock: milliseconds since the Unix epoch that never go backwards.
//!
//! The wall clock is read once, when the engine starts; afterwards time advances with a
//! monotonic `Instant`, so an NTP step or a manual `date` cannot make `now` jump back (timers and
//! token expiry in the shard rely on that). Drift from the wall clock over a long uptime is the
//! price, and a small one for a rendezvous server.

use flock_proto::Time;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the engine reads `now` from.
#[derive(Clone, Copy, Debug, Default)]
pub enum ClockSource {
    /// Wall clock at engine start plus a monotonic offset (see [`SystemClock`]).
    #[default]
    System,
    /// A caller-supplied clock, e.g. simulated time in tests. It must not go backwards.
    Custom(fn() -> Time),
}

/// Wall clock at construction plus the monotonic time elapsed since.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    epoch_ms_at_start: u64,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let start = Instant::now();
        // A clock set before 1970 is a broken machine; count from the epoch rather than panic.
        let epoch_ms_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        SystemClock {
            epoch_ms_at_start,
            start,
        }
    }

    #[inline]
    pub fn now(&self) -> Time {
        Time(self.epoch_ms_at_start + self.start.elapsed().as_millis() as u64)
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

/// The clock every core reads; copied to each executor so all cores share one origin.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Clock {
    System(SystemClock),
    Custom(fn() -> Time),
}

impl Clock {
    pub(crate) fn new(source: ClockSource) -> Clock {
        match source {
            ClockSource::System => Clock::System(SystemClock::new()),
            ClockSource::Custom(f) => Clock::Custom(f),
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Time {
        match self {
            Clock::System(c) => c.now(),
            Clock::Custom(f) => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_near_wall_clock_and_monotonic() {
        let clock = SystemClock::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let a = clock.now();
        assert!(a.0.abs_diff(wall) < 1_000, "{} vs {wall}", a.0);
        let mut prev = a;
        for _ in 0..1000 {
            let t = clock.now();
            assert!(t >= prev);
            prev = t;
        }
    }
}
