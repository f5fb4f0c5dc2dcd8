//! Batched datagram I/O: `sendmmsg` with optional UDP GSO (`UDP_SEGMENT`), `recvmmsg`.
//!
//! Buffers are allocated once; the `mmsghdr` arrays point into them and are rebuilt (pointer
//! writes only) before each call, so nothing allocates per datagram.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Largest datagram the generator builds or accepts.
pub const MAX_DGRAM: usize = 2048;
/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is at least 64).
pub const GSO_MAX_SEGS: usize = 64;
/// Most payload bytes in one GSO send (a UDP datagram's payload limit, rounded down).
const GSO_MAX_BYTES: usize = 65_000;
/// Room for one cmsghdr carrying a u16 (GSO segment size) or a timespec (receive time),
/// 8-byte aligned.
type CmsgSpace = [u64; 4];

fn zeroed_hdr() -> libc::mmsghdr {
    // SAFETY: an all-zero mmsghdr (null pointers, zero lengths) is valid.
    unsafe { std::mem::zeroed() }
}

#[derive(Clone, Copy, Default)]
struct Group {
    start: usize,
    seg: usize,
    count: usize,
}

/// Datagrams to one connected socket, grouped into GSO sends of equal-size segments.
pub struct TxBatch {
    arena: Box<[u8]>,
    pos: usize,
    groups: Vec<Group>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsg: Vec<CmsgSpace>,
    gso: bool,
}

// SAFETY: the raw pointers in `iov`/`hdrs` only ever point into buffers this value owns, and
// are rewritten before every use.
unsafe impl Send for TxBatch {}

impl TxBatch {
    /// A batch of at most `max` datagrams; `gso` packs equal-size runs into one send each.
    pub fn new(max: usize, gso: bool) -> TxBatch {
        let max = max.max(1);
        TxBatch {
            arena: vec![0; max * MAX_DGRAM].into_boxed_slice(),
            pos: 0,
            groups: Vec::with_capacity(max),
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                max
            ],
            hdrs: vec![zeroed_hdr(); max],
            cmsg: vec![[0; 4]; max],
            gso,
        }
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    pub fn disable_gso(&mut self) {
        self.gso = false;
    }

    pub fn clear(&mut self) {
        self.pos = 0;
        self.groups.clear();
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether another datagram fits.
    pub fn has_room(&self) -> bool {
        self.pos + MAX_DGRAM <= self.arena.len() && self.groups.len() < self.groups.capacity()
    }

    /// Where the next datagram is written; [`commit`](Self::commit) its length afterwards.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.arena[self.pos..self.pos + MAX_DGRAM]
    }

    /// Queues the `len` bytes just written into [`space`](Self::space).
    pub fn commit(&mut self, len: usize) {
        debug_assert!(len > 0 && len <= MAX_DGRAM);
        let extend = self.gso
            && self.groups.last().is_some_and(|g| {
                g.seg == len && g.count < GSO_MAX_SEGS && (g.count + 1) * g.seg <= GSO_MAX_BYTES
            });
        match self.groups.last_mut() {
            Some(g) if extend => g.count += 1,
            _ => self.groups.push(Group {
                start: self.pos,
                seg: len,
                count: 1,
            }),
        }
        self.pos += len;
    }

    /// Sends the batch on a connected socket; returns how many datagrams (a prefix) left.
    /// A full socket buffer is `Ok(0)`.
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.groups.len();
        if n == 0 {
            return Ok(0);
        }
        for (i, g) in self.groups.iter().enumerate() {
            self.iov[i] = libc::iovec {
                // SAFETY: start is inside the arena.
                iov_base: unsafe { self.arena.as_mut_ptr().add(g.start) }.cast(),
                iov_len: g.seg * g.count,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_flags = 0;
            if g.count > 1 {
                let space = &mut self.cmsg[i];
                h.msg_control = space.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
                // SAFETY: msg_control points at `space`, large enough for one u16 cmsg.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), g.seg as u16);
                }
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        // SAFETY: `hdrs[..n]` point into buffers owned by `self`, alive for the call.
        let rc =
            unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(self.groups[..rc as usize].iter().map(|g| g.count).sum())
    }
}

/// A `recvmmsg` batch, optionally recording source addresses and receive timestamps.
pub struct RxBatch {
    bufs: Box<[u8]>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<libc::sockaddr_storage>,
    with_names: bool,
    /// Control buffers (one per datagram) when receive timestamps are wanted.
    cmsg: Vec<CmsgSpace>,
    len: usize,
}

// SAFETY: as for TxBatch, pointers only target owned buffers and are rewritten before use.
unsafe impl Send for RxBatch {}

impl RxBatch {
    pub fn new(max: usize, with_names: bool) -> RxBatch {
        let max = max.max(1);
        RxBatch {
            bufs: vec![0; max * MAX_DGRAM].into_boxed_slice(),
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                max
            ],
            hdrs: vec![zeroed_hdr(); max],
            // SAFETY: zeroed sockaddr_storage is valid.
            names: vec![unsafe { std::mem::zeroed() }; if with_names { max } else { 0 }],
            with_names,
            cmsg: Vec::new(),
            len: 0,
        }
    }

    /// Also collects the kernel's receive timestamp of every datagram (the sockets need
    /// [`enable_rx_timestamps`](crate::sys::enable_rx_timestamps)).
    pub fn with_timestamps(mut self) -> RxBatch {
        self.cmsg = vec![[0; 4]; self.hdrs.len()];
        self
    }

    /// Receives up to the batch size; `Ok(0)` when nothing is queued (non-blocking `flags`).
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let max = self.hdrs.len();
        for i in 0..max {
            self.iov[i] = libc::iovec {
                // SAFETY: slot i is inside the buffer.
                iov_base: unsafe { self.bufs.as_mut_ptr().add(i * MAX_DGRAM) }.cast(),
                iov_len: MAX_DGRAM,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            if self.cmsg.is_empty() {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            } else {
                h.msg_control = self.cmsg[i].as_mut_ptr().cast();
                h.msg_controllen = size_of::<CmsgSpace>() as _;
            }
            h.msg_flags = 0;
            if self.with_names {
                h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
        }
        // SAFETY: every header points into buffers owned by `self`.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                max as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            self.len = 0;
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        self.len = rc as usize;
        Ok(self.len)
    }

    /// Datagram `i` of the last receive (truncated ones are cut to the buffer size).
    pub fn datagram(&self, i: usize) -> &[u8] {
        let n = (self.hdrs[i].msg_len as usize).min(MAX_DGRAM);
        &self.bufs[i * MAX_DGRAM..i * MAX_DGRAM + n]
    }

    /// The kernel's receive time of datagram `i` (CLOCK_REALTIME ns), for batches made
    /// [`with_timestamps`](Self::with_timestamps) on sockets that stamp.
    pub fn rx_time_ns(&self, i: usize) -> Option<i64> {
        if self.cmsg.is_empty() {
            return None;
        }
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: the kernel filled msg_control up to msg_controllen inside `self.cmsg[i]`;
        // CMSG_FIRSTHDR/NXTHDR stay within it, and the timespec is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    return Some(crate::sys::timespec_ns(&ts));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Whether datagram `i` was larger than the buffer.
    pub fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// Raw source address of datagram `i` (batches made `with_names`).
    pub fn raw_source(&self, i: usize) -> (&libc::sockaddr_storage, libc::socklen_t) {
        (&self.names[i], self.hdrs[i].msg_hdr.msg_namelen)
    }

    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        crate::sys::sockaddr_to_std(&self.names[i])
    }
}

/// Datagrams to various destinations, one `sendmmsg` (the echo server's replies).
pub struct ReplyBatch {
    bufs: Box<[u8]>,
    lens: Vec<usize>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for TxBatch.
unsafe impl Send for ReplyBatch {}

impl ReplyBatch {
    pub fn new(max: usize) -> ReplyBatch {
        let max = max.max(1);
        ReplyBatch {
            bufs: vec![0; max * MAX_DGRAM].into_boxed_slice(),
            lens: Vec::with_capacity(max),
            // SAFETY: zeroed sockaddr_storage is valid.
            names: vec![(unsafe { std::mem::zeroed() }, 0); max],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                max
            ],
            hdrs: vec![zeroed_hdr(); max],
        }
    }

    /// Queues a reply of up to MAX_DGRAM bytes written by `fill` (which returns its length,
    /// or `None` to send nothing).
    pub fn push(
        &mut self,
        to: (&libc::sockaddr_storage, libc::socklen_t),
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) {
        let i = self.lens.len();
        if i == self.hdrs.len() {
            return;
        }
        if let Some(n) = fill(&mut self.bufs[i * MAX_DGRAM..(i + 1) * MAX_DGRAM]) {
            self.names[i] = (*to.0, to.1);
            self.lens.push(n.min(MAX_DGRAM));
        }
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Sends everything queued (blocking socket; a few retries on a short count), then clears.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.lens.len();
        for i in 0..n {
            // SAFETY: slot i is inside the buffer.
            self.iov[i] = libc::iovec {
                iov_base: unsafe { self.bufs.as_mut_ptr().add(i * MAX_DGRAM) }.cast(),
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.names[i].1;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut done = 0;
        for _ in 0..8 {
            if done == n {
                break;
            }
            // SAFETY: headers point into buffers owned by `self`.
            let rc = unsafe {
                libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(done), (n - done) as u32, 0)
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                self.lens.clear();
                return Err(e);
            }
            done += rc as usize;
        }
        self.lens.clear();
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        (a, b)
    }

    #[test]
    fn receive_timestamps_come_from_the_kernel() {
        let (a, b) = pair();
        sys::enable_rx_timestamps(&b).unwrap();
        let before = sys::realtime_ns();
        a.send(b"one").unwrap();
        a.send(b"two").unwrap();
        // A loaded machine may deliver late: wait until the first has arrived.
        let mut peek = [0u8; 8];
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        b.peek(&mut peek).expect("the first datagram arrives");
        let arrived = sys::realtime_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut rx = RxBatch::new(8, true).with_timestamps();
        assert_eq!(rx.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 2);
        let after = sys::realtime_ns();
        let (t1, t2) = (rx.rx_time_ns(0).unwrap(), rx.rx_time_ns(1).unwrap());
        assert!(
            before <= t1 && t1 <= arrived && t1 <= t2 && t2 <= after,
            "{before} {t1} {t2}"
        );
        // Stamped on arrival, not when read 20 ms later.
        assert!(after - t1 >= 15_000_000, "{t1} {after}");
        assert_eq!((rx.datagram(0), rx.datagram(1)), (&b"one"[..], &b"two"[..]));
    }

    #[test]
    fn no_timestamp_unless_asked() {
        let (a, b) = pair();
        a.send(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Asked by the batch, not enabled on the socket: nothing to read, no garbage.
        let mut rx = RxBatch::new(4, false).with_timestamps();
        assert_eq!(rx.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 1);
        assert_eq!(rx.rx_time_ns(0), None);
        a.send(b"y").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut plain = RxBatch::new(4, false);
        assert_eq!(plain.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 1);
        assert_eq!(plain.rx_time_ns(0), None);
    }
}
