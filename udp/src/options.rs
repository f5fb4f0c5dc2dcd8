//! Socket options the `socket2` crate does not cover: integer get/set, buffer sizes with the
//! privileged FORCE variants, and the kernel's drop counter.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

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

pub fn setsockopt_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
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

pub fn getsockopt_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
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

/// Sets SO_RCVBUF and SO_SNDBUF, trying the FORCE variants first; 0 keeps a size as it is.
pub fn set_buffer_sizes(
    socket: &impl AsRawFd,
    recv_bytes: usize,
    send_bytes: usize,
) -> io::Result<SocketBuffers> {
    let (recv_bytes, recv_forced) =
        set_buffer(socket, SO_RCVBUFFORCE, libc::SO_RCVBUF, recv_bytes)?;
    let (send_bytes, send_forced) =
        set_buffer(socket, SO_SNDBUFFORCE, libc::SO_SNDBUF, send_bytes)?;
    Ok(SocketBuffers {
        recv_bytes,
        send_bytes,
        recv_forced,
        send_forced,
    })
}

/// Sets one buffer size, the privileged `force` option first; returns the effective size.
fn set_buffer(
    socket: &impl AsRawFd,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: usize,
) -> io::Result<(usize, bool)> {
    let mut forced = false;
    if bytes > 0 {
        let want = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        forced = setsockopt_int(socket, libc::SOL_SOCKET, force, want).is_ok();
        if !forced {
            setsockopt_int(socket, libc::SOL_SOCKET, plain, want)?;
        }
    }
    Ok((
        getsockopt_int(socket, libc::SOL_SOCKET, plain)? as usize,
        forced,
    ))
}

/// Datagrams the kernel dropped on this socket (receive queue full, mostly), from SO_MEMINFO.
///
/// Chosen over SO_RXQ_OVFL (a control message on every received datagram, paid on the hot path)
/// and /proc/net/udp (a text file of every socket to parse): one getsockopt, only when asked.
pub fn kernel_drops(socket: &impl AsRawFd) -> Option<u64> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (rc == 0 && len as usize >= (drops + 1) * size_of::<u32>()).then(|| u64::from(info[drops]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_set_or_kept() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = set_buffer_sizes(&s, 0, 0).unwrap();
        assert!(!before.recv_forced && !before.send_forced);
        let after = set_buffer_sizes(&s, 1 << 16, 0).unwrap();
        // The kernel doubles what it grants (and caps it at rmem_max unless forced).
        assert!(after.recv_bytes >= 2 * 4096, "{after:?}");
        assert_eq!(after.send_bytes, before.send_bytes);
        assert_eq!(kernel_drops(&s), Some(0));
        assert!(setsockopt_int(&s, libc::SOL_SOCKET, -1, 1).is_err());
    }
}
