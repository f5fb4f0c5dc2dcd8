//! What flockd adds to the gateway's `GET /metrics`: each core's engine counters and server
//! counters, the plugin runner's counters, and the process's resident memory.
//!
//! The cores own their server's counters (plain integers, no atomics on the packet path): each
//! core copies them into its slot of [`CoreSnapshots`] from its timer path, at most every
//! [`PUBLISH_EVERY`], so server figures lag by up to that much. Engine counters are read live.
//!
//! Labels are only `core`, `direction`, `reason`, `outcome` and (the plugin hook latency
//! histogram) `hook` and `le`, all from fixed sets: never a name, a user or an address.

use flock_engine::{CoreStats, EngineHandle};
use flock_plugins::{Hook, Latency, Runner, RunnerStats, LATENCY_BOUNDS};
use flock_proto::server::{Entropy, LoginOccupancy, Server, Stats};
use flock_ws::MetricKind::{Counter, Gauge};
use flock_ws::{write_metric, MetricKind, MetricsSource};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How often a core publishes its server's counters (at most; from its timer path).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// One core's server counters and table sizes, as last published.
#[derive(Clone, Debug, Default)]
pub struct CoreSnapshot {
    pub stats: Stats,
    /// Registrations held (dead ones not yet swept included).
    pub registrations: usize,
    pub checks_pending: usize,
    pub table_bytes: usize,
    pub login: LoginOccupancy,
    pub admissions_pending: usize,
    pub admission_verdicts: usize,
}

/// A slot per core, created by the first core to publish (the core count is known there).
#[derive(Default)]
pub struct CoreSnapshots {
    slots: OnceLock<Box<[Mutex<Option<CoreSnapshot>>]>>,
}

impl CoreSnapshots {
    /// Sizes the slots (the first call wins; every core passes the same count).
    pub fn init(&self, cores: usize) {
        self.slots
            .get_or_init(|| (0..cores).map(|_| Mutex::new(None)).collect());
    }

    /// Copies `server`'s figures into `core`'s slot. Never waits: if a scrape is reading the
    /// slot right now, this publication is skipped (the next one comes within a second).
    pub fn publish<E: Entropy>(&self, core: usize, server: &Server<E>) {
        let Some(slot) = self.slots.get().and_then(|s| s.get(core)) else {
            return;
        };
        let Ok(mut slot) = slot.try_lock() else {
            return;
        };
        let (registrations, checks_pending) = server.occupancy();
        let (admissions_pending, admission_verdicts) = server.admission_occupancy();
        let snap = slot.get_or_insert_with(CoreSnapshot::default);
        snap.stats.clone_from(server.stats());
        snap.registrations = registrations;
        snap.checks_pending = checks_pending;
        snap.table_bytes = server.table_bytes();
        snap.login = server.login_occupancy();
        snap.admissions_pending = admissions_pending;
        snap.admission_verdicts = admission_verdicts;
    }

    /// (core, snapshot) of every core that has published.
    pub fn read(&self) -> Vec<(usize, CoreSnapshot)> {
        let Some(slots) = self.slots.get() else {
            return Vec::new();
        };
        slots
            .iter()
            .enumerate()
            .filter_map(|(core, s)| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .map(|snap| (core, snap))
            })
            .collect()
    }
}

/// flockd's [`MetricsSource`].
pub struct FlockMetrics {
    /// Weak: main must get the engine back to join it at shutdown.
    pub engine: Weak<EngineHandle>,
    pub cores: Arc<CoreSnapshots>,
    pub runner: Arc<Runner>,
}

impl MetricsSource for FlockMetrics {
    fn render(&self, out: &mut String) {
        if let Some(engine) = self.engine.upgrade() {
            render_engine(out, &engine.stats());
        }
        render_cores(out, &self.cores.read());
        render_runner(out, &self.runner.stats());
        render_latency(out, &Hook::ALL.map(|h| (h, self.runner.latency(h))));
        if let Some(rss) = resident_bytes() {
            write_metric(
                out,
                "flock_process_resident_memory_bytes",
                Gauge,
                "Resident memory of the flockd process (VmRSS).",
                [(&[][..], rss)],
            );
        }
    }
}

/// Writes one family with a sample per core (and per extra label value, when `values` gives
/// several): `values(item)` is a list of (label value, sample).
fn per_core<T>(
    out: &mut String,
    items: &[(String, T)],
    name: &str,
    kind: MetricKind,
    help: &str,
    label: &str,
    values: impl Fn(&T) -> Vec<(&'static str, u64)>,
) {
    let mut rows: Vec<(String, &'static str, u64)> = Vec::new();
    for (core, item) in items {
        for (v, n) in values(item) {
            rows.push((core.clone(), v, n));
        }
    }
    let labels: Vec<[(&str, &str); 2]> = rows
        .iter()
        .map(|(c, v, _)| [("core", c.as_str()), (label, *v)])
        .collect();
    let samples = rows
        .iter()
        .zip(&labels)
        .map(|((_, v, n), l)| (if v.is_empty() { &l[..1] } else { &l[..] }, *n));
    write_metric(out, name, kind, help, samples);
}

fn render_engine(out: &mut String, stats: &[CoreStats]) {
    let items: Vec<(String, CoreStats)> = stats.iter().map(|s| (s.core.to_string(), *s)).collect();
    per_core(out, &items, "flock_core_packets_total", Counter,
        "UDP datagrams per core: received from the socket, answered (replies sent), transmitted (other sends), forwarded_out to / forwarded_in from the owning core.",
        "direction", |s| vec![("received", s.received), ("answered", s.answered), ("transmitted", s.transmitted), ("forwarded_out", s.forwarded_out), ("forwarded_in", s.forwarded_in)]);
    per_core(out, &items, "flock_core_drops_total", Counter,
        "Datagrams dropped by the packet engine, by reason: mesh_full (owner core's inbox full), truncated (too long), misrouted (cores disagreeing on the owner: a bug), kernel (socket receive queue full; absent when the kernel does not say).",
        "reason", |s| {
            let mut v = vec![("mesh_full", s.dropped_mesh_full), ("truncated", s.dropped_truncated), ("misrouted", s.dropped_misrouted)];
            v.extend(s.kernel_drops.map(|k| ("kernel", k)));
            v
        });
    per_core(
        out,
        &items,
        "flock_core_socket_errors_total",
        Counter,
        "Socket errors: send (datagrams the kernel refused) and receive (recvmmsg failures).",
        "direction",
        |s| vec![("send", s.send_errors), ("receive", s.recv_errors)],
    );
    per_core(
        out,
        &items,
        "flock_core_batches_total",
        Counter,
        "recvmmsg calls that returned at least one datagram.",
        "",
        |s| vec![("", s.batches)],
    );
    per_core(
        out,
        &items,
        "flock_core_wakeups_total",
        Counter,
        "Times the core waited for work.",
        "",
        |s| vec![("", s.wakeups)],
    );
}

fn render_cores(out: &mut String, snaps: &[(usize, CoreSnapshot)]) {
    let items: Vec<(String, &CoreSnapshot)> =
        snaps.iter().map(|(c, s)| (c.to_string(), s)).collect();
    let one = |out: &mut String,
               name: &str,
               kind: MetricKind,
               help: &str,
               f: fn(&CoreSnapshot) -> u64| {
        per_core(out, &items, name, kind, help, "", |s| vec![("", f(s))]);
    };
    // Requests.
    one(
        out,
        "flock_server_datagrams_total",
        Counter,
        "Datagrams the core's state machine handled.",
        |s| s.stats.received,
    );
    per_core(out, &items, "flock_server_drops_total", Counter,
        "Datagrams the state machine answered nothing to, by reason: malformed, ignored (not for us), amplification (the answer would have been larger than the request).",
        "reason", |s| vec![("malformed", s.stats.malformed), ("ignored", s.stats.ignored), ("amplification", s.stats.amplification_suppressed)]);
    one(
        out,
        "flock_server_bindings_total",
        Counter,
        "STUN Binding requests answered.",
        |s| s.stats.binding,
    );
    // Registrations.
    one(
        out,
        "flock_server_registrations_total",
        Counter,
        "Names registered (new registrations and re-registrations).",
        |s| s.stats.registered,
    );
    per_core(out, &items, "flock_server_registrations_refused_total", Counter,
        "REGISTERs refused, by reason: bad_signature, clock_skew, name_taken, capacity (server full), admission_denied (plugins said no), admission_full (too many admissions waiting), replayed (taken before: a retransmission or a replay), replay_full (the replay guard at its bound).",
        "reason", |s| vec![
            ("bad_signature", s.stats.bad_signature), ("clock_skew", s.stats.clock_skew), ("name_taken", s.stats.name_taken),
            ("capacity", s.stats.capacity_refused), ("admission_denied", s.stats.admissions_denied), ("admission_full", s.stats.admissions_full),
            ("replayed", s.stats.register_replays), ("replay_full", s.stats.replay_full),
        ]);
    one(
        out,
        "flock_server_nonces_issued_total",
        Counter,
        "Registration nonces handed out.",
        |s| s.stats.nonces_issued,
    );
    one(
        out,
        "flock_server_keepalives_total",
        Counter,
        "Keep-alives accepted.",
        |s| s.stats.keepalives,
    );
    one(
        out,
        "flock_server_tokens_refused_total",
        Counter,
        "Keep-alives refused for their token.",
        |s| s.stats.tokens_refused,
    );
    one(out, "flock_server_redirected_total", Counter, "REGISTERs and KEEPALIVEs for names another server of the flock owns, answered 300 Try-Alternate.", |s| s.stats.redirected);
    // Peers (multi-server flocks).
    per_core(out, &items, "flock_peer_dropped_total", Counter,
        "Peer messages dropped, by reason: bad_integrity (MESSAGE-INTEGRITY-SHA256 missing or wrong), unknown_source (a verified message from an address that is not that peer's).",
        "reason", |s| vec![("bad_integrity", s.stats.peer_bad_integrity), ("unknown_source", s.stats.peer_unknown_source)]);
    one(out, "flock_peer_membership_mismatch_total", Counter, "Peer messages showing another membership list (also logged as errors): fix the [flock] lists.", |s| s.stats.peer_digest_mismatch);
    per_core(
        out,
        &items,
        "flock_peer_lookups_total",
        Counter,
        "LOOKUPs: sent (to owners, for browsers served here), answered (for peers).",
        "direction",
        |s| {
            vec![
                ("sent", s.stats.lookups_sent),
                ("answered", s.stats.lookups_answered),
            ]
        },
    );
    one(out, "flock_peer_relay_fallbacks_total", Counter, "Log-in sessions that fell back to relaying through the owner (the appliance did not answer this server).", |s| s.stats.relay_fallbacks);
    per_core(out, &items, "flock_peer_relayed_total", Counter,
        "Datagrams relayed, by direction: to_appliance and to_peer (as the owner), from_appliance (as the serving server).",
        "direction", |s| vec![("to_appliance", s.stats.relayed_to_appliance), ("to_peer", s.stats.relayed_to_peer), ("from_appliance", s.stats.relayed_from_appliance)]);
    per_core(out, &items, "flock_peer_relay_refused_total", Counter, "RELAYs not forwarded, by reason: refused (no live registration, or not the owner), table_full.",
        "reason", |s| vec![("refused", s.stats.relay_refused), ("table_full", s.stats.relay_table_full)]);
    one(
        out,
        "flock_server_swept_total",
        Counter,
        "Expired registrations removed from memory.",
        |s| s.stats.swept,
    );
    one(
        out,
        "flock_server_registrations",
        Gauge,
        "Registrations held (expired ones not yet swept included).",
        |s| s.registrations as u64,
    );
    one(
        out,
        "flock_server_table_bytes",
        Gauge,
        "Bytes held by the registration table.",
        |s| s.table_bytes as u64,
    );
    // Address checks.
    one(
        out,
        "flock_server_checks_started_total",
        Counter,
        "Address-change checks started.",
        |s| s.stats.checks_started,
    );
    per_core(out, &items, "flock_server_checks_refused_total", Counter, "Address-change checks not started, by reason: rate_limited (per source IP), full (too many running).",
        "reason", |s| vec![("rate_limited", s.stats.checks_rate_limited), ("full", s.stats.checks_full)]);
    per_core(out, &items, "flock_server_checks_ended_total", Counter, "Address-change checks ended, by outcome: moved (the name moved), kept_old (the old address answered).",
        "outcome", |s| vec![("moved", s.stats.moved), ("kept_old", s.stats.checks_kept_old)]);
    one(
        out,
        "flock_server_silent_while_checking_total",
        Counter,
        "Requests not answered because their name was being checked.",
        |s| s.stats.silent_while_checking,
    );
    one(
        out,
        "flock_server_checks_pending",
        Gauge,
        "Address-change checks running.",
        |s| s.checks_pending as u64,
    );
    // Admissions (plugins).
    one(
        out,
        "flock_server_admissions_asked_total",
        Counter,
        "Registrations handed to the plugins for admission.",
        |s| s.stats.admissions_asked,
    );
    one(
        out,
        "flock_server_admissions_pending",
        Gauge,
        "Admissions waiting for the plugins' verdict.",
        |s| s.admissions_pending as u64,
    );
    one(
        out,
        "flock_server_admission_verdicts_cached",
        Gauge,
        "Admission verdicts cached.",
        |s| s.admission_verdicts as u64,
    );
    one(
        out,
        "flock_server_policy_events_dropped_total",
        Counter,
        "Admission and audit events dropped because their queue was full.",
        |s| s.stats.policy_events_dropped,
    );
    // Log-ins.
    one(
        out,
        "flock_login_sessions_opened_total",
        Counter,
        "Log-in sessions started on this core.",
        |s| s.stats.sessions_opened,
    );
    per_core(out, &items, "flock_login_sessions_ended_total", Counter,
        "Log-in sessions ended, by outcome: done, failed (refused opens included), closed (by the gateway).",
        "outcome", |s| vec![("done", s.stats.sessions_done), ("failed", s.stats.sessions_failed), ("closed", s.stats.sessions_closed)]);
    per_core(
        out,
        &items,
        "flock_login_attempts_total",
        Counter,
        "Credential attempts the appliances answered, by outcome: accepted, rejected.",
        "outcome",
        |s| {
            vec![
                ("accepted", s.stats.logins_accepted),
                ("rejected", s.stats.logins_rejected),
            ]
        },
    );
    per_core(
        out,
        &items,
        "flock_login_persona_cache_total",
        Counter,
        "Persona list look-ups, by outcome: hit (served from the cache), miss (fetched).",
        "outcome",
        |s| {
            vec![
                ("hit", s.stats.personas_cache_hits),
                ("miss", s.stats.personas_cache_misses),
            ]
        },
    );
    one(
        out,
        "flock_login_connects_sent_total",
        Counter,
        "CONNECT requests sent to appliances.",
        |s| s.stats.connects_sent,
    );
    one(
        out,
        "flock_login_retransmits_total",
        Counter,
        "Log-in requests sent again after a retransmission timeout.",
        |s| s.stats.retransmits,
    );
    per_core(
        out,
        &items,
        "flock_login_signals_total",
        Counter,
        "SIGNALs relayed: in (from appliances), out (to appliances, acknowledged).",
        "direction",
        |s| vec![("in", s.stats.signals_in), ("out", s.stats.signals_out)],
    );
    per_core(
        out,
        &items,
        "flock_login_signals_ignored_total",
        Counter,
        "SIGNALs not relayed, by reason: duplicate (retransmission), unknown_session.",
        "reason",
        |s| {
            vec![
                ("duplicate", s.stats.signals_duplicate),
                ("unknown_session", s.stats.signals_unknown_session),
            ]
        },
    );
    one(
        out,
        "flock_login_commands_ignored_total",
        Counter,
        "Gateway commands for sessions that no longer exist.",
        |s| s.stats.login_commands_ignored,
    );
    one(
        out,
        "flock_login_sessions",
        Gauge,
        "Log-in sessions open.",
        |s| s.login.sessions as u64,
    );
    one(
        out,
        "flock_login_requests_outstanding",
        Gauge,
        "Log-in requests waiting for an appliance's answer.",
        |s| s.login.outstanding as u64,
    );
    one(
        out,
        "flock_login_persona_cache_lists",
        Gauge,
        "Persona lists cached.",
        |s| s.login.cached_lists as u64,
    );
    one(
        out,
        "flock_login_persona_cache_bytes",
        Gauge,
        "Bytes of persona lists cached.",
        |s| s.login.cache_bytes as u64,
    );
}

fn render_runner(out: &mut String, s: &RunnerStats) {
    let one = |out: &mut String, name: &str, help: &str, v: u64| {
        write_metric(out, name, Counter, help, [(&[][..], v)])
    };
    one(
        out,
        "flock_plugin_calls_total",
        "Plugin hook calls asked for (registrations, log-ins, persona lists).",
        s.calls,
    );
    one(
        out,
        "flock_plugin_denied_total",
        "Hook calls answered other than allow (policy, error, timeout or full queue).",
        s.denied,
    );
    one(
        out,
        "flock_plugin_timeouts_total",
        "Hook calls answered at the deadline (budget) because the plugins had not finished.",
        s.timeouts,
    );
    one(
        out,
        "flock_plugin_errors_total",
        "Error codes and caught panics returned by plugins.",
        s.errors,
    );
    one(
        out,
        "flock_plugin_queue_full_total",
        "Hook calls refused at once because the queue was full.",
        s.queue_full,
    );
    one(
        out,
        "flock_plugin_audit_dropped_total",
        "Audit events dropped because the audit queue was full.",
        s.audit_dropped,
    );
}

/// The plugin runner's per-hook latency histograms, as one Prometheus histogram family
/// (`write_metric` knows only counters and gauges: written here by hand).
fn render_latency(out: &mut String, hooks: &[(Hook, Latency)]) {
    use std::fmt::Write;
    let name = "flock_plugin_hook_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time the plugin chain took to run a hook call, by hook (on the plugin thread; queueing not included, overruns included when they end).\n# TYPE {name} histogram"
    );
    for (hook, l) in hooks {
        let hook = hook.name();
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{hook=\"{hook}\",le=\"{}\"}} {}",
                seconds(*bound),
                l.cumulative(i)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{hook=\"{hook}\",le=\"+Inf\"}} {}",
            l.count()
        );
        let _ = writeln!(out, "{name}_sum{{hook=\"{hook}\"}} {}", seconds(l.sum));
        let _ = writeln!(out, "{name}_count{{hook=\"{hook}\"}} {}", l.count());
    }
}

/// `d` in seconds, exact to the nanosecond, without trailing zeros (`0.00005`, `1`, `1.5009`).
fn seconds(d: Duration) -> String {
    let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// VmRSS of this process, bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample belongs to a family announced with HELP and TYPE, counters end in
    /// `_total`, and labels come from the fixed set.
    fn check_exposition(text: &str) {
        let mut families = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    families
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "{name} twice"
                );
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"));
            assert!(
                families.contains_key(name) || histogram.is_some(),
                "sample before its TYPE: {line}"
            );
            if let Some(labels) = line
                .split_once('{')
                .map(|(_, l)| l.split_once('}').unwrap().0)
            {
                for pair in labels.split(',') {
                    let key = pair.split_once('=').unwrap().0;
                    let allowed: &[&str] = if histogram.is_some() {
                        &["hook", "le"]
                    } else {
                        &["core", "direction", "reason", "outcome"]
                    };
                    assert!(allowed.contains(&key), "{line}");
                }
            }
            let value = line.rsplit(' ').next().unwrap();
            if name.ends_with("_sum") && histogram.is_some() {
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            } else {
                value.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
            }
        }
    }

    fn no_plugins() -> Runner {
        let plugins = flock_plugins::Plugins::load(&[]).unwrap();
        Runner::new(Arc::new(plugins), 1, 1, Duration::from_millis(10)).unwrap()
    }

    #[test]
    fn renders_cores_runner_and_process() {
        let cores = Arc::new(CoreSnapshots::default());
        cores.init(2);
        {
            let slots = cores.slots.get().unwrap();
            let mut snap = CoreSnapshot::default();
            snap.stats.registered = 5;
            snap.stats.personas_cache_hits = 2;
            snap.registrations = 4;
            *slots[1].lock().unwrap() = Some(snap);
        }
        let m = FlockMetrics {
            engine: Weak::new(),
            cores,
            runner: Arc::new(no_plugins()),
        };
        let mut out = String::new();
        m.render(&mut out);
        check_exposition(&out);
        assert!(
            out.contains("flock_server_registrations_total{core=\"1\"} 5\n"),
            "{out}"
        );
        assert!(
            out.contains("flock_server_registrations{core=\"1\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("flock_login_persona_cache_total{core=\"1\",outcome=\"hit\"} 2\n"),
            "{out}"
        );
        assert!(
            !out.contains("core=\"0\""),
            "core 0 has not published: {out}"
        );
        assert!(out.contains("flock_plugin_calls_total 0\n"), "{out}");
        assert!(
            out.contains("flock_plugin_hook_seconds_count{hook=\"authorize_login\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("flock_process_resident_memory_bytes "),
            "{out}"
        );
    }

    #[test]
    fn renders_engine_counters() {
        let mut out = String::new();
        let a = CoreStats {
            core: 0,
            received: 7,
            dropped_mesh_full: 1,
            kernel_drops: Some(3),
            ..CoreStats::default()
        };
        let b = CoreStats {
            core: 1,
            answered: 2,
            ..CoreStats::default()
        };
        render_engine(&mut out, &[a, b]);
        check_exposition(&out);
        for line in [
            "flock_core_packets_total{core=\"0\",direction=\"received\"} 7\n",
            "flock_core_packets_total{core=\"1\",direction=\"answered\"} 2\n",
            "flock_core_drops_total{core=\"0\",reason=\"mesh_full\"} 1\n",
            "flock_core_drops_total{core=\"0\",reason=\"kernel\"} 3\n",
            "flock_core_batches_total{core=\"1\"} 0\n",
        ] {
            assert!(out.contains(line), "no {line:?} in {out}");
        }
        assert!(!out.contains("core=\"1\",reason=\"kernel\""), "{out}");
    }

    #[test]
    fn renders_hook_latency_as_a_histogram() {
        let mut login = Latency::default();
        login.buckets[0] = 3; // ≤ 50 µs
        login.buckets[4] = 1; // ≤ 1 ms
        login.buckets[LATENCY_BOUNDS.len()] = 1; // over 1 s
        login.sum = Duration::from_micros(1_500_900);
        let hooks = Hook::ALL.map(|h| {
            (
                h,
                if h == Hook::AuthorizeLogin {
                    login
                } else {
                    Latency::default()
                },
            )
        });
        let mut out = String::new();
        render_latency(&mut out, &hooks);
        check_exposition(&out);
        for line in [
            "# TYPE flock_plugin_hook_seconds histogram\n",
            "flock_plugin_hook_seconds_bucket{hook=\"authorize_login\",le=\"0.00005\"} 3\n",
            "flock_plugin_hook_seconds_bucket{hook=\"authorize_login\",le=\"0.0005\"} 3\n",
            "flock_plugin_hook_seconds_bucket{hook=\"authorize_login\",le=\"0.001\"} 4\n",
            "flock_plugin_hook_seconds_bucket{hook=\"authorize_login\",le=\"1\"} 4\n",
            "flock_plugin_hook_seconds_bucket{hook=\"authorize_login\",le=\"+Inf\"} 5\n",
            "flock_plugin_hook_seconds_sum{hook=\"authorize_login\"} 1.5009\n",
            "flock_plugin_hook_seconds_count{hook=\"authorize_login\"} 5\n",
            "flock_plugin_hook_seconds_count{hook=\"audit\"} 0\n",
            "flock_plugin_hook_seconds_bucket{hook=\"admit_registration\",le=\"+Inf\"} 0\n",
        ] {
            assert!(out.contains(line), "no {line:?} in {out}");
        }
        assert_eq!(
            out.lines()
                .filter(
                    |l| l.starts_with("flock_plugin_hook_seconds_bucket{hook=\"filter_personas\"")
                )
                .count(),
            LATENCY_BOUNDS.len() + 1
        );
    }
}
