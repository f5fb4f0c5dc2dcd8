//! What flockd adds to the gateway's `GET /metrics`: each core's engine counters and server
//! counters, the plugin runner's counters, and the process's resident memory.
//!
//! The cores own their server's counters (plain integers, no atomics on the packet path): each
//! core copies them into its slot of [`CoreSnapshots`] from its timer path, at most every
//! [`PUBLISH_EVERY`], so server figures lag by up to that much. Engine counters are read live.
//!
//! Labels are only `core`, `direction`, `reason`, `outcome` and (the plugin hook latency
//! histogram) `hook` and `le`, all from fixed sets: never a name, a user or an address. The
//! families are a table ([`families`]) that one renderer writes.

mod families;

use flock_engine::EngineHandle;
use flock_plugins::{Hook, Latency, Runner, LATENCY_BOUNDS};
use flock_proto::server::{Entropy, LoginOccupancy, Server, Stats};
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
            let stats = engine.stats();
            let cores: Vec<String> = stats.iter().map(|s| s.core.to_string()).collect();
            render(
                out,
                families::ENGINE,
                cores.iter().map(String::as_str).zip(&stats),
            );
        }
        let snaps = self.cores.read();
        let cores: Vec<String> = snaps.iter().map(|(core, _)| core.to_string()).collect();
        let snaps = snaps.iter().map(|(_, snap)| snap);
        render(
            out,
            families::CORES,
            cores.iter().map(String::as_str).zip(snaps),
        );
        render(out, families::RUNNER, [("", &self.runner.stats())]);
        render_latency(out, &Hook::ALL.map(|h| (h, self.runner.latency(h))));
        if let Some(rss) = resident_bytes() {
            render(out, families::PROCESS, [("", &rss)]);
        }
    }
}

/// One metric family: how it is announced and how its samples are read from a `T`.
pub struct Family<T: 'static> {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    /// The label telling one `T`'s samples apart (`direction`, `reason`, `outcome`); `""`: one
    /// sample per `T`, without a label of its own.
    pub label: &'static str,
    pub samples: &'static [Sample<T>],
}

/// One sample of a [`Family`].
pub struct Sample<T> {
    /// The value of the family's label (`""` when it has none).
    pub value: &'static str,
    /// The figure; `None` when it is not known (the sample is left out).
    pub read: fn(&T) -> Option<u64>,
}

/// Writes `families` with the samples of every item: `(core, item)`, `core` the value of the
/// `core` label (`""`: none, the whole server). Per family, core by core.
fn render<'a, T: 'a>(
    out: &mut String,
    families: &[Family<T>],
    items: impl IntoIterator<Item = (&'a str, &'a T)>,
) {
    let items: Vec<(&str, &T)> = items.into_iter().collect();
    for family in families {
        let mut rows: Vec<(Vec<(&str, &str)>, u64)> = Vec::new();
        for (core, item) in &items {
            for sample in family.samples {
                let Some(n) = (sample.read)(item) else {
                    continue;
                };
                let labels = [("core", *core), (family.label, sample.value)]
                    .into_iter()
                    .filter(|(_, value)| !value.is_empty())
                    .collect();
                rows.push((labels, n));
            }
        }
        let samples = rows.iter().map(|(labels, n)| (&labels[..], *n));
        write_metric(out, family.name, family.kind, family.help, samples);
    }
}

/// The plugin runner's per-hook latency histograms, as one Prometheus histogram family
/// (`write_metric` knows only counters and gauges: written here by hand).
fn render_latency(out: &mut String, hooks: &[(Hook, Latency)]) {
    use std::fmt::Write;
    let (name, help) = families::HOOK_SECONDS;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
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
    use flock_engine::CoreStats;

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
        render(&mut out, families::ENGINE, [("0", &a), ("1", &b)]);
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

    /// (type, label keys, label values) by family name.
    type Listed = std::collections::BTreeMap<String, (String, Vec<String>, Vec<String>)>;

    fn kind_name(kind: MetricKind) -> String {
        match kind {
            MetricKind::Counter => "counter".into(),
            MetricKind::Gauge => "gauge".into(),
        }
    }

    fn listed<T>(families: &[Family<T>], per_core: bool, out: &mut Listed) {
        for f in families {
            let mut keys: Vec<String> = per_core.then(|| "core".into()).into_iter().collect();
            let mut values = vec![];
            if !f.label.is_empty() {
                keys.push(f.label.into());
                values = f.samples.iter().map(|s| s.value.to_string()).collect();
            }
            out.insert(f.name.into(), (kind_name(f.kind), keys, values));
        }
    }

    /// `text` without its parenthesized asides.
    fn without_asides(text: &str) -> String {
        let mut depth = 0;
        text.chars()
            .filter(|&c| {
                depth += (c == '(') as i32;
                let keep = depth == 0;
                depth -= (c == ')') as i32;
                keep
            })
            .collect()
    }

    fn doc(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    /// The words of `text` between backticks.
    fn ticked(text: &str) -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    /// The rows of docs/CONFIG.md's metrics table, the gateway's (`flock_ws_*`) included.
    fn documented() -> Listed {
        let doc = doc("CONFIG.md");
        let table = doc
            .split_once("| metric | type | labels | what |\n|---|---|---|---|\n")
            .expect("the metrics table")
            .1;
        let mut out = Listed::new();
        for row in table.lines().take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let (names, kind, labels) = (cells[0].trim_start_matches("| "), cells[1], cells[2]);
            let labels = without_asides(labels.trim_matches('|').trim());
            let (keys, values) = labels.split_once(" = ").unwrap_or((&labels, ""));
            let values: Vec<String> = values
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            for name in ticked(names) {
                let entry = (kind.to_string(), ticked(keys), values.clone());
                assert!(out.insert(name.clone(), entry).is_none(), "{name} twice");
            }
        }
        out
    }

    fn rendered() -> Listed {
        let mut rendered = Listed::new();
        listed(families::ENGINE, true, &mut rendered);
        listed(families::CORES, true, &mut rendered);
        listed(families::RUNNER, false, &mut rendered);
        listed(families::PROCESS, false, &mut rendered);
        let hooks = Hook::ALL.iter().map(|h| h.name().to_string()).collect();
        let histogram = ("histogram".into(), vec!["hook".into()], hooks);
        rendered.insert(families::HOOK_SECONDS.0.into(), histogram);
        rendered
    }

    #[test]
    fn the_docs_list_every_family_with_its_type_and_labels() {
        let rendered = rendered();
        let mut documented = documented();
        documented.retain(|name, _| !name.starts_with("flock_ws_"));
        for (name, family) in &rendered {
            assert_eq!(
                documented.get(name),
                Some(family),
                "docs/CONFIG.md on {name}"
            );
        }
        let undocumented: Vec<_> = documented
            .keys()
            .filter(|n| !rendered.contains_key(*n))
            .collect();
        assert!(
            undocumented.is_empty(),
            "documented but not rendered: {undocumented:?}"
        );
    }

    #[test]
    fn the_docs_say_which_families_lag() {
        let doc = doc("CONFIG.md");
        let paragraph = doc
            .split("\n\n")
            .find(|p| p.contains("are copied by each core"))
            .unwrap();
        let lagging: Vec<String> = ticked(paragraph)
            .iter()
            .filter_map(|t| t.strip_suffix('*').map(String::from))
            .collect();
        let lags = |name: &str| lagging.iter().any(|p| name.starts_with(p.as_str()));
        for f in families::CORES {
            assert!(lags(f.name), "{} is published from the timer path", f.name);
        }
        let live = families::ENGINE.iter().map(|f| f.name);
        let live = live.chain(families::RUNNER.iter().map(|f| f.name));
        for name in live.chain([families::HOOK_SECONDS.0, families::PROCESS[0].name]) {
            assert!(!lags(name), "{name} is read live");
        }
    }

    /// Metric names in the other docs' prose are in the table.
    #[test]
    fn the_docs_name_only_listed_metrics() {
        let documented = documented();
        for file in ["CONFIG.md", "OPERATIONS.md", "PLUGINS.md"] {
            for word in ticked(&doc(file).replace("```", "")) {
                let name = word.split(['{', ' ']).next().unwrap();
                let metric = ["_total", "_seconds", "_bytes", "_sockets", "_websockets"]
                    .iter()
                    .any(|s| name.ends_with(s));
                if name.starts_with("flock_") && metric {
                    assert!(
                        documented.contains_key(name),
                        "{file}: {name} is not in the table"
                    );
                }
            }
        }
    }
}
