//! Kernel receive timestamps (`SO_TIMESTAMPNS`): the time a datagram reached the socket, not the
//! time it was read, so a latency measured with it leaves out the reader's own delays.

use crate::options::setsockopt_int;
use std::io;
use std::os::fd::AsRawFd;

/// Room for one cmsghdr carrying a u16 (GSO segment size) or a timespec (receive time),
/// 8-byte aligned as cmsghdr needs.
#[derive(Clone, Copy, Default)]
#[repr(C, align(8))]
pub(crate) struct ControlSpace([u64; 4]);

/// Asks the kernel to stamp each datagram received on `socket` with its arrival time
/// (CLOCK_REALTIME), read back by [`RecvBatch::rx_time_ns`](crate::RecvBatch::rx_time_ns).
pub fn enable_rx_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// CLOCK_REALTIME in nanoseconds: the clock of the kernel's receive timestamps.
pub fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

/// A timespec in nanoseconds.
#[allow(clippy::unnecessary_cast)] // time_t and c_long are narrower than i64 on some targets
pub fn timespec_ns(ts: &libc::timespec) -> i64 {
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}

/// The SCM_TIMESTAMPNS of a received message, if the kernel attached one.
pub(crate) fn from_control(h: &libc::msghdr) -> Option<i64> {
    // SAFETY: the kernel filled msg_control up to msg_controllen (a buffer the caller owns, or
    // null and 0); CMSG_FIRSTHDR/NXTHDR stay within it, and the timespec is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(timespec_ns(&ts));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecvBatch;
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
        enable_rx_timestamps(&b).unwrap();
        let before = realtime_ns();
        a.send(b"one").unwrap();
        a.send(b"two").unwrap();
        // A loaded machine may deliver late: wait until the first has arrived.
        let mut peek = [0u8; 8];
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        b.peek(&mut peek).expect("the first datagram arrives");
        let arrived = realtime_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut rx = RecvBatch::new(8, 64).with_timestamps();
        assert_eq!(rx.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 2);
        let after = realtime_ns();
        let (t1, t2) = (rx.rx_time_ns(0).unwrap(), rx.rx_time_ns(1).unwrap());
        assert!(
            before <= t1 && t1 <= arrived && t1 <= t2 && t2 <= after,
            "{before} {t1} {t2}"
        );
        // Stamped on arrival, not when read 20 ms later.
        assert!(after - t1 >= 15_000_000, "{t1} {after}");
        assert_eq!((rx.get(0).data, rx.get(1).data), (&b"one"[..], &b"two"[..]));
    }

    #[test]
    fn no_timestamp_unless_asked() {
        let (a, b) = pair();
        a.send(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Asked by the batch, not enabled on the socket: nothing to read, no garbage.
        let mut rx = RecvBatch::new(4, 64).with_timestamps();
        assert_eq!(rx.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 1);
        assert_eq!(rx.rx_time_ns(0), None);
        a.send(b"y").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut plain = RecvBatch::new(4, 64);
        assert_eq!(plain.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 1);
        assert_eq!(plain.rx_time_ns(0), None);
    }
}
