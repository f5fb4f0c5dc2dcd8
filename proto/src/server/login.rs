//! Browser log-in sessions of one shard, sans-IO: the gateway's [`Command`]s in, [`Event`]s out,
//! and the PERSONAS / CONNECT / SIGNAL exchange with the appliance in between (docs/PROTOCOL.md
//! §4.5–§4.7, codec in `login_wire::login`).
//!
//! A session has at most one request to its appliance outstanding (a PERSONAS chunk, the CONNECT,
//! or the current outbound SIGNAL: stop-and-wait), sent again with RTO doubling until answered or
//! until `give_up_after`. Answers are found by transaction id, the appliance's SIGNALs by session
//! nonce. Timers are a min-heap with lazy deletion, as in `checks`.

use super::peers::{Located, Origin, Peers, Where};
use super::persona_cache::PersonaCache;
use super::{ServerConfig, Stats};
use crate::entropy::Entropy;
use crate::login::{Candidate, Command, Event, Failure, Personas, SessionId, SessionNonce};
use crate::name::{Name, TableKey};
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::wire::login::{
    self as login_wire, code, Ack, Outbound, PersonasChunk, PersonasRefused, SdpAssembly, Signal,
    SignalBody,
};
use crate::wire::method;
use core::time::Duration;
use hashbrown::HashMap;
use ring::signature::Ed25519KeyPair;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the log-in side borrows from its shard for one call.
pub(crate) struct Ctx<'a> {
    pub now: Time,
    pub config: &'a ServerConfig,
    pub flock: &'a Ed25519KeyPair,
    pub entropy: &'a mut dyn Entropy,
    pub stats: &'a mut Stats,
    pub peers: &'a Peers,
}

/// Where the appliance of a name is: our own table, the LOOKUP cache, or ask its owner.
pub(crate) type Lookup<'a> = &'a dyn Fn(&Name) -> Where;

/// Sizes of the log-in tables of a shard (all bounded by `max_sessions` or the cache bound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginOccupancy {
    pub sessions: usize,
    /// Requests awaiting an answer (one at most per session).
    pub outstanding: usize,
    /// Session nonces known (one at most per session).
    pub nonces: usize,
    /// Timer heap items, stale ones included.
    pub timers: usize,
    pub events: usize,
    /// Finished sessions remembered to re-acknowledge a late retransmission.
    pub finished: usize,
    pub cached_lists: usize,
    pub cache_bytes: usize,
}

const NEVER: Time = Time(u64::MAX);

/// Request bytes, wiped when dropped: a CONNECT carries a credential.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Wiped {
    /// These bytes wrapped in a RELAY for the owner (the original is wiped).
    fn relayed(mut self, peers: &Peers) -> Vec<u8> {
        peers
            .wrap(&self.0)
            .unwrap_or_else(|| std::mem::take(&mut self.0))
    }
}

fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    // Keeps the stores from being optimized away as dead.
    std::hint::black_box(bytes);
}

/// The request a session waits on.
struct Request {
    txid: TransactionId,
    bytes: Wiped,
    next_send: Time,
    rto: Duration,
    give_up: Time,
    /// Transmissions so far.
    sends: u32,
}

/// Persona list being fetched.
#[derive(Default)]
struct Fetch {
    /// Checksum of the cached list, sent as `known`.
    known: Option<[u8; 32]>,
    /// Set by the first answer that carries data.
    started: bool,
    checksum: [u8; 32],
    total: u32,
    buf: Vec<u8>,
}

/// The two signalling streams of an accepted session.
struct Signalling {
    // Appliance → flock.
    next_in: u32,
    offer: SdpAssembly,
    /// `Offer` was emitted.
    offer_done: bool,
    /// Candidates that came before the offer was complete.
    held_in: Vec<Candidate>,
    candidates_in: usize,
    end_in: bool,
    /// Until the offer is complete, silence past this fails the session.
    quiet_until: Time,
    // Flock → appliance.
    /// Items to send; the front one is in flight, piece `piece` of it.
    queue: VecDeque<Outbound>,
    piece: usize,
    next_out: u32,
    answered: bool,
    /// Candidates (and end-of-candidates) the browser sent before its answer.
    held_out: Vec<Outbound>,
    candidates_out: usize,
    end_out: bool,
    end_out_acked: bool,
}

impl Signalling {
    fn new(quiet_until: Time) -> Signalling {
        Signalling {
            next_in: 0,
            offer: SdpAssembly::default(),
            offer_done: false,
            held_in: Vec::new(),
            candidates_in: 0,
            end_in: false,
            quiet_until,
            queue: VecDeque::new(),
            piece: 0,
            next_out: 0,
            answered: false,
            held_out: Vec::new(),
            candidates_out: 0,
            end_out: false,
            end_out_acked: false,
        }
    }

    fn done(&self) -> bool {
        self.offer_done && self.end_in && self.end_out_acked
    }
}

enum Phase {
    /// The name is owned by another server: waiting for its LOOKUP answer.
    Locating,
    Personas(Fetch),
    /// Personas delivered, or credentials rejected: waiting for `Login`.
    Ready,
    Connecting,
    Connected(Box<Signalling>),
}

struct Session {
    name: Name,
    key: TableKey,
    /// The appliance: requests go there, and only answers from there count.
    addr: SocketAddr,
    /// The server owning the name, when it is not us (its LOOKUP found `addr`).
    owner: Option<usize>,
    /// Requests go wrapped in RELAY through `owner`: the appliance did not answer us directly.
    relayed: bool,
    expires: Time,
    /// Time of this session's live heap item; `NEVER` when none is live.
    timer: Time,
    /// In `outgoing`: its request goes out at the next `poll_transmit`.
    queued: bool,
    request: Option<Request>,
    phase: Phase,
    attempts: u8,
    nonce: Option<SessionNonce>,
}

impl Session {
    /// The appliance left the first PERSONAS unanswered `relay_after` times, and the name is
    /// owned elsewhere: its NAT may drop what it never sent to, so try through the owner.
    fn relay_due(&self, cx: &Ctx<'_>) -> bool {
        let first = matches!(&self.phase, Phase::Personas(f) if !f.started);
        let sends = self.request.as_ref().map_or(0, |r| r.sends);
        first && self.owner.is_some() && !self.relayed && sends > cx.peers.config.relay_after
    }

    /// Relays every request of this session from now on, the outstanding one first.
    fn relay_from_now(&mut self, cx: &mut Ctx<'_>) {
        self.relayed = true;
        cx.stats.relay_fallbacks += 1;
        let Some(r) = &mut self.request else { return };
        if let Some(b) = cx.peers.wrap(&r.bytes.0) {
            r.bytes = Wiped(b);
        }
        let rto = cx.config.rto_initial.max(Duration::from_millis(1));
        r.next_send = (cx.now + rto).min(r.give_up);
        r.rto = (rto * 2).min(cx.config.rto_max.max(rto));
    }

    fn next_event(&self) -> Time {
        let mut t = self.expires;
        if let Some(r) = &self.request {
            t = t.min(r.next_send); // never past `give_up`
        }
        if let Phase::Connected(c) = &self.phase {
            if !c.offer_done {
                t = t.min(c.quiet_until);
            }
        }
        t
    }
}

/// What a step did to a session.
enum Step {
    Keep,
    Done,
    Fail(Failure),
}

/// A session that ended with `Done`: its appliance may still retransmit its last SIGNAL (our
/// ack was lost), and that retransmission is acknowledged again rather than left to time out.
struct Finished {
    addr: SocketAddr,
    owner: Option<usize>,
    next_in: u32,
    until: Time,
}

pub(crate) struct Login {
    sessions: HashMap<SessionId, Session>,
    /// Recently finished sessions by nonce, oldest first in `finished_order`; bounded by
    /// `max_sessions`, each kept `give_up_after` (the appliance's retransmissions stop by then).
    finished: HashMap<SessionNonce, Finished>,
    finished_order: VecDeque<SessionNonce>,
    by_txid: HashMap<TransactionId, SessionId>,
    by_nonce: HashMap<SessionNonce, SessionId>,
    timers: BinaryHeap<Reverse<(Time, SessionId)>>,
    outgoing: VecDeque<SessionId>,
    events: VecDeque<(SessionId, Event)>,
    cache: PersonaCache,
}

impl Login {
    pub(crate) fn new(config: &ServerConfig) -> Login {
        Login {
            sessions: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            by_txid: HashMap::new(),
            by_nonce: HashMap::new(),
            timers: BinaryHeap::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            cache: PersonaCache::new(config.login.persona_cache_bytes),
        }
    }

    pub(crate) fn occupancy(&self) -> LoginOccupancy {
        LoginOccupancy {
            sessions: self.sessions.len(),
            outstanding: self.by_txid.len(),
            nonces: self.by_nonce.len(),
            timers: self.timers.len(),
            events: self.events.len(),
            finished: self.finished.len(),
            cached_lists: self.cache.len(),
            cache_bytes: self.cache.bytes(),
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<(SessionId, Event)> {
        self.events.pop_front()
    }

    pub(crate) fn command(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        cmd: Command,
        lookup: Lookup<'_>,
    ) {
        let cmd = match cmd {
            Command::Open { name } => return self.open(cx, id, name, lookup),
            other => other,
        };
        let Some(mut s) = self.sessions.remove(&id) else {
            // Ended already (its last event is out) or never opened: nothing more to say.
            cx.stats.login_commands_ignored += 1;
            return;
        };
        let step = match cmd {
            Command::Open { .. } => Step::Fail(Failure::Malformed), // handled above
            Command::Close => {
                cx.stats.sessions_closed += 1;
                self.forget(id, &s);
                return;
            }
            Command::Login {
                persona,
                credential,
            } => {
                let mut credential = credential.into_bytes();
                let step = self.connect(cx, id, &mut s, &persona, &credential, lookup);
                wipe(&mut credential);
                step
            }
            Command::Answer { sdp } => self.outbound(cx, id, &mut s, Outbound::Sdp(sdp)),
            Command::Candidate(c) => self.outbound(cx, id, &mut s, Outbound::Candidate(c)),
            Command::EndOfCandidates => self.outbound(cx, id, &mut s, Outbound::EndOfCandidates),
        };
        self.settle(cx, id, s, step);
    }

    fn open(&mut self, cx: &mut Ctx<'_>, id: SessionId, name: Name, lookup: Lookup<'_>) {
        if let Some(s) = self.sessions.remove(&id) {
            return self.settle(cx, id, s, Step::Fail(Failure::Malformed));
        }
        let key = name.hash().table_key();
        let refused = match lookup(&name) {
            Where::Unknown => Err(Failure::UnknownAppliance),
            _ if self.sessions.len() >= cx.config.login.max_sessions => Err(Failure::Busy),
            found => Ok(found),
        };
        let found = match refused {
            Ok(found) => found,
            Err(f) => {
                cx.stats.sessions_failed += 1;
                self.events.push_back((id, Event::Failed(f)));
                return;
            }
        };
        cx.stats.sessions_opened += 1;
        let known = self.cache.checksum(&key);
        let (addr, owner) = match found {
            Where::At { addr, owner } => (addr, owner),
            Where::Ask { owner } => (cx.peers.servers[owner], Some(owner)),
            Where::Unknown => unreachable!("refused above"),
        };
        let mut s = Session {
            name,
            key,
            addr,
            owner,
            relayed: false,
            expires: cx.now + cx.config.login.session_lifetime,
            timer: NEVER,
            queued: false,
            request: None,
            phase: Phase::Personas(Fetch {
                known,
                ..Fetch::default()
            }),
            attempts: 0,
            nonce: None,
        };
        let step = match found {
            Where::Ask { .. } => self.locate(cx, id, &mut s),
            _ => self.ask_personas(cx, id, &mut s, 0, known),
        };
        self.settle(cx, id, s, step);
    }

    /// Asks the owner of the session's name where its appliance is (`located` takes the answer).
    fn locate(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
        let txid = Self::txid(cx, &s.name);
        let rto = cx.config.rto_initial.max(Duration::from_millis(1));
        let Some((bytes, give_up)) =
            cx.peers
                .lookup_request(&txid, &s.name, cx.now, rto, cx.config.rto_max)
        else {
            return Step::Fail(Failure::Malformed);
        };
        s.phase = Phase::Locating;
        cx.stats.lookups_sent += 1;
        self.send_until(cx, id, s, txid, bytes, give_up);
        Step::Keep
    }

    /// The owner's LOOKUP answer for the session waiting on `txid`.
    pub(crate) fn located(
        &mut self,
        cx: &mut Ctx<'_>,
        txid: &TransactionId,
        from: usize,
        located: Located,
    ) {
        let found = self.by_txid.get(txid).copied();
        let Some((id, mut s)) = found.and_then(|id| Some((id, self.sessions.remove(&id)?))) else {
            cx.stats.ignored += 1;
            return;
        };
        let step = if !matches!(s.phase, Phase::Locating) || s.owner != Some(from) {
            cx.stats.ignored += 1;
            Step::Keep
        } else {
            self.clear_request(&mut s);
            match located {
                Located::At(addr) => {
                    s.addr = addr;
                    let known = self.cache.checksum(&s.key);
                    s.phase = Phase::Personas(Fetch {
                        known,
                        ..Fetch::default()
                    });
                    self.ask_personas(cx, id, &mut s, 0, known)
                }
                Located::Unknown => Step::Fail(Failure::UnknownAppliance),
                Located::Refused => Step::Fail(Failure::OwnerDown),
            }
        };
        self.settle(cx, id, s, step);
    }

    /// Ends the session for `step`, or puts it back with its timer and sends due.
    fn settle(&mut self, cx: &mut Ctx<'_>, id: SessionId, mut s: Session, step: Step) {
        match step {
            Step::Keep => {
                let t = s.next_event();
                if t != s.timer {
                    s.timer = t;
                    self.timers.push(Reverse((t, id)));
                }
                self.sessions.insert(id, s);
                // Every state change may leave a stale heap item: rebuild before they pile up.
                if self.timers.len() > 2 * self.sessions.len() + 64 {
                    self.timers = self
                        .sessions
                        .iter()
                        .filter(|(_, s)| s.timer != NEVER)
                        .map(|(id, s)| Reverse((s.timer, *id)))
                        .collect();
                }
            }
            Step::Done => {
                cx.stats.sessions_done += 1;
                self.forget(id, &s);
                if let (Some(nonce), Phase::Connected(c)) = (s.nonce, &s.phase) {
                    self.remember_finished(
                        cx,
                        nonce,
                        Finished {
                            addr: s.addr,
                            owner: s.owner,
                            next_in: c.next_in,
                            until: cx.now + cx.config.login.give_up_after,
                        },
                    );
                }
                self.events.push_back((id, Event::Done));
            }
            Step::Fail(f) => {
                cx.stats.sessions_failed += 1;
                self.forget(id, &s);
                self.events.push_back((id, Event::Failed(f)));
            }
        }
    }

    fn remember_finished(&mut self, cx: &Ctx<'_>, nonce: SessionNonce, f: Finished) {
        while let Some(old) = self.finished_order.front() {
            let expired = self.finished.get(old).is_none_or(|o| o.until <= cx.now);
            if !expired && self.finished.len() < cx.config.login.max_sessions.max(1) {
                break;
            }
            let old = self.finished_order.pop_front().expect("front exists");
            self.finished.remove(&old);
        }
        if self.finished.insert(nonce, f).is_none() {
            self.finished_order.push_back(nonce);
        }
    }

    /// True when `sig` repeats a SIGNAL of a session that finished lately, from its appliance.
    fn finished_duplicate(&self, now: Time, sig: &Signal<'_>, src: Origin) -> bool {
        self.finished
            .get(&sig.session)
            .is_some_and(|f| f.until > now && sig.seq < f.next_in && src.is(f.addr, f.owner))
    }

    /// Drops the lookups that lead to a session that is (being) removed.
    fn forget(&mut self, id: SessionId, s: &Session) {
        if let Some(r) = &s.request {
            self.by_txid.remove(&r.txid);
        }
        if let Some(n) = &s.nonce {
            if self.by_nonce.get(n) == Some(&id) {
                self.by_nonce.remove(n);
            }
        }
    }

    /// Makes `bytes` the session's outstanding request and queues it for sending.
    fn send(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        txid: TransactionId,
        bytes: Vec<u8>,
    ) {
        let give_up = cx.now + cx.config.login.give_up_after;
        let bytes = match s.relayed {
            true => Wiped(bytes).relayed(cx.peers),
            false => bytes,
        };
        self.send_until(cx, id, s, txid, bytes, give_up);
    }

    fn send_until(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        txid: TransactionId,
        bytes: Vec<u8>,
        give_up: Time,
    ) {
        self.clear_request(s);
        let rto = cx.config.rto_initial.max(Duration::from_millis(1));
        s.request = Some(Request {
            txid,
            bytes: Wiped(bytes),
            next_send: (cx.now + rto).min(give_up),
            rto: (rto * 2).min(cx.config.rto_max.max(rto)),
            give_up,
            sends: 1,
        });
        self.by_txid.insert(txid, id);
        self.transmit_soon(id, s);
    }

    fn clear_request(&mut self, s: &mut Session) {
        if let Some(r) = s.request.take() {
            self.by_txid.remove(&r.txid);
        }
    }

    fn transmit_soon(&mut self, id: SessionId, s: &mut Session) {
        if !s.queued {
            s.queued = true;
            self.outgoing.push_back(id);
        }
    }

    /// A fresh transaction id for a message about `name`, steered to its core.
    fn txid(cx: &mut Ctx<'_>, name: &Name) -> TransactionId {
        let mut t = [0; 12];
        cx.entropy.fill(&mut t);
        name.hash().steer(&mut t);
        t
    }

    fn ask_personas(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        offset: u32,
        known: Option<[u8; 32]>,
    ) -> Step {
        let txid = Self::txid(cx, &s.name);
        let until = (cx.now + cx.config.login.request_validity).0;
        let mut buf = vec![0; login_wire::MAX_DATAGRAM];
        let Ok(n) = login_wire::encode_personas_request(
            &mut buf,
            &txid,
            &s.name,
            offset,
            known.as_ref(),
            until,
            cx.flock,
        ) else {
            return Step::Fail(Failure::Malformed);
        };
        buf.truncate(n);
        self.send(cx, id, s, txid, buf);
        Step::Keep
    }

    fn connect(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        persona: &str,
        credential: &[u8],
        lookup: Lookup<'_>,
    ) -> Step {
        if !matches!(s.phase, Phase::Ready) {
            return Step::Fail(Failure::Malformed);
        }
        // Follow an appliance that moved since the personas were fetched.
        if let Where::At { addr, .. } = lookup(&s.name) {
            s.addr = addr;
        }
        let txid = Self::txid(cx, &s.name);
        let mut nonce = [0; 16];
        cx.entropy.fill(&mut nonce);
        let until = (cx.now + cx.config.login.request_validity).0;
        let mut buf = vec![0; login_wire::MAX_DATAGRAM];
        let Ok(n) = login_wire::encode_connect(
            &mut buf, &txid, &s.name, &nonce, persona, credential, until, cx.flock,
        ) else {
            wipe(&mut buf);
            return Step::Fail(Failure::Malformed);
        };
        buf.truncate(n);
        s.nonce = Some(nonce);
        self.by_nonce.insert(nonce, id);
        s.phase = Phase::Connecting;
        cx.stats.connects_sent += 1;
        self.send(cx, id, s, txid, buf);
        Step::Keep
    }

    /// A browser item for the appliance: queued in order, held until the answer is queued.
    fn outbound(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        item: Outbound,
    ) -> Step {
        let limits = &cx.config.login;
        let Phase::Connected(c) = &mut s.phase else {
            return Step::Fail(Failure::Malformed);
        };
        // After end-of-candidates only a (held-back) answer may still come.
        if c.end_out && !matches!(item, Outbound::Sdp(_)) {
            return Step::Fail(Failure::Malformed);
        }
        match &item {
            Outbound::Sdp(sdp) => {
                if !c.offer_done || c.answered || sdp.len() > limits.max_sdp_bytes {
                    return Step::Fail(Failure::Malformed);
                }
                c.answered = true;
                c.queue.push_back(item);
                c.queue.extend(c.held_out.drain(..));
            }
            other => {
                if let Outbound::Candidate(cand) = other {
                    c.candidates_out += 1;
                    let too_long = cand.candidate.len() > login_wire::MAX_CANDIDATE_LEN
                        || cand
                            .mid
                            .as_ref()
                            .is_some_and(|m| m.len() > login_wire::MAX_MID_LEN);
                    if c.candidates_out > limits.max_candidates || too_long {
                        return Step::Fail(Failure::Malformed);
                    }
                } else {
                    c.end_out = true;
                }
                if c.answered {
                    c.queue.push_back(item);
                } else {
                    c.held_out.push(item);
                }
            }
        }
        self.send_next(cx, id, s)
    }

    /// Sends the next piece of the outbound stream if nothing is in flight.
    fn send_next(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
        if s.request.is_some() {
            return Step::Keep;
        }
        let (Phase::Connected(c), Some(nonce)) = (&s.phase, s.nonce) else {
            return Step::Keep;
        };
        let Some(item) = c.queue.front() else {
            return Step::Keep;
        };
        let Some(body) = login_wire::piece(item, c.piece) else {
            return Step::Fail(Failure::Malformed);
        };
        let txid = Self::txid(cx, &s.name);
        let mut buf = vec![0; login_wire::MAX_DATAGRAM];
        let signal = Signal {
            name: s.name,
            session: nonce,
            seq: c.next_out,
            body,
        };
        let Ok(n) = signal.encode(&mut buf, &txid) else {
            return Step::Fail(Failure::Malformed);
        };
        buf.truncate(n);
        self.send(cx, id, s, txid, buf);
        Step::Keep
    }

    /// A log-in datagram for this shard; an answer for `src` goes to `reply`.
    pub(crate) fn datagram(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message<'_>,
        src: Origin,
        reply: &mut [u8],
    ) -> Option<usize> {
        match msg.class() {
            Class::Request if msg.method() == method::SIGNAL => self.signal_in(cx, msg, src, reply),
            Class::Success | Class::Error => {
                self.answer(cx, msg, src);
                None
            }
            _ => {
                cx.stats.ignored += 1;
                None
            }
        }
    }

    /// An answer to one of our requests (PERSONAS chunk, CONNECT or SIGNAL ack).
    fn answer(&mut self, cx: &mut Ctx<'_>, msg: &Message<'_>, src: Origin) {
        let found = self.by_txid.get(msg.transaction_id()).copied();
        let Some((id, mut s)) = found.and_then(|id| Some((id, self.sessions.remove(&id)?))) else {
            cx.stats.ignored += 1;
            return;
        };
        let step = if !src.is(s.addr, s.owner) || matches!(s.phase, Phase::Locating) {
            cx.stats.ignored += 1;
            Step::Keep
        } else if msg.method() == method::PERSONAS && msg.class() == Class::Error {
            self.personas_refused(cx, &mut s, msg)
        } else if msg.method() == method::PERSONAS {
            self.personas_answer(cx, id, &mut s, msg)
        } else {
            self.ack(cx, id, &mut s, msg)
        };
        self.settle(cx, id, s, step);
    }

    /// A PERSONAS error: 508 is the appliance saying it is busy (the log-in fails at once);
    /// anything else is a refusal.
    fn personas_refused(&mut self, cx: &mut Ctx<'_>, s: &mut Session, msg: &Message<'_>) -> Step {
        let Ok(r) = PersonasRefused::parse(msg) else {
            cx.stats.malformed += 1;
            return Step::Keep;
        };
        if r.name != s.name || !matches!(s.phase, Phase::Personas(_)) {
            cx.stats.ignored += 1;
            return Step::Keep;
        }
        self.clear_request(s);
        Step::Fail(if r.code == code::BUSY {
            Failure::ApplianceBusy
        } else {
            Failure::Denied
        })
    }

    fn personas_answer(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        msg: &Message<'_>,
    ) -> Step {
        let Ok(chunk) = PersonasChunk::parse(msg) else {
            cx.stats.malformed += 1;
            return Step::Keep;
        };
        let key = s.key;
        let Phase::Personas(f) = &mut s.phase else {
            return Step::Keep;
        };
        if chunk.name != s.name {
            cx.stats.ignored += 1;
            return Step::Keep;
        }
        let next = fetch_step(
            f,
            &chunk,
            &mut self.cache,
            &key,
            cx.config.login.max_personas_bytes,
            cx.stats,
        );
        self.clear_request(s);
        match next {
            Err(f) => Step::Fail(f),
            Ok(FetchNext::Deliver(p)) => {
                s.phase = Phase::Ready;
                self.events.push_back((id, Event::Personas(p)));
                Step::Keep
            }
            Ok(FetchNext::Ask { offset, known }) => self.ask_personas(cx, id, s, offset, known),
        }
    }

    /// A CONNECT or SIGNAL acknowledgement.
    fn ack(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session, msg: &Message<'_>) -> Step {
        let Ok(ack) = Ack::parse(msg) else {
            cx.stats.malformed += 1;
            return Step::Keep;
        };
        if ack.name != s.name || Some(ack.session) != s.nonce {
            cx.stats.ignored += 1;
            return Step::Keep;
        }
        match &mut s.phase {
            Phase::Connecting if ack.method == method::CONNECT => {
                self.clear_request(s);
                match ack.error {
                    None => self.accepted(cx, id, s),
                    Some(code::BAD_CREDENTIALS) => {
                        cx.stats.logins_rejected += 1;
                        if let Some(n) = s.nonce.take() {
                            self.by_nonce.remove(&n);
                        }
                        s.attempts = s.attempts.saturating_add(1);
                        let max = cx.config.login.max_attempts;
                        if s.attempts >= max {
                            return Step::Fail(Failure::BadCredentials);
                        }
                        s.phase = Phase::Ready;
                        self.events.push_back((
                            id,
                            Event::Rejected {
                                attempts_left: max - s.attempts,
                            },
                        ));
                        Step::Keep
                    }
                    Some(code::BUSY) => Step::Fail(Failure::ApplianceBusy),
                    // DENIED, or a refusal we have no better word for.
                    Some(_) => Step::Fail(Failure::Denied),
                }
            }
            Phase::Connected(c) if ack.method == method::SIGNAL && ack.seq == Some(c.next_out) => {
                if ack.error.is_some() {
                    // The appliance no longer knows the session.
                    return Step::Fail(Failure::Timeout);
                }
                cx.stats.signals_out += 1;
                c.next_out = c.next_out.wrapping_add(1);
                c.piece += 1;
                if c.queue
                    .front()
                    .is_some_and(|item| c.piece >= login_wire::pieces(item))
                {
                    c.piece = 0;
                    if let Some(Outbound::EndOfCandidates) = c.queue.pop_front() {
                        c.end_out_acked = true;
                    }
                }
                let done = c.done();
                self.clear_request(s);
                if done {
                    return Step::Done;
                }
                self.send_next(cx, id, s)
            }
            _ => {
                cx.stats.ignored += 1;
                Step::Keep
            }
        }
    }

    fn accepted(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
        cx.stats.logins_accepted += 1;
        s.phase = Phase::Connected(Box::new(Signalling::new(
            cx.now + cx.config.login.give_up_after,
        )));
        self.events.push_back((id, Event::Accepted));
        Step::Keep
    }

    /// A SIGNAL from an appliance: taken in order, acknowledged in `reply`.
    fn signal_in(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message<'_>,
        src: Origin,
        reply: &mut [u8],
    ) -> Option<usize> {
        let Ok(sig) = Signal::parse(msg) else {
            cx.stats.malformed += 1;
            return None;
        };
        let ack = |error| Ack {
            method: method::SIGNAL,
            name: sig.name,
            session: sig.session,
            seq: Some(sig.seq),
            error,
        };
        let found = self.by_nonce.get(&sig.session).copied();
        let Some((id, mut s)) = found.and_then(|id| Some((id, self.sessions.remove(&id)?))) else {
            if self.finished_duplicate(cx.now, &sig, src) {
                cx.stats.signals_duplicate += 1;
                return ack(None).encode(reply, msg.transaction_id()).ok();
            }
            // The caller drops the answer if it would be larger than the request.
            cx.stats.signals_unknown_session += 1;
            return ack(Some(code::UNKNOWN_SESSION))
                .encode(reply, msg.transaction_id())
                .ok();
        };
        let (step, acked) = if !src.is(s.addr, s.owner) || sig.name != s.name {
            // Only the session's appliance may speak for it; stay silent to anyone else.
            cx.stats.ignored += 1;
            (Step::Keep, false)
        } else {
            self.take_signal(cx, id, &mut s, &sig)
        };
        self.settle(cx, id, s, step);
        if acked {
            ack(None).encode(reply, msg.transaction_id()).ok()
        } else {
            None
        }
    }

    /// Returns what happened and whether to acknowledge.
    fn take_signal(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        sig: &Signal<'_>,
    ) -> (Step, bool) {
        if matches!(s.phase, Phase::Connecting) {
            // The CONNECT's success was lost or is late: a SIGNAL under its nonce means accepted.
            self.clear_request(s);
            self.accepted(cx, id, s);
        }
        let limits = &cx.config.login;
        let Phase::Connected(c) = &mut s.phase else {
            return (Step::Keep, false);
        };
        if sig.seq < c.next_in {
            // Its ack was lost: acknowledge again, deliver nothing twice.
            cx.stats.signals_duplicate += 1;
            return (Step::Keep, true);
        }
        if sig.seq > c.next_in {
            cx.stats.ignored += 1;
            return (Step::Keep, false);
        }
        c.next_in += 1;
        c.quiet_until = cx.now + limits.give_up_after;
        cx.stats.signals_in += 1;
        let ev = &mut self.events;
        match sig.body {
            SignalBody::Sdp {
                offset,
                total,
                data,
            } => {
                if c.offer_done {
                    return (Step::Fail(Failure::Malformed), false);
                }
                match c.offer.add(offset, total, data, limits.max_sdp_bytes) {
                    Err(_) => return (Step::Fail(Failure::Malformed), false),
                    Ok(None) => {}
                    Ok(Some(sdp)) => {
                        c.offer_done = true;
                        ev.push_back((id, Event::Offer { sdp }));
                        ev.extend(c.held_in.drain(..).map(|cand| (id, Event::Candidate(cand))));
                        if c.end_in {
                            ev.push_back((id, Event::EndOfCandidates));
                        }
                    }
                }
            }
            SignalBody::Candidate { candidate, mid } => {
                c.candidates_in += 1;
                if c.end_in || c.candidates_in > limits.max_candidates {
                    return (Step::Fail(Failure::Malformed), false);
                }
                let cand = Candidate {
                    candidate: candidate.to_owned(),
                    mid: mid.map(str::to_owned),
                };
                if c.offer_done {
                    ev.push_back((id, Event::Candidate(cand)));
                } else {
                    c.held_in.push(cand);
                }
            }
            SignalBody::EndOfCandidates => {
                c.end_in = true;
                if c.offer_done {
                    ev.push_back((id, Event::EndOfCandidates));
                }
            }
        }
        (if c.done() { Step::Done } else { Step::Keep }, true)
    }

    /// Next log-in request to send: `(destination, length)` written to `buf`.
    pub(crate) fn poll_transmit(
        &mut self,
        buf: &mut [u8],
        peers: &Peers,
    ) -> Option<(SocketAddr, usize)> {
        while let Some(id) = self.outgoing.pop_front() {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !s.queued {
                continue; // a stale entry for a reused id
            }
            s.queued = false;
            let Some(r) = &s.request else { continue };
            let bytes = &r.bytes.0;
            if let Some(dst) = buf.get_mut(..bytes.len()) {
                dst.copy_from_slice(bytes);
                // LOOKUPs and relayed requests go to the owner.
                let to = match (&s.phase, s.owner) {
                    (Phase::Locating, Some(o)) => o,
                    (_, Some(o)) if s.relayed => o,
                    _ => return Some((s.addr, bytes.len())),
                };
                return Some((*peers.servers.get(to)?, bytes.len()));
            }
        }
        None
    }

    /// Earliest time a session needs attention (possibly a stale item: harmless).
    pub(crate) fn next_timeout(&self) -> Option<Time> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        while let Some(id) = self.pop_due(cx.now) {
            let Some(mut s) = self.sessions.remove(&id) else {
                continue;
            };
            s.timer = NEVER;
            let step = self.tick(cx, id, &mut s);
            self.settle(cx, id, s, step);
        }
    }

    fn pop_due(&mut self, now: Time) -> Option<SessionId> {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                return None;
            }
            self.timers.pop();
            if self.sessions.get(&id).is_some_and(|s| s.timer == t) {
                return Some(id);
            }
        }
        None
    }

    fn tick(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
        let now = cx.now;
        if now >= s.expires {
            return Step::Fail(Failure::Timeout);
        }
        let connected = matches!(s.phase, Phase::Connected(_));
        let locating = matches!(s.phase, Phase::Locating);
        let mut resend = false;
        if let Some(r) = &mut s.request {
            if now >= r.give_up {
                return Step::Fail(match () {
                    _ if locating => Failure::OwnerDown,
                    _ if connected => Failure::Timeout,
                    _ => Failure::Unreachable,
                });
            }
            if now >= r.next_send {
                r.next_send = (now + r.rto).min(r.give_up);
                r.rto = (r.rto * 2).min(cx.config.rto_max.max(r.rto));
                r.sends += 1;
                resend = true;
            }
        }
        if resend && s.relay_due(cx) {
            s.relay_from_now(cx);
        }
        if resend {
            cx.stats.retransmits += 1;
            self.transmit_soon(id, s);
        }
        if let Phase::Connected(c) = &s.phase {
            if !c.offer_done && now >= c.quiet_until {
                return Step::Fail(Failure::Timeout);
            }
        }
        Step::Keep
    }
}

enum FetchNext {
    Deliver(Personas),
    Ask {
        offset: u32,
        known: Option<[u8; 32]>,
    },
}

/// Takes one PERSONAS answer into `f`: deliver, ask for more, or fail.
fn fetch_step(
    f: &mut Fetch,
    chunk: &PersonasChunk<'_>,
    cache: &mut PersonaCache,
    key: &TableKey,
    max: usize,
    stats: &mut Stats,
) -> Result<FetchNext, Failure> {
    if chunk.credentials_required {
        cache.remove(key);
        return Ok(FetchNext::Deliver(Personas::CredentialsRequired));
    }
    if !f.started {
        if f.known == Some(chunk.checksum) {
            if let Some(list) = cache.get(key, &chunk.checksum) {
                stats.personas_cache_hits += 1;
                return Ok(FetchNext::Deliver(Personas::List(list)));
            }
            // Evicted (or replaced) while the request was out: fetch it whole.
            f.known = None;
            return Ok(FetchNext::Ask {
                offset: 0,
                known: None,
            });
        }
        stats.personas_cache_misses += 1;
        if f.known.is_some() {
            cache.remove(key); // the appliance changed its list
        }
        if chunk.total as usize > max {
            return Err(Failure::Malformed);
        }
        f.started = true;
        f.checksum = chunk.checksum;
        f.total = chunk.total;
    } else if chunk.checksum != f.checksum || chunk.total != f.total {
        return Err(Failure::Malformed); // the list changed under the fetch
    }
    let total = f.total as usize;
    let have = f.buf.len();
    let stuck = chunk.data.is_empty() && have < total;
    if chunk.offset as usize != have || have + chunk.data.len() > total || stuck {
        return Err(Failure::Malformed);
    }
    f.buf.extend_from_slice(chunk.data);
    if f.buf.len() < total {
        return Ok(FetchNext::Ask {
            offset: f.buf.len() as u32,
            known: None,
        });
    }
    if Sha256::digest(&f.buf)[..] != f.checksum[..] {
        return Err(Failure::Malformed);
    }
    let list: Arc<[u8]> = std::mem::take(&mut f.buf).into();
    cache.insert(*key, f.checksum, list.clone());
    Ok(FetchNext::Deliver(Personas::List(list)))
}
