//! The seam between the runtime and the protocol: what an executor needs from the per-core
//! state machine. The runtime owns sockets, buffers and the clock; the shard owns the state.

use flock_proto::Time;
use std::net::SocketAddr;

/// Per-core protocol state. One instance lives on each executor and is never shared.
pub trait Shard: 'static {
    /// Requests from other threads (the websocket gateway), delivered through a
    /// [`Commander`](crate::Commander). `()` for shards that take none.
    type Command: Send + 'static;

    /// The core, among `cores`, that owns this datagram, or `None` when any core may answer it
    /// (stateless requests such as STUN Binding, or input that `handle` will drop anyway).
    fn route(&self, datagram: &[u8], cores: usize) -> Option<usize>;

    /// Handles one datagram from `src`. An immediate answer to `src` is written to the start of
    /// `reply` and its length returned.
    fn handle(
        &mut self,
        now: Time,
        src: SocketAddr,
        datagram: &[u8],
        reply: &mut [u8],
    ) -> Option<usize>;

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
