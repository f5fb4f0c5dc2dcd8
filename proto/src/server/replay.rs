//! The replay guard: per name and identity, the signed TIMESTAMP of the last REGISTER the shard
//! took, kept while that REGISTER could still pass the nonce and timestamp checks. A REGISTER is
//! taken only when its timestamp is later than the remembered one, so each signed REGISTER is
//! taken at most once (its retransmissions and replays are refused), and so is any REGISTER the
//! same key signed for the name before it. (Per identity: another key's REGISTER is no replay,
//! and must get its own answer, e.g. 409, whatever its clock says.)
//!
//! The record outlives every REGISTER it guards against: it is kept until the nonce of the last
//! one taken expires or its timestamp leaves the tolerance, whichever comes first (and never
//! shorter than an earlier record of the name). It is not kept across restarts, and need not be:
//! nonces are bound to the boot that issued them (`ProofKeys::for_boot`), so a REGISTER from
//! before a restart fails the nonce check.
//!
//! Bounded: past `max` live records, REGISTERs for names without one are refused (the caller
//! answers 508) and change nothing. Records are swept in parts, like the registration table.

use crate::identity::Fingerprint;
use crate::name::TableKey;
use crate::time::Time;
use hashbrown::HashTable;
use sha2::{Digest, Sha256};

/// A record's key: the first 16 bytes of SHA-256(table key ‖ fingerprint).
pub(crate) type GuardKey = [u8; 16];

/// The guard's key of `name`'s REGISTERs signed by `fp`.
pub(crate) fn guard_key(name: &TableKey, fp: &Fingerprint) -> GuardKey {
    let h = Sha256::new()
        .chain_update(name)
        .chain_update(fp.0)
        .finalize();
    let mut k = [0; 16];
    k.copy_from_slice(&h[..16]);
    k
}

/// What the shard remembers of the last REGISTER it took for a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The REGISTER's signed TIMESTAMP (ms).
    pub ts: u64,
    /// Unix seconds from which the record is forgotten.
    pub forget_at: u32,
    pub key: GuardKey,
    /// The REGISTER started an address-change check that the old address won: its
    /// retransmissions get 409 again instead of a fresh nonce.
    pub kept: bool,
}

impl Record {
    fn alive(&self, now: Time) -> bool {
        now.as_secs() < u64::from(self.forget_at)
    }
}

/// Parts swept one at a time (see `table::PARTS`).
const PARTS: usize = 16;

fn hash(key: &GuardKey) -> u64 {
    u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

fn part(key: &GuardKey) -> usize {
    key[9] as usize % PARTS
}

/// Refused: `max` live records are held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct Replays {
    parts: Vec<HashTable<Record>>,
    len: usize,
    max: usize,
    next_part: usize,
}

impl Replays {
    pub(crate) fn new(max: usize) -> Replays {
        Replays {
            parts: (0..PARTS).map(|_| HashTable::new()).collect(),
            len: 0,
            max,
            next_part: 0,
        }
    }

    /// The live record of `key`, if any.
    pub(crate) fn get(&self, key: &GuardKey, now: Time) -> Option<&Record> {
        self.parts[part(key)]
            .find(hash(key), |r| &r.key == key)
            .filter(|r| r.alive(now))
    }

    /// True when a REGISTER for `key` signed at `ts` may be taken: no live record, or an older
    /// one. A REGISTER that may be taken can also be recorded ([`Replays::record`]) unless the
    /// guard is full.
    pub(crate) fn fresh(&self, key: &GuardKey, ts: u64, now: Time) -> bool {
        self.get(key, now).is_none_or(|r| ts > r.ts)
    }

    /// Whether [`Replays::record`] of `key` would succeed now (sweeping dead records once if
    /// the guard is at its bound).
    pub(crate) fn room_for(&mut self, key: &GuardKey, now: Time) -> Result<(), Full> {
        let p = part(key);
        if self.parts[p].find(hash(key), |r| &r.key == key).is_some() {
            return Ok(());
        }
        if self.len >= self.max && self.sweep(now) == 0 {
            return Err(Full);
        }
        Ok(())
    }

    /// Remembers that a REGISTER for `key` signed at `ts` was taken, until `forget_at` (Unix s)
    /// at least. Call [`Replays::room_for`] first.
    pub(crate) fn record(&mut self, key: GuardKey, ts: u64, forget_at: u32, now: Time) {
        let p = part(&key);
        if let Some(r) = self.parts[p].find_mut(hash(&key), |r| r.key == key) {
            let keep = if r.alive(now) { r.forget_at } else { 0 };
            *r = Record {
                ts: if r.alive(now) { r.ts.max(ts) } else { ts },
                forget_at: forget_at.max(keep),
                key,
                kept: false,
            };
            return;
        }
        if self.len >= self.max {
            return; // `room_for` said no; never past the bound
        }
        self.parts[p].insert_unique(
            hash(&key),
            Record {
                ts,
                forget_at,
                key,
                kept: false,
            },
            |r| hash(&r.key),
        );
        self.len += 1;
    }

    /// Marks the record of `key`, if it is still the one of the REGISTER signed at `ts`, as a
    /// REGISTER whose check the old address won.
    pub(crate) fn mark_kept(&mut self, key: &GuardKey, ts: u64, now: Time) {
        if let Some(r) = self.parts[part(key)]
            .find_mut(hash(key), |r| &r.key == key)
            .filter(|r| r.alive(now) && r.ts == ts)
        {
            r.kept = true;
        }
    }

    /// Drops dead records from every part; returns how many.
    pub(crate) fn sweep(&mut self, now: Time) -> usize {
        (0..PARTS).map(|_| self.sweep_step(now)).sum()
    }

    /// Drops dead records from the next part in turn.
    pub(crate) fn sweep_step(&mut self, now: Time) -> usize {
        let part = &mut self.parts[self.next_part];
        self.next_part = (self.next_part + 1) % PARTS;
        let before = part.len();
        part.retain(|r| r.alive(now));
        let swept = before - part.len();
        self.len -= swept;
        swept
    }

    /// Records held, dead ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Time = Time::from_secs(1000);

    #[test]
    fn a_timestamp_is_taken_once_and_never_an_older_one() {
        let mut r = Replays::new(8);
        let k = [1; 16];
        assert!(r.fresh(&k, 5000, NOW));
        r.room_for(&k, NOW).unwrap();
        r.record(k, 5000, 1600, NOW);
        assert!(!r.fresh(&k, 5000, NOW), "the same REGISTER again");
        assert!(!r.fresh(&k, 4999, NOW), "an older one");
        assert!(r.fresh(&k, 5001, NOW));
        assert!(r.fresh(&[2; 16], 1, NOW), "per name");
        r.record(k, 6000, 1200, NOW);
        assert_eq!(
            r.get(&k, NOW).map(|x| (x.ts, x.forget_at)),
            Some((6000, 1600)),
            "kept at least as long as before"
        );
        assert!(r.fresh(&k, 5000, Time::from_secs(1600)), "forgotten");
    }

    #[test]
    fn bounded_sweeps_dead_records_then_refuses() {
        let mut r = Replays::new(2);
        r.record([1; 16], 1, 1001, NOW);
        r.record([2; 16], 1, 1100, NOW);
        assert_eq!(r.room_for(&[3; 16], NOW), Err(Full));
        assert_eq!(
            r.room_for(&[1; 16], NOW),
            Ok(()),
            "a known name updates in place"
        );
        r.record([3; 16], 1, 1100, NOW);
        assert_eq!(r.len(), 2, "never past the bound");
        let later = Time::from_secs(1001);
        assert_eq!(
            r.room_for(&[3; 16], later),
            Ok(()),
            "the dead one was swept"
        );
        r.record([3; 16], 1, 1100, later);
        assert_eq!(r.len(), 2);
        assert!(!r.fresh(&[3; 16], 1, later));
    }

    #[test]
    fn kept_marks_only_the_same_register() {
        let mut r = Replays::new(2);
        r.record([1; 16], 10, 2000, NOW);
        r.mark_kept(&[1; 16], 9, NOW);
        assert!(!r.get(&[1; 16], NOW).unwrap().kept);
        r.mark_kept(&[1; 16], 10, NOW);
        assert!(r.get(&[1; 16], NOW).unwrap().kept);
        r.record([1; 16], 11, 2000, NOW);
        assert!(
            !r.get(&[1; 16], NOW).unwrap().kept,
            "a newer REGISTER clears it"
        );
    }
}
