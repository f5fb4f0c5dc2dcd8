//! State every core and the engine handle can reach: the stop flag, and per core its counters,
//! its mesh inbox and (for the kernel drop counter) its socket descriptor.

use crate::mesh::{Forwarded, Inbox};
use crate::stats::{CoreCounters, CoreStats};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub(crate) struct Shared {
    pub stop: AtomicBool,
    pub cores: Box<[CoreShared]>,
}

pub(crate) struct CoreShared {
    pub counters: CoreCounters,
    pub inbox: Inbox<Forwarded>,
    /// The core's socket while it is open. Cleared under the lock before the socket closes, so
    /// `stats()` never queries a descriptor number that has been reused.
    fd: Mutex<Option<RawFd>>,
}

impl Shared {
    pub(crate) fn new(cores: usize, mesh_capacity: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            cores: (0..cores)
                .map(|_| CoreShared {
                    counters: CoreCounters::default(),
                    inbox: Inbox::new(mesh_capacity),
                    fd: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// Asks every core to stop and wakes the parked ones. Callable from any thread.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for core in self.cores.iter() {
            core.inbox.notify();
        }
    }

    pub(crate) fn stats(&self) -> Vec<CoreStats> {
        self.cores
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let drops = {
                    let fd = c.fd.lock().unwrap_or_else(|p| p.into_inner());
                    fd.and_then(|fd| flock_udp::kernel_drops(&fd))
                };
                c.counters.snapshot(i, drops)
            })
            .collect()
    }
}

impl CoreShared {
    pub(crate) fn set_fd(&self, fd: Option<RawFd>) {
        *self.fd.lock().unwrap_or_else(|p| p.into_inner()) = fd;
    }
}
