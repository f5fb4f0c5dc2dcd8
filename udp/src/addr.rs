//! Socket addresses between `std` and the kernel's `sockaddr_storage`.
//!
//! One rule for every socket: a v4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//! `[::]` socket reports for an IPv4 peer) decodes as plain IPv4, so a peer has one form whatever
//! the socket's family. [`v4_mapped`] is the way back, for sending from such a socket.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Decodes an address the kernel wrote (`len` bytes of it); `None` for a family other than
/// IPv4/IPv6 or a length too short for its family (never for UDP).
pub fn sockaddr_to_std(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than and
            // no more aligned than sockaddr_storage.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Encodes `addr` into `storage`, returning the length to pass to the kernel.
pub fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in, and is no more aligned than, sockaddr_storage; all-zero
            // is a valid sockaddr_in.
            let s = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            *s = unsafe { zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let s = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            *s = unsafe { zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// IPv4 as a v4-mapped IPv6 address, the form an AF_INET6 (dual-stack) socket sends to.
pub fn v4_mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> libc::sockaddr_storage {
        // SAFETY: all-zero is a valid sockaddr_storage.
        unsafe { zeroed() }
    }

    #[test]
    fn round_trips() {
        let mut st = storage();
        for a in ["1.2.3.4:5678", "[2001:db8::1]:9", "[fe80::1%3]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let len = std_to_sockaddr(a, &mut st);
            assert_eq!(sockaddr_to_std(&st, len), Some(a));
        }
    }

    #[test]
    fn v4_mapped_decodes_as_ipv4() {
        let mut st = storage();
        let v4: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let mapped = v4_mapped(v4);
        assert_eq!(mapped, "[::ffff:10.0.0.1]:53".parse().unwrap());
        let len = std_to_sockaddr(mapped, &mut st);
        assert_eq!(sockaddr_to_std(&st, len), Some(v4));
        // IPv6 stays IPv6, and v4-compatible (::a.b.c.d, deprecated) is not v4-mapped.
        let v6: SocketAddr = "[::10.0.0.1]:53".parse().unwrap();
        assert_eq!(v4_mapped(v6), v6);
        let len = std_to_sockaddr(v6, &mut st);
        assert_eq!(sockaddr_to_std(&st, len), Some(v6));
    }

    #[test]
    fn short_or_foreign_addresses_decode_to_none() {
        let mut st = storage();
        let len = std_to_sockaddr("[2001:db8::1]:9".parse().unwrap(), &mut st);
        assert_eq!(sockaddr_to_std(&st, len - 1), None);
        let len = std_to_sockaddr("1.2.3.4:5".parse().unwrap(), &mut st);
        assert_eq!(sockaddr_to_std(&st, len - 1), None);
        st.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(sockaddr_to_std(&st, len), None);
    }

    #[test]
    fn a_dual_stack_socket_reports_ipv4_peers_as_ipv4() {
        use std::net::UdpSocket;
        let server = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        server.set_only_v6(false).unwrap();
        server
            .bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let port = server.local_addr().unwrap().as_socket().unwrap().port();
        let server: UdpSocket = server.into();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let mut rx = crate::RecvBatch::new(2, 16);
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(
            rx.recv(server.as_raw_fd(), libc::MSG_WAITFORONE).unwrap(),
            1
        );
        assert_eq!(rx.get(0).src, Some(client.local_addr().unwrap()));
    }
}
