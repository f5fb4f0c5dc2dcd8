//! `sendmmsg` from a preallocated batch, to connected or per-datagram destinations, with runs of
//! equal-size datagrams to one destination packed into one UDP GSO message when asked.
//!
//! Datagrams are written in place ([`SendBatch::next_buf`], then [`SendBatch::commit`]) into one
//! buffer, back to back, so a GSO run is contiguous. As in [`RecvBatch`](crate::RecvBatch), the
//! kernel's pointers are derived afresh right before every call.

use crate::addr::{std_to_sockaddr, v4_mapped};
use crate::gso;
use crate::timestamp::ControlSpace;
use std::io;
use std::mem::zeroed;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// One entry of the `mmsghdr` array: `count` datagrams of `seg` bytes from datagram `first` on
/// (more than one only with GSO).
#[derive(Clone, Copy, Debug)]
struct Message {
    first: usize,
    seg: usize,
    count: usize,
}

/// Datagrams queued for one `sendmmsg`, each with a caller's tag `T` (what to count it as).
pub struct SendBatch<T = ()> {
    slot: usize,
    /// The socket is AF_INET6: IPv4 destinations are written as v4-mapped addresses.
    v4_mapped: bool,
    gso: bool,
    bytes: Vec<u8>,
    /// Where the next datagram starts in `bytes`.
    end: usize,
    // Per datagram.
    starts: Vec<usize>,
    lens: Vec<usize>,
    dests: Vec<Option<SocketAddr>>,
    tags: Vec<T>,
    // Per message.
    messages: Vec<Message>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    control: Vec<ControlSpace>,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` only ever point into buffers this value owns,
// and are rewritten before every call.
unsafe impl<T: Send> Send for SendBatch<T> {}

/// Result of one [`SendBatch::send`].
#[derive(Debug)]
pub enum Sent {
    /// The kernel took this many datagrams, starting at `from` (0 on EINTR).
    Count(usize),
    /// The socket's send buffer is full (EAGAIN); nothing was sent.
    WouldBlock,
    /// The message at `from` was refused with this error (it is the one to skip).
    Failed(io::Error),
}

/// A queued datagram, as [`SendBatch::get`] shows it.
pub struct Queued<'a, T> {
    /// `None`: to the socket's connected peer. v4-mapped for a [`SendBatch::v4_mapped`] batch.
    pub dest: Option<SocketAddr>,
    pub data: &'a [u8],
    pub tag: T,
}

impl<T: Copy> SendBatch<T> {
    /// A batch of up to `count` datagrams of up to `slot` bytes each.
    pub fn new(count: usize, slot: usize) -> SendBatch<T> {
        let count = count.max(1);
        SendBatch {
            slot,
            v4_mapped: false,
            gso: false,
            bytes: vec![0; count * slot],
            end: 0,
            starts: Vec::with_capacity(count),
            lens: Vec::with_capacity(count),
            dests: Vec::with_capacity(count),
            tags: Vec::with_capacity(count),
            messages: Vec::with_capacity(count),
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data for which all-zero
            // bytes (null pointers, zero lengths) are valid values.
            addrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            addr_lens: vec![0; count],
            iovs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            control: Vec::new(),
        }
    }

    /// For an AF_INET6 (dual-stack) socket: IPv4 destinations are sent to as v4-mapped.
    pub fn v4_mapped(mut self) -> SendBatch<T> {
        self.v4_mapped = true;
        self
    }

    /// Packs each run of equal-size datagrams to one destination into one GSO message (check
    /// [`gso_supported`](crate::gso_supported) first).
    pub fn with_gso(mut self) -> SendBatch<T> {
        self.gso = true;
        self.control = vec![ControlSpace::default(); self.hdrs.len()];
        self
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    /// One datagram per message from now on (the kernel or the device refused GSO).
    pub fn disable_gso(&mut self) {
        self.gso = false;
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.lens.len() == self.hdrs.len()
    }

    /// The buffer for the next datagram; call [`commit`](Self::commit) or
    /// [`commit_to`](Self::commit_to) to queue it. Panics when full: send first.
    pub fn next_buf(&mut self) -> &mut [u8] {
        assert!(!self.is_full());
        // end <= len() * slot, so a whole slot fits.
        &mut self.bytes[self.end..self.end + self.slot]
    }

    /// Queues the `len` bytes written into [`next_buf`](Self::next_buf) for the socket's
    /// connected peer.
    pub fn commit(&mut self, len: usize, tag: T) {
        self.push(None, len, tag);
    }

    /// Queues the `len` bytes written into [`next_buf`](Self::next_buf) for `dest`.
    pub fn commit_to(&mut self, dest: SocketAddr, len: usize, tag: T) {
        let dest = if self.v4_mapped {
            v4_mapped(dest)
        } else {
            dest
        };
        self.push(Some(dest), len, tag);
    }

    fn push(&mut self, dest: Option<SocketAddr>, len: usize, tag: T) {
        assert!(!self.is_full());
        let len = len.min(self.slot);
        let i = self.lens.len();
        let joins = self.gso
            && self.messages.last().is_some_and(|m| {
                m.seg == len
                    && m.count < gso::MAX_SEGMENTS
                    && (m.count + 1) * len <= gso::MAX_BYTES
                    && self.dests[i - 1] == dest
            });
        if joins {
            if let Some(m) = self.messages.last_mut() {
                m.count += 1;
            }
        } else {
            let k = self.messages.len();
            self.addr_lens[k] = match dest {
                Some(d) => std_to_sockaddr(d, &mut self.addrs[k]),
                None => 0,
            };
            self.messages.push(Message {
                first: i,
                seg: len,
                count: 1,
            });
        }
        self.starts.push(self.end);
        self.lens.push(len);
        self.dests.push(dest);
        self.tags.push(tag);
        self.end += len;
    }

    /// The `i`-th queued datagram.
    pub fn get(&self, i: usize) -> Queued<'_, T> {
        Queued {
            dest: self.dests[i],
            data: &self.bytes[self.starts[i]..self.starts[i] + self.lens[i]],
            tag: self.tags[i],
        }
    }

    /// Forgets every queued datagram.
    pub fn clear(&mut self) {
        self.end = 0;
        self.starts.clear();
        self.lens.clear();
        self.dests.clear();
        self.tags.clear();
        self.messages.clear();
    }

    /// One `sendmmsg` of the datagrams `from..len()` with `flags` (`MSG_DONTWAIT` not to
    /// block). `from` is 0 or a datagram just after a [`Sent::Count`] or a skipped message
    /// (with GSO, a message is a run of datagrams: [`message_end`](Self::message_end)).
    pub fn send(&mut self, fd: RawFd, from: usize, flags: libc::c_int) -> Sent {
        let first = self.messages.partition_point(|m| m.first < from);
        assert!(
            self.messages.get(first).is_some_and(|m| m.first == from),
            "send from {from}: not the start of a queued message"
        );
        let bytes = self.bytes.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        let hdrs = self.hdrs.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        for (k, m) in self.messages.iter().enumerate().skip(first) {
            // SAFETY: k < messages.len() <= count = len of addrs, iovs, hdrs (and of control
            // when GSO made it; a run of more than one exists only with GSO), and the run lies
            // inside `bytes`, so every pointer stays inside its allocation. No reference into
            // these vectors is alive while the raw pointers are written through.
            unsafe {
                *iovs.add(k) = libc::iovec {
                    iov_base: bytes.add(self.starts[m.first]).cast(),
                    iov_len: m.seg * m.count,
                };
                let h = &mut *hdrs.add(k);
                h.msg_hdr = zeroed();
                if self.addr_lens[k] > 0 {
                    h.msg_hdr.msg_name = addrs.add(k).cast();
                    h.msg_hdr.msg_namelen = self.addr_lens[k];
                }
                h.msg_hdr.msg_iov = iovs.add(k);
                h.msg_hdr.msg_iovlen = 1;
                if m.count > 1 {
                    gso::write_segment_size(&mut h.msg_hdr, control.add(k), m.seg as u16);
                }
                h.msg_len = 0;
            }
        }
        // SAFETY: hdrs[first..messages.len()] are initialised and point at live buffers and
        // addresses owned by `self`; the kernel only reads them (and writes msg_len).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.add(first),
                (self.messages.len() - first) as libc::c_uint,
                flags,
            )
        };
        if n >= 0 {
            let sent = &self.messages[first..first + n as usize];
            return Sent::Count(sent.iter().map(|m| m.count).sum());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => Sent::WouldBlock,
            io::ErrorKind::Interrupted => Sent::Count(0),
            _ => Sent::Failed(e),
        }
    }

    /// The datagram after the message that starts at `from` (`from + 1` without GSO).
    pub fn message_end(&self, from: usize) -> usize {
        let k = self.messages.partition_point(|m| m.first < from);
        self.messages.get(k).map_or(from + 1, |m| m.first + m.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn sends_from_the_middle_to_addresses() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SendBatch::<u8>::new(3, 16);
        for i in 0..3u8 {
            tx.next_buf()[..2].copy_from_slice(&[i, i]);
            tx.commit_to(client.local_addr().unwrap(), 2, i);
        }
        assert!(tx.is_full());
        let q = tx.get(2);
        assert_eq!(
            (q.dest, q.data, q.tag),
            (Some(client.local_addr().unwrap()), &[2, 2][..], 2)
        );
        match tx.send(server.as_raw_fd(), 1, libc::MSG_DONTWAIT) {
            Sent::Count(2) => {}
            other => panic!("expected 2 sent: {other:?}"),
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

    #[test]
    fn v4_mapped_batches_send_ipv4_from_a_dual_stack_socket() {
        let server =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        server.set_only_v6(false).unwrap();
        server
            .bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SendBatch::<()>::new(2, 16).v4_mapped();
        tx.next_buf()[0] = 7;
        tx.commit_to(client.local_addr().unwrap(), 1, ());
        assert_eq!(
            tx.get(0).dest,
            Some(v4_mapped(client.local_addr().unwrap()))
        );
        assert!(matches!(tx.send(server.as_raw_fd(), 0, 0), Sent::Count(1)));
        let mut buf = [0u8; 4];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), 1);
    }

    #[test]
    fn gso_packs_equal_runs_and_the_receiver_sees_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        if !crate::gso_supported(&a) {
            eprintln!("no UDP GSO on this kernel: skipped");
            return;
        }
        let mut tx = SendBatch::<()>::new(8, 64).with_gso();
        for (i, len) in [10, 10, 10, 4, 10, 10].into_iter().enumerate() {
            tx.next_buf()[..len].fill(i as u8);
            tx.commit(len, ());
        }
        // Runs: 3×10, 1×4, 2×10.
        assert_eq!((tx.len(), tx.messages.len()), (6, 3));
        assert_eq!(
            (tx.message_end(0), tx.message_end(3), tx.message_end(4)),
            (3, 4, 6)
        );
        assert!(matches!(tx.send(a.as_raw_fd(), 0, 0), Sent::Count(6)));
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        for (i, len) in [10, 10, 10, 4, 10, 10].into_iter().enumerate() {
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &vec![i as u8; len][..]);
        }
    }

    #[test]
    fn gso_does_not_join_other_destinations() {
        let mut tx = SendBatch::<()>::new(4, 16).with_gso();
        for port in [1, 1, 2] {
            tx.next_buf();
            tx.commit_to(SocketAddr::from(([127, 0, 0, 1], port)), 8, ());
        }
        assert_eq!(tx.messages.len(), 2);
        tx.disable_gso();
        tx.next_buf();
        tx.commit_to(SocketAddr::from(([127, 0, 0, 1], 2)), 8, ());
        assert_eq!(tx.messages.len(), 3);
    }
}
