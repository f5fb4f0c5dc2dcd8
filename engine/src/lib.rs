//! Flock's UDP engine: one glommio executor per core, each with its own SO_REUSEPORT socket on
//! the shared address, each owning the names whose hash lands on it.
//!
//! The socket work (batches, options, the reuseport group and its steering program) is
//! `flock-udp`'s; this crate is the runtime around it. The packet path, one file per step:
//!
//! 1. `engine`: every core gets its own socket, all bound to the same address and port
//!    (`flock_udp::bind_group`); the kernel picks the socket (so the core) that reads each
//!    datagram: with [`Steering`], a classic BPF program reads the owning core from the
//!    datagram, otherwise its flow hash. `socket` hands each one to its core's glommio executor.
//! 2. `core_loop`: the core parks until its socket is readable (a one-byte glommio peek), then
//!    drains it with `recvmmsg` into a preallocated `flock_udp::RecvBatch`.
//! 3. [`Shard::handle`] parses the datagram once and either writes the reply straight into the
//!    send batch or names the core that owns it ([`Handled::Forward`]); such datagrams travel
//!    there through its `mesh` inbox as fixed-size values, and the owner's loop wakes up for
//!    them and runs its `handle`. Timers ([`Shard::handle_timeout`]) and
//!    [`Shard::poll_transmit`] add to the same batch.
//! 4. One `sendmmsg` per drain sends the batch from the owner's socket: same address and port,
//!    so the client sees the reply come from where it sent the request.
//!
//! Commands from other threads (the websocket gateway) reach a core's shard through a
//! [`Commander`] and wake it like forwarded datagrams do.
//!
//! Around it: [`config`] (what to start), [`clock`] (the `now` given to shards), [`stats`]
//! (per-core counters), [`engine`] (starting, stopping, joining).

pub mod clock;
mod commands;
pub mod config;
mod core_loop;
pub mod engine;
mod mesh;
pub mod shard;
mod shared;
mod socket;
pub mod stats;

pub use clock::{ClockSource, SystemClock};
pub use commands::Commander;
pub use config::{CpuChoice, EngineConfig, MAX_DATAGRAM, MESH_PAYLOAD};
pub use engine::{Engine, EngineHandle, ShutdownHandle};
pub use flock_udp::{SocketBuffers, Steering, SteeringState};
pub use shard::{Handled, Shard};
pub use stats::CoreStats;
