//! What the engine is asked to do: where to listen, on which CPUs, with which buffer sizes.

use crate::clock::ClockSource;
use flock_udp::{allowed_cpus, Steering};
use std::io;
use std::net::SocketAddr;

/// Largest datagram the engine reads or writes; longer ones are truncated by the kernel and
/// dropped (`dropped_truncated`).
pub const MAX_DATAGRAM: usize = 2048;

/// Largest datagram handed to another core over the mesh (Ethernet MTU payload). A longer one
/// that belongs to another core is dropped and counted in `dropped_truncated`.
pub const MESH_PAYLOAD: usize = 1500;

/// Which CPUs get an executor (one executor, socket and shard per entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuChoice {
    /// Every CPU this process may run on (its affinity mask).
    All,
    /// The first `n` CPUs of this process's affinity mask.
    Count(usize),
    /// Exactly these CPU ids, in core-index order: core `i` runs on `list[i]`.
    List(Vec<usize>),
}

/// Engine settings. Build with [`EngineConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Address every core binds with SO_REUSEPORT. Port 0 picks one port for all cores.
    /// `[::]` listens dual-stack (IPV6_V6ONLY off); IPv4 peers then appear as plain IPv4.
    pub addr: SocketAddr,
    /// How many cores, and which CPUs when `pin` is set.
    pub cpus: CpuChoice,
    /// Pin each executor to its CPU. `false` lets the scheduler place the threads (unit tests on
    /// small machines); the core count still comes from `cpus`.
    pub pin: bool,
    /// SO_RCVBUF per socket in bytes (SO_RCVBUFFORCE is tried first); 0 keeps the default.
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF per socket in bytes (SO_SNDBUFFORCE is tried first); 0 keeps the default.
    pub send_buffer_bytes: usize,
    /// Datagrams per recvmmsg/sendmmsg call.
    pub batch: usize,
    /// Datagrams each core's mesh inbox holds; when full, forwarded datagrams are dropped.
    pub mesh_capacity: usize,
    /// Commands each core's command inbox holds; when full, `Commander::send` hands them back.
    pub command_capacity: usize,
    /// Where `now` comes from.
    pub clock: ClockSource,
    /// Have the kernel hand each datagram to the core its payload names (see [`Steering`]);
    /// `None`: the kernel's flow hash. With one core there is nothing to steer.
    pub steering: Option<Steering>,
}

impl EngineConfig {
    /// Defaults (flockd's, docs/CONFIG.md `[socket]`): every CPU, pinned, 8 MiB receive and
    /// 4 MiB send buffers, batches of 32.
    pub fn new(addr: SocketAddr) -> EngineConfig {
        EngineConfig {
            addr,
            cpus: CpuChoice::All,
            pin: true,
            recv_buffer_bytes: 8 << 20,
            send_buffer_bytes: 4 << 20,
            batch: 32,
            mesh_capacity: 1024,
            command_capacity: 4096,
            clock: ClockSource::System,
            steering: None,
        }
    }

    /// The CPU ids, one per core, after checking the settings.
    pub(crate) fn resolve_cpus(&self) -> io::Result<Vec<usize>> {
        if self.batch == 0 || self.batch > 1024 {
            return Err(invalid(format!(
                "batch must be 1..=1024, not {}",
                self.batch
            )));
        }
        if self.mesh_capacity == 0 {
            return Err(invalid("mesh_capacity must be at least 1".into()));
        }
        if self.command_capacity == 0 {
            return Err(invalid("command_capacity must be at least 1".into()));
        }
        let cpus = match &self.cpus {
            CpuChoice::All => allowed_cpus()?,
            CpuChoice::Count(0) => {
                return Err(invalid(
                    "CpuChoice::Count(0): need at least one core".into(),
                ))
            }
            CpuChoice::Count(n) => {
                let allowed = allowed_cpus()?;
                if self.pin && *n > allowed.len() {
                    return Err(invalid(format!(
                        "CpuChoice::Count({n}) but this process may only run on {} CPUs",
                        allowed.len()
                    )));
                }
                // Unpinned, more cores than CPUs is allowed (threads just share CPUs).
                (0..*n).map(|i| allowed[i % allowed.len()]).collect()
            }
            CpuChoice::List(list) => {
                if list.is_empty() {
                    return Err(invalid("CpuChoice::List is empty".into()));
                }
                let mut sorted = list.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != list.len() {
                    return Err(invalid(format!("CpuChoice::List has duplicates: {list:?}")));
                }
                list.clone()
            }
        };
        Ok(cpus)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cpus: CpuChoice) -> EngineConfig {
        EngineConfig {
            cpus,
            ..EngineConfig::new("127.0.0.1:0".parse().unwrap())
        }
    }

    #[test]
    fn resolves_cpu_choices() {
        assert!(!cfg(CpuChoice::All).resolve_cpus().unwrap().is_empty());
        assert_eq!(
            cfg(CpuChoice::List(vec![1, 0])).resolve_cpus().unwrap(),
            vec![1, 0]
        );
        assert!(cfg(CpuChoice::List(vec![1, 1])).resolve_cpus().is_err());
        assert!(cfg(CpuChoice::List(vec![])).resolve_cpus().is_err());
        assert!(cfg(CpuChoice::Count(0)).resolve_cpus().is_err());
        let unpinned = EngineConfig {
            pin: false,
            ..cfg(CpuChoice::Count(64))
        };
        assert_eq!(unpinned.resolve_cpus().unwrap().len(), 64);
        let bad_batch = EngineConfig {
            batch: 0,
            ..cfg(CpuChoice::Count(1))
        };
        assert!(bad_batch.resolve_cpus().is_err());
    }
}
