//! What an appliance is configured with, and the bounds and rates it keeps to.

use flock_proto::identity::PUBLIC_KEY_LEN;
use flock_proto::{Name, Time};
use std::net::SocketAddr;
use std::time::Duration;

/// A buffer of this size always holds anything [`Appliance::poll_output`](super::Appliance::poll_output) writes.
pub const MAX_DATAGRAM: usize = 1500;

/// Transaction ids remembered for one registration attempt (a success for any of them counts).
pub(super) const MAX_TXIDS_PER_ATTEMPT: usize = 32;

/// CHECK answers waiting to be sent; more CHECKs arriving before a `poll_output` are dropped.
pub(super) const MAX_PENDING_ANSWERS: usize = 16;

/// Events kept for `poll_output`; past it the oldest are dropped.
pub(super) const MAX_EVENTS: usize = 256;

/// Nonce errors in one attempt answered by an immediate re-send; later ones wait for the
/// retransmission timer (a NAT that changes port on every packet must not make us spin).
pub(super) const MAX_IMMEDIATE_NONCE_RETRIES: u32 = 3;

/// CHECK answers allowed in a burst, then one per second: the flock retransmits a CHECK at
/// most every 0.5 s and doubling, so this never holds back a real one, while a captured CHECK
/// replayed from spoofed sources cannot make the appliance a (slightly amplifying) reflector.
pub(super) const CHECK_ANSWER_BURST: u32 = 8;

pub(super) const CHECK_ANSWER_REFILL: Duration = Duration::from_secs(1);

/// 300 Try-Alternate answers followed in a row before pausing (one is enough in a sane flock;
/// more allow for a list that changes while the appliance registers).
pub const MAX_REDIRECTS: u32 = 3;

/// Peers remembered for `only_known_peers` (the servers, and whoever we answered).
pub(super) const MAX_KNOWN_PEERS: usize = 16;

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
    /// A request unanswered this long is abandoned ([`Event::GaveUp`](super::Event::GaveUp)).
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
    /// A SIGNAL of ours unacknowledged this long fails its session ([`Event::SessionFailed`](super::Event::SessionFailed)).
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

/// A token bucket: `burst` at once, then one per `refill`.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(super) tokens: u32,
    pub(super) refilled: Time,
    pub(super) burst: u32,
    pub(super) refill_ms: u64,
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

/// Clock difference tolerated when judging the expiry of a CHECK, PERSONAS or CONNECT (10 min).
pub(crate) const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
