//! Flock's UDP socket layer, as quinn-udp is quinn's: the socket tricks, kept out of the
//! protocol runtime (the glommio engine) and the load generator, which both use them. Plain
//! `libc` and `socket2`; no async runtime.
//!
//! - [`RecvBatch`] and [`SendBatch`]: one `recvmmsg` / `sendmmsg` over preallocated slots, to
//!   per-datagram or connected destinations, with UDP GSO ([`gso`]) and kernel receive
//!   timestamps ([`timestamp`]) on request.
//! - [`addr`]: `sockaddr_storage` to and from `std`, with one v4-mapped rule.
//! - [`options`]: buffer sizes, integer options, the kernel's drop counter.
//! - [`bind_group`] ([`reuseport`]): a SO_REUSEPORT group of sockets, one per core, and its
//!   classic-BPF [`Steering`] program.
//! - [`cpus`]: CPU lists and thread pinning.
//!
//! Linux only. All `unsafe` is FFI to the kernel, each block with its reasoning.

pub mod addr;
pub mod cpus;
pub mod gso;
pub mod options;
mod recv;
pub mod reuseport;
mod send;
mod steering;
pub mod timestamp;

pub use cpus::{allowed_cpus, parse_cpu_list, pin_current_thread};
pub use gso::gso_supported;
pub use options::{kernel_drops, set_buffer_sizes, SocketBuffers};
pub use recv::{Received, RecvBatch};
pub use reuseport::{bind_group, BoundGroup, SteeringState};
pub use send::{Queued, SendBatch, Sent};
pub use steering::Steering;
pub use timestamp::{enable_rx_timestamps, realtime_ns};
