//! What the server asks of an operator's policy (plugins), sans-IO: admission of a name by an
//! identity, and audit events. The server never waits for an answer on its own thread: it
//! emits [`PolicyEvent::Admit`] and keeps the REGISTER pending; [`Server::admission`] brings the
//! verdict back later and the REGISTER is answered then. Verdicts are cached per name and
//! identity for a while, so a retransmission or the next REGISTER does not ask again, and a
//! keep-alive never asks at all.
//!
//! [`Server::admission`]: super::Server::admission

use crate::identity::{Fingerprint, FINGERPRINT_PREFIX_LEN};
use crate::name::{Name, TableKey};
use crate::stun::TransactionId;
use crate::time::Time;
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
    pub taken: super::Taken,
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
