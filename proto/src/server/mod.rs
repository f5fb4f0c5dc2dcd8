//! One shard (one core) of a flock server, sans-IO: the dispatcher.
//!
//! [`Server::handle`] parses a datagram once, hands another core's to that core
//! ([`Outcome::OtherCore`]), dispatches the rest by method to the state machines — registration
//! (`registration`), address-change checks (`checks`), admission (`admission`), log-in sessions
//! (`login`), peers (`peers`, `relay_table`) — and answers the sender at once when there is an
//! answer ([`Outcome::Reply`]). Whatever else happens, on a datagram, a gateway
//! [`Server::command`], a policy [`Server::admission`] or a timer ([`Server::handle_timeout`]),
//! comes out of [`Server::poll_output`], one [`Output`] at a time, until `Output::Timeout`.

mod admission;
mod checks;
mod config;
mod login;
mod output;
mod peers;
mod persona_cache;
mod ratelimit;
mod registration;
mod relay_table;
mod replay;
pub(crate) mod routing;
mod stats;
mod table;

pub use crate::entropy::Entropy;
pub use admission::PolicyEvent;
pub use config::{FlockConfig, LoginConfig, PolicyConfig, ServerConfig};
pub use login::LoginOccupancy;
pub use output::{Outcome, Output};
pub use peers::{PeerAlarm, PeerConfig};
pub use routing::CoreSlot;
pub use stats::Stats;
pub use table::Entry;

use crate::identity::{Fingerprint, FINGERPRINT_PREFIX_LEN};
use crate::login::{Command, SessionId};
use crate::name::{Name, TableKey};
use crate::stun::{Class, Encoder, Message, MessageType, Method, TransactionId};
use crate::time::Time;
use crate::token::{canonical, ProofKeys};
use crate::wire::method;
use crate::wire::registration::{self as registration_wire, Keepalive, Register};
use checks::Checks;
use ratelimit::RateTable;
use ring::signature::Ed25519KeyPair;
use routing::claim;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use table::Table;

/// Secrets a shard works with: MAC keys derived from the server secret and the flock's
/// signing key.
#[derive(Clone)]
pub struct Keys {
    pub proof: ProofKeys,
    pub flock: Arc<Ed25519KeyPair>,
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
        /// When it was decided (the token's lifetime counts from then).
        at: Time,
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

/// One shard of a flock server.
pub struct Server<E: Entropy> {
    config: ServerConfig,
    keys: Keys,
    entropy: E,
    /// This shard's core when the server runs on several (`None`: every name is ours).
    core: Option<CoreSlot>,
    table: Table,
    checks: Checks,
    replays: replay::Replays,
    rates: RateTable,
    outgoing: VecDeque<Outgoing>,
    admissions: admission::Admissions,
    policy_events: VecDeque<PolicyEvent>,
    next_sweep: Option<Time>,
    /// The first time the shard was given: its start, for token revival.
    started: Option<Time>,
    stats: Stats,
    login: login::Login,
    peers: peers::Peers,
    relays: relay_table::Relays,
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
            admissions: admission::Admissions::new(config.policy.max_admissions),
            policy_events: VecDeque::new(),
            next_sweep: None,
            started: None,
            stats: Stats::default(),
            login: login::Login::new(&config),
            peers: peers::Peers::new(&config.flock),
            relays: relay_table::Relays::default(),
            config,
            keys,
            entropy,
            core: None,
        }
    }

    /// The shard for core `slot.index` of a server of `slot.cores`: a datagram about a name
    /// another core owns comes out of [`Server::handle`] as [`Outcome::OtherCore`].
    pub fn on_core(mut self, slot: CoreSlot) -> Server<E> {
        self.core = Some(slot).filter(|c| c.cores > 1);
        self
    }

    /// Handles one datagram from `src`: an answer for `src` is written to `reply`
    /// ([`Outcome::Reply`]); a datagram about a name another core owns is left untouched for
    /// that core ([`Outcome::OtherCore`], see [`Server::on_core`]). The name is parsed and hashed
    /// once for both. Whatever else it causes comes out of [`Server::poll_output`].
    pub fn handle(
        &mut self,
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
                let hash = match claim(self.core, &req.name) {
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
                let hash = match claim(self.core, &req.name) {
                    Ok(hash) => hash,
                    Err(other) => return Outcome::OtherCore(other),
                };
                self.count_received(now);
                self.keepalive(now, &msg, &req, &hash, src, reply)
            }
            _ => {
                // Check answers, log-in and peer messages go to the core owning their name.
                if let Some(name) = self.core.and_then(|_| routing::request_name(&msg)) {
                    if let Err(other) = claim(self.core, &name) {
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
            _ if crate::wire::peer::is_peer(msg) => self.peer_message(now, msg, src, reply),
            // The owner relays an appliance's part of a log-in served by another server.
            _ if crate::wire::login::is_login(msg) && self.relay_from_appliance(now, msg, src) => {
                None
            }
            _ if crate::wire::login::is_login(msg) => {
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

    /// What the server wants done next: a datagram to send on its own initiative (written to
    /// `buf`), a log-in event for the gateway, a request or record for the policy, an alarm to
    /// log; once none is left, [`Output::Timeout`] says when [`Server::handle_timeout`] must
    /// run. Call after every input until it returns `Timeout`.
    pub fn poll_output(&mut self, buf: &mut [u8]) -> Output {
        if let Some((dst, len)) = self.next_transmit(buf) {
            return Output::Transmit { dst, len };
        }
        if let Some((session, event)) = self.login.poll_event() {
            return Output::Event { session, event };
        }
        if let Some(e) = self.policy_events.pop_front() {
            return Output::Policy(e);
        }
        if let Some(alarm) = self.peers.poll_alarm() {
            return Output::Alarm(alarm);
        }
        Output::Timeout(self.next_timeout())
    }

    /// Next datagram to send on the shard's own initiative.
    fn next_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        while let Some(out) = self.outgoing.pop_front() {
            match out {
                Outgoing::Check(key) => {
                    let Some(p) = self.checks.get(&key) else {
                        continue;
                    };
                    if let Ok(len) = registration_wire::encode_check(
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
                    at,
                    dst,
                    txid,
                    name,
                    fp,
                } => {
                    if let Some(len) = self.registered(at, &name, &fp, dst, &txid, buf) {
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

    /// A command from the websocket gateway for log-in `session`; its events and requests to
    /// the appliance come out of [`Server::poll_output`].
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

    /// When `handle_timeout` must next run.
    fn next_timeout(&self) -> Option<Time> {
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
        self.check_timeouts(now);
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
