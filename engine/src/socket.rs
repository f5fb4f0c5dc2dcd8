//! Creating the per-core UDP sockets: one per core, all bound to the same address and port with
//! SO_REUSEPORT so the kernel spreads incoming flows across them.
//!
//! All sockets are bound on the thread calling `Engine::start`, before any executor exists, so a
//! bind failure comes back from `start` as an error naming the address.

use crate::steering::Steering;
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
    pub steering: SteeringState,
}

/// Whether datagrams are steered to cores by the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SteeringState {
    /// Not asked for, or one core (nothing to steer).
    Off,
    /// The BPF program is attached to the group.
    On,
    /// Asked for, but the kernel refused the program (the reason): the flow hash spreads
    /// datagrams and cores forward what is not theirs, as without steering.
    Failed(String),
}

/// Binds `count` SO_REUSEPORT sockets to `addr`, in order (socket `i` is core `i`), and attaches
/// the `steering` program to the group. With port 0, the first socket picks the port and the
/// others bind to it.
pub(crate) fn bind_group(
    addr: SocketAddr,
    count: usize,
    recv_bytes: usize,
    send_bytes: usize,
    steering: Option<&Steering>,
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
    let steering = match steering {
        Some(s) if count > 1 => match s.attach(sockets[0].as_raw_fd(), count) {
            Ok(()) => SteeringState::On,
            Err(e) => SteeringState::Failed(e.to_string()),
        },
        _ => SteeringState::Off,
    };
    Ok(BoundGroup {
        sockets,
        local_addr,
        buffers,
        steering,
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
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 3, 1 << 20, 1 << 20, None).unwrap();
        assert_eq!(g.steering, SteeringState::Off);
        assert_ne!(g.local_addr.port(), 0);
        for s in &g.sockets {
            assert_eq!(s.local_addr().unwrap().as_socket().unwrap(), g.local_addr);
        }
        assert!(g.buffers.recv_bytes > 0 && g.buffers.send_bytes > 0);
        assert_eq!(kernel_drops(g.sockets[0].as_raw_fd()), Some(0));
    }

    #[test]
    fn bind_error_names_the_address() {
        let err = bind_group("192.0.2.1:9".parse().unwrap(), 1, 0, 0, None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(err.to_string().contains("192.0.2.1:9"), "{err}");
    }

    use crate::steering::testing::{datagram as stun_with_hint, STUN};

    /// Which socket of the group each datagram reached (non-blocking reads after the sends).
    fn arrivals(g: &BoundGroup) -> Vec<(usize, Vec<u8>)> {
        let mut got = Vec::new();
        for (i, s) in g.sockets.iter().enumerate() {
            s.set_nonblocking(true).unwrap();
            let mut buf = [std::mem::MaybeUninit::new(0u8); 64];
            while let Ok(n) = s.recv(&mut buf) {
                // SAFETY: recv initialized the first n bytes.
                let bytes = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                got.push((i, bytes));
            }
        }
        got
    }

    #[test]
    fn steering_sends_each_datagram_to_the_core_its_hint_names() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let g = bind_group(addr.parse().unwrap(), 3, 1 << 20, 1 << 20, Some(&STUN)).unwrap();
            assert_eq!(g.steering, SteeringState::On, "{addr}");
            // From one source socket (one flow, which the hash would put on one core) and from
            // many: the hint alone decides.
            let one = std::net::UdpSocket::bind(if addr.starts_with('[') {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            })
            .unwrap();
            let mut sent = Vec::new();
            for hint in 0..30u32 {
                let d = stun_with_hint(hint.wrapping_mul(0x9E37_79B1));
                one.send_to(&d, g.local_addr).unwrap();
                let other =
                    std::net::UdpSocket::bind(one.local_addr().unwrap().ip().to_string() + ":0")
                        .unwrap();
                other.send_to(&d, g.local_addr).unwrap();
                sent.push(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            let got = arrivals(&g);
            assert_eq!(got.len(), 60, "{addr}: all delivered");
            for (core, d) in &got {
                assert_eq!(Some(*core), STUN.pick(d, 3), "{addr}: {d:?}");
            }
            // Every core got some.
            for core in 0..3 {
                assert!(got.iter().any(|(c, _)| *c == core), "{addr}: core {core}");
            }
        }
    }

    #[test]
    fn datagrams_without_a_hint_still_arrive() {
        let g = bind_group(
            "127.0.0.1:0".parse().unwrap(),
            2,
            1 << 20,
            1 << 20,
            Some(&STUN),
        )
        .unwrap();
        assert_eq!(g.steering, SteeringState::On);
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut not_stun = stun_with_hint(1);
        not_stun[4] = 0;
        for d in [&b"x"[..], &not_stun, &stun_with_hint(1)[..19]] {
            c.send_to(d, g.local_addr).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got = arrivals(&g);
        assert_eq!(
            got.len(),
            3,
            "short and unmatched datagrams go by the flow hash: {got:?}"
        );
        // One flow, so the hash puts them all on one socket.
        assert!(got.iter().all(|(c, _)| *c == got[0].0));
    }

    #[test]
    fn one_core_needs_no_program_and_bad_offsets_are_reported() {
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 1, 0, 0, Some(&STUN)).unwrap();
        assert_eq!(g.steering, SteeringState::Off);
        let bad = Steering { min_len: 4, ..STUN };
        let g = bind_group("127.0.0.1:0".parse().unwrap(), 2, 0, 0, Some(&bad)).unwrap();
        assert!(
            matches!(g.steering, SteeringState::Failed(ref e) if e.contains("min_len")),
            "{:?}",
            g.steering
        );
    }
}
