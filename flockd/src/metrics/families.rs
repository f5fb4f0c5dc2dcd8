//! Every metric family flockd adds to `/metrics`, in exposition order: name, type, help and
//! how each sample is read. docs/CONFIG.md's metrics table lists the same (a test checks).

use super::{CoreSnapshot, Family, Sample};
use flock_engine::CoreStats;
use flock_plugins::RunnerStats;
use flock_ws::MetricKind::{Counter, Gauge};

/// A family: `family!(Kind, "name", "help", |s| value)` for one sample per core (or for the
/// server), or `family!(Kind, "name", "help", "label": ["value" => |s| sample, …])`.
macro_rules! family {
    ($kind:expr, $name:literal, $help:literal, |$s:ident| $read:expr) => {
        family!($kind, $name, $help, "": ["" => |$s| $read])
    };
    ($kind:expr, $name:literal, $help:literal, $label:literal: [$($value:literal => |$s:ident| $read:expr),* $(,)?]) => {
        Family {
            name: $name,
            kind: $kind,
            help: $help,
            label: $label,
            samples: &[$(Sample { value: $value, read: |$s| Some($read as u64) }),*],
        }
    };
}

/// Each core's packet engine, read live (label `core`).
pub const ENGINE: &[Family<CoreStats>] = &[
    family!(Counter, "flock_core_packets_total",
        "UDP datagrams per core: received from the socket, answered (replies sent), transmitted (other sends), forwarded_out to / forwarded_in from the owning core.",
        "direction": ["received" => |s| s.received, "answered" => |s| s.answered, "transmitted" => |s| s.transmitted,
            "forwarded_out" => |s| s.forwarded_out, "forwarded_in" => |s| s.forwarded_in]),
    Family {
        name: "flock_core_drops_total",
        kind: Counter,
        help: "Datagrams dropped by the packet engine, by reason: mesh_full (owner core's inbox full), truncated (too long), misrouted (cores disagreeing on the owner: a bug), kernel (socket receive queue full; absent when the kernel does not say).",
        label: "reason",
        samples: &[
            Sample { value: "mesh_full", read: |s| Some(s.dropped_mesh_full) },
            Sample { value: "truncated", read: |s| Some(s.dropped_truncated) },
            Sample { value: "misrouted", read: |s| Some(s.dropped_misrouted) },
            Sample { value: "kernel", read: |s| s.kernel_drops },
        ],
    },
    family!(Counter, "flock_core_socket_errors_total",
        "Socket errors: send (datagrams the kernel refused) and receive (recvmmsg failures).",
        "direction": ["send" => |s| s.send_errors, "receive" => |s| s.recv_errors]),
    family!(Counter, "flock_core_batches_total", "recvmmsg calls that returned at least one datagram.", |s| s.batches),
    family!(Counter, "flock_core_wakeups_total", "Times the core waited for work.", |s| s.wakeups),
];

/// Each core's server, as last published (label `core`).
pub const CORES: &[Family<CoreSnapshot>] = &[
    // Requests.
    family!(Counter, "flock_server_datagrams_total", "Datagrams the core's state machine handled.", |s| s.stats.received),
    family!(Counter, "flock_server_drops_total",
        "Datagrams the state machine answered nothing to, by reason: malformed, ignored (not for us), amplification (the answer would have been larger than the request).",
        "reason": ["malformed" => |s| s.stats.malformed, "ignored" => |s| s.stats.ignored,
            "amplification" => |s| s.stats.amplification_suppressed]),
    family!(Counter, "flock_server_bindings_total", "STUN Binding requests answered.", |s| s.stats.binding),
    // Registrations.
    family!(Counter, "flock_server_registrations_total", "Names registered (new registrations and re-registrations).", |s| s.stats.registered),
    family!(Counter, "flock_server_registrations_refused_total",
        "REGISTERs refused, by reason: bad_signature, clock_skew, name_taken, capacity (server full), admission_denied (plugins said no), admission_full (too many admissions waiting), replayed (taken before: a retransmission or a replay), replay_full (the replay guard at its bound).",
        "reason": ["bad_signature" => |s| s.stats.bad_signature, "clock_skew" => |s| s.stats.clock_skew,
            "name_taken" => |s| s.stats.name_taken, "capacity" => |s| s.stats.capacity_refused,
            "admission_denied" => |s| s.stats.admissions_denied, "admission_full" => |s| s.stats.admissions_full,
            "replayed" => |s| s.stats.register_replays, "replay_full" => |s| s.stats.replay_full]),
    family!(Counter, "flock_server_nonces_issued_total", "Registration nonces handed out.", |s| s.stats.nonces_issued),
    family!(Counter, "flock_server_keepalives_total", "Keep-alives accepted.", |s| s.stats.keepalives),
    family!(Counter, "flock_server_tokens_refused_total", "Keep-alives refused for their token.", |s| s.stats.tokens_refused),
    family!(Counter, "flock_server_redirected_total",
        "REGISTERs and KEEPALIVEs for names another server of the flock owns, answered 300 Try-Alternate.",
        |s| s.stats.redirected),
    // Peers (multi-server flocks).
    family!(Counter, "flock_peer_dropped_total",
        "Peer messages dropped, by reason: bad_integrity (MESSAGE-INTEGRITY-SHA256 missing or wrong), unknown_source (a verified message from an address that is not that peer's).",
        "reason": ["bad_integrity" => |s| s.stats.peer_bad_integrity, "unknown_source" => |s| s.stats.peer_unknown_source]),
    family!(Counter, "flock_peer_membership_mismatch_total",
        "Peer messages showing another membership list (also logged as errors): fix the [flock] lists.",
        |s| s.stats.peer_digest_mismatch),
    family!(Counter, "flock_peer_lookups_total",
        "LOOKUPs: sent (to owners, for browsers served here), answered (for peers).",
        "direction": ["sent" => |s| s.stats.lookups_sent, "answered" => |s| s.stats.lookups_answered]),
    family!(Counter, "flock_peer_relay_fallbacks_total",
        "Log-in sessions that fell back to relaying through the owner (the appliance did not answer this server).",
        |s| s.stats.relay_fallbacks),
    family!(Counter, "flock_peer_relayed_total",
        "Datagrams relayed, by direction: to_appliance and to_peer (as the owner), from_appliance (as the serving server).",
        "direction": ["to_appliance" => |s| s.stats.relayed_to_appliance, "to_peer" => |s| s.stats.relayed_to_peer,
            "from_appliance" => |s| s.stats.relayed_from_appliance]),
    family!(Counter, "flock_peer_relay_refused_total",
        "RELAYs not forwarded, by reason: refused (no live registration, or not the owner), table_full.",
        "reason": ["refused" => |s| s.stats.relay_refused, "table_full" => |s| s.stats.relay_table_full]),
    family!(Counter, "flock_server_swept_total", "Expired registrations removed from memory.", |s| s.stats.swept),
    family!(Gauge, "flock_server_registrations", "Registrations held (expired ones not yet swept included).", |s| s.registrations),
    family!(Gauge, "flock_server_table_bytes", "Bytes held by the registration table.", |s| s.table_bytes),
    // Address checks.
    family!(Counter, "flock_server_checks_started_total", "Address-change checks started.", |s| s.stats.checks_started),
    family!(Counter, "flock_server_checks_refused_total",
        "Address-change checks not started, by reason: rate_limited (per source IP), full (too many running).",
        "reason": ["rate_limited" => |s| s.stats.checks_rate_limited, "full" => |s| s.stats.checks_full]),
    family!(Counter, "flock_server_checks_ended_total",
        "Address-change checks ended, by outcome: moved (the name moved), kept_old (the old address answered).",
        "outcome": ["moved" => |s| s.stats.moved, "kept_old" => |s| s.stats.checks_kept_old]),
    family!(Counter, "flock_server_silent_while_checking_total",
        "Requests not answered because their name was being checked.",
        |s| s.stats.silent_while_checking),
    family!(Gauge, "flock_server_checks_pending", "Address-change checks running.", |s| s.checks_pending),
    // Admissions (plugins).
    family!(Counter, "flock_server_admissions_asked_total",
        "Registrations handed to the plugins for admission.",
        |s| s.stats.admissions_asked),
    family!(Gauge, "flock_server_admissions_pending", "Admissions waiting for the plugins' verdict.", |s| s.admissions_pending),
    family!(Gauge, "flock_server_admission_verdicts_cached", "Admission verdicts cached.", |s| s.admission_verdicts),
    family!(Counter, "flock_server_policy_events_dropped_total",
        "Admission and audit events dropped because their queue was full.",
        |s| s.stats.policy_events_dropped),
    // Log-ins.
    family!(Counter, "flock_login_sessions_opened_total", "Log-in sessions started on this core.", |s| s.stats.sessions_opened),
    family!(Counter, "flock_login_sessions_ended_total",
        "Log-in sessions ended, by outcome: done, failed (refused opens included), closed (by the gateway).",
        "outcome": ["done" => |s| s.stats.sessions_done, "failed" => |s| s.stats.sessions_failed,
            "closed" => |s| s.stats.sessions_closed]),
    family!(Counter, "flock_login_attempts_total",
        "Credential attempts the appliances answered, by outcome: accepted, rejected.",
        "outcome": ["accepted" => |s| s.stats.logins_accepted, "rejected" => |s| s.stats.logins_rejected]),
    family!(Counter, "flock_login_persona_cache_total",
        "Persona list look-ups, by outcome: hit (served from the cache), miss (fetched).",
        "outcome": ["hit" => |s| s.stats.personas_cache_hits, "miss" => |s| s.stats.personas_cache_misses]),
    family!(Counter, "flock_login_connects_sent_total", "CONNECT requests sent to appliances.", |s| s.stats.connects_sent),
    family!(Counter, "flock_login_retransmits_total",
        "Log-in requests sent again after a retransmission timeout.",
        |s| s.stats.retransmits),
    family!(Counter, "flock_login_signals_total",
        "SIGNALs relayed: in (from appliances), out (to appliances, acknowledged).",
        "direction": ["in" => |s| s.stats.signals_in, "out" => |s| s.stats.signals_out]),
    family!(Counter, "flock_login_signals_ignored_total",
        "SIGNALs not relayed, by reason: duplicate (retransmission), unknown_session.",
        "reason": ["duplicate" => |s| s.stats.signals_duplicate, "unknown_session" => |s| s.stats.signals_unknown_session]),
    family!(Counter, "flock_login_commands_ignored_total",
        "Gateway commands for sessions that no longer exist.",
        |s| s.stats.login_commands_ignored),
    family!(Gauge, "flock_login_sessions", "Log-in sessions open.", |s| s.login.sessions),
    family!(Gauge, "flock_login_requests_outstanding",
        "Log-in requests waiting for an appliance's answer.",
        |s| s.login.outstanding),
    family!(Gauge, "flock_login_persona_cache_lists", "Persona lists cached.", |s| s.login.cached_lists),
    family!(Gauge, "flock_login_persona_cache_bytes", "Bytes of persona lists cached.", |s| s.login.cache_bytes),
];

/// The plugin runner, all plugins together (no label).
pub const RUNNER: &[Family<RunnerStats>] = &[
    family!(
        Counter,
        "flock_plugin_calls_total",
        "Plugin hook calls asked for (registrations, log-ins, persona lists).",
        |s| s.calls
    ),
    family!(
        Counter,
        "flock_plugin_denied_total",
        "Hook calls answered other than allow (policy, error, timeout or full queue).",
        |s| s.denied
    ),
    family!(
        Counter,
        "flock_plugin_timeouts_total",
        "Hook calls answered at the deadline (budget) because the plugins had not finished.",
        |s| s.timeouts
    ),
    family!(
        Counter,
        "flock_plugin_errors_total",
        "Error codes and caught panics returned by plugins.",
        |s| s.errors
    ),
    family!(
        Counter,
        "flock_plugin_queue_full_total",
        "Hook calls refused at once because the queue was full.",
        |s| s.queue_full
    ),
    family!(
        Counter,
        "flock_plugin_audit_dropped_total",
        "Audit events dropped because the audit queue was full.",
        |s| s.audit_dropped
    ),
];

/// The plugin hooks' latency histogram (label `hook`, buckets `le`), after the runner's.
pub const HOOK_SECONDS: (&str, &str) = (
    "flock_plugin_hook_seconds",
    "Time the plugin chain took to run a hook call, by hook (on the plugin thread; queueing not included, overruns included when they end).",
);

/// The process, last (no label): its resident memory, bytes.
pub const PROCESS: &[Family<u64>] = &[family!(
    Gauge,
    "flock_process_resident_memory_bytes",
    "Resident memory of the flockd process (VmRSS).",
    |rss| *rss
)];
