//! The appliance's protocol state machine, sans-IO.
//!
//! [`Appliance`] owns no socket, reads no clock and starts no thread: the caller feeds it
//! datagrams ([`Appliance::handle`]) and time ([`Appliance::handle_timeout`]), and drains one
//! [`Output`] at a time ([`Appliance::poll_output`]): what it wants to send, what happened, and
//! when its timers next run.
//! Randomness (transaction ids, keep-alive jitter) comes from the [`Entropy`] it was built with.
//!
//! Life cycle:
//!
//! ```text
//!  Starting ──► Registering ──success──► Registered ──interval──► KeepingAlive
//!                 ▲    │  ▲  401/438: re-sign with the nonce          │  │
//!                 │    │  └───────────────────────────────            │  │ success
//!                 │    │                                               │  └──► Registered
//!                 │    └─ refused / timed out ──► Paused ◄─ refused / timed out
//!                 └──────────── pause over ────────┘          441 ──► Registering
//! ```
//!
//! A flock splits names over its servers; the appliance may be configured with any of them. A
//! server that does not own the name answers 300 Try-Alternate with the owner's address: the
//! appliance registers there and keeps using it (keep-alives go there). It follows a 300 only
//! from the server it sent to, only to a unicast address, and at most [`MAX_REDIRECTS`] times
//! in a row; past that (a loop, a misconfigured flock) it pauses like after a refusal. Every
//! pause ends at the configured server again, so a flock whose list changed is followed anew.
//!
//! Every request is a STUN transaction: sent, then retransmitted after `rto_initial`, doubling up
//! to `rto_max`, until answered or `give_up_after` has passed ([`Event::GaveUp`], then a pause).
//! A CHECK from the flock (signed by the pinned flock key, for our name) is answered at once, to
//! its source, whatever the state.
//!
//! Browser log-in (PERSONAS, CONNECT, SIGNAL) runs beside registration, whatever its state: see
//! [`crate::login`] and [`Appliance::set_personas`], [`Appliance::set_authenticator`],
//! [`Appliance::send_offer`].

use crate::login::{
    self, Authenticator, Candidate, Decision, Login, LoginRequest, SessionFailure, SessionNonce,
    SignalError,
};
use flock_proto::entropy::Entropy;
use flock_proto::identity::{self, Fingerprint, PUBLIC_KEY_LEN};
use flock_proto::stun::{Class, Message, TransactionId};
use flock_proto::token::{canonical, Nonce, Token};
use flock_proto::wire::login::{self as login_wire, Outbound};
use flock_proto::wire::method;
use flock_proto::wire::registration::{
    self, code, Check, ErrorAnswer, Keepalive, KeptAlive, Registered, TryAlternate,
};
use flock_proto::{Name, Time};
use ring::signature::Ed25519KeyPair;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A buffer of this size always holds anything [`Appliance::poll_output`] writes.
pub const MAX_DATAGRAM: usize = 1500;

/// Transaction ids remembered for one registration attempt (a success for any of them counts).
const MAX_TXIDS_PER_ATTEMPT: usize = 32;
/// CHECK answers waiting to be sent; more CHECKs arriving before a `poll_output` are dropped.
const MAX_PENDING_ANSWERS: usize = 16;
/// Events kept for `poll_output`; past it the oldest are dropped.
const MAX_EVENTS: usize = 256;
/// Nonce errors in one attempt answered by an immediate re-send; later ones wait for the
/// retransmission timer (a NAT that changes port on every packet must not make us spin).
const MAX_IMMEDIATE_NONCE_RETRIES: u32 = 3;
/// CHECK answers allowed in a burst, then one per second: the flock retransmits a CHECK at
/// most every 0.5 s and doubling, so this never holds back a real one, while a captured CHECK
/// replayed from spoofed sources cannot make the appliance a (slightly amplifying) reflector.
const CHECK_ANSWER_BURST: u32 = 8;
const CHECK_ANSWER_REFILL: Duration = Duration::from_secs(1);
/// 300 Try-Alternate answers followed in a row before pausing (one is enough in a sane flock;
/// more allow for a list that changes while the appliance registers).
pub const MAX_REDIRECTS: u32 = 3;
/// Peers remembered for `only_known_peers` (the servers, and whoever we answered).
const MAX_KNOWN_PEERS: usize = 16;
/// Default of [`ApplianceConfig::login_memory`]: at the default answer rate (8, then one a
/// second) more CONNECTs than this cannot arrive within their ~10 min freshness window, so
/// with sane clocks the bound is never what refuses a log-in.
pub const DEFAULT_LOGIN_MEMORY: usize = 1024;
/// Shortest keep-alive interval taken from a server (a broken one must not make us spin).
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of an appliance.
#[derive(Clone, Debug)]
pub struct ApplianceConfig {
    /// The name to register.
    pub name: Name,
    /// The flock server to register with.
    pub server: SocketAddr,
    /// The flock's Ed25519 public key, pinned: only CHECKs signed by it are answered.
    pub flock_public_key: [u8; PUBLIC_KEY_LEN],
    /// First retransmission timeout of a request; doubles after each retransmission.
    pub rto_initial: Duration,
    /// Cap of the retransmission timeout.
    pub rto_max: Duration,
    /// A request unanswered this long is abandoned ([`Event::GaveUp`]).
    pub give_up_after: Duration,
    /// Keep-alive interval until a server states its own.
    pub keepalive_interval: Duration,
    /// Keep-alive (and pause) jitter, as a fraction: 0.1 spreads them over ±10 %.
    pub jitter: f64,
    /// Pause after a refusal or a give-up before registering again; doubles with each
    /// consecutive failure, up to `retry_pause_max`.
    pub retry_pause: Duration,
    pub retry_pause_max: Duration,
    /// A REGISTER retransmitted for this long is signed again with a fresh timestamp (and a new
    /// transaction id), so a long wait never ends in a stale-timestamp refusal.
    pub resign_after: Duration,
    /// Accepted log-ins signalling at once; past it a CONNECT is answered BUSY.
    pub max_connections: usize,
    /// A SIGNAL of ours unacknowledged this long fails its session ([`Event::SessionFailed`]).
    pub signal_give_up_after: Duration,
    /// A session not done this long after its CONNECT was accepted fails.
    pub session_timeout: Duration,
    /// Answers to PERSONAS and CONNECT (signed by the flock, but replayable from spoofed
    /// sources) allowed in a burst, then one per `login_answer_refill` (8, then one a second).
    /// Past it a request is answered 508 at once (from a bucket four times as large and
    /// fast), so the browser gets `appliance-busy` instead of waiting.
    pub login_answer_burst: u32,
    pub login_answer_refill: Duration,
    /// Log-in decisions (CONNECT session nonces, about 40 bytes each) remembered so that a
    /// retransmitted or replayed CONNECT gets its first answer again and never opens a second
    /// connection. One is kept until its CONNECT is stale (valid-until plus 10 min of clock
    /// skew); when this many are kept, the one expiring first is forgotten and every CONNECT
    /// valid no longer than it is answered 508 from then on.
    pub login_memory: usize,
    /// Drop every datagram from an address we have not sent to ourselves, as a restrictive NAT
    /// (endpoint-dependent filtering) would: a server that did not get our registration cannot
    /// reach us. Off by default; tests use it to force a relay through the owning server.
    pub only_known_peers: bool,
}

impl ApplianceConfig {
    /// A configuration with the default timers.
    pub fn new(
        name: Name,
        server: SocketAddr,
        flock_public_key: [u8; PUBLIC_KEY_LEN],
    ) -> ApplianceConfig {
        ApplianceConfig {
            name,
            server,
            flock_public_key,
            rto_initial: Duration::from_millis(500),
            rto_max: Duration::from_secs(8),
            give_up_after: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(30),
            jitter: 0.1,
            retry_pause: Duration::from_secs(5),
            retry_pause_max: Duration::from_secs(300),
            resign_after: Duration::from_secs(60),
            max_connections: 32,
            signal_give_up_after: Duration::from_secs(15),
            session_timeout: Duration::from_secs(120),
            login_answer_burst: 8,
            login_answer_refill: Duration::from_secs(1),
            login_memory: DEFAULT_LOGIN_MEMORY,
            only_known_peers: false,
        }
    }
}

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The server registered the name; `mapped` is the address it sees us at.
    Registered { mapped: SocketAddr },
    /// The address the server sees us at changed (reported before the `Registered` or
    /// `KeptAlive` that revealed it).
    MappedAddressChanged { old: SocketAddr, new: SocketAddr },
    /// A keep-alive was answered.
    KeptAlive { mapped: SocketAddr },
    /// The server refused our keep-alive token (441): registering again at once.
    TokenRefused,
    /// The server refused a request with this error code (403 bad signature, 409 name taken,
    /// 440 clock skew, 508 server full, ...). The appliance pauses, then registers again.
    Refused { code: u16 },
    /// The server at `from` does not own our name and sent us to `to` (300 Try-Alternate):
    /// registering there now.
    Redirected { from: SocketAddr, to: SocketAddr },
    /// A CHECK from the flock was answered (to `from`).
    CheckAnswered { from: SocketAddr },
    /// A request went unanswered for `give_up_after`. The appliance pauses, then registers again.
    GaveUp,
    /// The authenticator accepted a log-in: send the offer, candidates and end-of-candidates
    /// for `session` ([`Appliance::send_offer`] ...).
    LoginAccepted {
        session: SessionNonce,
        persona: String,
    },
    /// A log-in was refused with this code (460 bad credentials, 461 denied, 508 busy).
    LoginRefused {
        session: SessionNonce,
        persona: String,
        code: u16,
    },
    /// The browser's SDP answer.
    RemoteAnswer { session: SessionNonce, sdp: String },
    /// One of the browser's ICE candidates.
    RemoteCandidate {
        session: SessionNonce,
        candidate: Candidate,
    },
    /// The browser has no more candidates.
    RemoteEndOfCandidates { session: SessionNonce },
    /// End-of-candidates went both ways: the session is over (and forgotten).
    SessionDone { session: SessionNonce },
    /// The session ended before it was done (and is forgotten).
    SessionFailed {
        session: SessionNonce,
        reason: SessionFailure,
    },
}

/// First 4 bytes of a session nonce, in hex: enough to tell sessions apart in logs.
pub(crate) fn session_short(session: &SessionNonce) -> String {
    identity::to_hex(&session[..4])
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Registered { mapped } => write!(f, "registered, seen at {mapped}"),
            Event::MappedAddressChanged { old, new } => {
                write!(f, "mapped address changed from {old} to {new}")
            }
            Event::KeptAlive { mapped } => write!(f, "kept alive, seen at {mapped}"),
            Event::TokenRefused => write!(f, "token refused, registering again"),
            Event::Refused { code } => write!(f, "refused: {code} {}", code::reason(*code)),
            Event::Redirected { from, to } => {
                write!(f, "redirected by {from} to the owning server {to}")
            }
            Event::CheckAnswered { from } => write!(f, "answered a check from {from}"),
            Event::GaveUp => write!(f, "gave up: no answer from the server"),
            Event::LoginAccepted { session, persona } => write!(
                f,
                "log-in {} accepted as {persona:?}",
                session_short(session)
            ),
            Event::LoginRefused {
                session,
                persona,
                code,
            } => {
                write!(
                    f,
                    "log-in {} as {persona:?} refused: {code} {}",
                    session_short(session),
                    login_wire::code::reason(*code)
                )
            }
            Event::RemoteAnswer { session, sdp } => write!(
                f,
                "session {}: remote answer, {} bytes",
                session_short(session),
                sdp.len()
            ),
            Event::RemoteCandidate { session, candidate } => {
                write!(
                    f,
                    "session {}: remote candidate {:?} (mid {:?})",
                    session_short(session),
                    candidate.candidate,
                    candidate.mid
                )
            }
            Event::RemoteEndOfCandidates { session } => write!(
                f,
                "session {}: remote end of candidates",
                session_short(session)
            ),
            Event::SessionDone { session } => write!(f, "session {} done", session_short(session)),
            Event::SessionFailed { session, reason } => {
                write!(f, "session {} failed: {reason}", session_short(session))
            }
        }
    }
}

/// Where the appliance is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Built, nothing sent yet.
    Starting,
    /// A REGISTER transaction is running.
    Registering,
    /// Registered, waiting for the next keep-alive.
    Registered,
    /// Registered, a KEEPALIVE transaction is running.
    KeepingAlive,
    /// Waiting after a refusal or a give-up before registering again.
    Paused,
}

impl State {
    /// True while the server is believed to hold our registration.
    pub fn is_registered(self) -> bool {
        matches!(self, State::Registered | State::KeepingAlive)
    }
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed out by `poll_output`.
    pub transmitted: u64,
    /// Of those, retransmissions of an unanswered request.
    pub retransmitted: u64,
    /// Datagrams passed to `handle`.
    pub received: u64,
    /// Received datagrams that matched nothing (malformed, other sources, unknown transactions).
    pub ignored: u64,
    pub registrations: u64,
    pub keepalives: u64,
    pub checks_answered: u64,
    /// CHECKs not answered: not for our name, or not signed by the pinned flock key.
    pub checks_ignored: u64,
    /// CHECK answers dropped because too many were waiting or the answer rate was exceeded.
    pub checks_dropped: u64,
    pub gave_up: u64,
    pub refused: u64,
    /// 300 Try-Alternate answers followed.
    pub redirects: u64,
    /// Datagrams dropped by `only_known_peers`.
    pub unknown_peer_dropped: u64,
    pub personas_answered: u64,
    pub logins_accepted: u64,
    /// CONNECTs answered 460, 461 or 508 (retransmissions not counted).
    pub logins_refused: u64,
    /// PERSONAS and CONNECT requests not for our name, not signed by the pinned flock key, or
    /// stale.
    pub login_ignored: u64,
    /// Log-in answers not sent: answer rate exceeded, too many waiting, or a 481 that would
    /// have been larger than the SIGNAL it answers.
    pub login_dropped: u64,
    /// PERSONAS and CONNECT answered 508 because the answer rate was exceeded, or because
    /// the CONNECT may have been decided before and forgotten (`login_memory`).
    pub login_busy: u64,
    pub signals_sent: u64,
    pub signals_retransmitted: u64,
    pub sessions_done: u64,
    pub sessions_failed: u64,
}

/// The event queue: past [`MAX_EVENTS`] the oldest are dropped.
#[derive(Debug, Default)]
pub(crate) struct Events(VecDeque<Event>);

impl Events {
    pub(crate) fn push(&mut self, e: Event) {
        if self.0.len() >= MAX_EVENTS {
            self.0.pop_front();
        }
        self.0.push_back(e);
    }
}

/// A token bucket: `burst` at once, then one per `refill`.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: u32,
    refilled: Time,
    burst: u32,
    refill_ms: u64,
}

impl Bucket {
    pub(crate) fn new(burst: u32, refill: Duration) -> Bucket {
        Bucket {
            tokens: burst,
            refilled: Time::ZERO,
            burst,
            refill_ms: (refill.as_millis() as u64).max(1),
        }
    }

    pub(crate) fn take(&mut self, now: Time) -> bool {
        let earned = now.0.saturating_sub(self.refilled.0) / self.refill_ms;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(self.burst)) as u32;
            self.refilled = Time(self.refilled.0 + earned * self.refill_ms);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// One request being (re)transmitted.
#[derive(Clone, Copy, Debug)]
struct Transaction {
    txid: TransactionId,
    /// When the request (or the registration attempt it belongs to) was first sent.
    started: Time,
    next_send: Time,
    rto: Duration,
    /// A transmission is due at the next `poll_output`.
    send_now: bool,
    /// That transmission repeats an earlier one.
    is_retransmission: bool,
}

/// A registration attempt: one REGISTER transaction whose content (and so transaction id) may
/// change, on a nonce error or a re-signature.
#[derive(Clone, Debug)]
struct Attempt {
    tx: Transaction,
    /// The signed TIMESTAMP of the current content.
    timestamp: Time,
    txids: VecDeque<TransactionId>,
    nonce_retries: u32,
}

#[derive(Clone, Debug)]
enum Phase {
    Starting,
    Registering(Attempt),
    Registered { next_keepalive: Time },
    KeepingAlive(Transaction),
    Paused { until: Time },
}

struct PendingAnswer {
    dst: SocketAddr,
    txid: TransactionId,
    challenge: [u8; 16],
}

/// Next thing the appliance wants done, from [`Appliance::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send the first `len` bytes of the buffer given to `poll_output` to `dst`.
    Transmit { dst: SocketAddr, len: usize },
    /// Something happened (see [`Event`]).
    Event(Event),
    /// Nothing else to do now: call `handle_timeout` at this time (`None`: only a datagram
    /// can wake the appliance).
    Timeout(Option<Time>),
}

/// An appliance: registers its name with a flock server and keeps it registered.
pub struct Appliance {
    config: ApplianceConfig,
    key: Ed25519KeyPair,
    fingerprint: Fingerprint,
    /// Our name's core hint, the first 4 bytes of every transaction id we start.
    core_hint: [u8; 4],
    /// The server registered with: the configured one, or the owner it sent us to.
    server: SocketAddr,
    /// 300s followed since the last registration or pause.
    redirects: u32,
    /// Where we sent datagrams (most recent last), for `only_known_peers`.
    known_peers: VecDeque<SocketAddr>,
    entropy: Box<dyn Entropy + Send>,
    phase: Phase,
    nonce: Option<Nonce>,
    token: Option<Token>,
    /// The last REGISTER timestamp signed: each new one is later (a server takes a name's
    /// REGISTERs in timestamp order only, so a retransmission or replay is never taken twice).
    last_signed: Time,
    mapped: Option<SocketAddr>,
    keepalive_interval: Duration,
    /// Consecutive refusals and give-ups (sets the pause).
    failures: u32,
    answers: VecDeque<PendingAnswer>,
    check_answers: Bucket,
    login: Login,
    events: Events,
    stats: Stats,
}

impl fmt::Debug for Appliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appliance")
            .field("name", &self.config.name)
            .field("fingerprint", &self.fingerprint)
            .field("state", &self.state())
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

impl Appliance {
    /// An appliance that will register `config.name` with `key` once time is passed in.
    pub fn new(
        config: ApplianceConfig,
        key: Ed25519KeyPair,
        entropy: impl Entropy + Send + 'static,
    ) -> Appliance {
        let fingerprint = Fingerprint::of(&identity::public_key(&key));
        let login = Login::new(
            &config.name,
            (config.login_answer_burst, config.login_answer_refill),
            config.login_memory,
            config.rto_initial,
            config.rto_max,
        );
        Appliance {
            keepalive_interval: config.keepalive_interval,
            server: config.server,
            redirects: 0,
            known_peers: VecDeque::new(),
            core_hint: config.name.hash().core_hint(),
            config,
            key,
            fingerprint,
            entropy: Box::new(entropy),
            phase: Phase::Starting,
            nonce: None,
            token: None,
            last_signed: Time::ZERO,
            mapped: None,
            failures: 0,
            answers: VecDeque::new(),
            check_answers: Bucket::new(CHECK_ANSWER_BURST, CHECK_ANSWER_REFILL),
            login,
            events: Events::default(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ApplianceConfig {
        &self.config
    }

    pub fn name(&self) -> &Name {
        &self.config.name
    }

    /// SHA-256 of our public key: our identity on the flock.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        identity::public_key(&self.key)
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Starting => State::Starting,
            Phase::Registering(_) => State::Registering,
            Phase::Registered { .. } => State::Registered,
            Phase::KeepingAlive(_) => State::KeepingAlive,
            Phase::Paused { .. } => State::Paused,
        }
    }

    /// The server in use: the configured one, or the owner of our name it redirected us to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The address the server last saw us at.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The keep-alive interval in use (the server's, once registered).
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes in a datagram received from `src`.
    pub fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if self.config.only_known_peers && !self.known_peers.contains(&canonical(src)) {
            self.stats.unknown_peer_dropped += 1;
            return;
        }
        let Ok(m) = Message::parse(datagram) else {
            self.stats.ignored += 1;
            return;
        };
        if m.method() == method::CHECK && m.class() == Class::Request {
            self.on_check(now, src, &m);
            return;
        }
        if login_wire::is_login(&m) {
            let cx = login::Cx {
                config: &self.config,
                entropy: &mut *self.entropy,
                stats: &mut self.stats,
                events: &mut self.events,
            };
            if !self.login.handle(now, src, &m, datagram.len(), cx) {
                self.stats.ignored += 1;
            }
            return;
        }
        if canonical(src) != canonical(self.server) {
            self.stats.ignored += 1;
            return;
        }
        let handled = match (m.method(), m.class()) {
            (method::REGISTER, Class::Success | Class::Error) => self.on_register_answer(now, &m),
            (method::KEEPALIVE, Class::Success | Class::Error) => self.on_keepalive_answer(now, &m),
            _ => false,
        };
        if !handled {
            self.stats.ignored += 1;
        }
    }

    /// What the appliance wants done next: a datagram to send (written into `buf`; use
    /// [`MAX_DATAGRAM`] bytes), then the events, then, once nothing else is left, when
    /// `handle_timeout` must run. Call until [`Output::Timeout`] after every input.
    pub fn poll_output(&mut self, now: Time, buf: &mut [u8]) -> Output {
        if let Some((dst, len)) = self.transmit(now, buf) {
            return Output::Transmit { dst, len };
        }
        if let Some(event) = self.events.0.pop_front() {
            return Output::Event(event);
        }
        Output::Timeout(self.next_timeout())
    }

    /// The next datagram to send, written into `buf`: its destination and length.
    fn transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let sent = self.next_transmit(now, buf)?;
        self.sent_to(sent.0);
        Some(sent)
    }

    fn sent_to(&mut self, dst: SocketAddr) {
        let dst = canonical(dst);
        if self.known_peers.back() == Some(&dst) {
            return;
        }
        self.known_peers.retain(|p| *p != dst);
        if self.known_peers.len() >= MAX_KNOWN_PEERS {
            self.known_peers.pop_front();
        }
        self.known_peers.push_back(dst);
    }

    fn next_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if matches!(self.phase, Phase::Starting) {
            self.start_registering(now);
        }
        while let Some(a) = self.answers.pop_front() {
            if let Ok(n) = registration::encode_check_answer(
                buf,
                &a.txid,
                &self.config.name,
                &self.key,
                &a.challenge,
            ) {
                self.stats.transmitted += 1;
                return Some((a.dst, n));
            }
        }
        if let Some(sent) = self
            .login
            .poll_transmit(&self.config.name, buf, &mut self.stats)
        {
            self.stats.transmitted += 1;
            return Some(sent);
        }
        let encoded = match &mut self.phase {
            Phase::Registering(a) if a.tx.send_now => {
                a.tx.send_now = false;
                let retransmission = a.tx.is_retransmission;
                a.tx.is_retransmission = true;
                registration::encode_register(
                    buf,
                    &a.tx.txid,
                    &self.config.name,
                    &self.key,
                    a.timestamp.0,
                    self.nonce,
                )
                .ok()
                .map(|n| (n, retransmission))
            }
            Phase::KeepingAlive(tx) if tx.send_now => {
                tx.send_now = false;
                let retransmission = tx.is_retransmission;
                tx.is_retransmission = true;
                let token = self.token?;
                Keepalive {
                    name: self.config.name,
                    identity: self.fingerprint,
                    token,
                }
                .encode(buf, &tx.txid)
                .ok()
                .map(|n| (n, retransmission))
            }
            _ => None,
        };
        let (n, retransmission) = encoded?;
        self.stats.transmitted += 1;
        if retransmission {
            self.stats.retransmitted += 1;
        }
        Some((self.server, n))
    }

    /// When `handle_timeout` must next run (`None`: only a datagram can wake the appliance).
    fn next_timeout(&self) -> Option<Time> {
        let login = self.login.poll_timeout(self.config.signal_give_up_after);
        let registration = match &self.phase {
            Phase::Starting => Some(Time::ZERO),
            Phase::Registering(a) => Some(a.tx.next_send.min(self.deadline(&a.tx))),
            Phase::KeepingAlive(tx) => Some(tx.next_send.min(self.deadline(tx))),
            Phase::Registered { next_keepalive } => Some(*next_keepalive),
            Phase::Paused { until } => Some(*until),
        };
        [registration, login].into_iter().flatten().min()
    }

    /// Runs the timers due at `now`: retransmissions, give-ups, keep-alives, end of a pause,
    /// log-in sessions.
    pub fn handle_timeout(&mut self, now: Time) {
        self.login.handle_timeout(
            now,
            self.config.signal_give_up_after,
            &mut self.stats,
            &mut self.events,
        );
        match &self.phase {
            Phase::Starting => self.start_registering(now),
            Phase::Registering(a) => {
                if now >= self.deadline(&a.tx) {
                    self.give_up(now);
                } else if now >= a.tx.next_send {
                    let resign = now.saturating_since(a.timestamp) >= self.config.resign_after;
                    let max = self.config.rto_max;
                    if resign {
                        self.new_register_content(now);
                    }
                    if let Phase::Registering(a) = &mut self.phase {
                        a.tx.retransmit(now, max);
                    }
                }
            }
            Phase::KeepingAlive(tx) => {
                if now >= self.deadline(tx) {
                    self.give_up(now);
                } else if now >= tx.next_send {
                    let max = self.config.rto_max;
                    if let Phase::KeepingAlive(tx) = &mut self.phase {
                        tx.retransmit(now, max);
                    }
                }
            }
            Phase::Registered { next_keepalive } => {
                if now >= *next_keepalive {
                    self.start_keepalive(now);
                }
            }
            Phase::Paused { until } => {
                if now >= *until {
                    self.start_registering(now);
                }
            }
        }
    }

    /// The persona list served to the flock: JSON bytes, `[{"id":"alice","name":"Alice"}]`
    /// (served as they are; the flock checks them), or `None` when the user name and credential
    /// must be entered separately (the default). The flock's cache is checked by SHA-256.
    pub fn set_personas(&mut self, personas: Option<Vec<u8>>) {
        self.login.set_personas(personas);
    }

    /// Who decides log-ins (by default everything is denied). Called once per log-in attempt,
    /// however often the flock retransmits it.
    pub fn set_authenticator(
        &mut self,
        auth: impl FnMut(&LoginRequest<'_>) -> Decision + Send + 'static,
    ) {
        let auth: Authenticator = Box::new(auth);
        self.login.set_authenticator(auth);
    }

    /// Queues the SDP offer of an accepted session (first, once).
    pub fn send_offer(
        &mut self,
        now: Time,
        session: &SessionNonce,
        sdp: String,
    ) -> Result<(), SignalError> {
        self.login
            .push(now, session, Outbound::Sdp(sdp), &mut *self.entropy)
    }

    /// Queues one of our ICE candidates (after the offer, before end-of-candidates).
    pub fn add_candidate(
        &mut self,
        now: Time,
        session: &SessionNonce,
        candidate: Candidate,
    ) -> Result<(), SignalError> {
        self.login.push(
            now,
            session,
            Outbound::Candidate(candidate),
            &mut *self.entropy,
        )
    }

    /// Queues end-of-candidates: sent once every earlier item was acknowledged.
    pub fn end_of_candidates(
        &mut self,
        now: Time,
        session: &SessionNonce,
    ) -> Result<(), SignalError> {
        self.login
            .push(now, session, Outbound::EndOfCandidates, &mut *self.entropy)
    }

    /// Accepted log-ins still signalling.
    pub fn connections(&self) -> usize {
        self.login.connections()
    }

    /// Tells the appliance its local address (or network) changed: a running request is sent
    /// again at once, a registered appliance sends a keep-alive now (the server refuses the
    /// token from a new address, which leads to a new registration), a pause ends.
    pub fn network_changed(&mut self, now: Time) {
        let (initial, max) = (self.config.rto_initial, self.config.rto_max);
        match &mut self.phase {
            Phase::Starting => {}
            Phase::Registering(a) => a.tx.restart(now, initial, max),
            Phase::KeepingAlive(tx) => tx.restart(now, initial, max),
            Phase::Registered { .. } => self.start_keepalive(now),
            Phase::Paused { .. } => self.start_registering(now),
        }
    }

    fn deadline(&self, tx: &Transaction) -> Time {
        tx.started + self.config.give_up_after
    }

    /// A fresh transaction id, steered to the core that owns our name
    /// ([`NameHash::steer`](flock_proto::NameHash::steer)).
    fn txid(&mut self) -> TransactionId {
        let mut t = [0; 12];
        self.entropy.fill(&mut t);
        t[..4].copy_from_slice(&self.core_hint);
        t
    }

    fn event(&mut self, e: Event) {
        self.events.push(e);
    }

    /// `d` spread uniformly over ±`jitter`.
    fn jittered(&mut self, d: Duration) -> Duration {
        let j = if self.config.jitter.is_finite() {
            self.config.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut b = [0; 4];
        self.entropy.fill(&mut b);
        let u = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
        d.mul_f64(1.0 + j * (2.0 * u - 1.0))
    }

    /// The timestamp for new REGISTER content at `now`: later than any signed before.
    fn signing_time(&mut self, now: Time) -> Time {
        self.last_signed = now.max(Time(self.last_signed.0 + 1));
        self.last_signed
    }

    fn start_registering(&mut self, now: Time) {
        let txid = self.txid();
        let mut txids = VecDeque::with_capacity(4);
        txids.push_back(txid);
        let timestamp = self.signing_time(now);
        self.phase = Phase::Registering(Attempt {
            tx: Transaction::start(txid, now, self.config.rto_initial, self.config.rto_max),
            timestamp,
            txids,
            nonce_retries: 0,
        });
    }

    /// New REGISTER content (fresh timestamp, current nonce) under a new transaction id. The
    /// transmission schedule is the caller's business.
    fn new_register_content(&mut self, now: Time) {
        let txid = self.txid();
        let timestamp = self.signing_time(now);
        if let Phase::Registering(a) = &mut self.phase {
            a.tx.txid = txid;
            a.tx.is_retransmission = false;
            a.timestamp = timestamp;
            if a.txids.len() >= MAX_TXIDS_PER_ATTEMPT {
                a.txids.pop_front();
            }
            a.txids.push_back(txid);
        }
    }

    fn start_keepalive(&mut self, now: Time) {
        if self.token.is_none() {
            self.start_registering(now);
            return;
        }
        let txid = self.txid();
        self.phase = Phase::KeepingAlive(Transaction::start(
            txid,
            now,
            self.config.rto_initial,
            self.config.rto_max,
        ));
    }

    fn schedule_keepalive(&mut self, now: Time) {
        let wait = self.jittered(self.keepalive_interval);
        self.phase = Phase::Registered {
            next_keepalive: now + wait,
        };
    }

    /// Pauses before registering again (backoff over consecutive failures).
    fn pause(&mut self, now: Time) {
        self.use_server(self.config.server);
        self.redirects = 0;
        let doublings = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let base = self
            .config
            .retry_pause
            .saturating_mul(1 << doublings)
            .min(self.config.retry_pause_max);
        let wait = self.jittered(base);
        self.phase = Phase::Paused { until: now + wait };
    }

    /// Switches servers; tokens and nonces are bound to the server that issued them.
    fn use_server(&mut self, server: SocketAddr) {
        if canonical(server) != canonical(self.server) {
            self.server = server;
            self.token = None;
            self.nonce = None;
        }
    }

    /// A 300 from the server we sent to: register at the owner it names, unless the address is
    /// unusable, points back at the same server, or we have followed too many in a row (then
    /// it counts as a refusal: pause, then start over at the configured server).
    fn try_alternate(&mut self, now: Time, to: SocketAddr) {
        if !unicast(to)
            || canonical(to) == canonical(self.server)
            || self.redirects >= MAX_REDIRECTS
        {
            self.refused(now, code::TRY_ALTERNATE);
            return;
        }
        self.redirects += 1;
        self.stats.redirects += 1;
        self.event(Event::Redirected {
            from: self.server,
            to,
        });
        self.use_server(to);
        self.start_registering(now);
    }

    fn give_up(&mut self, now: Time) {
        self.stats.gave_up += 1;
        self.event(Event::GaveUp);
        self.pause(now);
    }

    fn refused(&mut self, now: Time, code: u16) {
        self.stats.refused += 1;
        self.event(Event::Refused { code });
        self.pause(now);
    }

    fn saw_mapped(&mut self, mapped: SocketAddr) {
        if let Some(old) = self.mapped {
            if old != mapped {
                self.event(Event::MappedAddressChanged { old, new: mapped });
            }
        }
        self.mapped = Some(mapped);
    }

    fn on_register_answer(&mut self, now: Time, m: &Message<'_>) -> bool {
        let Phase::Registering(a) = &self.phase else {
            return false;
        };
        let txid = m.transaction_id();
        if m.class() == Class::Success {
            // The server answers the latest REGISTER it saw, maybe late: any of ours counts.
            if !a.txids.contains(txid) {
                return false;
            }
            let Ok(r) = Registered::parse(m) else {
                return false;
            };
            self.stats.registrations += 1;
            self.token = Some(r.token);
            if r.keepalive_interval_ms > 0 {
                self.keepalive_interval = Duration::from_millis(u64::from(r.keepalive_interval_ms))
                    .max(MIN_KEEPALIVE_INTERVAL);
            }
            self.failures = 0;
            self.redirects = 0;
            self.saw_mapped(r.mapped);
            self.event(Event::Registered { mapped: r.mapped });
            self.schedule_keepalive(now);
            return true;
        }
        // Errors only count for the content in flight (an older one may carry an older nonce).
        if txid != &a.tx.txid {
            return false;
        }
        let Ok(e) = ErrorAnswer::parse(m) else {
            return false;
        };
        if e.code == code::TRY_ALTERNATE {
            let Ok(t) = TryAlternate::parse(m) else {
                return false;
            };
            self.try_alternate(now, t.alternate);
            return true;
        }
        match (e.code, e.nonce) {
            (code::NONCE_REQUIRED | code::STALE_NONCE, Some(nonce)) => {
                self.nonce = Some(nonce);
                self.new_register_content(now);
                let (initial, max) = (self.config.rto_initial, self.config.rto_max);
                if let Phase::Registering(a) = &mut self.phase {
                    a.nonce_retries += 1;
                    if a.nonce_retries <= MAX_IMMEDIATE_NONCE_RETRIES {
                        a.tx.restart(now, initial, max);
                    }
                }
                true
            }
            (code::NONCE_REQUIRED | code::STALE_NONCE, None) => false,
            (c, _) => {
                self.refused(now, c);
                true
            }
        }
    }

    fn on_keepalive_answer(&mut self, now: Time, m: &Message<'_>) -> bool {
        let Phase::KeepingAlive(tx) = &self.phase else {
            return false;
        };
        if m.transaction_id() != &tx.txid {
            return false;
        }
        if m.class() == Class::Success {
            let Ok(k) = KeptAlive::parse(m) else {
                return false;
            };
            self.stats.keepalives += 1;
            if let Some(t) = k.token {
                self.token = Some(t);
            }
            self.failures = 0;
            self.saw_mapped(k.mapped);
            self.event(Event::KeptAlive { mapped: k.mapped });
            self.schedule_keepalive(now);
            return true;
        }
        let Ok(e) = ErrorAnswer::parse(m) else {
            return false;
        };
        if e.code == code::TRY_ALTERNATE {
            // The flock's list changed since we registered: the name has a new owner.
            let Ok(t) = TryAlternate::parse(m) else {
                return false;
            };
            self.try_alternate(now, t.alternate);
            return true;
        }
        if e.code == code::REREGISTER {
            self.token = None;
            self.event(Event::TokenRefused);
            self.start_registering(now);
        } else {
            self.refused(now, e.code);
        }
        true
    }

    fn on_check(&mut self, now: Time, src: SocketAddr, m: &Message<'_>) {
        let Ok(c) = Check::parse(m) else {
            self.stats.checks_ignored += 1;
            return;
        };
        // Stale CHECKs (replayed long after the server sent them) are ignored; the skew allowance
        // matches the server's REGISTER timestamp tolerance.
        if c.name != self.config.name
            || !c.fresh(now.0, CLOCK_SKEW_MS)
            || !c.from_flock(&self.config.flock_public_key)
        {
            self.stats.checks_ignored += 1;
            return;
        }
        if !self.check_answers.take(now) || self.answers.len() >= MAX_PENDING_ANSWERS {
            self.stats.checks_dropped += 1;
            return;
        }
        self.answers.push_back(PendingAnswer {
            dst: src,
            txid: *m.transaction_id(),
            challenge: c.challenge,
        });
        self.stats.checks_answered += 1;
        self.event(Event::CheckAnswered { from: src });
    }
}

/// An address a 300 may send us to: a unicast IP and a port.
fn unicast(a: SocketAddr) -> bool {
    let ip = canonical(a).ip();
    let multi = match ip {
        std::net::IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => v6.is_multicast(),
    };
    a.port() != 0 && !ip.is_unspecified() && !multi
}

/// Clock difference tolerated when judging the expiry of a CHECK, PERSONAS or CONNECT (10 min).
pub(crate) const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

impl Transaction {
    fn start(
        txid: TransactionId,
        now: Time,
        rto_initial: Duration,
        rto_max: Duration,
    ) -> Transaction {
        Transaction {
            txid,
            started: now,
            next_send: now + rto_initial,
            rto: (rto_initial * 2).min(rto_max),
            send_now: true,
            is_retransmission: false,
        }
    }

    /// Due now: send again and back off.
    fn retransmit(&mut self, now: Time, rto_max: Duration) {
        self.send_now = true;
        self.next_send = now + self.rto;
        self.rto = (self.rto * 2).min(rto_max);
    }

    /// Send at once and restart the backoff (new content, or a network change).
    fn restart(&mut self, now: Time, rto_initial: Duration, rto_max: Duration) {
        self.send_now = true;
        self.next_send = now + rto_initial;
        self.rto = (rto_initial * 2).min(rto_max);
    }
}
