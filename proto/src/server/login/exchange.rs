//! The exchange with the appliance: PERSONAS, CONNECT and SIGNAL requests out (stop-and-wait,
//! RTO doubling), its answers and SIGNALs in.

use super::session::*;
use super::*;
use crate::login::{Candidate, Event, Failure, SessionId};
use crate::name::Name;
use crate::server::peers::{Origin, Peers, Where};
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::wire::login::{
    self as login_wire, code, Ack, Outbound, PersonasChunk, PersonasRefused, Signal, SignalBody,
};
use crate::wire::method;
use core::time::Duration;
use std::net::SocketAddr;

impl Login {
    /// Makes `bytes` the session's outstanding request and queues it for sending.
    pub(super) fn send(
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

    pub(super) fn send_until(
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

    pub(super) fn clear_request(&mut self, s: &mut Session) {
        if let Some(r) = s.request.take() {
            self.by_txid.remove(&r.txid);
        }
    }

    pub(super) fn transmit_soon(&mut self, id: SessionId, s: &mut Session) {
        if !s.queued {
            s.queued = true;
            self.outgoing.push_back(id);
        }
    }

    /// A fresh transaction id for a message about `name`, steered to its core.
    pub(super) fn txid(cx: &mut Ctx<'_>, name: &Name) -> TransactionId {
        let mut t = [0; 12];
        cx.entropy.fill(&mut t);
        name.hash().steer(&mut t);
        t
    }

    pub(super) fn ask_personas(
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

    pub(super) fn connect(
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
    pub(super) fn outbound(
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
    pub(super) fn send_next(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
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
    pub(super) fn answer(&mut self, cx: &mut Ctx<'_>, msg: &Message<'_>, src: Origin) {
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
    pub(super) fn personas_refused(
        &mut self,
        cx: &mut Ctx<'_>,
        s: &mut Session,
        msg: &Message<'_>,
    ) -> Step {
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

    pub(super) fn personas_answer(
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
    pub(super) fn ack(
        &mut self,
        cx: &mut Ctx<'_>,
        id: SessionId,
        s: &mut Session,
        msg: &Message<'_>,
    ) -> Step {
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

    pub(super) fn accepted(&mut self, cx: &mut Ctx<'_>, id: SessionId, s: &mut Session) -> Step {
        cx.stats.logins_accepted += 1;
        s.phase = Phase::Connected(Box::new(Signalling::new(
            cx.now + cx.config.login.give_up_after,
        )));
        self.events.push_back((id, Event::Accepted));
        Step::Keep
    }

    /// A SIGNAL from an appliance: taken in order, acknowledged in `reply`.
    pub(super) fn signal_in(
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
    pub(super) fn take_signal(
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
}
