//! Handing the per-core sockets (bound as one SO_REUSEPORT group by `flock_udp::bind_group`)
//! to glommio.

use socket2::Socket;

/// Hands a bound socket to glommio (which links socket2 0.4, so `From<socket2::Socket>` does not
/// apply to ours). Must run on the executor thread that will use it.
pub(crate) fn into_glommio(socket: Socket) -> glommio::net::UdpSocket {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `into_raw_fd` gives up ownership of an open UDP socket descriptor, which the glommio
    // socket takes over and closes on drop; nothing else refers to it.
    unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) }
}
