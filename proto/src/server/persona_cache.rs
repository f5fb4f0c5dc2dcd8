//! Persona lists by appliance, per shard. Kept without time limit (every use is confirmed first by
//! a PERSONAS round trip carrying the cached checksum) but bounded by bytes: least recently used
//! lists go first.

use crate::name::TableKey;
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes charged per entry on top of its list (map slot, LRU node), so empty lists are bounded too.
const ENTRY_OVERHEAD: usize = 128;

struct Slot {
    checksum: [u8; 32],
    list: Arc<[u8]>,
    /// Position in `lru`.
    stamp: u64,
}

pub(crate) struct PersonaCache {
    slots: HashMap<TableKey, Slot>,
    /// Use order: oldest stamp first.
    lru: BTreeMap<u64, TableKey>,
    bytes: usize,
    max_bytes: usize,
    clock: u64,
}

fn cost(list: &[u8]) -> usize {
    list.len() + ENTRY_OVERHEAD
}

impl PersonaCache {
    pub(crate) fn new(max_bytes: usize) -> PersonaCache {
        PersonaCache {
            slots: HashMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            max_bytes,
            clock: 0,
        }
    }

    /// Checksum of the cached list of `key`, without counting as a use.
    pub(crate) fn checksum(&self, key: &TableKey) -> Option<[u8; 32]> {
        self.slots.get(key).map(|s| s.checksum)
    }

    /// The cached list of `key` if its checksum is `checksum` (a use: moves it to the back).
    pub(crate) fn get(&mut self, key: &TableKey, checksum: &[u8; 32]) -> Option<Arc<[u8]>> {
        let slot = self
            .slots
            .get_mut(key)
            .filter(|s| &s.checksum == checksum)?;
        self.lru.remove(&slot.stamp);
        self.clock += 1;
        slot.stamp = self.clock;
        self.lru.insert(self.clock, *key);
        Some(slot.list.clone())
    }

    /// Caches (or replaces) the list of `key`, evicting the least recently used past the bound.
    /// A list that alone exceeds the bound is not cached.
    pub(crate) fn insert(&mut self, key: TableKey, checksum: [u8; 32], list: Arc<[u8]>) {
        self.remove(&key);
        if cost(&list) > self.max_bytes {
            return;
        }
        while self.bytes + cost(&list) > self.max_bytes {
            let Some((_, old)) = self.lru.pop_first() else {
                break;
            };
            if let Some(s) = self.slots.remove(&old) {
                self.bytes -= cost(&s.list);
            }
        }
        self.clock += 1;
        self.bytes += cost(&list);
        self.lru.insert(self.clock, key);
        self.slots.insert(
            key,
            Slot {
                checksum,
                list,
                stamp: self.clock,
            },
        );
    }

    pub(crate) fn remove(&mut self, key: &TableKey) {
        if let Some(s) = self.slots.remove(key) {
            self.lru.remove(&s.stamp);
            self.bytes -= cost(&s.list);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes charged (lists plus per-entry overhead); never above the bound.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Arc<[u8]> {
        vec![b'x'; n].into()
    }

    #[test]
    fn get_needs_the_current_checksum() {
        let mut c = PersonaCache::new(10_000);
        c.insert([1; 10], [7; 32], list(10));
        assert_eq!(c.checksum(&[1; 10]), Some([7; 32]));
        assert!(c.get(&[1; 10], &[8; 32]).is_none());
        assert_eq!(c.get(&[1; 10], &[7; 32]).unwrap().len(), 10);
        c.insert([1; 10], [8; 32], list(20));
        assert_eq!(
            (c.len(), c.bytes()),
            (1, 20 + ENTRY_OVERHEAD),
            "replaced, not added"
        );
    }

    #[test]
    fn least_recently_used_goes_first_and_oversize_is_not_cached() {
        let each = 1000 - ENTRY_OVERHEAD;
        let mut c = PersonaCache::new(3000);
        for k in 1..=3 {
            c.insert([k; 10], [k; 32], list(each));
        }
        assert!(
            c.get(&[1; 10], &[1; 32]).is_some(),
            "1 is now the most recent"
        );
        c.insert([4; 10], [4; 32], list(each));
        assert_eq!(c.checksum(&[2; 10]), None, "2 was the least recently used");
        assert!(c.checksum(&[1; 10]).is_some() && c.checksum(&[3; 10]).is_some());
        assert_eq!(c.bytes(), 3000);
        c.insert([5; 10], [5; 32], list(3000));
        assert_eq!(c.checksum(&[5; 10]), None);
        assert_eq!(c.len(), 3, "an oversize list evicts nothing");
        c.remove(&[1; 10]);
        assert_eq!((c.len(), c.bytes(), c.lru.len()), (2, 2000, 2));
    }
}
