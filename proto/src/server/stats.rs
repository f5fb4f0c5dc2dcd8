//! Counters of one shard, read by the host for its metrics.

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
