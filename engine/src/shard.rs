//! The seam between the runtime and the protocol: what an executor needs from the per-core
//! state machine. The runtime owns sockets, buffers and the clock; the shard owns the state.

use flock_proto::Time;
use std::net::SocketAddr;

/// What a shard did with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Answered now: the answer to the datagram's source is the first `n` bytes of `reply`.
    Reply(usize),
    /// Taken or dropped; nothing to send now (later datagrams come from `poll_transmit`).
    Done,
    /// Core `n` owns it; nothing was changed here.
    Forward(usize),
}

/// Per-core protocol state. One instance lives on each executor and is never shared.
pub trait Shard: 'static {
    /// Requests from other threads (the websocket gateway), delivered through a
    /// [`Commander`](crate::Commander). `()` for shards that take none.
    type Command: Send + 'static;

    /// Handles one datagram from `src`: answers it (written to the start of `reply`), takes it,
    /// or, when another core owns it, returns [`Handled::Forward`] untouched. The engine hands a
    /// forwarded datagram to that core's `handle`, which must then take it: cores agree on
    /// ownership, and a datagram is forwarded at most once (a second `Forward` is dropped).
    /// Deciding ownership here, where the datagram is parsed anyway, parses it once.
    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8], reply: &mut [u8]) -> Handled;

    /// Datagrams the shard wants sent on its own initiative (challenges, retransmissions):
    /// written to `buf`, returned with their destination. Call until `None`.
    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)>;

    /// When `handle_timeout` must next be called, if ever.
    fn poll_timeout(&self) -> Option<Time>;

    /// Advances timers to `now`.
    fn handle_timeout(&mut self, now: Time);

    /// Handles one command from another thread. What it wants sent comes out of
    /// [`poll_transmit`](Self::poll_transmit).
    fn handle_command(&mut self, now: Time, command: Self::Command) {
        let _ = (now, command);
    }
}
