//! Reuseport steering: a classic BPF program on the SO_REUSEPORT group picks, for each
//! datagram, the socket (and so the core) from bytes of its payload. A datagram that names the
//! core owning its state then reaches that core directly, instead of the core the kernel's flow
//! hash picks, which would forward it over the mesh (a cross-core hop costs more than handling
//! a keep-alive). Steering only moves work: every core still checks ownership and forwards what
//! is not its own, so a wrong or forged hint costs one hop, never a wrong answer.
//!
//! Socket `i` of the group is core `i`: the kernel numbers a group's sockets in bind order, and
//! [`bind_group`](crate::bind_group) binds them in core order. The program (for `cores` sockets):
//!
//! ```text
//!     A = payload length;        if A < min_len goto hash
//!     A = u32 at match_offset;   if A != match_value goto hash
//!     A = u32 at hint_offset;    return A % cores
//! hash:                          return 0xffff_ffff  (no such socket: the kernel's flow hash)
//! ```
//!
//! Offsets are in the UDP payload (the kernel runs the program with the UDP header pulled);
//! loads are big-endian.

use std::io;
use std::os::fd::RawFd;

/// Which datagrams to steer and where their core hint sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steering {
    /// Shorter datagrams are left to the flow hash.
    pub min_len: u32,
    /// A datagram is steered only when the big-endian u32 at `match_offset` is `match_value`
    /// (e.g. the STUN magic cookie)...
    pub match_offset: u32,
    pub match_value: u32,
    /// ...to core (big-endian u32 at `hint_offset`) mod cores.
    pub hint_offset: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): a stable ABI. BPF_LD and BPF_W are 0.
const LD_W_LEN: u16 = 0x80; // BPF_LD | BPF_W | BPF_LEN
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const MOD_K: u16 = 0x04 | 0x90; // BPF_ALU | BPF_MOD | BPF_K
const RET_A: u16 = 0x06 | 0x10; // BPF_RET | BPF_A
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Not a socket index: the kernel falls back to its flow hash.
const NO_SOCKET: u32 = u32::MAX;

const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Steering {
    /// Checks that the offsets fit in `min_len` bytes.
    pub fn validate(&self) -> io::Result<()> {
        let end = self.match_offset.max(self.hint_offset).checked_add(4);
        if end.is_none_or(|e| e > self.min_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "steering: the 4-byte fields at {} and {} do not fit in min_len {}",
                    self.match_offset, self.hint_offset, self.min_len
                ),
            ));
        }
        Ok(())
    }

    /// The program for a group of `cores` sockets.
    pub fn program(&self, cores: usize) -> Vec<libc::sock_filter> {
        let cores = cores.clamp(1, u32::MAX as usize) as u32;
        vec![
            insn(LD_W_LEN, 0, 0, 0),
            insn(JGE_K, 0, 5, self.min_len), // short → hash (7)
            insn(LD_W_ABS, 0, 0, self.match_offset),
            insn(JEQ_K, 0, 3, self.match_value), // no match → hash (7)
            insn(LD_W_ABS, 0, 0, self.hint_offset),
            insn(MOD_K, 0, 0, cores),
            insn(RET_A, 0, 0, 0),
            insn(RET_K, 0, 0, NO_SOCKET),
        ]
    }

    /// What the program picks for `payload` among `cores` sockets: `Some(core)`, or `None` for
    /// the flow hash. The same decision in Rust, for tests and documentation.
    pub fn pick(&self, payload: &[u8], cores: usize) -> Option<usize> {
        let word = |at: u32| -> Option<u32> {
            let at = at as usize;
            Some(u32::from_be_bytes(
                payload.get(at..at + 4)?.try_into().ok()?,
            ))
        };
        if (payload.len() as u64) < u64::from(self.min_len)
            || word(self.match_offset)? != self.match_value
        {
            return None;
        }
        Some((word(self.hint_offset)? % cores.clamp(1, u32::MAX as usize) as u32) as usize)
    }

    /// Attaches the program to the SO_REUSEPORT group of `fd` (all its sockets).
    pub(crate) fn attach(&self, fd: RawFd, cores: usize) -> io::Result<()> {
        self.validate()?;
        let mut prog = self.program(cores);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The STUN rule flockd uses, and datagrams for it, for the tests here and in `reuseport`.
#[cfg(test)]
pub(crate) mod testing {
    use super::Steering;

    pub const STUN: Steering = Steering {
        min_len: 20,
        match_offset: 4,
        match_value: 0x2112_A442,
        hint_offset: 8,
    };

    /// A 20-byte STUN header whose transaction id starts with `hint`.
    pub fn datagram(hint: u32) -> Vec<u8> {
        let mut d = vec![0u8; 20];
        d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        d[8..12].copy_from_slice(&hint.to_be_bytes());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{datagram, STUN};
    use super::*;

    #[test]
    fn picks_the_hint_mod_cores() {
        assert_eq!(STUN.pick(&datagram(7), 4), Some(3));
        assert_eq!(
            STUN.pick(&datagram(u32::MAX), 3),
            Some((u32::MAX % 3) as usize)
        );
        assert_eq!(STUN.pick(&datagram(5), 1), Some(0));
    }

    #[test]
    fn leaves_others_to_the_hash() {
        assert_eq!(STUN.pick(&datagram(7)[..19], 4), None, "short");
        let mut d = datagram(7);
        d[4] ^= 1;
        assert_eq!(STUN.pick(&d, 4), None, "no magic cookie");
        assert_eq!(STUN.pick(b"", 4), None);
    }

    #[test]
    fn jumps_land_on_the_fallback() {
        let p = STUN.program(4);
        assert_eq!(p.len(), 8);
        // Each conditional jump's false branch lands on the last instruction.
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JGE_K || ins.code == JEQ_K {
                assert_eq!(i + 1 + ins.jf as usize, p.len() - 1);
                assert_eq!(ins.jt, 0);
            }
        }
        assert_eq!(p[5].k, 4, "mod cores");
        assert_eq!(p[7].k, NO_SOCKET);
    }

    #[test]
    fn offsets_must_fit() {
        assert!(STUN.validate().is_ok());
        let bad = Steering {
            min_len: 11,
            ..STUN
        };
        assert!(bad.validate().is_err());
        let bad = Steering {
            hint_offset: u32::MAX,
            ..STUN
        };
        assert!(bad.validate().is_err());
    }
}
