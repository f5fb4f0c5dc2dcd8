//! Browser log-in sessions of one shard, sans-IO: the gateway's [`Command`]s in, [`Event`]s out,
//! and the PERSONAS / CONNECT / SIGNAL exchange with the appliance in between (docs/PROTOCOL.md
//! §4.5–§4.7, codec in `login_wire::login`).
//!
//! A session has at most one request to its appliance outstanding (a PERSONAS chunk, the CONNECT,
//! or the current outbound SIGNAL: stop-and-wait), sent again with RTO doubling until answered or
//! until `give_up_after`. Answers are found by transaction id, the appliance's SIGNALs by session
//! nonce. Timers are a min-heap with lazy deletion, as in `checks`.
//!
//! This file holds the sessions' table, the gateway's commands and the timers; `session` a
//! session's state; `exchange` the requests to the appliance and its answers.

mod exchange;
mod session;

use super::peers::{Located, Origin, Peers, Where};
use super::persona_cache::PersonaCache;
use super::{ServerConfig, Stats};
use crate::entropy::Entropy;
use crate::login::{Command, Event, Failure, SessionId, SessionNonce};
use crate::name::Name;
use crate::stun::TransactionId;
use crate::time::Time;
use crate::wire::login::{Outbound, Signal};
use core::time::Duration;
use hashbrown::HashMap;
use ring::signature::Ed25519KeyPair;
use session::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

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
