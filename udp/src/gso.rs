//! UDP generic segmentation offload (`UDP_SEGMENT`): one `sendmmsg` entry carries a run of
//! equal-size datagrams, which the stack splits late (one trip down it for up to 64 datagrams).

use crate::options::getsockopt_int;
use crate::timestamp::ControlSpace;
use std::mem::size_of;
use std::os::fd::AsRawFd;

/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is at least 64).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (a UDP datagram's payload limit, rounded down).
pub const MAX_BYTES: usize = 65_000;

/// True when the kernel accepts UDP_SEGMENT on this socket.
pub fn gso_supported(socket: &impl AsRawFd) -> bool {
    getsockopt_int(socket, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
}

/// Points `h`'s control data at `space` and writes one UDP_SEGMENT cmsg of `seg` bytes into it.
///
/// # Safety
/// `space` must be valid for writes and outlive every use of `h`.
pub(crate) unsafe fn write_segment_size(h: &mut libc::msghdr, space: *mut ControlSpace, seg: u16) {
    h.msg_control = space.cast();
    // SAFETY: CMSG_SPACE is a pure size computation; a u16 cmsg fits in ControlSpace.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control points at `space` (caller's promise), large and aligned enough for one
    // u16 cmsg, so CMSG_FIRSTHDR is not null and CMSG_DATA stays inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
}
