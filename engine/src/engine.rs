//! Starting the cores and controlling them from other threads.
//!
//! One `LocalExecutorBuilder` per core rather than a `LocalExecutorPoolBuilder`: each core needs
//! its own socket, CPU id and index moved into its thread, and per-thread builders map
//! `CpuChoice::List` to `Placement::Fixed(cpu)` one to one (the pool's `Custom` placement would
//! take `CpuSet`s and hand them out in its own order). Unpinned engines use `Placement::Unbound`.

use crate::clock::Clock;
use crate::commands::{CommandQueues, Commander};
use crate::config::EngineConfig;
use crate::core_loop::{self, CoreSetup};
use crate::shared::Shared;
use crate::stats::CoreStats;
use crate::Shard;
use flock_udp::{bind_group, SocketBuffers, SteeringState};
use glommio::{
    BuilderErrorKind, ExecutorJoinHandle, GlommioError, LocalExecutorBuilder, Placement,
};
use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

/// glommio registers this much memory per executor for io_uring buffers. The engine does no file
/// I/O and only its rare fallback sends use these buffers; the default 10 MiB per core would
/// exceed the common 8 MiB RLIMIT_MEMLOCK as soon as there are two cores.
const IO_MEMORY: usize = 256 << 10;

type CoreHandle = ExecutorJoinHandle<io::Result<()>>;

/// Entry point: see [`Engine::start`].
pub struct Engine;

impl Engine {
    /// Binds one socket per core, starts one pinned executor per core, builds each core's shard
    /// there with `factory(core_index, cores)`, and returns once every core is serving.
    ///
    /// Errors (bad settings, bind failures, executors that cannot start or shards that panic while
    /// being built) come back here; nothing is left running then.
    pub fn start<S, F>(config: EngineConfig, factory: F) -> io::Result<EngineHandle>
    where
        S: Shard,
        F: Fn(usize, usize) -> S + Send + Sync + Clone + 'static,
    {
        let cpus = config.resolve_cpus()?;
        let cores = cpus.len();
        let group = bind_group(
            config.addr,
            cores,
            config.recv_buffer_bytes,
            config.send_buffer_bytes,
            config.steering.as_ref(),
        )?;
        let shared = Arc::new(Shared::new(cores, config.mesh_capacity));
        let commands = Arc::new(CommandQueues::<S::Command>::new(
            cores,
            config.command_capacity,
        ));
        let clock = Clock::new(config.clock);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handle = EngineHandle {
            local_addr: group.local_addr,
            buffers: group.buffers,
            steering: group.steering,
            shared: shared.clone(),
            threads: Vec::with_capacity(cores),
            commander: Box::new(Commander::new(commands.clone(), shared.clone())),
        };

        for (index, (socket, cpu)) in group.sockets.into_iter().zip(cpus).enumerate() {
            let placement = if config.pin {
                Placement::Fixed(cpu)
            } else {
                Placement::Unbound
            };
            let setup = CoreSetup {
                index,
                cores,
                socket,
                batch: config.batch,
                clock,
                shared: shared.clone(),
            };
            let factory = factory.clone();
            let commands = commands.clone();
            let ready = Ready {
                index,
                tx: Some(ready_tx.clone()),
            };
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("flock-core{index}"))
                .io_memory(IO_MEMORY)
                .spawn(move || async move {
                    let shard = factory(index, cores);
                    core_loop::run(setup, shard, commands, move || ready.ok()).await
                });
            match spawned {
                Ok(thread) => handle.threads.push(thread),
                Err(e) => {
                    let e = io::Error::from(e);
                    return Err(handle.abort(io::Error::new(
                        e.kind(),
                        format!("starting core {index}: {e}"),
                    )));
                }
            }
        }
        drop(ready_tx);

        for _ in 0..cores {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(handle.abort(e)),
                Err(_) => return Err(handle.abort(io::Error::other("cores exited while starting"))),
            }
        }
        tracing::info!(
            addr = %handle.local_addr,
            cores,
            pinned = config.pin,
            recv_buffer = handle.buffers.recv_bytes,
            send_buffer = handle.buffers.send_bytes,
            steering = ?handle.steering,
            "engine serving"
        );
        Ok(handle)
    }
}

/// Tells `start` that a core is serving, or (when dropped unsent: executor creation failed, the
/// shard factory panicked...) that it never will.
struct Ready {
    index: usize,
    tx: Option<mpsc::Sender<io::Result<()>>>,
}

impl Ready {
    fn ok(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Ok(()));
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(io::Error::other(format!(
                "core {} stopped while starting",
                self.index
            ))));
        }
    }
}

/// A running engine. Dropping it stops the engine and waits for it.
pub struct EngineHandle {
    local_addr: SocketAddr,
    buffers: SocketBuffers,
    steering: SteeringState,
    shared: Arc<Shared>,
    threads: Vec<CoreHandle>,
    /// A `Commander<S::Command>`, typed again by [`commander`](Self::commander).
    commander: Box<dyn Any + Send + Sync>,
}

impl EngineHandle {
    /// Sends commands to the shards; `None` if `C` is not the engine's `Shard::Command`.
    pub fn commander<C: Send + 'static>(&self) -> Option<Commander<C>> {
        self.commander.downcast_ref::<Commander<C>>().cloned()
    }

    /// The address every core is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn cores(&self) -> usize {
        self.shared.cores.len()
    }

    /// Whether the kernel steers datagrams to their cores.
    pub fn steering(&self) -> &SteeringState {
        &self.steering
    }

    /// Effective socket buffer sizes (core 0's; all cores are configured alike).
    pub fn socket_buffers(&self) -> SocketBuffers {
        self.buffers
    }

    /// A snapshot of every core's counters, by core index.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.shared.stats()
    }

    /// Asks every core to stop; they do within milliseconds. Returns at once; see [`join`](Self::join).
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// A cloneable, `Send` handle that can only stop the engine (for a signal-handling thread).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Waits for every core to exit (after [`shutdown`](Self::shutdown), or after a core failed,
    /// which stops the others). Returns the first error.
    pub fn join(mut self) -> io::Result<()> {
        self.join_all()
    }

    fn join_all(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for (index, thread) in self.threads.drain(..).enumerate() {
            let result = match thread.join() {
                Ok(r) => r,
                Err(GlommioError::BuilderError(BuilderErrorKind::ThreadPanic(payload))) => Err(
                    io::Error::other(format!("panicked: {}", panic_message(&*payload))),
                ),
                Err(e) => Err(io::Error::from(e)),
            };
            if let (Err(e), Ok(())) = (result, &first) {
                first = Err(io::Error::new(e.kind(), format!("core {index}: {e}")));
            }
        }
        first
    }

    /// Stops and joins whatever started, returning the most telling error: a core's own failure
    /// if there was one, else `fallback`.
    fn abort(&mut self, fallback: io::Error) -> io::Error {
        self.shutdown();
        match self.join_all() {
            Err(e) => e,
            Ok(()) => fallback,
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
            let _ = self.join_all();
        }
    }
}

/// Stops an engine from any thread. See [`EngineHandle::shutdown_handle`].
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.shutdown();
    }
}
