//! The registration table: name key → (address, identity prefix, expiry), packed to 44 bytes
//! an entry. Expired entries are dead at once (every read checks the expiry) and swept out
//! periodically or when the table is full.

use crate::identity::FINGERPRINT_PREFIX_LEN;
use crate::name::TableKey;
use crate::time::Time;
use hashbrown::HashTable;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One registration, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: TableKey,
    /// IPv6 octets; IPv4 is stored mapped (::ffff:a.b.c.d).
    ip: [u8; 16],
    port: u16,
    pub fp: [u8; FINGERPRINT_PREFIX_LEN],
    /// Unix seconds after which the entry is dead.
    pub expires: u32,
}

impl Entry {
    pub fn new(
        key: TableKey,
        addr: SocketAddr,
        fp: [u8; FINGERPRINT_PREFIX_LEN],
        expires: u32,
    ) -> Entry {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        Entry {
            key,
            ip,
            port: addr.port(),
            fp,
            expires,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), self.port),
            None => SocketAddr::new(IpAddr::V6(v6), self.port),
        }
    }

    pub fn same_addr(&self, addr: SocketAddr) -> bool {
        let other = Entry::new(self.key, addr, self.fp, 0);
        self.ip == other.ip && self.port == other.port
    }

    pub fn alive(&self, now: Time) -> bool {
        now.as_secs() < u64::from(self.expires)
    }
}

fn hash(key: &TableKey) -> u64 {
    // The key is already a slice of SHA-256: any 8 bytes of it are a uniform hash.
    u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

/// Parts the table is split into. Each part grows and is swept on its own, so neither a
/// doubling nor an expiry sweep ever stops the shard for more than 1/64 of the table (a full
/// sweep of a million entries takes ~11 ms; one part ~0.2 ms).
pub(crate) const PARTS: usize = 64;

pub(crate) struct Table {
    parts: Vec<HashTable<Entry>>,
    len: usize,
    max: usize,
    /// The part the next incremental sweep visits.
    next_part: usize,
}

/// Outcome of [`Table::insert`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    Done,
    Full,
}

/// The part holding `key`: a key byte that the in-part hash (bytes 0..8) does not use.
fn part(key: &TableKey) -> usize {
    key[9] as usize % PARTS
}

impl Table {
    pub(crate) fn new(max: usize) -> Table {
        Table {
            parts: (0..PARTS).map(|_| HashTable::new()).collect(),
            len: 0,
            max,
            next_part: 0,
        }
    }

    pub(crate) fn get(&self, key: &TableKey, now: Time) -> Option<&Entry> {
        self.parts[part(key)]
            .find(hash(key), |e| &e.key == key)
            .filter(|e| e.alive(now))
    }

    pub(crate) fn get_mut(&mut self, key: &TableKey, now: Time) -> Option<&mut Entry> {
        self.parts[part(key)]
            .find_mut(hash(key), |e| &e.key == key)
            .filter(|e| e.alive(now))
    }

    /// Inserts or overwrites (also a dead entry under the same key). At the bound, sweeps dead
    /// entries once before giving up.
    pub(crate) fn insert(&mut self, entry: Entry, now: Time) -> Insert {
        let p = part(&entry.key);
        if let Some(e) = self.parts[p].find_mut(hash(&entry.key), |e| e.key == entry.key) {
            *e = entry;
            return Insert::Done;
        }
        if self.len >= self.max && self.sweep(now) == 0 {
            return Insert::Full;
        }
        self.parts[p].insert_unique(hash(&entry.key), entry, |e| hash(&e.key));
        self.len += 1;
        Insert::Done
    }

    /// Drops dead entries from every part; returns how many.
    pub(crate) fn sweep(&mut self, now: Time) -> usize {
        (0..PARTS).map(|_| self.sweep_step(now)).sum()
    }

    /// Drops dead entries from the next part in turn; returns how many.
    pub(crate) fn sweep_step(&mut self, now: Time) -> usize {
        self.sweep_step_with(now, |_| {})
    }

    /// As [`sweep_step`](Self::sweep_step), showing each dead entry to `gone` as it leaves.
    pub(crate) fn sweep_step_with(&mut self, now: Time, mut gone: impl FnMut(&Entry)) -> usize {
        let part = &mut self.parts[self.next_part];
        self.next_part = (self.next_part + 1) % PARTS;
        let before = part.len();
        part.retain(|e| {
            let alive = e.alive(now);
            if !alive {
                gone(e);
            }
            alive
        });
        let swept = before - part.len();
        self.len -= swept;
        swept
    }

    /// Entries held, dead ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes the table holds in memory (buckets, control bytes).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.parts.iter().map(HashTable::allocation_size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_compact() {
        assert_eq!(core::mem::size_of::<Entry>(), 44);
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["192.0.2.1:9", "[2001:db8::1]:65535", "[::ffff:10.0.0.1]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            let e = Entry::new([0; 10], addr, [0; 12], 0);
            assert!(e.same_addr(addr));
            assert_eq!(e.addr(), crate::token::canonical(addr));
        }
    }

    #[test]
    fn bound_sweeps_dead_then_refuses() {
        let mut t = Table::new(2);
        let now = Time::from_secs(1000);
        let e = |k: u8, exp| Entry::new([k; 10], "192.0.2.1:1".parse().unwrap(), [k; 12], exp);
        assert_eq!(t.insert(e(1, 1001), now), Insert::Done);
        assert_eq!(t.insert(e(2, 1100), now), Insert::Done);
        assert_eq!(t.insert(e(3, 1100), now), Insert::Full);
        assert_eq!(
            t.insert(e(1, 1100), now),
            Insert::Done,
            "known keys keep working at the bound"
        );
        let later = Time::from_secs(1001);
        assert_eq!(
            t.insert(e(3, 1100), later),
            Insert::Full,
            "nothing dead yet: entry 1 was refreshed"
        );
        t.get_mut(&[1; 10], later).unwrap().expires = 1001;
        assert!(
            t.get(&[1; 10], later).is_none(),
            "dead on read at its expiry"
        );
        assert_eq!(
            t.insert(e(3, 1100), later),
            Insert::Done,
            "the dead entry was swept"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn sweep_steps_visit_one_part_at_a_time() {
        let mut t = Table::new(10_000);
        let now = Time::from_secs(1000);
        for i in 0..1000u32 {
            let mut key = [0u8; 10];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[9] = (i % 251) as u8;
            assert_eq!(
                t.insert(
                    Entry::new(key, "192.0.2.1:1".parse().unwrap(), [0; 12], 1001),
                    now
                ),
                Insert::Done
            );
        }
        let dead = Time::from_secs(1001);
        let first = t.sweep_step(dead);
        assert!(
            first > 0 && first < 100,
            "one part of 64, not the table: {first}"
        );
        let rest: usize = (1..PARTS).map(|_| t.sweep_step(dead)).sum();
        assert_eq!(first + rest, 1000);
        assert_eq!(t.len(), 0);
    }
}
