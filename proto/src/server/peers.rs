//! The peer side of a shard: opening peer messages (integrity, source, membership digest),
//! answering LOOKUP as the owner, and on the serving side the short LOOKUP cache and the
//! hand-over of answers to the log-in sessions waiting on them. RELAY is in `relay_table`.
//!
//! Order of checks on every peer message: FINGERPRINT (parse) → MESSAGE-INTEGRITY-SHA256 under
//! the peer secret → FROM-SERVER names a configured server and the source is that server's
//! address → DIGEST equals ours. Nothing changes state before the first three pass; a message
//! failing them is dropped silently and counted. A digest mismatch is counted, raised as a
//! [`PeerAlarm`] (one per peer per minute), and a LOOKUP request gets error 470.

use super::routing::request_name;
use super::{Outgoing, Server, Stats};
use crate::entropy::Entropy;
use crate::name::{Name, TableKey};
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::token::canonical;
use crate::wire::method;
use crate::wire::peer::{self, code, LookupAnswer, LookupRequest, PeerError, Sender};
use core::time::Duration;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Timers and bounds of the peer protocol, per shard. Set with `Server::set_peer_config`.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// LOOKUP transmissions (RTO doubling from `rto_initial`) before the owner is reported down:
    /// 3 → `owner-down` after 3.5 s with the default RTO.
    pub lookup_tries: u32,
    /// How long a LOOKUP answer is reused: found (never past the registration's own lifetime),
    /// and not-found.
    pub found_ttl: Duration,
    pub missing_ttl: Duration,
    /// Entries of the LOOKUP cache; past it answers are used but not cached.
    pub max_cached: usize,
    /// Transmissions of the first PERSONAS left unanswered before a session for a name owned
    /// elsewhere falls back to relaying through the owner.
    pub relay_after: u32,
    /// Entries of the owner's relay table (transactions and sessions relayed for peers); past
    /// it new relays are refused (the serving side's retransmissions retry).
    pub max_relays: usize,
    /// Datagrams queued for peers or appliances by relaying; past it they are dropped.
    pub max_relay_queue: usize,
    /// Least time between two alarms about the same peer.
    pub alarm_interval: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            lookup_tries: 3,
            found_ttl: Duration::from_secs(5),
            missing_ttl: Duration::from_secs(2),
            max_cached: 4096,
            relay_after: 2,
            max_relays: 4096,
            max_relay_queue: 1024,
            alarm_interval: Duration::from_secs(60),
        }
    }
}

/// Something the host must log as an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAlarm {
    /// A server of the flock has another membership list: the two refuse each other until an
    /// operator makes the lists agree. `index` is its FROM-SERVER, `addr` where it spoke from.
    MembershipDiffers {
        index: u32,
        addr: SocketAddr,
        theirs: [u8; 32],
        ours: [u8; 32],
    },
}

/// Where a log-in session finds its appliance.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Where {
    /// At this address; `owner` is the server owning the name when it is not us.
    At {
        addr: SocketAddr,
        owner: Option<usize>,
    },
    /// Nobody has it registered.
    Unknown,
    /// Owned by server `owner`, not cached: ask it.
    Ask { owner: usize },
}

/// What a LOOKUP told a waiting session.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Located {
    At(SocketAddr),
    Unknown,
    /// The owner refused (membership differs, not owner): treat it as down.
    Refused,
}

/// Where a log-in datagram came from: the appliance itself, or relayed by the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Addr(SocketAddr),
    Owner(usize),
}

impl Origin {
    /// True when this is the appliance at `addr` (whose name `owner` owns, if not us).
    pub(crate) fn is(&self, addr: SocketAddr, owner: Option<usize>) -> bool {
        match *self {
            Origin::Addr(a) => canonical(a) == canonical(addr),
            Origin::Owner(o) => owner == Some(o),
        }
    }
}

#[derive(Clone, Copy)]
enum Cached {
    Found { addr: SocketAddr, until: Time },
    Missing { until: Time },
}

/// The flock as one shard sees it.
pub(crate) struct Peers {
    pub sender: Sender,
    pub servers: Vec<SocketAddr>,
    pub me: usize,
    pub config: PeerConfig,
    cache: HashMap<TableKey, Cached>,
    alarms: VecDeque<PeerAlarm>,
    /// Per server: when it may next raise an alarm.
    quiet_until: Vec<Time>,
}

/// What opening a peer message gave.
enum Opened {
    Ok(usize),
    Drop,
    Mismatch(usize),
}

impl Peers {
    pub(crate) fn new(flock: &super::FlockConfig) -> Peers {
        Peers {
            sender: Sender::new(flock.me, flock.digest, &flock.peer_secret),
            servers: if flock.servers.len() > 1 {
                flock.servers.clone()
            } else {
                Vec::new()
            },
            me: flock.me,
            config: PeerConfig::default(),
            cache: HashMap::new(),
            alarms: VecDeque::new(),
            quiet_until: vec![Time(0); flock.servers.len()],
        }
    }

    /// Owner of `name` when it is another server.
    pub(crate) fn owner_elsewhere(&self, name: &Name) -> Option<usize> {
        super::config::owner_elsewhere_in(self.servers.len(), self.me, &name.hash())
    }

    /// What the cache says of a name owned by `owner`.
    pub(crate) fn cached(&self, now: Time, key: &TableKey, owner: usize) -> Where {
        match self.cache.get(key) {
            Some(Cached::Found { addr, until }) if *until > now => Where::At {
                addr: *addr,
                owner: Some(owner),
            },
            Some(Cached::Missing { until }) if *until > now => Where::Unknown,
            _ => Where::Ask { owner },
        }
    }

    fn remember(&mut self, now: Time, key: TableKey, c: Cached) {
        if self.cache.len() >= self.config.max_cached && !self.cache.contains_key(&key) {
            self.cache.retain(|_, c| match c {
                Cached::Found { until, .. } | Cached::Missing { until } => *until > now,
            });
            if self.cache.len() >= self.config.max_cached {
                return;
            }
        }
        self.cache.insert(key, c);
    }

    /// Drops expired cache entries (so an idle shard's cache drains).
    pub(crate) fn sweep(&mut self, now: Time) {
        if !self.cache.is_empty() {
            self.cache.retain(|_, c| match c {
                Cached::Found { until, .. } | Cached::Missing { until } => *until > now,
            });
        }
    }

    pub(crate) fn cache_len(&self) -> usize {
        self.cache.len()
    }

    fn open(&mut self, now: Time, msg: &Message<'_>, src: SocketAddr, stats: &mut Stats) -> Opened {
        if self.servers.is_empty() {
            stats.ignored += 1;
            return Opened::Drop;
        }
        let env = match peer::open(msg, &self.sender.key) {
            Ok(env) => env,
            Err(PeerError::Integrity) => {
                stats.peer_bad_integrity += 1;
                return Opened::Drop;
            }
            Err(_) => {
                stats.malformed += 1;
                return Opened::Drop;
            }
        };
        let from = env.from as usize;
        // A verified message replayed from elsewhere must not draw answers there.
        if from == self.me
            || self
                .servers
                .get(from)
                .is_none_or(|a| canonical(*a) != canonical(src))
        {
            stats.peer_unknown_source += 1;
            return Opened::Drop;
        }
        if env.digest != self.sender.digest {
            stats.peer_digest_mismatch += 1;
            self.alarm(now, from, src, env.digest);
            return Opened::Mismatch(from);
        }
        Opened::Ok(from)
    }

    fn alarm(&mut self, now: Time, from: usize, addr: SocketAddr, theirs: [u8; 32]) {
        let Some(q) = self.quiet_until.get_mut(from) else {
            return;
        };
        if now >= *q && self.alarms.len() < self.servers.len() {
            *q = now + self.config.alarm_interval;
            self.alarms.push_back(PeerAlarm::MembershipDiffers {
                index: from as u32,
                addr,
                theirs,
                ours: self.sender.digest,
            });
        }
    }

    pub(crate) fn poll_alarm(&mut self) -> Option<PeerAlarm> {
        self.alarms.pop_front()
    }

    /// A LOOKUP request for `name`, and when to give up on the owner (after `lookup_tries`
    /// transmissions, RTO doubling from `rto`).
    pub(crate) fn lookup_request(
        &self,
        txid: &TransactionId,
        name: &Name,
        now: Time,
        rto: Duration,
        rto_max: Duration,
    ) -> Option<(Vec<u8>, Time)> {
        let mut buf = vec![0; 512];
        let n = peer::encode_lookup(&mut buf, txid, name, &self.sender).ok()?;
        buf.truncate(n);
        let (mut wait, mut step) = (Duration::ZERO, rto);
        for _ in 0..self.config.lookup_tries.max(1) {
            wait += step;
            step = (step * 2).min(rto_max.max(rto));
        }
        Some((buf, now + wait))
    }

    /// `inner` wrapped in a RELAY (for the owner, or back to the serving server).
    pub(crate) fn wrap(&self, inner: &[u8]) -> Option<Vec<u8>> {
        let mut buf = vec![0; inner.len() + 512];
        let n = peer::encode_relay(&mut buf, inner, &self.sender).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

impl<E: Entropy> Server<E> {
    /// Replaces the peer protocol's timers and bounds (defaults: [`PeerConfig::default`]).
    pub fn set_peer_config(&mut self, config: PeerConfig) {
        self.peers.config = config;
    }

    /// Sends every peer a LOOKUP for a name it owns that no session waits on: a peer running
    /// another membership list answers 470 and both sides raise a [`PeerAlarm`] now (at start,
    /// say), not at the first log-in across the split. Matching peers answer not-found (or
    /// found), and the answer is dropped. Hosts call it on one core at start and now and then.
    pub fn probe_peers(&mut self) {
        for peer in (0..self.peers.servers.len()).filter(|&p| p != self.peers.me) {
            self.outgoing.push_back(Outgoing::Probe(peer));
        }
    }

    pub(super) fn probe(&mut self, peer: usize, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let n = self.peers.servers.len();
        // The first `flock-probe-K` that `peer` owns (about N tries).
        let name = (0..64 * n as u32)
            .map(|k| Name::normalize(format!("flock-probe-{k}").as_bytes()))
            .find_map(|r| r.ok().filter(|x| x.hash().server_index(n) == peer))?;
        let mut txid = [0; 12];
        self.entropy.fill(&mut txid);
        name.hash().steer(&mut txid);
        let len = peer::encode_lookup(buf, &txid, &name, &self.peers.sender).ok()?;
        Some((self.peers.servers[peer], len))
    }

    /// A LOOKUP or RELAY from `src`; an answer for it goes to `reply`.
    pub(super) fn peer_message(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        let from = match self.peers.open(now, msg, src, &mut self.stats) {
            Opened::Ok(from) => from,
            Opened::Drop => return None,
            Opened::Mismatch(from) => {
                let name = request_name(msg);
                return match (msg.method(), msg.class(), name) {
                    (method::LOOKUP, Class::Request, Some(name)) => peer::encode_lookup_error(
                        reply,
                        msg.transaction_id(),
                        &name,
                        code::MEMBERSHIP_DIFFERS,
                        &self.peers.sender,
                    )
                    .ok(),
                    // An answer from a server that disagrees: the session waiting on it fails.
                    (method::LOOKUP, Class::Success | Class::Error, _) => {
                        self.located(now, msg.transaction_id(), from, Located::Refused);
                        None
                    }
                    _ => None,
                };
            }
        };
        match (msg.method(), msg.class()) {
            (method::LOOKUP, Class::Request) => self.answer_lookup(now, msg, reply),
            (method::LOOKUP, Class::Success | Class::Error) => {
                self.lookup_answered(now, msg, from);
                None
            }
            (method::RELAY, Class::Indication) => self.relay_in(now, msg, from, reply),
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    /// Owner side: the registration of the name, or not-found.
    fn answer_lookup(&mut self, now: Time, msg: &Message<'_>, reply: &mut [u8]) -> Option<usize> {
        let Ok(req) = LookupRequest::parse(msg) else {
            self.stats.malformed += 1;
            return None;
        };
        let txid = msg.transaction_id();
        let s = &self.peers.sender;
        if self.peers.owner_elsewhere(&req.name).is_some() {
            return peer::encode_lookup_error(reply, txid, &req.name, code::NOT_OWNER, s).ok();
        }
        self.stats.lookups_answered += 1;
        match self.table.get(&req.name.hash().table_key(), now) {
            Some(e) => {
                let left = (u64::from(e.expires) * 1000)
                    .saturating_sub(now.0)
                    .min(u32::MAX as u64) as u32;
                peer::encode_lookup_found(reply, txid, &req.name, e.addr(), &e.fp, left, s).ok()
            }
            None => peer::encode_lookup_error(reply, txid, &req.name, code::NOT_FOUND, s).ok(),
        }
    }

    /// Serving side: a LOOKUP answer, cached and handed to the session that asked.
    fn lookup_answered(&mut self, now: Time, msg: &Message<'_>, from: usize) {
        let Ok(answer) = LookupAnswer::parse(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let name = answer.name();
        if self.peers.owner_elsewhere(name) != Some(from) {
            self.stats.ignored += 1;
            return;
        }
        let key = name.hash().table_key();
        let cfg = &self.peers.config;
        let located = match answer {
            LookupAnswer::Found {
                addr, lifetime_ms, ..
            } => {
                let ttl = cfg.found_ttl.min(Duration::from_millis(lifetime_ms.into()));
                self.peers.remember(
                    now,
                    key,
                    Cached::Found {
                        addr,
                        until: now + ttl,
                    },
                );
                Located::At(addr)
            }
            LookupAnswer::Refused {
                code: code::NOT_FOUND,
                ..
            } => {
                let until = now + cfg.missing_ttl;
                self.peers.remember(now, key, Cached::Missing { until });
                Located::Unknown
            }
            LookupAnswer::Refused { code, .. } => {
                if code == peer::code::MEMBERSHIP_DIFFERS {
                    self.stats.peer_digest_mismatch += 1;
                }
                Located::Refused
            }
        };
        self.located(now, msg.transaction_id(), from, located);
    }

    fn located(&mut self, now: Time, txid: &TransactionId, from: usize, located: Located) {
        let (login, mut cx) = self.login_parts(now);
        login.located(&mut cx, txid, from, located);
    }
}
