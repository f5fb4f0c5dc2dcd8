//! What the server asks of an operator's policy (plugins), sans-IO: admission of a name by an
//! identity, and audit events. The server never waits for an answer on its own thread: it
//! emits [`PolicyEvent::Admit`] and keeps the REGISTER pending; [`Server::admission`] brings the
//! verdict back later and the REGISTER is answered then. Verdicts are cached per name and
//! identity for a while, so a retransmission or the next REGISTER does not ask again, and a
//! keep-alive never asks at all.
//!
//! [`Server::admission`]: super::Server::admission

use super::registration::{secs_after, Taken};
use super::table::{self, Insert};
use super::{Outgoing, Server};
use crate::entropy::Entropy;
use crate::identity::{Fingerprint, FINGERPRINT_PREFIX_LEN};
use crate::name::{Name, TableKey};
use crate::stun::TransactionId;
use crate::time::Time;
use crate::wire::method;
use crate::wire::registration::code;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// For the policy: decisions to take, and things to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyEvent {
    /// May `fingerprint` hold `name`? (First registration, or a new key for a held name.)
    /// Answer with `Server::admission`.
    Admit {
        name: Name,
        fingerprint: Fingerprint,
        addr: SocketAddr,
        key_change: bool,
    },
    /// A name was registered (not emitted for keep-alives).
    Registered {
        name: Name,
        fingerprint: Fingerprint,
        addr: SocketAddr,
    },
    /// A registration expired. The table keeps no names (44-byte entries), so this carries the
    /// name's table key (SHA-256 bytes 16..26, hex in docs) and the identity's fingerprint prefix.
    Expired {
        key: TableKey,
        fingerprint_prefix: [u8; FINGERPRINT_PREFIX_LEN],
        addr: SocketAddr,
    },
    /// A name moved to a new address after the address-change check.
    AddressChanged {
        name: Name,
        fingerprint: Fingerprint,
        old: SocketAddr,
        new: SocketAddr,
    },
}

/// The REGISTER that waits for a verdict (the latest one from this identity).
pub(crate) struct Waiting {
    pub name: Name,
    pub fp: Fingerprint,
    pub addr: SocketAddr,
    pub txid: TransactionId,
    /// The REGISTER's timestamp, recorded against replays once the verdict is in.
    pub taken: Taken,
    pub key_change: bool,
}

struct Cached {
    fp: [u8; FINGERPRINT_PREFIX_LEN],
    allow: bool,
    until: Time,
}

/// Pending admissions and cached verdicts, both bounded.
pub(crate) struct Admissions {
    pub waiting: HashMap<TableKey, Waiting>,
    cache: HashMap<TableKey, Cached>,
    order: VecDeque<TableKey>,
    max: usize,
}

/// What to do with a verified REGISTER that needs admission.
pub(crate) enum Admission {
    Allowed,
    Denied,
    /// Ask the policy (emit `Admit`) — unless `asked` says a request is already out.
    Ask {
        asked: bool,
    },
    /// Too many waiting already: drop the REGISTER (the appliance retransmits).
    Full,
}

impl Admissions {
    pub(crate) fn new(max: usize) -> Admissions {
        Admissions {
            waiting: HashMap::new(),
            cache: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub(crate) fn check(&self, now: Time, key: &TableKey, fp: &Fingerprint) -> Admission {
        if let Some(c) = self
            .cache
            .get(key)
            .filter(|c| c.until > now && c.fp == fp.prefix())
        {
            return if c.allow {
                Admission::Allowed
            } else {
                Admission::Denied
            };
        }
        match self.waiting.get(key) {
            Some(w) => Admission::Ask { asked: w.fp == *fp },
            None if self.waiting.len() >= self.max => Admission::Full,
            None => Admission::Ask { asked: false },
        }
    }

    pub(crate) fn remember(
        &mut self,
        now: Time,
        key: TableKey,
        fp: &Fingerprint,
        allow: bool,
        ttl: core::time::Duration,
    ) {
        while self.cache.len() >= self.max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.cache.remove(&old);
        }
        if self
            .cache
            .insert(
                key,
                Cached {
                    fp: fp.prefix(),
                    allow,
                    until: now + ttl,
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    pub(crate) fn len(&self) -> (usize, usize) {
        (self.waiting.len(), self.cache.len())
    }
}

// The server side: asking, and answering the waiting REGISTER once the verdict is in.

impl<E: Entropy> Server<E> {
    /// A verified REGISTER for a free name, or with a new key for a held one, under an
    /// admission policy: answered now from a cached verdict, or later by [`Self::admission`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &mut self,
        now: Time,
        key: TableKey,
        name: &Name,
        fp: Fingerprint,
        src: SocketAddr,
        txid: &TransactionId,
        taken: Taken,
        key_change: bool,
        reply: &mut [u8],
    ) -> Option<usize> {
        match self.admissions.check(now, &key, &fp) {
            Admission::Allowed => self.enter(now, taken, key, name, fp, src, txid, true, reply),
            Admission::Denied => {
                self.take(taken, now);
                self.stats.admissions_denied += 1;
                let code = if key_change {
                    code::NAME_TAKEN
                } else {
                    code::NOT_ADMITTED
                };
                self.error(reply, method::REGISTER, txid, code, None)
            }
            Admission::Full => {
                self.stats.admissions_full += 1;
                None
            }
            Admission::Ask { asked } => {
                // Answer the latest REGISTER once the verdict is in; ask only once.
                self.admissions.waiting.insert(
                    key,
                    Waiting {
                        name: *name,
                        fp,
                        addr: src,
                        txid: *txid,
                        taken,
                        key_change,
                    },
                );
                if !asked {
                    self.stats.admissions_asked += 1;
                    self.push_policy(PolicyEvent::Admit {
                        name: *name,
                        fingerprint: fp,
                        addr: src,
                        key_change,
                    });
                }
                None
            }
        }
    }

    /// The policy's verdict on a [`PolicyEvent::Admit`]: the waiting REGISTER is answered
    /// (registered, or refused with 442 — 409 for a key change), and the verdict is cached.
    pub fn admission(&mut self, now: Time, name: &Name, fingerprint: &Fingerprint, allow: bool) {
        let key = name.hash().table_key();
        self.admissions
            .remember(now, key, fingerprint, allow, self.config.policy.verdict_ttl);
        if !self
            .admissions
            .waiting
            .get(&key)
            .is_some_and(|w| w.fp == *fingerprint)
        {
            return; // nobody waits, or another identity does: the verdict is only cached
        }
        let w = self.admissions.waiting.remove(&key).expect("just checked");
        if !self.replays.fresh(&w.taken.guard, w.taken.ts, now) {
            return; // a later REGISTER of the name was taken meanwhile
        }
        let refused = if self.replays.room_for(&w.taken.guard, now).is_err() {
            self.stats.replay_full += 1;
            Some(code::CAPACITY)
        } else {
            self.take(w.taken, now);
            let expires = secs_after(now, self.config.entry_lifetime);
            if !allow {
                self.stats.admissions_denied += 1;
                Some(if w.key_change {
                    code::NAME_TAKEN
                } else {
                    code::NOT_ADMITTED
                })
            } else if self
                .table
                .insert(table::Entry::new(key, w.addr, w.fp.prefix(), expires), now)
                == Insert::Full
            {
                self.stats.capacity_refused += 1;
                Some(code::CAPACITY)
            } else {
                None
            }
        };
        if let Some(code) = refused {
            self.outgoing.push_back(Outgoing::Refused {
                dst: w.addr,
                txid: w.txid,
                code,
            });
            return;
        }
        self.stats.registered += 1;
        self.audit(PolicyEvent::Registered {
            name: w.name,
            fingerprint: w.fp,
            addr: w.addr,
        });
        self.outgoing.push_back(Outgoing::Registered {
            at: now,
            dst: w.addr,
            txid: w.txid,
            name: w.name,
            fp: w.fp,
        });
    }

    pub(super) fn audit(&mut self, e: PolicyEvent) {
        if self.config.policy.audit {
            self.push_policy(e);
        }
    }

    pub(super) fn push_policy(&mut self, e: PolicyEvent) {
        if self.policy_events.len() >= self.config.policy.max_events {
            self.stats.policy_events_dropped += 1;
        } else {
            self.policy_events.push_back(e);
        }
    }
}
