//! The appliance side of browser log-in, sans-IO (driven by [`Appliance`](crate::Appliance)).
//!
//! - PERSONAS (from any server of the flock, signed by the pinned flock key, fresh): answered
//!   with one chunk of the persona list set by [`Appliance::set_personas`], never larger than
//!   the request, or with no data when the flock's cached checksum is current.
//! - CONNECT (signed, fresh): the [`Authenticator`] decides; an accepted log-in becomes a
//!   *connection* named by the session nonce, whose flock end is the CONNECT's source. Decisions
//!   are remembered by nonce for as long as the CONNECT could pass the freshness check, so a
//!   retransmitted (or replayed) CONNECT gets the same answer and never a second connection.
//!   The memory is bounded (`ApplianceConfig::login_memory`): when it is full, the decision
//!   whose CONNECT expires first is forgotten and every CONNECT valid no longer than that one is
//!   refused from then on (508), so a forgotten CONNECT can never be decided again.
//! - Answers to PERSONAS and CONNECT are rate limited (`ApplianceConfig::login_answer_*`:
//!   burst 8, then one per second); past the limit the request is answered 508 (busy) at
//!   once, so the log-in fails fast (`appliance-busy` for the browser), from a bucket of its
//!   own four times as large and fast; past that too, nothing.
//! - SIGNAL, per connection, both ways: an ordered stream sent stop-and-wait (SDP offer in
//!   chunks, candidates, end-of-candidates) and the flock's stream taken in order. Once both
//!   ends' end-of-candidates are through, the session is done and forgotten.
//!
//! [`Appliance::set_personas`]: crate::Appliance::set_personas

use crate::machine::{ApplianceConfig, Bucket, Event, Events, Stats, CLOCK_SKEW_MS};
use flock_proto::entropy::Entropy;
pub use flock_proto::login::{Candidate, SessionNonce};
use flock_proto::stun::{Class, Message, TransactionId};
use flock_proto::token::canonical;
use flock_proto::wire::login::{
    self as login_wire, code, Ack, Connect, Outbound, PersonasChunk, PersonasRefused,
    PersonasRequest, Signal, SignalBody,
};
use flock_proto::wire::method;
use flock_proto::{Name, Time};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest SDP taken from the flock or queued for it.
pub const MAX_SDP: usize = 32 * 1024;
/// Items queued on one connection's outbound stream (offer, candidates, end-of-candidates).
pub const MAX_QUEUED: usize = 128;
/// Finished sessions whose duplicate SIGNALs (their ack was lost) are still acknowledged.
const MAX_FINISHED: usize = 32;
const FINISHED_LINGER: Duration = Duration::from_secs(30);
/// Answers (PERSONAS chunks, CONNECT decisions, SIGNAL acks) waiting for `poll_transmit`.
const MAX_PENDING: usize = 64;
// Answers to PERSONAS and CONNECT, and (in a bucket of their own, since anyone can provoke
// them) 481 errors, are rate limited: by default a burst of 8, then one a second
// (`ApplianceConfig::login_answer_*`), so requests replayed or made up from spoofed sources
// cannot make the appliance a reflector. Past the limit a PERSONAS or CONNECT gets a small 508
// instead (its own bucket, `REFUSAL_FACTOR` times the burst and the rate), so a real log-in
// fails at once instead of waiting for retransmissions.
const REFUSAL_FACTOR: u32 = 4;

/// A log-in attempt, as the [`Authenticator`] sees it.
pub struct LoginRequest<'a> {
    /// Persona id (or, when credentials are entered separately, the user name).
    pub persona: &'a str,
    /// Opaque to the flock: `pwd:…`, `token:…`.
    pub credential: &'a [u8],
    /// The flock server that relayed it.
    pub from: SocketAddr,
}

/// Written by hand so that a logged request never shows the credential.
impl fmt::Debug for LoginRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("persona", &self.persona)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// What the [`Authenticator`] says about a log-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Wrong credentials (error 460: the browser may try again).
    BadCredentials,
    /// Refused by policy (error 461).
    Deny,
}

/// Decides log-ins. Called once per session nonce, on the appliance's thread: keep it quick.
pub type Authenticator = Box<dyn FnMut(&LoginRequest<'_>) -> Decision + Send>;

/// Why a signalling call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalError {
    /// No such connection (never accepted, done or failed).
    UnknownSession,
    /// A second offer, a candidate or end-of-candidates before the offer, anything after
    /// end-of-candidates.
    OutOfOrder,
    /// SDP over [`MAX_SDP`], candidate line or mid over the wire limits.
    TooLong,
    /// [`MAX_QUEUED`] items are waiting already.
    QueueFull,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignalError::UnknownSession => "no such session",
            SignalError::OutOfOrder => {
                "out of order (one offer first, nothing after end-of-candidates)"
            }
            SignalError::TooLong => "too long",
            SignalError::QueueFull => "too many items queued",
        })
    }
}

impl std::error::Error for SignalError {}

/// Why a session ended before it was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionFailure {
    /// A SIGNAL of ours went unacknowledged for `signal_give_up_after`.
    GaveUp,
    /// The session outlived `session_timeout`.
    Expired,
    /// The flock answered a SIGNAL with an error: it has forgotten the session.
    Closed,
    /// The flock's stream was unusable (bad SDP chunks).
    Malformed,
}

impl fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionFailure::GaveUp => "no acknowledgement from the flock",
            SessionFailure::Expired => "session took too long",
            SessionFailure::Closed => "the flock closed it",
            SessionFailure::Malformed => "malformed signalling from the flock",
        })
    }
}

/// A remembered CONNECT answer (`None`: accepted).
struct Decided {
    nonce: SessionNonce,
    error: Option<u16>,
    /// The CONNECT's signed valid-until (ms).
    valid_until: u64,
    /// Past this the CONNECT is stale for us, so it can be forgotten.
    keep_until: Time,
}

/// Our SIGNAL in flight.
struct Outstanding {
    txid: TransactionId,
    started: Time,
    next_send: Time,
    rto: Duration,
    send_now: bool,
}

/// An accepted log-in.
struct Connection {
    nonce: SessionNonce,
    /// The server that sent the CONNECT: SIGNALs go there and are taken only from there.
    flock: SocketAddr,
    expires: Time,
    /// Our stream: items not yet fully acknowledged; `piece` of the front one is next.
    queue: VecDeque<Outbound>,
    piece: usize,
    seq: u32,
    outstanding: Option<Outstanding>,
    offer_queued: bool,
    end_queued: bool,
    end_acked: bool,
    /// The flock's stream: next SEQ expected.
    expect: u32,
    sdp: login_wire::SdpAssembly,
    remote_end: bool,
}

/// A done session, still acknowledging retransmissions of SIGNALs it took.
struct Finished {
    nonce: SessionNonce,
    flock: SocketAddr,
    expect: u32,
    until: Time,
}

/// What the log-in side needs from the appliance for one call.
pub(crate) struct Cx<'a> {
    pub config: &'a ApplianceConfig,
    pub entropy: &'a mut (dyn Entropy + Send),
    pub stats: &'a mut Stats,
    pub events: &'a mut Events,
}

pub(crate) struct Login {
    /// The persona list served and its SHA-256 (`None`: credentials required; checksum of "").
    personas: Option<Vec<u8>>,
    checksum: [u8; 32],
    auth: Authenticator,
    decided: VecDeque<Decided>,
    /// Most decisions remembered.
    memory: usize,
    /// CONNECTs valid until no later than this (ms) are refused: their decisions may have been
    /// forgotten to make room.
    forgotten_until: u64,
    conns: Vec<Connection>,
    finished: VecDeque<Finished>,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    bucket: Bucket,
    unknown_bucket: Bucket,
    /// 508s for PERSONAS and CONNECT over the answer rate.
    refusal_bucket: Bucket,
    /// SIGNAL retransmission: `ApplianceConfig::rto_initial`, doubling up to `rto_max`, as
    /// for every other request (fixed timers gave lossy links too few tries within the
    /// flock's give-up bound).
    rto: Rto,
    /// The appliance name's core hint, put into every SIGNAL's transaction id
    /// ([`NameHash::steer`](flock_proto::NameHash::steer)).
    core_hint: [u8; 4],
}

#[derive(Clone, Copy)]
struct Rto {
    initial: Duration,
    max: Duration,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    canonical(a) == canonical(b)
}

impl Login {
    pub fn new(
        name: &Name,
        (answer_burst, answer_refill): (u32, Duration),
        memory: usize,
        rto_initial: Duration,
        rto_max: Duration,
    ) -> Login {
        Login {
            core_hint: name.hash().core_hint(),
            rto: Rto {
                initial: rto_initial,
                max: rto_max.max(rto_initial),
            },
            personas: None,
            checksum: sha256(b""),
            auth: Box::new(|_| Decision::Deny),
            decided: VecDeque::new(),
            memory: memory.max(1),
            forgotten_until: 0,
            conns: Vec::new(),
            finished: VecDeque::new(),
            pending: VecDeque::new(),
            bucket: Bucket::new(answer_burst, answer_refill),
            unknown_bucket: Bucket::new(answer_burst, answer_refill),
            refusal_bucket: Bucket::new(
                answer_burst.saturating_mul(REFUSAL_FACTOR),
                answer_refill / REFUSAL_FACTOR,
            ),
        }
    }

    pub fn set_personas(&mut self, personas: Option<Vec<u8>>) {
        self.checksum = sha256(personas.as_deref().unwrap_or_default());
        self.personas = personas;
    }

    pub fn set_authenticator(&mut self, auth: Authenticator) {
        self.auth = auth;
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Takes a PERSONAS, CONNECT or SIGNAL message (request or answer); false if unusable.
    pub fn handle(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        len: usize,
        cx: Cx<'_>,
    ) -> bool {
        match (m.method(), m.class()) {
            (method::PERSONAS, Class::Request) => self.on_personas(now, src, m, len, cx),
            (method::CONNECT, Class::Request) => self.on_connect(now, src, m, cx),
            (method::SIGNAL, Class::Request) => self.on_signal(now, src, m, len, cx),
            (method::SIGNAL, Class::Success | Class::Error) => self.on_ack(now, src, m, cx),
            _ => false,
        }
    }

    fn queue(&mut self, dst: SocketAddr, bytes: Vec<u8>, stats: &mut Stats) {
        if self.pending.len() >= MAX_PENDING {
            stats.login_dropped += 1;
            return;
        }
        self.pending.push_back((dst, bytes));
    }

    fn answer_ack(&mut self, dst: SocketAddr, ack: Ack, txid: &TransactionId, stats: &mut Stats) {
        let mut buf = [0; login_wire::MAX_DATAGRAM];
        if let Ok(n) = ack.encode(&mut buf, txid) {
            self.queue(dst, buf[..n].to_vec(), stats);
        }
    }

    fn on_personas(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        len: usize,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(r) = PersonasRequest::parse(m) else {
            return false;
        };
        if r.name != cx.config.name
            || !r.fresh(now.0, CLOCK_SKEW_MS)
            || !r.from_flock(&cx.config.flock_public_key)
        {
            cx.stats.login_ignored += 1;
            return true;
        }
        if !self.bucket.take(now) {
            let busy = PersonasRefused {
                name: cx.config.name,
                code: code::BUSY,
            };
            let mut buf = [0; login_wire::MAX_DATAGRAM];
            match busy.encode(&mut buf, m.transaction_id()) {
                Ok(n) if self.refusal_bucket.take(now) => {
                    cx.stats.login_busy += 1;
                    self.queue(src, buf[..n].to_vec(), cx.stats);
                }
                _ => cx.stats.login_dropped += 1,
            }
            return true;
        }
        let list = self.personas.as_deref().unwrap_or_default();
        let start = (r.offset as usize).min(list.len());
        let data = if self.personas.is_none() || r.known == Some(self.checksum) {
            &[][..]
        } else {
            &list[start..start + PersonasChunk::room(len, &cx.config.name).min(list.len() - start)]
        };
        let chunk = PersonasChunk {
            name: cx.config.name,
            checksum: self.checksum,
            total: list.len() as u32,
            offset: r.offset,
            credentials_required: self.personas.is_none(),
            data,
        };
        let mut buf = [0; login_wire::MAX_DATAGRAM];
        if let Ok(n) = chunk.encode(&mut buf, m.transaction_id()) {
            cx.stats.personas_answered += 1;
            let bytes = buf[..n].to_vec();
            self.queue(src, bytes, cx.stats);
        }
        true
    }

    fn on_connect(&mut self, now: Time, src: SocketAddr, m: &Message<'_>, cx: Cx<'_>) -> bool {
        let Ok(c) = Connect::parse(m) else {
            return false;
        };
        if c.name != cx.config.name
            || !c.fresh(now.0, CLOCK_SKEW_MS)
            || !c.from_flock(&cx.config.flock_public_key)
        {
            cx.stats.login_ignored += 1;
            return true;
        }
        let ack = |error| Ack {
            method: method::CONNECT,
            name: cx.config.name,
            session: c.session,
            seq: None,
            error,
        };
        if let Some(d) = self.decided.iter().find(|d| d.nonce == c.session) {
            // A retransmission (or a replay): the same answer, within the answer rate.
            let a = ack(d.error);
            if self.bucket.take(now) || (a.error.is_some() && self.refusal_bucket.take(now)) {
                self.answer_ack(src, a, m.transaction_id(), cx.stats);
            } else {
                cx.stats.login_dropped += 1;
            }
            return true;
        }
        let rate_ok = self.bucket.take(now);
        if !rate_ok || c.valid_until_ms <= self.forgotten_until {
            // Over the answer rate, or possibly decided before and forgotten: busy, at once.
            if self.refusal_bucket.take(now) {
                cx.stats.login_busy += 1;
                self.answer_ack(src, ack(Some(code::BUSY)), m.transaction_id(), cx.stats);
            } else {
                cx.stats.login_dropped += 1;
            }
            if c.valid_until_ms <= self.forgotten_until {
                return true;
            }
            // Remembered as refused, so that a retransmission gets the same answer.
            self.remember(now, &c, Some(code::BUSY));
            cx.stats.logins_refused += 1;
            cx.events.push(Event::LoginRefused {
                session: c.session,
                persona: c.persona.into(),
                code: code::BUSY,
            });
            return true;
        }
        let error = if self.conns.len() >= cx.config.max_connections {
            Some(code::BUSY)
        } else {
            match (self.auth)(&LoginRequest {
                persona: c.persona,
                credential: c.credential,
                from: src,
            }) {
                Decision::Accept => None,
                Decision::BadCredentials => Some(code::BAD_CREDENTIALS),
                Decision::Deny => Some(code::DENIED),
            }
        };
        self.remember(now, &c, error);
        match error {
            None => {
                self.conns.push(Connection::new(
                    c.session,
                    src,
                    now + cx.config.session_timeout,
                ));
                cx.stats.logins_accepted += 1;
                cx.events.push(Event::LoginAccepted {
                    session: c.session,
                    persona: c.persona.into(),
                });
            }
            Some(code) => {
                cx.stats.logins_refused += 1;
                cx.events.push(Event::LoginRefused {
                    session: c.session,
                    persona: c.persona.into(),
                    code,
                });
            }
        }
        self.answer_ack(src, ack(error), m.transaction_id(), cx.stats);
        true
    }

    /// Remembers the decision on `c` until it is stale; when the memory is full, forgets the
    /// decision whose CONNECT expires first and refuses every CONNECT valid no longer than it.
    fn remember(&mut self, now: Time, c: &Connect<'_>, error: Option<u16>) {
        self.decided.retain(|d| d.keep_until >= now);
        if self.decided.len() >= self.memory {
            if let Some(i) = (0..self.decided.len()).min_by_key(|&i| self.decided[i].valid_until) {
                let gone = self.decided.remove(i).expect("in range");
                self.forgotten_until = self.forgotten_until.max(gone.valid_until);
            }
        }
        self.decided.push_back(Decided {
            nonce: c.session,
            error,
            valid_until: c.valid_until_ms,
            keep_until: Time(c.valid_until_ms.saturating_add(CLOCK_SKEW_MS)),
        });
    }

    fn on_signal(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        len: usize,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(s) = Signal::parse(m) else {
            return false;
        };
        if s.name != cx.config.name {
            return false;
        }
        let ack = |error| Ack {
            method: method::SIGNAL,
            name: cx.config.name,
            session: s.session,
            seq: Some(s.seq),
            error,
        };
        let txid = m.transaction_id();
        let Some(i) = self
            .conns
            .iter()
            .position(|c| c.nonce == s.session && same(c.flock, src))
        else {
            self.finished.retain(|f| f.until > now);
            if self
                .finished
                .iter()
                .any(|f| f.nonce == s.session && same(f.flock, src) && s.seq < f.expect)
            {
                self.answer_ack(src, ack(None), txid, cx.stats);
            } else {
                self.unknown_session(
                    now,
                    src,
                    ack(Some(code::UNKNOWN_SESSION)),
                    txid,
                    len,
                    cx.stats,
                );
            }
            return true;
        };
        let conn = &mut self.conns[i];
        if s.seq > conn.expect {
            // A gap: the flock sends stop-and-wait, so this is a stray; it will come again in turn.
            return true;
        }
        if s.seq == conn.expect {
            let session = s.session;
            match s.body {
                SignalBody::Sdp {
                    offset,
                    total,
                    data,
                } => match conn.sdp.add(offset, total, data, MAX_SDP) {
                    Ok(Some(sdp)) => cx.events.push(Event::RemoteAnswer { session, sdp }),
                    Ok(None) => {}
                    Err(_) => {
                        self.fail(i, SessionFailure::Malformed, cx.stats, cx.events);
                        self.unknown_session(
                            now,
                            src,
                            ack(Some(code::UNKNOWN_SESSION)),
                            txid,
                            len,
                            cx.stats,
                        );
                        return true;
                    }
                },
                SignalBody::Candidate { candidate, mid } => {
                    let candidate = Candidate {
                        candidate: candidate.into(),
                        mid: mid.map(Into::into),
                    };
                    cx.events
                        .push(Event::RemoteCandidate { session, candidate });
                }
                SignalBody::EndOfCandidates => {
                    conn.remote_end = true;
                    cx.events.push(Event::RemoteEndOfCandidates { session });
                }
            }
            conn.expect += 1;
        }
        // In turn, or a retransmission whose ack was lost: acknowledge (no second delivery).
        self.answer_ack(src, ack(None), txid, cx.stats);
        self.finish_if_done(i, now, cx.stats, cx.events);
        true
    }

    /// A 481 for a SIGNAL we cannot place, unless it would be larger than the SIGNAL (a short
    /// one, like end-of-candidates) or the answer rate is exceeded: then nothing.
    fn unknown_session(
        &mut self,
        now: Time,
        src: SocketAddr,
        ack: Ack,
        txid: &TransactionId,
        len: usize,
        stats: &mut Stats,
    ) {
        let mut buf = [0; login_wire::MAX_DATAGRAM];
        match ack.encode(&mut buf, txid) {
            Ok(n) if n <= len && self.unknown_bucket.take(now) => {
                self.queue(src, buf[..n].to_vec(), stats)
            }
            _ => stats.login_dropped += 1,
        }
    }

    fn on_ack(&mut self, now: Time, src: SocketAddr, m: &Message<'_>, cx: Cx<'_>) -> bool {
        let Ok(a) = Ack::parse(m) else { return false };
        let Some(i) = self
            .conns
            .iter()
            .position(|c| c.nonce == a.session && same(c.flock, src))
        else {
            return false;
        };
        let conn = &mut self.conns[i];
        let Some(out) = &conn.outstanding else {
            return false;
        };
        if a.seq != Some(conn.seq) || a.name != cx.config.name || m.transaction_id() != &out.txid {
            return false; // a late ack of an earlier SIGNAL, or not ours
        }
        if a.error.is_some() {
            self.fail(i, SessionFailure::Closed, cx.stats, cx.events);
            return true;
        }
        conn.outstanding = None;
        conn.seq += 1;
        conn.piece += 1;
        let front = conn
            .queue
            .front()
            .expect("an outstanding SIGNAL has its item");
        if conn.piece >= login_wire::pieces(front) {
            conn.end_acked |= matches!(front, Outbound::EndOfCandidates);
            conn.queue.pop_front();
            conn.piece = 0;
        }
        conn.kick(now, self.rto, self.core_hint, cx.entropy);
        self.finish_if_done(i, now, cx.stats, cx.events);
        true
    }

    fn finish_if_done(&mut self, i: usize, now: Time, stats: &mut Stats, events: &mut Events) {
        let c = &self.conns[i];
        if !(c.end_acked && c.remote_end) {
            return;
        }
        let c = self.conns.swap_remove(i);
        if self.finished.len() >= MAX_FINISHED {
            self.finished.pop_front();
        }
        self.finished.push_back(Finished {
            nonce: c.nonce,
            flock: c.flock,
            expect: c.expect,
            until: now + FINISHED_LINGER,
        });
        stats.sessions_done += 1;
        events.push(Event::SessionDone { session: c.nonce });
    }

    fn fail(&mut self, i: usize, reason: SessionFailure, stats: &mut Stats, events: &mut Events) {
        let c = self.conns.swap_remove(i);
        stats.sessions_failed += 1;
        events.push(Event::SessionFailed {
            session: c.nonce,
            reason,
        });
    }

    /// Appends to a connection's outbound stream and starts sending if nothing is in flight.
    pub fn push(
        &mut self,
        now: Time,
        session: &SessionNonce,
        item: Outbound,
        entropy: &mut dyn Entropy,
    ) -> Result<(), SignalError> {
        let (rto, hint) = (self.rto, self.core_hint);
        let c = self
            .conns
            .iter_mut()
            .find(|c| c.nonce == *session)
            .ok_or(SignalError::UnknownSession)?;
        let in_order = match &item {
            Outbound::Sdp(_) => !c.offer_queued,
            Outbound::Candidate(_) | Outbound::EndOfCandidates => c.offer_queued && !c.end_queued,
        };
        if !in_order {
            return Err(SignalError::OutOfOrder);
        }
        let too_long = match &item {
            Outbound::Sdp(sdp) => sdp.len() > MAX_SDP,
            Outbound::Candidate(k) => {
                k.candidate.len() > login_wire::MAX_CANDIDATE_LEN
                    || k.mid
                        .as_ref()
                        .is_some_and(|m| m.len() > login_wire::MAX_MID_LEN)
            }
            Outbound::EndOfCandidates => false,
        };
        if too_long {
            return Err(SignalError::TooLong);
        }
        if c.queue.len() >= MAX_QUEUED {
            return Err(SignalError::QueueFull);
        }
        c.offer_queued = true;
        c.end_queued |= matches!(item, Outbound::EndOfCandidates);
        c.queue.push_back(item);
        c.kick(now, rto, hint, entropy);
        Ok(())
    }

    /// The next answer or SIGNAL to send.
    pub fn poll_transmit(
        &mut self,
        name: &Name,
        buf: &mut [u8],
        stats: &mut Stats,
    ) -> Option<(SocketAddr, usize)> {
        if let Some((dst, bytes)) = self.pending.pop_front() {
            buf[..bytes.len()].copy_from_slice(&bytes);
            return Some((dst, bytes.len()));
        }
        for c in &mut self.conns {
            let Some(out) = c.outstanding.as_mut().filter(|o| o.send_now) else {
                continue;
            };
            out.send_now = false;
            // Items were checked when queued, so every piece encodes.
            let Some(body) = c
                .queue
                .front()
                .and_then(|item| login_wire::piece(item, c.piece))
            else {
                continue;
            };
            let Ok(n) = (Signal {
                name: *name,
                session: c.nonce,
                seq: c.seq,
                body,
            })
            .encode(buf, &out.txid) else {
                continue;
            };
            stats.signals_sent += 1;
            return Some((c.flock, n));
        }
        None
    }

    pub fn poll_timeout(&self, give_up: Duration) -> Option<Time> {
        let mut next: Option<Time> = None;
        for c in &self.conns {
            let mut t = c.expires;
            if let Some(o) = &c.outstanding {
                t = t.min(o.next_send).min(o.started + give_up);
            }
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    pub fn handle_timeout(
        &mut self,
        now: Time,
        give_up: Duration,
        stats: &mut Stats,
        events: &mut Events,
    ) {
        let rto = self.rto;
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let gave_up = c
                .outstanding
                .as_ref()
                .is_some_and(|o| now >= o.started + give_up);
            if gave_up
                && c.remote_end
                && matches!(c.queue.make_contiguous(), [Outbound::EndOfCandidates])
            {
                // Everything else went through both ways. The flock forgets a session once both
                // ends' end-of-candidates are in, and stays silent to a retransmission (its 481
                // would be larger than our SIGNAL): the ack of our last one was most likely lost.
                c.end_acked = true;
                self.finish_if_done(i, now, stats, events);
                continue;
            }
            if now >= c.expires || gave_up {
                self.fail(
                    i,
                    if gave_up {
                        SessionFailure::GaveUp
                    } else {
                        SessionFailure::Expired
                    },
                    stats,
                    events,
                );
                continue;
            }
            if let Some(o) = c.outstanding.as_mut().filter(|o| now >= o.next_send) {
                o.send_now = true;
                o.next_send = now + o.rto;
                o.rto = (o.rto * 2).min(rto.max);
                stats.signals_retransmitted += 1;
            }
            i += 1;
        }
    }
}

impl Connection {
    fn new(nonce: SessionNonce, flock: SocketAddr, expires: Time) -> Connection {
        Connection {
            nonce,
            flock,
            expires,
            queue: VecDeque::new(),
            piece: 0,
            seq: 0,
            outstanding: None,
            offer_queued: false,
            end_queued: false,
            end_acked: false,
            expect: 0,
            sdp: login_wire::SdpAssembly::default(),
            remote_end: false,
        }
    }

    /// Puts the next piece in flight if none is (stop-and-wait).
    fn kick(&mut self, now: Time, rto: Rto, core_hint: [u8; 4], entropy: &mut dyn Entropy) {
        if self.outstanding.is_some() || self.queue.is_empty() {
            return;
        }
        let mut txid = [0; 12];
        entropy.fill(&mut txid);
        txid[..4].copy_from_slice(&core_hint);
        self.outstanding = Some(Outstanding {
            txid,
            started: now,
            next_send: now + rto.initial,
            rto: (rto.initial * 2).min(rto.max),
            send_now: true,
        });
    }
}
