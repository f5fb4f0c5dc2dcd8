//! Address-change checks in progress: a name whose registered key signed a REGISTER from a new
//! address while the old registration is alive. The old address gets CHECK requests (RTO
//! doubling, capped) until it answers or the window closes.

use crate::identity::{Fingerprint, SIGNATURE_LEN};
use crate::name::{Name, TableKey};
use crate::stun::TransactionId;
use crate::time::Time;
use core::time::Duration;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

/// A check that is running.
pub(crate) struct Pending {
    pub name: Name,
    /// Identity that signed the move (equal to the registered one, or there would be no check).
    pub fp: Fingerprint,
    /// Where the name is registered now (the address being checked).
    pub old_addr: SocketAddr,
    /// Where the name would move.
    pub new_addr: SocketAddr,
    /// Transaction id of the latest REGISTER from `new_addr`, to answer it once moved.
    pub register_txid: TransactionId,
    /// That REGISTER's signed timestamp: its retransmissions join this check.
    pub register_ts: u64,
    /// The CHECK's transaction id and challenge; an answer must echo the first and sign the second.
    pub txid: TransactionId,
    pub challenge: [u8; 16],
    pub signature: [u8; SIGNATURE_LEN],
    pub deadline: Time,
    pub next_send: Time,
    pub rto: Duration,
    /// When the check next needs attention: its next retransmission, or the end of the old
    /// registration if that comes first (the name moves at once then).
    pub wake: Time,
}

/// Pending checks with a deadline queue. The heap holds one live item per check (the time of its
/// next event); items whose check is gone or rescheduled are skipped when popped.
pub(crate) struct Checks {
    pending: HashMap<TableKey, Pending>,
    timers: BinaryHeap<Reverse<(Time, TableKey)>>,
    max: usize,
}

impl Checks {
    pub(crate) fn new(max: usize) -> Checks {
        Checks {
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            max,
        }
    }

    pub(crate) fn get(&self, key: &TableKey) -> Option<&Pending> {
        self.pending.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &TableKey) -> Option<&mut Pending> {
        self.pending.get_mut(key)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.max
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn start(&mut self, key: TableKey, p: Pending) {
        self.timers.push(Reverse((p.wake, key)));
        self.pending.insert(key, p);
    }

    pub(crate) fn remove(&mut self, key: &TableKey) -> Option<Pending> {
        self.pending.remove(key)
    }

    /// Earliest time a check needs attention.
    pub(crate) fn next_timeout(&self) -> Option<Time> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops the next check due at `now`, if any (skipping stale timer items).
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<TableKey> {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                return None;
            }
            self.timers.pop();
            if self.pending.get(&key).is_some_and(|p| p.wake == t) {
                return Some(key);
            }
        }
        None
    }

    /// Schedules the next retransmission of `key` (RTO doubling, capped, never past the
    /// deadline), waking earlier if the old registration ends at `old_end` before it.
    pub(crate) fn reschedule(
        &mut self,
        key: &TableKey,
        now: Time,
        rto_max: Duration,
        old_end: Time,
    ) {
        if let Some(p) = self.pending.get_mut(key) {
            p.next_send = (now + p.rto).min(p.deadline);
            p.rto = (p.rto * 2).min(rto_max);
        }
        self.rearm(key, old_end);
    }

    /// Wakes `key` at its next retransmission or at `old_end` (the old registration's end),
    /// whichever comes first.
    pub(crate) fn rearm(&mut self, key: &TableKey, old_end: Time) {
        if let Some(p) = self.pending.get_mut(key) {
            p.wake = p.next_send.min(old_end);
            self.timers.push(Reverse((p.wake, *key)));
        }
    }
}
