//! Per-core counters, written by their core and read by anyone.
//!
//! Each core's counters sit on their own cache lines (`align(64)`) so cores never false-share.
//! Only the owning core writes them, so an increment is a relaxed load plus a relaxed store (no
//! locked read-modify-write on the hot path); readers on other threads see each counter as a
//! recent, untorn value.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
#[repr(align(64))]
pub(crate) struct CoreCounters {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub transmitted: AtomicU64,
    pub forwarded_out: AtomicU64,
    pub forwarded_in: AtomicU64,
    pub dropped_mesh_full: AtomicU64,
    pub dropped_misrouted: AtomicU64,
    pub dropped_truncated: AtomicU64,
    pub send_errors: AtomicU64,
    pub recv_errors: AtomicU64,
    pub batches: AtomicU64,
    pub wakeups: AtomicU64,
}

/// Adds `n` to a counter only this thread writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// A snapshot of one core's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Core index (0..cores).
    pub core: usize,
    /// Datagrams read from this core's socket.
    pub received: u64,
    /// Replies from `Shard::handle` the kernel accepted (includes replies to datagrams that
    /// other cores forwarded here).
    pub answered: u64,
    /// Datagrams from `Shard::poll_transmit` the kernel accepted.
    pub transmitted: u64,
    /// Datagrams this core read but handed to their owner core.
    pub forwarded_out: u64,
    /// Datagrams other cores handed to this core.
    pub forwarded_in: u64,
    /// Datagrams dropped because the owner's inbox was full.
    pub dropped_mesh_full: u64,
    /// Datagrams dropped because the shard named no valid other core as owner, or named another
    /// one after they had been forwarded to it (shards disagreeing on ownership: a bug).
    pub dropped_misrouted: u64,
    /// Datagrams dropped because they were longer than the receive slot (kernel MSG_TRUNC) or
    /// than the mesh payload when they had to be forwarded.
    pub dropped_truncated: u64,
    /// Datagrams the kernel refused to send (bad destination, no route...).
    pub send_errors: u64,
    /// recvmmsg failures other than "nothing to read".
    pub recv_errors: u64,
    /// recvmmsg calls that returned at least one datagram.
    pub batches: u64,
    /// Times the core waited for work: socket readable, mesh datagram, timer or shutdown. A wait
    /// ends at once when data is already there; only the others put the thread to sleep.
    pub wakeups: u64,
    /// Datagrams the kernel dropped for this socket (receive queue full), from SO_MEMINFO;
    /// `None` once the core has stopped or if the kernel does not say.
    pub kernel_drops: Option<u64>,
}

impl CoreCounters {
    pub(crate) fn snapshot(&self, core: usize, kernel_drops: Option<u64>) -> CoreStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CoreStats {
            core,
            received: r(&self.received),
            answered: r(&self.answered),
            transmitted: r(&self.transmitted),
            forwarded_out: r(&self.forwarded_out),
            forwarded_in: r(&self.forwarded_in),
            dropped_mesh_full: r(&self.dropped_mesh_full),
            dropped_misrouted: r(&self.dropped_misrouted),
            dropped_truncated: r(&self.dropped_truncated),
            send_errors: r(&self.send_errors),
            recv_errors: r(&self.recv_errors),
            batches: r(&self.batches),
            wakeups: r(&self.wakeups),
            kernel_drops,
        }
    }
}

impl CoreStats {
    /// Sums counters over cores (`core` is left 0; `kernel_drops` sums the known ones).
    pub fn total(all: &[CoreStats]) -> CoreStats {
        let mut t = CoreStats::default();
        for s in all {
            t.received += s.received;
            t.answered += s.answered;
            t.transmitted += s.transmitted;
            t.forwarded_out += s.forwarded_out;
            t.forwarded_in += s.forwarded_in;
            t.dropped_mesh_full += s.dropped_mesh_full;
            t.dropped_misrouted += s.dropped_misrouted;
            t.dropped_truncated += s.dropped_truncated;
            t.send_errors += s.send_errors;
            t.recv_errors += s.recv_errors;
            t.batches += s.batches;
            t.wakeups += s.wakeups;
            if let Some(d) = s.kernel_drops {
                t.kernel_drops = Some(t.kernel_drops.unwrap_or(0) + d);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_own_their_cache_lines() {
        assert_eq!(std::mem::align_of::<CoreCounters>(), 64);
        assert_eq!(std::mem::size_of::<CoreCounters>() % 64, 0);
        let c = CoreCounters::default();
        bump(&c.received, 3);
        bump(&c.received, 2);
        assert_eq!(c.snapshot(1, Some(4)).received, 5);
        let t = CoreStats::total(&[c.snapshot(0, Some(4)), c.snapshot(1, None)]);
        assert_eq!((t.received, t.kernel_drops), (10, Some(4)));
    }
}
