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
//!    send batch or names the core that owns it
//!    ([`Outcome::OtherCore`](flock_proto::server::Outcome::OtherCore), the protocol's own
//!    type); such datagrams travel there through its `mesh` inbox as fixed-size values, and the
//!    owner's loop wakes up for them and runs its `handle`.
//! 4. After every round of input (datagrams, forwarded datagrams, commands) and due timers
//!    ([`Shard::handle_timeout`]), the loop drains [`Shard::poll_transmit`] into the same batch:
//!    flockd's shard acts on all of its server's outputs there (`Server::poll_output`).
//! 5. One `sendmmsg` per drain sends the batch from the owner's socket: same address and port,
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
pub use shard::Shard;
pub use stats::CoreStats;
