//! Preallocated recvmmsg/sendmmsg batches. All of the engine's `unsafe` for the datagram path lives
//! here.
//!
//! Each batch owns its buffers, addresses, iovecs and message headers in `Vec`s allocated once per
//! core. The raw pointers the kernel needs are derived afresh (with `as_mut_ptr`, which creates no
//! intermediate reference) right before every syscall, so they are never stale and never alias a
//! live Rust reference while the kernel writes through them.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// One datagram read by [`RecvBatch::recv`].
pub(crate) struct Received<'a> {
    /// `None` if the kernel reported an address family other than IPv4/IPv6 (never for UDP).
    pub src: Option<SocketAddr>,
    pub data: &'a [u8],
    /// The datagram was longer than the slot; `data` holds only its start.
    pub truncated: bool,
}

pub(crate) struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl RecvBatch {
    pub(crate) fn new(count: usize, slot: usize) -> RecvBatch {
        RecvBatch {
            slot,
            bufs: vec![0; count * slot],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data for which all-zero
            // bytes (null pointers, zero lengths) are valid values.
            addrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            filled: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Reads up to `capacity()` waiting datagrams without blocking. Returns how many; 0 when the
    /// socket had none (EAGAIN).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        let bufs = self.bufs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        let hdrs = self.hdrs.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            // SAFETY: i < len of every vector (all have `count` entries, bufs `count * slot`
            // bytes), so each pointer stays inside its allocation. Writing through the raw
            // pointers is fine: no reference into these vectors is alive.
            unsafe {
                *iovs.add(i) = libc::iovec {
                    iov_base: bufs.add(i * self.slot).cast(),
                    iov_len: self.slot,
                };
                let h = &mut *hdrs.add(i);
                h.msg_hdr = zeroed();
                h.msg_hdr.msg_name = addrs.add(i).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = iovs.add(i);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_len = 0;
            }
        }
        // SAFETY: `hdrs` points at `len` initialised mmsghdr whose name and iov pointers refer to
        // live, correctly sized buffers owned by `self`, which outlives the call. MSG_DONTWAIT
        // makes the call return immediately; a null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs,
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv), `i < ` its return value.
    pub(crate) fn get(&self, i: usize) -> Received<'_> {
        assert!(i < self.filled);
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot);
        Received {
            src: sockaddr_to_std(&self.addrs[i], h.msg_hdr.msg_namelen),
            data: &self.bufs[i * self.slot..i * self.slot + len],
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

/// What a queued datagram is, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Reply,
    Transmit,
}

pub(crate) struct SendBatch {
    slot: usize,
    /// The socket is AF_INET6: IPv4 destinations are written as v4-mapped addresses.
    v6: bool,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    kinds: Vec<Kind>,
    dests: Vec<SocketAddr>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    queued: usize,
}

/// Result of one [`SendBatch::send`] attempt.
pub(crate) enum Sent {
    /// The kernel took this many datagrams, starting at `from`.
    Count(usize),
    /// The socket's send buffer is full (EAGAIN); nothing was sent.
    WouldBlock,
    /// The datagram at `from` was refused with this error (it is the one to skip).
    Failed(io::Error),
}

impl SendBatch {
    pub(crate) fn new(count: usize, slot: usize, v6: bool) -> SendBatch {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        SendBatch {
            slot,
            v6,
            bufs: vec![0; count * slot],
            lens: vec![0; count],
            kinds: vec![Kind::Reply; count],
            dests: vec![unspecified; count],
            // SAFETY: as in RecvBatch::new, all-zero bytes are valid for these C structs.
            addrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            addr_lens: vec![0; count],
            iovs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            queued: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    /// The buffer for the next datagram; call [`commit`](Self::commit) to queue it. Panics when
    /// full: flush first.
    pub(crate) fn next_buf(&mut self) -> &mut [u8] {
        assert!(!self.is_full());
        let at = self.queued * self.slot;
        &mut self.bufs[at..at + self.slot]
    }

    /// Queues the `len` bytes written into [`next_buf`](Self::next_buf) for `dest`.
    pub(crate) fn commit(&mut self, dest: SocketAddr, len: usize, kind: Kind) {
        let i = self.queued;
        let dest = if self.v6 { to_v6(dest) } else { dest };
        self.lens[i] = len.min(self.slot);
        self.kinds[i] = kind;
        self.dests[i] = dest;
        self.addr_lens[i] = std_to_sockaddr(dest, &mut self.addrs[i]);
        self.queued += 1;
    }

    /// The `i`-th queued datagram: destination, bytes and kind.
    pub(crate) fn get(&self, i: usize) -> (SocketAddr, &[u8], Kind) {
        assert!(i < self.queued);
        (
            self.dests[i],
            &self.bufs[i * self.slot..i * self.slot + self.lens[i]],
            self.kinds[i],
        )
    }

    /// Forgets every queued datagram.
    pub(crate) fn clear(&mut self) {
        self.queued = 0;
    }

    /// One sendmmsg of the queued datagrams `from..len()`, without blocking.
    pub(crate) fn send(&mut self, fd: RawFd, from: usize) -> Sent {
        assert!(from < self.queued);
        let bufs = self.bufs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        let hdrs = self.hdrs.as_mut_ptr();
        for i in from..self.queued {
            // SAFETY: i < queued <= len of every vector, so each pointer stays inside its
            // allocation; no reference into these vectors is alive.
            unsafe {
                *iovs.add(i) = libc::iovec {
                    iov_base: bufs.add(i * self.slot).cast(),
                    iov_len: self.lens[i],
                };
                let h = &mut *hdrs.add(i);
                h.msg_hdr = zeroed();
                h.msg_hdr.msg_name = addrs.add(i).cast();
                h.msg_hdr.msg_namelen = self.addr_lens[i];
                h.msg_hdr.msg_iov = iovs.add(i);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_len = 0;
            }
        }
        // SAFETY: hdrs[from..queued] are initialised and point at live buffers and addresses
        // owned by `self`; the kernel only reads them (and writes msg_len).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.add(from),
                (self.queued - from) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Sent::Count(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => Sent::WouldBlock,
            io::ErrorKind::Interrupted => Sent::Count(0),
            _ => Sent::Failed(e),
        }
    }
}

/// IPv4 as a v4-mapped IPv6 address, for a dual-stack socket.
fn to_v6(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        v6 => v6,
    }
}

/// Decodes a kernel address. v4-mapped IPv6 (from a dual-stack socket) comes back as IPv4, so the
/// shard sees one form per client whatever the socket family.
pub(crate) fn sockaddr_to_std(
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
pub(crate) fn std_to_sockaddr(
    addr: SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sockaddr_round_trips() {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut st: libc::sockaddr_storage = unsafe { zeroed() };
        for a in ["1.2.3.4:5678", "[2001:db8::1]:9", "[fe80::1%3]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let len = std_to_sockaddr(a, &mut st);
            assert_eq!(sockaddr_to_std(&st, len), Some(a));
        }
        let mapped = to_v6("10.0.0.1:53".parse().unwrap());
        let len = std_to_sockaddr(mapped, &mut st);
        assert_eq!(
            sockaddr_to_std(&st, len),
            Some("10.0.0.1:53".parse().unwrap())
        );
    }

    #[test]
    fn batches_move_datagrams() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = RecvBatch::new(4, 16);
        assert_eq!(rx.recv(server.as_raw_fd()).unwrap(), 0);
        for i in 0..6u8 {
            client
                .send_to(&[i; 3], server.local_addr().unwrap())
                .unwrap();
        }
        client
            .send_to(&[9; 40], server.local_addr().unwrap())
            .unwrap();
        let mut got = Vec::new();
        let mut truncated = 0;
        for _ in 0..100 {
            let n = rx.recv(server.as_raw_fd()).unwrap();
            for i in 0..n {
                let d = rx.get(i);
                assert_eq!(d.src, Some(client.local_addr().unwrap()));
                if d.truncated {
                    truncated += 1;
                    assert_eq!(d.data.len(), 16);
                } else {
                    got.push(d.data.to_vec());
                }
            }
            if got.len() == 6 && truncated == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, (0..6u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        assert_eq!(truncated, 1);

        let mut tx = SendBatch::new(3, 16, false);
        for i in 0..3u8 {
            tx.next_buf()[..2].copy_from_slice(&[i, i]);
            tx.commit(client.local_addr().unwrap(), 2, Kind::Reply);
        }
        assert!(tx.is_full());
        match tx.send(server.as_raw_fd(), 1) {
            Sent::Count(2) => {}
            _ => panic!("expected 2 sent"),
        }
        let mut buf = [0u8; 16];
        for i in 1..3u8 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&[i, i][..], server.local_addr().unwrap())
            );
        }
    }
}
