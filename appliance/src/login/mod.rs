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
//!
//! Here: the types and the `Login` table; `decide` answers PERSONAS and CONNECT, `signalling`
//! runs SIGNAL.

mod decide;
mod signalling;

use crate::machine::{ApplianceConfig, Bucket, Events, Stats};
use flock_proto::entropy::Entropy;
pub use flock_proto::login::{Candidate, SessionNonce};
use flock_proto::stun::{Class, Message, TransactionId};
use flock_proto::token::canonical;
use flock_proto::wire::login::{self as login_wire, Ack, Outbound, Signal};
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
