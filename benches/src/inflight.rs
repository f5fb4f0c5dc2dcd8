//! Requests in flight on one socket: a fixed table of slots addressed by the transaction id.
//!
//! The transaction id is `free (4) ‖ run magic (2) ‖ socket (2) ‖ slot (2) ‖ sequence (2)`; an
//! answer is matched by slot and sequence, so a late answer to a slot reused since does not
//! count. The first 4 bytes are not used for matching: they carry varying filler, or an
//! appliance name's core hint (which core of a multi-core server owns it), as real senders do.

use flock_proto::stun::TransactionId;

#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    /// 0 when free.
    pub seq: u16,
    /// Workload's tag (e.g. which appliance).
    pub tag: u32,
    /// Send time, ns since the phase's base instant.
    pub sent: u64,
}

pub struct Inflight {
    slots: Vec<Slot>,
    free: Vec<u16>,
    next_seq: u16,
}

/// Builds a transaction id; its first 4 bytes are a mix of the others (so that servers which
/// steer by them see them vary, as with random ids), unless the request overwrites them.
pub fn txid(magic: u16, socket: u16, slot: u16, seq: u16) -> TransactionId {
    let mut t = [0; 12];
    let mix =
        (u32::from(socket) << 16 | u32::from(slot)) ^ u32::from(seq).wrapping_mul(0x9E37_79B1);
    t[..4].copy_from_slice(&mix.wrapping_mul(0x85EB_CA6B).to_be_bytes());
    t[4..6].copy_from_slice(&magic.to_be_bytes());
    t[6..8].copy_from_slice(&socket.to_be_bytes());
    t[8..10].copy_from_slice(&slot.to_be_bytes());
    t[10..].copy_from_slice(&seq.to_be_bytes());
    t
}

/// Splits a transaction id into (magic, socket, slot, seq); the first 4 bytes are ignored.
pub fn split_txid(t: &[u8]) -> Option<(u16, u16, u16, u16)> {
    let t: &[u8; 12] = t.try_into().ok()?;
    let u = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    Some((u(4), u(6), u(8), u(10)))
}

impl Inflight {
    /// A table of `window` slots (at most 65536).
    pub fn new(window: usize) -> Inflight {
        let window = window.clamp(1, 1 << 16);
        Inflight {
            slots: vec![Slot::default(); window],
            free: (0..window as u32).rev().map(|i| i as u16).collect(),
            next_seq: 1,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Takes a free slot: (slot, seq).
    pub fn acquire(&mut self, tag: u32, sent: u64) -> Option<(u16, u16)> {
        let slot = self.free.pop()?;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.slots[slot as usize] = Slot { seq, tag, sent };
        Some((slot, seq))
    }

    /// Sets the tag of a slot just acquired.
    pub fn set_tag(&mut self, slot: u16, tag: u32) {
        self.slots[slot as usize].tag = tag;
    }

    /// Frees a slot without an answer (its datagram was not sent).
    pub fn release(&mut self, slot: u16) -> Slot {
        let s = std::mem::take(&mut self.slots[slot as usize]);
        if s.seq != 0 {
            self.free.push(slot);
        }
        s
    }

    /// The slot an answer refers to, freed; `None` if unknown or already done.
    pub fn complete(&mut self, slot: u16, seq: u16) -> Option<Slot> {
        let s = self.slots.get(slot as usize)?;
        if s.seq == 0 || s.seq != seq {
            return None;
        }
        Some(self.release(slot))
    }

    /// Frees every slot sent before `older_than`, calling `f` on each.
    pub fn expire(&mut self, older_than: u64, mut f: impl FnMut(Slot)) {
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.seq != 0 && s.sent < older_than {
                f(self.release(i as u16));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_complete_expire() {
        let mut t = Inflight::new(2);
        let (a, sa) = t.acquire(7, 100).unwrap();
        let (b, sb) = t.acquire(8, 200).unwrap();
        assert!(t.acquire(9, 300).is_none());
        assert_eq!(t.complete(a, sa).unwrap().tag, 7);
        assert!(t.complete(a, sa).is_none(), "answered twice");
        assert!(t.complete(b, sb + 1).is_none(), "stale sequence");
        let mut expired = vec![];
        t.expire(150, |s| expired.push(s.tag));
        assert!(expired.is_empty());
        t.expire(250, |s| expired.push(s.tag));
        assert_eq!(expired, vec![8]);
        assert_eq!(t.free(), 2);
        let id = txid(0xAABB, 3, 1, 42);
        assert_eq!(split_txid(&id), Some((0xAABB, 3, 1, 42)));
        // The first 4 bytes vary from request to request and do not take part in matching.
        assert_ne!(txid(0xAABB, 3, 1, 43)[..4], id[..4]);
        let mut steered = id;
        steered[..4].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(split_txid(&steered), split_txid(&id));
    }
}
