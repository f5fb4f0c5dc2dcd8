//! `recvmmsg` into a preallocated batch: fixed-size slots, source addresses and, on request,
//! the kernel's receive timestamps.
//!
//! The batch owns its buffers, addresses, iovecs and message headers, allocated once. The raw
//! pointers the kernel needs are derived afresh (with `as_mut_ptr`, which creates no intermediate
//! reference) right before every call, so they are never stale and never alias a live Rust
//! reference while the kernel writes through them.

use crate::addr::sockaddr_to_std;
use crate::timestamp::{self, ControlSpace};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// One datagram read by [`RecvBatch::recv`].
pub struct Received<'a> {
    /// `None` if the kernel reported an address family other than IPv4/IPv6 (never for UDP).
    /// v4-mapped IPv6 comes back as IPv4 (see [`crate::addr`]).
    pub src: Option<SocketAddr>,
    pub data: &'a [u8],
    /// The datagram was longer than the slot; `data` holds only its start.
    pub truncated: bool,
}

pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// One control buffer per datagram when receive timestamps are wanted, else empty.
    control: Vec<ControlSpace>,
    filled: usize,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` only ever point into buffers this value owns,
// and are rewritten before every call; moving the batch to another thread moves them all.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `count` datagrams of up to `slot` bytes each (longer ones are truncated).
    pub fn new(count: usize, slot: usize) -> RecvBatch {
        let count = count.max(1);
        RecvBatch {
            slot,
            bufs: vec![0; count * slot],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data for which all-zero
            // bytes (null pointers, zero lengths) are valid values.
            addrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..count).map(|_| unsafe { zeroed() }).collect(),
            control: Vec::new(),
            filled: 0,
        }
    }

    /// Also collects the kernel's receive time of every datagram, read by
    /// [`rx_time_ns`](Self::rx_time_ns); the socket needs
    /// [`enable_rx_timestamps`](crate::enable_rx_timestamps).
    pub fn with_timestamps(mut self) -> RecvBatch {
        self.control = vec![ControlSpace::default(); self.hdrs.len()];
        self
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg` of up to `capacity()` datagrams with `flags` (`MSG_DONTWAIT` to poll,
    /// `MSG_WAITFORONE` to block for the first on a blocking socket). Returns how many; 0 when
    /// there were none (EAGAIN, also a blocking socket's receive timeout) or on EINTR.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        self.filled = 0;
        let bufs = self.bufs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        let hdrs = self.hdrs.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let timestamps = !self.control.is_empty();
        for i in 0..self.hdrs.len() {
            // SAFETY: i < len of every vector (all have `count` entries, bufs `count * slot`
            // bytes, control `count` or none, used only when not empty), so each pointer stays
            // inside its allocation. Writing through the raw pointers is fine: no reference into
            // these vectors is alive.
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
                if timestamps {
                    h.msg_hdr.msg_control = control.add(i).cast();
                    h.msg_hdr.msg_controllen = size_of::<ControlSpace>() as _;
                }
                h.msg_len = 0;
            }
        }
        // SAFETY: `hdrs` points at `len` initialised mmsghdr whose name, iov and control pointers
        // refer to live, correctly sized buffers owned by `self`, which outlives the call. A null
        // timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs,
                self.hdrs.len() as libc::c_uint,
                flags,
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
    pub fn get(&self, i: usize) -> Received<'_> {
        assert!(i < self.filled);
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot);
        Received {
            src: sockaddr_to_std(&self.addrs[i], h.msg_hdr.msg_namelen),
            data: &self.bufs[i * self.slot..i * self.slot + len],
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }

    /// The kernel's receive time of datagram `i` (CLOCK_REALTIME ns), for batches made
    /// [`with_timestamps`](Self::with_timestamps) on sockets that stamp.
    pub fn rx_time_ns(&self, i: usize) -> Option<i64> {
        assert!(i < self.filled);
        if self.control.is_empty() {
            return None;
        }
        timestamp::from_control(&self.hdrs[i].msg_hdr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_sources_and_marks_truncated() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = RecvBatch::new(4, 16);
        assert_eq!(rx.recv(server.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 0);
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
            let n = rx.recv(server.as_raw_fd(), libc::MSG_DONTWAIT).unwrap();
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
    }
}
