//! A SO_REUSEPORT group: one UDP socket per core, all bound to the same address and port, so the
//! kernel spreads incoming datagrams across them, by its flow hash or by a [`Steering`] program.
//!
//! All sockets are bound before they are handed out, so a bind failure comes back as an error
//! naming the address.

use crate::options::{set_buffer_sizes, SocketBuffers};
use crate::steering::Steering;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// The bound sockets, in core order, and what the kernel made of the settings.
pub struct BoundGroup {
    pub sockets: Vec<Socket>,
    pub local_addr: SocketAddr,
    /// The first socket's (every socket gets the same settings).
    pub buffers: SocketBuffers,
    pub steering: SteeringState,
}

/// Whether datagrams are steered to sockets by the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SteeringState {
    /// Not asked for, or one socket (nothing to steer).
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
pub fn bind_group(
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
    // The descriptor stays in blocking mode: batches pass MSG_DONTWAIT where they must not block,
    // and a runtime's own fallbacks (glommio's io_uring sendmsg) expect a blocking fd.
    let buffers =
        set_buffer_sizes(&socket, recv_bytes, send_bytes).map_err(|e| context(e, addr))?;
    socket.bind(&addr.into()).map_err(|e| context(e, addr))?;
    Ok((socket, buffers))
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
        assert_eq!(crate::kernel_drops(&g.sockets[0]), Some(0));
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
