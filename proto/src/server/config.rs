//! Knobs of a server shard. The defaults are flockd's documented ones (docs/CONFIG.md) for a
//! server of one core: flockd reads them from here and splits the bounds over its cores; tests
//! shorten the timers.

use core::time::Duration;

/// Settings of one shard (one core). Bounds are per shard: flockd divides its configured
/// bounds by its core count, so the defaults are those of a one-core server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// A registration lives this long after the last valid registration or keep-alive.
    pub entry_lifetime: Duration,
    /// Keep-alive interval the server asks appliances for.
    pub keepalive_interval: Duration,
    /// How long the old address of a moving name has to answer a CHECK.
    pub check_window: Duration,
    /// First CHECK retransmission timeout; doubles up to `rto_max`.
    pub rto_initial: Duration,
    pub rto_max: Duration,
    /// Validity of an issued keep-alive token; keep-alives refresh it past half-life.
    pub token_lifetime: Duration,
    /// Validity of a registration nonce.
    pub nonce_lifetime: Duration,
    /// Largest accepted difference between a REGISTER's timestamp and the server clock.
    pub timestamp_tolerance: Duration,
    /// Most registrations held; past it new names get CAPACITY, known ones keep working.
    pub max_registrations: usize,
    /// Names (per key) whose last REGISTER is remembered against replays (see
    /// `server::replay`), for at most `nonce_lifetime` each; past it REGISTERs of other names
    /// and keys get CAPACITY.
    pub max_replay_records: usize,
    /// Most address-change checks running at once.
    pub max_pending_checks: usize,
    /// Checks a single source IP may start in a burst, and per minute after that.
    pub checks_per_ip_burst: u32,
    pub checks_per_ip_per_minute: u32,
    /// Slots of the fixed-size per-IP rate table (IPs that hash together share a budget).
    pub rate_table_slots: usize,
    /// Answer STUN Binding requests smaller than the answer (up to 44 bytes for 20). Off by
    /// default: no reply is ever larger than its request unless an operator opts in.
    pub answer_small_binding: bool,
    /// How often expired registrations are swept out of the table.
    pub sweep_interval: Duration,
    /// Browser log-in sessions (retransmissions use `rto_initial` doubling up to `rto_max`).
    pub login: LoginConfig,
    pub policy: PolicyConfig,
    /// The flock this server belongs to (one server by default: every name is ours).
    pub flock: FlockConfig,
}

/// What a shard knows of its flock (built by the host from `crate::membership::Membership`).
/// Names are split by `NameHash::server_index(servers.len())`. The default is a flock of one.
#[derive(Clone, Debug, Default)]
pub struct FlockConfig {
    /// This server's index in `servers`.
    pub me: usize,
    /// Every server's UDP address, in flock order (index = position). Empty: a flock of one.
    pub servers: Vec<std::net::SocketAddr>,
    /// SHA-256 of the canonical membership list: peers with another digest are refused.
    pub digest: [u8; 32],
    /// Key of MESSAGE-INTEGRITY-SHA256 on peer messages, derived from the flock key.
    pub peer_secret: [u8; 32],
}

impl FlockConfig {
    /// Servers in the flock (at least 1).
    pub fn size(&self) -> usize {
        self.servers.len().max(1)
    }

    /// Index of the server owning `hash`.
    pub fn owner(&self, hash: &crate::NameHash) -> usize {
        hash.server_index(self.size())
    }

    /// Index of the server owning `hash` when it is not this one (never in a flock of one).
    pub fn owner_elsewhere(&self, hash: &crate::NameHash) -> Option<usize> {
        owner_elsewhere_in(self.servers.len(), self.me, hash)
    }

    /// True when this server owns `hash`.
    pub fn owns(&self, hash: &crate::NameHash) -> bool {
        self.owner_elsewhere(hash).is_none()
    }
}

/// In a flock of `servers` where this server is `me`: the owner of `hash` when it is another
/// server (never in a flock of one).
pub(crate) fn owner_elsewhere_in(
    servers: usize,
    me: usize,
    hash: &crate::NameHash,
) -> Option<usize> {
    if servers <= 1 {
        return None;
    }
    let owner = hash.server_index(servers);
    (owner != me).then_some(owner)
}

/// What the server asks of an operator's policy (plugins). Off by default: every identity may
/// register any free name, and nothing is audited.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// Ask before a first registration or a key change (`PolicyEvent::Admit`).
    pub admission: bool,
    /// Emit audit events (registered, expired, address changed).
    pub audit: bool,
    /// Admissions waiting for a verdict, and verdicts cached; past it REGISTERs for new names
    /// are dropped until verdicts come back (appliances retransmit).
    pub max_admissions: usize,
    /// How long a verdict holds for the same name and identity.
    pub verdict_ttl: Duration,
    /// Policy events queued for the host; past it they are dropped and counted.
    pub max_events: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            admission: false,
            audit: false,
            max_admissions: 1024,
            verdict_ttl: Duration::from_secs(60),
            max_events: 4096,
        }
    }
}

/// Bounds and timers of the log-in sessions of one shard.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// Most sessions at once; past it an `Open` fails with `Busy`.
    pub max_sessions: usize,
    /// Bytes of persona lists cached (LRU); a list larger than this is not cached.
    pub persona_cache_bytes: usize,
    /// Largest persona list fetched; larger is `Malformed`.
    pub max_personas_bytes: usize,
    /// Largest SDP taken from either side.
    pub max_sdp_bytes: usize,
    /// Most ICE candidates per direction per session.
    pub max_candidates: usize,
    /// An appliance that leaves a request unanswered this long fails the session
    /// (`Unreachable` before it accepted, `Timeout` after); also the longest wait for its offer.
    pub give_up_after: Duration,
    /// Longest life of a session, whatever it is doing.
    pub session_lifetime: Duration,
    /// Credential attempts per session.
    pub max_attempts: u8,
    /// Validity stamped on signed requests (PERSONAS, CONNECT): bounds replays.
    pub request_validity: Duration,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_sessions: 16 << 10,
            persona_cache_bytes: 16 << 20,
            max_personas_bytes: 64 << 10,
            max_sdp_bytes: 32 << 10,
            max_candidates: 64,
            give_up_after: Duration::from_secs(10),
            session_lifetime: Duration::from_secs(120),
            max_attempts: 3,
            request_validity: Duration::from_secs(10),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            entry_lifetime: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            check_window: Duration::from_secs(60),
            rto_initial: Duration::from_millis(500),
            rto_max: Duration::from_secs(8),
            token_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            timestamp_tolerance: Duration::from_secs(600),
            max_registrations: 4 << 20,
            max_replay_records: 1 << 20,
            max_pending_checks: 16 << 10,
            checks_per_ip_burst: 8,
            checks_per_ip_per_minute: 6,
            rate_table_slots: 4096,
            answer_small_binding: false,
            sweep_interval: Duration::from_secs(5),
            login: LoginConfig::default(),
            policy: PolicyConfig::default(),
            flock: FlockConfig::default(),
        }
    }
}
