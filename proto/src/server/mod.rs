//! The server's registration state machine for one shard (one core), sans-IO.
//!
//! `handle(now, src, datagram, reply)` answers at once when there is an answer for `src`;
//! challenges and late answers to other addresses come out of `poll_transmit`; timers are
//! driven by `poll_timeout` / `handle_timeout`. The packet path is:
//! parse → dispatch by method → (nonce → timestamp → signature) or (token) → table → reply.
//!
//! Browser log-in sessions (`login`) ride on the same entry points: the gateway's commands go in
//! through `command`, events come out of `poll_event`, and the PERSONAS / CONNECT / SIGNAL
//! requests to appliances come out of `poll_transmit`.

mod checks;
mod config;
mod login;
mod peers;
mod persona_cache;
mod policy;
mod ratelimit;
mod relay;
mod replay;
mod table;

pub use crate::entropy::Entropy;
pub use config::{FlockConfig, LoginConfig, PolicyConfig, ServerConfig};
pub use login::LoginOccupancy;
pub use peers::{PeerAlarm, PeerConfig};
pub use policy::PolicyEvent;
pub use table::Entry;

use crate::identity::{Fingerprint, FINGERPRINT_PREFIX_LEN};
use crate::login::{self as lg, Command, Event, SessionId};
use crate::msg::{
    self, code, method, CheckAnswer, ErrorAnswer, Keepalive, KeptAlive, Register, Registered,
    TryAlternate,
};
use crate::name::{Name, NameHash, TableKey};
use crate::stun::{self, Class, Encoder, Message, MessageType, Method, TransactionId};
use crate::time::Time;
use crate::token::{canonical, ProofError, ProofKeys};
use checks::{Checks, Pending};
use ratelimit::RateTable;
use ring::signature::Ed25519KeyPair;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use table::{Insert, Table};

/// Secrets a shard works with: MAC keys derived from the server secret and the flock's
/// signing key.
#[derive(Clone)]
pub struct Keys {
    pub proof: ProofKeys,
    pub flock: Arc<Ed25519KeyPair>,
}

/// Counters of one shard. Plain integers: the shard is owned by one core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub binding: u64,
    pub registered: u64,
    pub nonces_issued: u64,
    pub bad_signature: u64,
    pub clock_skew: u64,
    pub name_taken: u64,
    pub keepalives: u64,
    pub tokens_refused: u64,
    pub capacity_refused: u64,
    /// Verified REGISTERs refused as taken before (a retransmission or a replay: signed no
    /// later than the last one taken for the name), answered 438 with a fresh nonce or 409.
    pub register_replays: u64,
    /// REGISTERs refused (508) because the replay guard was at its bound.
    pub replay_full: u64,
    pub checks_started: u64,
    pub checks_rate_limited: u64,
    pub checks_full: u64,
    pub checks_kept_old: u64,
    pub moved: u64,
    pub silent_while_checking: u64,
    /// Answers not sent because they would have been larger than the request.
    pub amplification_suppressed: u64,
    pub admissions_asked: u64,
    pub admissions_denied: u64,
    /// REGISTERs dropped because too many admissions were waiting.
    pub admissions_full: u64,
    pub policy_events_dropped: u64,
    pub swept: u64,
    /// Log-in sessions started (an `Open` that found the appliance and room).
    pub sessions_opened: u64,
    /// Sessions that ended with `Done`.
    pub sessions_done: u64,
    /// Sessions that ended with `Failed`, refused `Open`s included.
    pub sessions_failed: u64,
    /// Sessions the gateway closed.
    pub sessions_closed: u64,
    /// Commands for sessions that no longer exist.
    pub login_commands_ignored: u64,
    /// Persona lists served from the cache after the appliance confirmed the checksum.
    pub personas_cache_hits: u64,
    /// Persona lists fetched (not cached, or changed).
    pub personas_cache_misses: u64,
    pub connects_sent: u64,
    pub logins_accepted: u64,
    pub logins_rejected: u64,
    /// Log-in requests (PERSONAS, CONNECT, SIGNAL) sent again after a retransmission timeout.
    pub retransmits: u64,
    /// SIGNALs taken from appliances (in order, first time).
    pub signals_in: u64,
    /// SIGNALs to appliances that were acknowledged.
    pub signals_out: u64,
    /// Retransmitted SIGNALs acknowledged again.
    pub signals_duplicate: u64,
    /// SIGNALs for no known session (answered 481 when that is not larger).
    pub signals_unknown_session: u64,
    /// REGISTERs and KEEPALIVEs for names another server of the flock owns, answered 300.
    pub redirected: u64,
    /// Peer messages dropped: MESSAGE-INTEGRITY-SHA256 missing or wrong.
    pub peer_bad_integrity: u64,
    /// Verified peer messages from an index that is not a peer or from another address.
    pub peer_unknown_source: u64,
    /// Peer messages (or LOOKUP refusals) showing another membership list: log as an error.
    pub peer_digest_mismatch: u64,
    /// LOOKUPs sent for sessions whose name another server owns (cache misses).
    pub lookups_sent: u64,
    /// LOOKUPs answered for peers (found or not).
    pub lookups_answered: u64,
    /// Sessions that fell back to relaying through the owner.
    pub relay_fallbacks: u64,
    /// Owner: datagrams relayed to appliances, and appliances' datagrams relayed back to peers.
    pub relayed_to_appliance: u64,
    pub relayed_to_peer: u64,
    /// Serving side: relayed appliance datagrams answered back through the owner.
    pub relayed_from_appliance: u64,
    /// RELAYs refused: no live registration, or not from the name's owner.
    pub relay_refused: u64,
    /// RELAYs dropped because the relay table was at its bound.
    pub relay_table_full: u64,
}

/// What the server knows about a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    pub addr: SocketAddr,
    pub fingerprint_prefix: [u8; FINGERPRINT_PREFIX_LEN],
    /// Unix seconds after which it is dead.
    pub expires: u32,
    /// Where the name would move if the running address check lets it.
    pub moving_to: Option<SocketAddr>,
}

// Names are held inline (no allocation); the queue is short and only used on rare paths.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Check(TableKey),
    Registered {
        dst: SocketAddr,
        txid: TransactionId,
        name: Name,
        fp: Fingerprint,
    },
    Refused {
        dst: SocketAddr,
        txid: TransactionId,
        code: u16,
    },
    /// A membership probe to this peer (`Server::probe_peers`).
    Probe(usize),
}

/// A verified REGISTER about to be taken: its timestamp and how long the replay guard keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taken {
    guard: replay::GuardKey,
    ts: u64,
    forget_at: u32,
}

/// One shard of a flock server.
pub struct Server<E: Entropy> {
    config: ServerConfig,
    keys: Keys,
    entropy: E,
    table: Table,
    checks: Checks,
    replays: replay::Replays,
    rates: RateTable,
    outgoing: VecDeque<Outgoing>,
    admissions: policy::Admissions,
    policy_events: VecDeque<PolicyEvent>,
    next_sweep: Option<Time>,
    /// The first time the shard was given: its start, for token revival.
    started: Option<Time>,
    stats: Stats,
    login: login::Login,
    peers: peers::Peers,
    relays: relay::Relays,
}

impl<E: Entropy> Server<E> {
    /// `keys.proof` should be bound to this start of the server (`ProofKeys::for_boot`, the same
    /// for all its shards): the replay guard lives in memory, and a restarted server must not
    /// accept the nonces of the previous one.
    pub fn new(config: ServerConfig, keys: Keys, mut entropy: E) -> Server<E> {
        let mut seed = [0; 16];
        entropy.fill(&mut seed);
        Server {
            table: Table::new(config.max_registrations),
            checks: Checks::new(config.max_pending_checks),
            replays: replay::Replays::new(config.max_replay_records),
            rates: RateTable::new(
                config.rate_table_slots,
                config.checks_per_ip_burst,
                config.checks_per_ip_per_minute,
                seed,
            ),
            outgoing: VecDeque::new(),
            admissions: policy::Admissions::new(config.policy.max_admissions),
            policy_events: VecDeque::new(),
            next_sweep: None,
            started: None,
            stats: Stats::default(),
            login: login::Login::new(&config),
            peers: peers::Peers::new(&config.flock),
            relays: relay::Relays::default(),
            config,
            keys,
            entropy,
        }
    }

    /// Handles one datagram from `src`; an answer for `src` is written to `reply`. For a server
    /// running on one core (every name is this core's); with several, see [`Server::handle_on`].
    pub fn handle(
        &mut self,
        now: Time,
        src: SocketAddr,
        datagram: &[u8],
        reply: &mut [u8],
    ) -> Option<usize> {
        match self.dispatch(None, now, src, datagram, reply) {
            Outcome::Reply(n) => Some(n),
            Outcome::Done | Outcome::OtherCore(_) => None,
        }
    }

    /// Like [`Server::handle`], for the shard on core `core` of a server of several: a datagram
    /// about a name another core owns comes back as [`Outcome::OtherCore`] with nothing changed
    /// here, for the host to hand to that core. The name is parsed and hashed once for both.
    pub fn handle_on(
        &mut self,
        core: CoreSlot,
        now: Time,
        src: SocketAddr,
        datagram: &[u8],
        reply: &mut [u8],
    ) -> Outcome {
        self.dispatch(
            Some(core).filter(|c| c.cores > 1),
            now,
            src,
            datagram,
            reply,
        )
    }

    fn dispatch(
        &mut self,
        core: Option<CoreSlot>,
        now: Time,
        src: SocketAddr,
        datagram: &[u8],
        reply: &mut [u8],
    ) -> Outcome {
        let Ok(msg) = Message::parse(datagram) else {
            return self.malformed();
        };
        let answer = match (msg.method(), msg.class()) {
            (Method::BINDING, Class::Request) => {
                self.stats.received += 1;
                return self
                    .binding(&msg, src, reply)
                    .map_or(Outcome::Done, Outcome::Reply);
            }
            (method::REGISTER, Class::Request) => {
                let Ok(req) = Register::parse(&msg) else {
                    return self.malformed();
                };
                let hash = match claim(core, &req.name) {
                    Ok(hash) => hash,
                    Err(other) => return Outcome::OtherCore(other),
                };
                self.count_received(now);
                self.register(now, &msg, &req, &hash, src, reply)
            }
            (method::KEEPALIVE, Class::Request) => {
                let Ok(req) = Keepalive::parse(&msg) else {
                    return self.malformed();
                };
                let hash = match claim(core, &req.name) {
                    Ok(hash) => hash,
                    Err(other) => return Outcome::OtherCore(other),
                };
                self.count_received(now);
                self.keepalive(now, &msg, &req, &hash, src, reply)
            }
            _ => {
                // Check answers, log-in and peer messages go to the core owning their name.
                if let Some(name) = core.and_then(|_| msg::request_name(&msg)) {
                    if let Err(other) = claim(core, &name) {
                        return Outcome::OtherCore(other);
                    }
                }
                self.count_received(now);
                self.other(now, &msg, src, reply)
            }
        };
        let Some(answer) = answer else {
            return Outcome::Done;
        };
        // Nothing proves `src` is who it claims before it has answered us: never send more.
        if answer > datagram.len() {
            self.stats.amplification_suppressed += 1;
            return Outcome::Done;
        }
        Outcome::Reply(answer)
    }

    /// The log-in state machine and what it needs of the server, borrowed apart.
    fn login_parts(&mut self, now: Time) -> (&mut login::Login, login::Ctx<'_>) {
        let cx = login::Ctx {
            now,
            config: &self.config,
            flock: &self.keys.flock,
            entropy: &mut self.entropy,
            stats: &mut self.stats,
            peers: &self.peers,
        };
        (&mut self.login, cx)
    }

    /// Counts a datagram dropped as malformed.
    fn malformed(&mut self) -> Outcome {
        self.stats.received += 1;
        self.stats.malformed += 1;
        Outcome::Done
    }

    /// Counts a datagram this core handles (not one it passes to another core).
    fn count_received(&mut self, now: Time) {
        self.stats.received += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.sweep_step_interval());
            self.started.get_or_insert(now);
        }
    }

    /// Everything but Binding, REGISTER and KEEPALIVE requests.
    fn other(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        match (msg.method(), msg.class()) {
            (method::CHECK, Class::Success | Class::Error) => {
                self.check_answer(now, msg, src);
                None
            }
            _ if crate::peer::is_peer(msg) => self.peer_message(now, msg, src, reply),
            // The owner relays an appliance's part of a log-in served by another server.
            _ if lg::wire::is_login(msg) && self.relay_from_appliance(now, msg, src) => None,
            _ if lg::wire::is_login(msg) => {
                let (login, mut cx) = self.login_parts(now);
                login.datagram(&mut cx, msg, peers::Origin::Addr(src), reply)
            }
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    fn binding(&mut self, msg: &Message<'_>, src: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        let typ = MessageType {
            method: Method::BINDING,
            class: Class::Success,
        };
        let mut e = Encoder::new(reply, typ, msg.transaction_id()).ok()?;
        e.xor_mapped_address(canonical(src)).ok()?;
        let len = if msg.has_fingerprint() {
            e.fingerprint().ok()?
        } else {
            e.finish()
        };
        if len > msg.len() && !self.config.answer_small_binding {
            self.stats.amplification_suppressed += 1;
            return None;
        }
        self.stats.binding += 1;
        Some(len)
    }

    fn error(
        &self,
        reply: &mut [u8],
        method: Method,
        txid: &TransactionId,
        code: u16,
        nonce: Option<crate::token::Nonce>,
    ) -> Option<usize> {
        ErrorAnswer { code, nonce }.encode(reply, method, txid).ok()
    }

    /// The UDP address of the server owning `hash` when it is not this one (flocks of 2+).
    fn owner_elsewhere(&self, hash: &NameHash) -> Option<SocketAddr> {
        let f = &self.config.flock;
        f.owner_elsewhere(hash).map(|o| f.servers[o])
    }

    /// 300 Try-Alternate: checked before any MAC or signature (cheap, keeps no state); `handle`
    /// still drops it if it were larger than the request.
    fn try_alternate(
        &mut self,
        reply: &mut [u8],
        method: Method,
        txid: &TransactionId,
        owner: SocketAddr,
    ) -> Option<usize> {
        self.stats.redirected += 1;
        TryAlternate { alternate: owner }
            .encode(reply, method, txid)
            .ok()
    }

    fn register(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        req: &Register<'_>,
        hash: &NameHash,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        let txid = msg.transaction_id();
        if let Some(owner) = self.owner_elsewhere(hash) {
            return self.try_alternate(reply, method::REGISTER, txid, owner);
        }
        // 1. Return routability: a nonce bound to this source, before any expensive work.
        let nonce_err = match req.nonce {
            None => Some(code::NONCE_REQUIRED),
            Some(n) => match self.keys.proof.verify_nonce(src, &n, now.as_secs()) {
                Ok(()) => None,
                Err(ProofError::Forged) => Some(code::NONCE_REQUIRED),
                Err(ProofError::Expired) => Some(code::STALE_NONCE),
            },
        };
        if let Some(c) = nonce_err {
            self.stats.nonces_issued += 1;
            let nonce = self
                .keys
                .proof
                .issue_nonce(src, secs_after(now, self.config.nonce_lifetime));
            return self.error(reply, method::REGISTER, txid, c, Some(nonce));
        }
        // 2. Freshness.
        let skew = now.0.abs_diff(req.timestamp_ms);
        if skew > self.config.timestamp_tolerance.as_millis() as u64 {
            self.stats.clock_skew += 1;
            return self.error(reply, method::REGISTER, txid, code::CLOCK_SKEW, None);
        }
        // 3. Identity.
        if !req.signature_ok() {
            self.stats.bad_signature += 1;
            return self.error(reply, method::REGISTER, txid, code::BAD_SIGNATURE, None);
        }
        let fp = req.fingerprint();
        let key = hash.table_key();
        let ts = req.timestamp_ms;
        let guard = replay::guard_key(&key, &fp);
        // 4. Taken before? A retransmission of the REGISTER a running check is for joins it;
        // anything signed no later than the last REGISTER taken for the name is refused.
        if let Some(p) = self.checks.get_mut(&key) {
            if p.fp == fp && p.new_addr == src && p.register_ts == ts {
                p.register_txid = *txid;
                self.stats.silent_while_checking += 1;
                return None;
            }
        }
        if let Some(r) = self.replays.get(&guard, now).filter(|r| ts <= r.ts) {
            self.stats.register_replays += 1;
            if r.kept && r.ts == ts {
                // The check it started found the name's appliance at its address: same answer.
                return self.error(reply, method::REGISTER, txid, code::NAME_TAKEN, None);
            }
            self.stats.nonces_issued += 1;
            let nonce = self
                .keys
                .proof
                .issue_nonce(src, secs_after(now, self.config.nonce_lifetime));
            return self.error(
                reply,
                method::REGISTER,
                txid,
                code::STALE_NONCE,
                Some(nonce),
            );
        }
        if self.replays.room_for(&guard, now).is_err() {
            self.stats.replay_full += 1;
            return self.error(reply, method::REGISTER, txid, code::CAPACITY, None);
        }
        // Remembered while this REGISTER could pass the checks above: until its nonce expires
        // or its timestamp leaves the tolerance.
        let stale_at =
            ts.saturating_add(self.config.timestamp_tolerance.as_millis() as u64) / 1000 + 1;
        let taken = Taken {
            guard,
            ts,
            forget_at: req
                .nonce
                .map_or(0, |n| n.expiry)
                .min(stale_at.min(u64::from(u32::MAX)) as u32),
        };
        // 5. The table.
        if let Some(p) = self.checks.get_mut(&key) {
            if p.fp == fp && !self.table.get(&key, now).is_some_and(|e| e.same_addr(src)) {
                // Still checking the old address: stay silent; follow the latest new address.
                p.new_addr = src;
                p.register_txid = *txid;
                p.register_ts = ts;
                self.take(taken, now);
                self.stats.silent_while_checking += 1;
                return None;
            }
        }
        let held = self.table.get(&key, now).copied();
        if self.config.policy.admission && held.is_none_or(|e| e.fp != fp.prefix()) {
            return self.admit(
                now,
                key,
                &req.name,
                fp,
                src,
                txid,
                taken,
                held.is_some(),
                reply,
            );
        }
        match held {
            Some(e) if e.fp != fp.prefix() => {
                self.take(taken, now);
                self.stats.name_taken += 1;
                self.error(reply, method::REGISTER, txid, code::NAME_TAKEN, None)
            }
            Some(e) if !e.same_addr(src) => {
                let old = (e.addr(), Time::from_secs(u64::from(e.expires)));
                if self.start_check(now, key, &req.name, fp, old, src, (*txid, ts)) {
                    self.take(taken, now);
                }
                None
            }
            _ => {
                self.take(taken, now);
                let expires = secs_after(now, self.config.entry_lifetime);
                if self
                    .table
                    .insert(table::Entry::new(key, src, fp.prefix(), expires), now)
                    == Insert::Full
                {
                    self.stats.capacity_refused += 1;
                    return self.error(reply, method::REGISTER, txid, code::CAPACITY, None);
                }
                self.stats.registered += 1;
                if held.is_none() {
                    self.audit(PolicyEvent::Registered {
                        name: req.name,
                        fingerprint: fp,
                        addr: src,
                    });
                }
                self.registered(now, &req.name, &fp, src, txid, reply)
            }
        }
    }

    /// Remembers a REGISTER as taken (the replay guard had room: checked before).
    fn take(&mut self, taken: Taken, now: Time) {
        self.replays
            .record(taken.guard, taken.ts, taken.forget_at, now);
    }

    /// A verified REGISTER for a free name, or with a new key for a held one, under an
    /// admission policy: answered now from a cached verdict, or later by [`Self::admission`].
    #[allow(clippy::too_many_arguments)]
    fn admit(
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
            policy::Admission::Allowed => {
                self.take(taken, now);
                let expires = secs_after(now, self.config.entry_lifetime);
                if self
                    .table
                    .insert(table::Entry::new(key, src, fp.prefix(), expires), now)
                    == Insert::Full
                {
                    self.stats.capacity_refused += 1;
                    return self.error(reply, method::REGISTER, txid, code::CAPACITY, None);
                }
                self.stats.registered += 1;
                self.audit(PolicyEvent::Registered {
                    name: *name,
                    fingerprint: fp,
                    addr: src,
                });
                self.registered(now, name, &fp, src, txid, reply)
            }
            policy::Admission::Denied => {
                self.take(taken, now);
                self.stats.admissions_denied += 1;
                let code = if key_change {
                    code::NAME_TAKEN
                } else {
                    code::NOT_ADMITTED
                };
                self.error(reply, method::REGISTER, txid, code, None)
            }
            policy::Admission::Full => {
                self.stats.admissions_full += 1;
                None
            }
            policy::Admission::Ask { asked } => {
                // Answer the latest REGISTER once the verdict is in; ask only once.
                self.admissions.waiting.insert(
                    key,
                    policy::Waiting {
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
            dst: w.addr,
            txid: w.txid,
            name: w.name,
            fp: w.fp,
        });
    }

    /// Next decision or record for the policy (see [`PolicyEvent`]).
    pub fn poll_policy(&mut self) -> Option<PolicyEvent> {
        self.policy_events.pop_front()
    }

    fn audit(&mut self, e: PolicyEvent) {
        if self.config.policy.audit {
            self.push_policy(e);
        }
    }

    fn push_policy(&mut self, e: PolicyEvent) {
        if self.policy_events.len() >= self.config.policy.max_events {
            self.stats.policy_events_dropped += 1;
        } else {
            self.policy_events.push_back(e);
        }
    }

    fn registered(
        &self,
        now: Time,
        name: &Name,
        fp: &Fingerprint,
        dst: SocketAddr,
        txid: &TransactionId,
        buf: &mut [u8],
    ) -> Option<usize> {
        let token =
            self.keys
                .proof
                .issue_token(name, fp, dst, secs_after(now, self.config.token_lifetime));
        let interval = self
            .config
            .keepalive_interval
            .as_millis()
            .min(u32::MAX as u128) as u32;
        Registered {
            mapped: canonical(dst),
            token,
            keepalive_interval_ms: interval,
        }
        .encode(buf, txid)
        .ok()
    }

    /// Starts the address-change check of `key` (old address and the end of its registration
    /// in `old`); false when it is not started (checks full, or the source IP's budget spent).
    #[allow(clippy::too_many_arguments)]
    fn start_check(
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
        let signature = msg::sign_check(&self.keys.flock, name, &challenge, deadline.0);
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

    fn keepalive(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        req: &Keepalive,
        hash: &NameHash,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        let txid = msg.transaction_id();
        if let Some(owner) = self.owner_elsewhere(hash) {
            return self.try_alternate(reply, method::KEEPALIVE, txid, owner);
        }
        if self
            .keys
            .proof
            .verify_token(&req.name, &req.identity, src, &req.token, now.as_secs())
            .is_err()
        {
            self.stats.tokens_refused += 1;
            return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
        }
        let key = hash.table_key();
        let expires = secs_after(now, self.config.entry_lifetime);
        match self.table.get_mut(&key, now) {
            Some(e) if e.fp != req.identity.prefix() => {
                self.stats.name_taken += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::NAME_TAKEN, None);
            }
            Some(e) if e.same_addr(src) => e.expires = expires,
            Some(_) => {
                if self.checks.get(&key).is_some_and(|p| p.new_addr == src) {
                    self.stats.silent_while_checking += 1;
                    return None;
                }
                // A valid token from another address than the registered one: moving needs a
                // signed REGISTER (and a check of the old address).
                self.stats.tokens_refused += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
            }
            None if self
                .started
                .is_some_and(|t| now >= t + self.config.entry_lifetime) =>
            {
                // Every registration from before our start would have ended by now: this one
                // ended here, and a token (a bearer proof, replayable from its address) does
                // not bring it back. Moving back needs a signed REGISTER.
                self.stats.tokens_refused += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
            }
            None => {
                // Just after a start (a restart: the table is empty), the token proves we
                // verified this identity here before: take it back without a signature.
                let entry = table::Entry::new(key, src, req.identity.prefix(), expires);
                if self.table.insert(entry, now) == Insert::Full {
                    self.stats.capacity_refused += 1;
                    return self.error(reply, method::KEEPALIVE, txid, code::CAPACITY, None);
                }
            }
        }
        self.stats.keepalives += 1;
        let half_life = self.config.token_lifetime.as_secs() / 2;
        let token = (u64::from(req.token.expiry) < now.as_secs() + half_life).then(|| {
            let expiry = secs_after(now, self.config.token_lifetime);
            self.keys
                .proof
                .issue_token(&req.name, &req.identity, src, expiry)
        });
        KeptAlive {
            mapped: canonical(src),
            token,
        }
        .encode(reply, txid)
        .ok()
    }

    fn check_answer(&mut self, now: Time, msg: &Message<'_>, src: SocketAddr) {
        let Some(name) = msg::request_name(msg) else {
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
    fn move_name(&mut self, now: Time, key: TableKey) {
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

    /// Next datagram to send on the shard's own initiative.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        while let Some(out) = self.outgoing.pop_front() {
            match out {
                Outgoing::Check(key) => {
                    let Some(p) = self.checks.get(&key) else {
                        continue;
                    };
                    if let Ok(len) = msg::encode_check(
                        buf,
                        &p.txid,
                        &p.name,
                        &p.challenge,
                        p.deadline.0,
                        &p.signature,
                    ) {
                        return Some((p.old_addr, len));
                    }
                }
                Outgoing::Registered {
                    dst,
                    txid,
                    name,
                    fp,
                } => {
                    if let Some(len) = self.registered(now, &name, &fp, dst, &txid, buf) {
                        return Some((dst, len));
                    }
                }
                Outgoing::Refused { dst, txid, code } => {
                    if let Some(len) = self.error(buf, method::REGISTER, &txid, code, None) {
                        return Some((dst, len));
                    }
                }
                Outgoing::Probe(peer) => {
                    if let Some(t) = self.probe(peer, buf) {
                        return Some(t);
                    }
                }
            }
        }
        if let Some(t) = self.relays.poll_transmit(buf) {
            return Some(t);
        }
        self.login.poll_transmit(buf, &self.peers)
    }

    /// A command from the websocket gateway for log-in `session`; its outcome comes out of
    /// `poll_event`, requests to the appliance out of `poll_transmit`.
    pub fn command(&mut self, now: Time, session: SessionId, cmd: Command) {
        let (table, peers) = (&self.table, &self.peers);
        let lookup = |name: &Name| {
            let key = name.hash().table_key();
            match peers.owner_elsewhere(name) {
                Some(owner) => peers.cached(now, &key, owner),
                None => table
                    .get(&key, now)
                    .map_or(peers::Where::Unknown, |e| peers::Where::At {
                        addr: e.addr(),
                        owner: None,
                    }),
            }
        };
        let mut cx = login::Ctx {
            now,
            config: &self.config,
            flock: &self.keys.flock,
            entropy: &mut self.entropy,
            stats: &mut self.stats,
            peers: &self.peers,
        };
        self.login.command(&mut cx, session, cmd, &lookup);
    }

    /// Next event for the gateway.
    pub fn poll_event(&mut self) -> Option<(SessionId, Event)> {
        self.login.poll_event()
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.checks.next_timeout(),
            self.next_sweep,
            self.login.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Retransmits checks and log-in requests, ends checks whose window closed and sessions
    /// that gave up, sweeps expired registrations.
    pub fn handle_timeout(&mut self, now: Time) {
        self.started.get_or_insert(now);
        let (login, mut cx) = self.login_parts(now);
        login.handle_timeout(&mut cx);
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
        if self.next_sweep.is_some_and(|t| now >= t) {
            // One part per step: the whole table every `sweep_interval`, never all at once.
            if self.config.policy.audit {
                let mut gone = Vec::new();
                self.stats.swept += self.table.sweep_step_with(now, |e| {
                    gone.push(PolicyEvent::Expired {
                        key: e.key,
                        fingerprint_prefix: e.fp,
                        addr: e.addr(),
                    })
                }) as u64;
                gone.into_iter().for_each(|e| self.push_policy(e));
            } else {
                self.stats.swept += self.table.sweep_step(now) as u64;
            }
            self.replays.sweep_step(now);
            self.relays.sweep(now);
            self.peers.sweep(now);
            self.next_sweep = Some(now + self.sweep_step_interval());
        }
    }

    fn sweep_step_interval(&self) -> core::time::Duration {
        (self.config.sweep_interval / table::PARTS as u32).max(core::time::Duration::from_millis(1))
    }

    /// The live registration of `name`, if any.
    pub fn lookup(&self, now: Time, name: &Name) -> Option<Registration> {
        let key = name.hash().table_key();
        let e = self.table.get(&key, now)?;
        Some(Registration {
            addr: e.addr(),
            fingerprint_prefix: e.fp,
            expires: e.expires,
            moving_to: self.checks.get(&key).map(|p| p.new_addr),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Registrations held (dead ones not yet swept included) and checks running.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.table.len(), self.checks.len())
    }

    /// REGISTERs remembered by the replay guard (dead ones not yet swept included).
    pub fn replay_records(&self) -> usize {
        self.replays.len()
    }

    /// Sizes of the log-in tables.
    pub fn login_occupancy(&self) -> LoginOccupancy {
        self.login.occupancy()
    }

    /// Admissions waiting for a verdict, and verdicts cached.
    pub fn admission_occupancy(&self) -> (usize, usize) {
        self.admissions.len()
    }

    /// Bytes held by the registration table.
    pub fn table_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }
}

/// Unix seconds `d` after `now`, rounded down (so a lifetime is never exceeded).
fn secs_after(now: Time, d: core::time::Duration) -> u32 {
    (now + d).as_secs().min(u32::MAX as u64) as u32
}

/// Which core of a server's `cores` a shard runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreSlot {
    pub index: usize,
    pub cores: usize,
}

impl CoreSlot {
    /// The core owning `hash` when it is not this one.
    pub fn other_owner(&self, hash: &NameHash) -> Option<usize> {
        let owner = hash.core_index(self.cores);
        (owner != self.index).then_some(owner)
    }
}

/// The hash of `name` when this core (or a one-core server: `None`) owns it, else the owning
/// core.
fn claim(core: Option<CoreSlot>, name: &Name) -> Result<NameHash, usize> {
    let hash = name.hash();
    match core.and_then(|c| c.other_owner(&hash)) {
        Some(other) => Err(other),
        None => Ok(hash),
    }
}

/// What [`Server::handle_on`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer is the first `n` bytes of `reply`.
    Reply(usize),
    /// Taken or dropped; nothing to send now.
    Done,
    /// Core `n` owns the name: hand the datagram there; nothing changed here.
    OtherCore(usize),
}

/// The core that owns a datagram: the owner of its name for flock requests and check answers,
/// `None` for anything else (stateless or dropped, any core will do).
pub fn owner_core(datagram: &[u8], cores: usize) -> Option<usize> {
    if cores <= 1 || !stun::looks_like_stun(datagram) {
        return None;
    }
    let msg = Message::parse(datagram).ok()?;
    msg::request_name(&msg).map(|n| n.hash().core_index(cores))
}
