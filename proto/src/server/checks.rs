//! Address-change checks in progress: a name whose registered key signed a REGISTER from a new
//! address while the old registration is alive. The old address gets CHECK requests (RTO
//! doubling, capped) until it answers or the window closes.

use super::registration::secs_after;
use super::{replay, table, Outgoing, PolicyEvent, Server};
use crate::entropy::Entropy;
use crate::identity::{Fingerprint, SIGNATURE_LEN};
use crate::name::{Name, TableKey};
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::token::canonical;
use crate::wire::registration::{self as registration_wire, code, CheckAnswer};
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

// The server side: starting a check, its answer, its timers, and the move.

impl<E: Entropy> Server<E> {
    /// Starts the address-change check of `key` (old address and the end of its registration
    /// in `old`); false when it is not started (checks full, or the source IP's budget spent).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_check(
        &mut self,
        now: Time,
        key: TableKey,
        name: &Name,
        fp: Fingerprint,
        old: (SocketAddr, Time),
        new: SocketAddr,
        register: (TransactionId, u64),
    ) -> bool {
        if self.checks.is_full() {
            self.stats.checks_full += 1;
            return false;
        }
        if !self.rates.allow(now, new) {
            self.stats.checks_rate_limited += 1;
            return false;
        }
        let mut txid = [0; 12];
        let mut challenge = [0; 16];
        self.entropy.fill(&mut txid);
        name.hash().steer(&mut txid);
        self.entropy.fill(&mut challenge);
        let deadline = now + self.config.check_window;
        let signature =
            registration_wire::sign_check(&self.keys.flock, name, &challenge, deadline.0);
        let rto = self.config.rto_initial;
        let next_send = (now + rto).min(deadline);
        self.checks.start(
            key,
            Pending {
                name: *name,
                fp,
                old_addr: old.0,
                new_addr: new,
                register_txid: register.0,
                register_ts: register.1,
                txid,
                challenge,
                signature,
                deadline,
                next_send,
                rto: (rto * 2).min(self.config.rto_max),
                wake: next_send.min(old.1),
            },
        );
        self.outgoing.push_back(Outgoing::Check(key));
        self.stats.checks_started += 1;
        true
    }

    pub(super) fn check_answer(&mut self, now: Time, msg: &Message<'_>, src: SocketAddr) {
        let Some(name) = super::routing::request_name(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let key = name.hash().table_key();
        let Some(p) = self.checks.get(&key) else {
            self.stats.ignored += 1;
            return;
        };
        if msg.transaction_id() != &p.txid {
            self.stats.ignored += 1;
            return;
        }
        let proven = msg.class() == Class::Success
            && CheckAnswer::parse(msg).is_ok_and(|a| a.proves(&p.fp.prefix(), &p.challenge));
        if proven && canonical(src) == canonical(p.old_addr) {
            // The registered appliance is alive where it was: the name stays, and the REGISTER
            // from the new address is refused (409, also to its retransmissions).
            let Some(p) = self.checks.remove(&key) else {
                return;
            };
            let expires = secs_after(now, self.config.entry_lifetime);
            if let Some(e) = self.table.get_mut(&key, now) {
                e.expires = e.expires.max(expires);
            }
            self.replays
                .mark_kept(&replay::guard_key(&key, &p.fp), p.register_ts, now);
            self.outgoing.push_back(Outgoing::Refused {
                dst: p.new_addr,
                txid: p.register_txid,
                code: code::NAME_TAKEN,
            });
            self.stats.checks_kept_old += 1;
        } else {
            // Wrong identity at the old address, or the right one answering from elsewhere:
            // either way the old address no longer holds the appliance.
            self.move_name(now, key);
        }
    }

    /// Ends a check in favour of the new address and answers its latest REGISTER.
    pub(super) fn move_name(&mut self, now: Time, key: TableKey) {
        let Some(p) = self.checks.remove(&key) else {
            return;
        };
        let expires = secs_after(now, self.config.entry_lifetime);
        // The key is already in the table, so this overwrites and never hits the bound.
        let _ = self.table.insert(
            table::Entry::new(key, p.new_addr, p.fp.prefix(), expires),
            now,
        );
        self.outgoing.push_back(Outgoing::Registered {
            at: now,
            dst: p.new_addr,
            txid: p.register_txid,
            name: p.name,
            fp: p.fp,
        });
        self.stats.moved += 1;
        self.audit(PolicyEvent::AddressChanged {
            name: p.name,
            fingerprint: p.fp,
            old: p.old_addr,
            new: p.new_addr,
        });
    }

    /// Retransmits the checks that are due, and moves the names whose check window closed or
    /// whose old registration ended.
    pub(super) fn check_timeouts(&mut self, now: Time) {
        while let Some(key) = self.checks.pop_due(now) {
            let Some(p) = self.checks.get(&key) else {
                continue;
            };
            // The old registration's end wakes the check too: the name moves at once then.
            let old_end = self
                .table
                .get(&key, now)
                .map(|e| Time::from_secs(e.expires.into()));
            match old_end {
                Some(end) if now < p.deadline && now < p.next_send => {
                    // Woken by the old registration's end, which a keep-alive pushed back.
                    self.checks.rearm(&key, end);
                }
                Some(end) if now < p.deadline => {
                    self.outgoing.push_back(Outgoing::Check(key));
                    self.checks.reschedule(&key, now, self.config.rto_max, end);
                }
                _ => self.move_name(now, key),
            }
        }
    }
}
