//! The seam between the runtime and the protocol: what an executor needs from the per-core
//! state machine. The runtime owns sockets, buffers and the clock; the shard owns the state.

use flock_proto::server::Outcome;
use flock_proto::Time;
use std::net::SocketAddr;

/// Per-core protocol state. One instance lives on each executor and is never shared.
pub trait Shard: 'static {
    /// Requests from other threads (the websocket gateway), delivered through a
    /// [`Commander`](crate::Commander). `()` for shards that take none.
    type Command: Send + 'static;

    /// Handles one datagram from `src`: answers it (written to the start of `reply`), takes it,
    /// or, when another core owns it, returns [`Outcome::OtherCore`] untouched. The engine hands a
    /// forwarded datagram to that core's `handle`, which must then take it: cores agree on
    /// ownership, and a datagram is forwarded at most once (a second `OtherCore` is dropped).
    /// Deciding ownership here, where the datagram is parsed anyway, parses it once.
    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8], reply: &mut [u8]) -> Outcome;

    /// Datagrams the shard wants sent on its own initiative (challenges, retransmissions):
    /// written to `buf`, returned with their destination. The engine calls it until `None`
    /// after every round of input and timers, so it is also where a shard acts on whatever
    /// else its inputs caused.
    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)>;

    /// When `handle_timeout` must next be called, if ever. Read after `poll_transmit` returned
    /// `None`, before the engine parks.
    fn poll_timeout(&self) -> Option<Time>;

    /// Advances timers to `now`.
    fn handle_timeout(&mut self, now: Time);

    /// Handles one command from another thread. What it wants sent comes out of
    /// [`poll_transmit`](Self::poll_transmit).
    fn handle_command(&mut self, now: Time, command: Self::Command) {
        let _ = (now, command);
    }
}
