//! Creating the per-core UDP sockets: one per core, all bound to the same address and port with
//! SO_REUSEPORT so the kernel spreads incoming flows across them.
//!
//! All sockets are bound on the thread calling `Engine::start`, before any executor exists, so a
//! bind failure comes back from `start` as an error naming the address.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

// Generic Linux values (x86, arm, riscv...); the libc crate only exports them for some targets.
#[cfg(not(any(target_arch = "mips", target_arch = "mips64", target_arch = "sparc64")))]
mod consts {
    pub const SO_SNDBUFFORCE: libc::c_int = 32;
    pub const SO_RCVBUFFORCE: libc::c_int = 33;
    pub const SO_MEMINFO: libc::c_int = 55;
}
use consts::*;

/// Number of u32 counters SO_MEMINFO returns (SK_MEMINFO_VARS).
const SK_MEMINFO_VARS: usize = 9;

/// The effective socket buffer sizes, as the kernel reports them (it doubles what is asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketBuffers {
    pub recv_bytes: usize,
    pub send_bytes: usize,
    /// Whether SO_RCVBUFFORCE/SO_SNDBUFFORCE worked (needs CAP_NET_ADMIN), lifting the
    /// net.core.rmem_max / wmem_max caps.
    pub recv_forced: bool,
    pub send_forced: bool,
}

pub(crate) struct BoundGroup {
    pub sockets: Vec<Socket>,
    pub local_addr: SocketAddr,
    pub buffers: SocketBuffers,
}

/// Binds `count` SO_REUSEPORT sockets to `addr`. With port 0, the first socket picks the port and
/// the others bind to it.
pub(crate) fn bind_group(
    addr: SocketAddr,
    count: usize,
    recv_bytes: usize,
    send_bytes: usize,
) -> io::Result<BoundGroup> {
    let mut sockets = Vec::with_capacity(count);
    let mut buffers = None;
    let mut local_addr = addr;
    for _ in 0..count {
        let (socket, b) = open(local_addr, recv_bytes, send_bytes)?;
        if sockets.is_empty() {
            local_addr = socket
                .local_addr()
                .and_then(|a| {
                    a.as_socket()
                        .ok_or_else(|| io::Error::other("not an inet address"))
                })
                .map_err(|e| context(e, addr))?;
            buffers = Some(b);
        }
        sockets.push(socket);
    }
    let buffers = buffers.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no cores"))?;
    Ok(BoundGroup {
        sockets,
        local_addr,
        buffers,
    })
}

fn open(
    addr: SocketAddr,
    recv_bytes: usize,
    send_bytes: usize,
) -> io::Result<(Socket, SocketBuffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context(e, addr))?;
    socket.set_reuse_port(true).map_err(|e| context(e, addr))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(|e| context(e, addr))?;
    }
    // The descriptor stays in blocking mode, as glommio's own sockets do: every syscall the engine
    // makes on it passes MSG_DONTWAIT, and glommio's io_uring fallbacks expect a blocking fd.
    let (recv_bytes, recv_forced) =
        set_buffer(&socket, SO_RCVBUFFORCE, libc::SO_RCVBUF, recv_bytes)
            .map_err(|e| context(e, addr))?;
    let (send_bytes, send_forced) =
        set_buffer(&socket, SO_SNDBUFFORCE, libc::SO_SNDBUF, send_bytes)
            .map_err(|e| context(e, addr))?;
    socket.bind(&addr.into()).map_err(|e| context(e, addr))?;
    Ok((
        socket,
        SocketBuffers {
            recv_bytes,
            send_bytes,
            recv_forced,
            send_forced,
        },
    ))
}

/// Sets a buffer size, trying the privileged `force` option first, and returns the effective size.
fn set_buffer(
    socket: &Socket,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: usize,
) -> io::Result<(usize, bool)> {
    let fd = socket.as_raw_fd();
    let mut forced = false;
    if bytes > 0 {
        let want = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        forced = setsockopt_int(fd, force, want).is_ok();
        if !forced {
            setsockopt_int(fd, plain, want)?;
        }
    }
    Ok((getsockopt_int(fd, plain)? as usize, forced))
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Datagrams the kernel dropped on this socket (receive queue full, mostly), from SO_MEMINFO.
///
/// Chosen over SO_RXQ_OVFL (a control message on every received datagram, paid on the hot path)
/// and /proc/net/udp (a text file of every socket to parse): one getsockopt, only when asked.
pub(crate) fn kernel_drops(fd: RawFd) -> Option<u64> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (rc == 0 && len as usize >= (drops + 1) * size_of::<u32>()).then(|| u64::from(info[drops]))
}

/// Hands a bound socket to glommio (which links socket2 0.4, so `From<socket2::Socket>` does not
/// apply to ours). Must run on the executor thread that will use it.
pub(crate) fn into_glommio(socket: Socket) -> glommio::net::UdpSocket {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `into_raw_fd` gives up ownership of an open UDP socket descriptor, which the glommio
    // socket takes over and closes on drop; nothing else refers to it.
    unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) }
}

fn context(e: io::Error, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("UDP socket on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_shares_one_port() {
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 3, 1 << 20, 1 << 20).unwrap();
        assert_ne!(g.local_addr.port(), 0);
        for s in &g.sockets {
            assert_eq!(s.local_addr().unwrap().as_socket().unwrap(), g.local_addr);
        }
        assert!(g.buffers.recv_bytes > 0 && g.buffers.send_bytes > 0);
        assert_eq!(kernel_drops(g.sockets[0].as_raw_fd()), Some(0));
    }

    #[test]
    fn bind_error_names_the_address() {
        let err = bind_group("192.0.2.1:9".parse().unwrap(), 1, 0, 0)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(err.to_string().contains("192.0.2.1:9"), "{err}");
    }
}
