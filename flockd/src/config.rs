//! flockd's configuration: embedded defaults, then a TOML file, then command-line flags.
//!
//! Each default is defined once, by the library that uses the setting (`ServerConfig`,
//! `LoginConfig`, `EngineConfig`, `GatewayConfig`); only flockd's own keys are defined here.
//! `config/doc_check.rs` checks docs/CONFIG.md against them.

use flock_engine::EngineConfig;
use flock_proto::membership::{Member, Membership};
use flock_proto::server::{LoginConfig, PolicyConfig, ServerConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default UDP port (the STUN port, so appliances can also use it for Binding).
pub const DEFAULT_UDP: &str = "0.0.0.0:3478";
/// Default data directory (secrets live here).
pub const DEFAULT_DATA_DIR: &str = "flock-data";

/// The whole configuration, as the file spells it. Every field is optional in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address appliances talk to.
    pub udp: SocketAddr,
    /// Where the server secret and the flock key are kept (created on first start).
    pub data_dir: PathBuf,
    /// Number of cores to run on (0 = all). Ignored when `cpus` is set.
    pub cores: usize,
    /// Exact CPU ids to pin the executors to, e.g. [1] or [2, 3].
    pub cpus: Vec<usize>,
    /// Pin each executor to its CPU (turn off only for tests on busy machines).
    pub pin: bool,
    /// Log filter (tracing's env-filter syntax), e.g. "info" or "flock=debug".
    pub log: String,
    pub limits: Limits,
    pub timers: Timers,
    pub socket: Socket,
    pub stun: Stun,
    pub login: Login,
    /// Serve browsers (the `[ws]` gateway). Off: UDP only.
    pub ws_enabled: bool,
    /// The websocket gateway (see ws/src/config.rs for every key).
    pub ws: flock_ws::GatewayConfig,
    pub plugins: Plugins,
    /// The servers of the flock (docs/CONFIG.md `[flock]`). Absent: a flock of one.
    pub flock: Flock,
}

/// The flock this server belongs to. Every server of a flock has the same `servers` list and
/// `key_file` contents; only `index` differs (or comes from `--flock-index`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Flock {
    /// This server's position in `servers`. Absent: the entry whose `udp` equals the bound UDP
    /// address (so a server bound to its own listed address needs no index).
    pub index: Option<usize>,
    /// The shared flock key (Ed25519 PKCS#8, as flockd writes to `data_dir/flock.key`); a
    /// relative path is relative to the config file. Never created by flockd. Required with
    /// two or more servers; without it a flock of one uses (and creates) `data_dir/flock.key`.
    pub key_file: Option<PathBuf>,
    /// Every server, in flock order: `[[flock.servers]] udp = "…", ws = "…"`. IP addresses
    /// (the ones appliances reach: `udp` is what a 300 Try-Alternate sends them to).
    pub servers: Vec<FlockServer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlockServer {
    pub udp: SocketAddr,
    pub ws: SocketAddr,
}

/// Policy plugins (docs/PLUGINS.md). None loaded: every registration and log-in is allowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plugins {
    /// Threads that run plugin hooks (never the packet cores or the gateway's threads).
    pub threads: usize,
    /// Time a hook may take, queueing included; past it the answer is "deny".
    #[serde(with = "flock_ws::human_duration")]
    pub budget: Duration,
    /// Hook calls waiting for a thread; past it, "deny" at once.
    pub queue: usize,
    /// The plugins, in chain order: `[[plugins.load]] path = "…", config = "…"`. A relative
    /// path is relative to the config file.
    pub load: Vec<flock_plugins::PluginSpec>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            threads: 2,
            budget: Duration::from_millis(50),
            queue: 1024,
            load: Vec::new(),
        }
    }
}

/// Browser log-ins as the packet cores run them (the websocket side is `[ws]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Login {
    /// Log-in sessions at once (split over the cores).
    pub max_sessions: usize,
    /// Bytes of persona lists cached (split over the cores; LRU).
    pub persona_cache_bytes: usize,
    pub max_personas_bytes: usize,
    pub max_sdp_bytes: usize,
    /// ICE candidates per direction per session.
    pub max_candidates: usize,
    /// Credential attempts per session.
    pub max_attempts: u8,
    /// An appliance silent this long fails the session (unreachable / timeout).
    #[serde(with = "flock_ws::human_duration")]
    pub give_up_after: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub session_lifetime: Duration,
    /// Validity stamped on signed PERSONAS / CONNECT requests.
    #[serde(with = "flock_ws::human_duration")]
    pub request_validity: Duration,
}

impl Default for Login {
    fn default() -> Self {
        let l = LoginConfig::default();
        Login {
            max_sessions: l.max_sessions,
            persona_cache_bytes: l.persona_cache_bytes,
            max_personas_bytes: l.max_personas_bytes,
            max_sdp_bytes: l.max_sdp_bytes,
            max_candidates: l.max_candidates,
            max_attempts: l.max_attempts,
            give_up_after: l.give_up_after,
            session_lifetime: l.session_lifetime,
            request_validity: l.request_validity,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Registrations the server holds (split evenly over the cores).
    pub max_registrations: usize,
    /// Names whose last REGISTER is remembered against replays (split over the cores).
    pub max_replay_records: usize,
    /// Address-change checks running at once (split over the cores).
    pub max_pending_checks: usize,
    pub checks_per_ip_burst: u32,
    pub checks_per_ip_per_minute: u32,
    pub rate_table_slots: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timers {
    #[serde(with = "flock_ws::human_duration")]
    pub entry_lifetime: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub keepalive_interval: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub check_window: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub rto_initial: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub rto_max: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub token_lifetime: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub nonce_lifetime: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub timestamp_tolerance: Duration,
    #[serde(with = "flock_ws::human_duration")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Socket {
    /// SO_RCVBUF per core socket, bytes.
    pub recv_buffer: usize,
    /// SO_SNDBUF per core socket, bytes.
    pub send_buffer: usize,
    /// Datagrams read per system call.
    pub batch: usize,
    /// With several cores: have the kernel hand each datagram to the core owning its name (a
    /// reuseport BPF program reading the core hint in the transaction id) instead of the core
    /// its flow hashes to, saving the cross-core hop.
    pub steering: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stun {
    /// Answer Binding requests smaller than the answer (amplification up to 2.2×).
    pub answer_small_binding: bool,
}

fn default_udp() -> SocketAddr {
    DEFAULT_UDP.parse().expect("valid default")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp: default_udp(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            cores: 0,
            cpus: vec![],
            pin: true,
            log: "info".into(),
            limits: Limits::default(),
            timers: Timers::default(),
            socket: Socket::default(),
            stun: Stun::default(),
            login: Login::default(),
            ws_enabled: true,
            ws: flock_ws::GatewayConfig::default(),
            plugins: Plugins::default(),
            flock: Flock::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let s = ServerConfig::default();
        Limits {
            max_registrations: s.max_registrations,
            max_replay_records: s.max_replay_records,
            max_pending_checks: s.max_pending_checks,
            checks_per_ip_burst: s.checks_per_ip_burst,
            checks_per_ip_per_minute: s.checks_per_ip_per_minute,
            rate_table_slots: s.rate_table_slots,
        }
    }
}

impl Default for Timers {
    fn default() -> Self {
        let s = ServerConfig::default();
        Timers {
            entry_lifetime: s.entry_lifetime,
            keepalive_interval: s.keepalive_interval,
            check_window: s.check_window,
            rto_initial: s.rto_initial,
            rto_max: s.rto_max,
            token_lifetime: s.token_lifetime,
            nonce_lifetime: s.nonce_lifetime,
            timestamp_tolerance: s.timestamp_tolerance,
            sweep_interval: s.sweep_interval,
        }
    }
}

impl Default for Socket {
    fn default() -> Self {
        let e = EngineConfig::new(default_udp());
        Socket {
            recv_buffer: e.recv_buffer_bytes,
            send_buffer: e.send_buffer_bytes,
            batch: e.batch,
            steering: true,
        }
    }
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let mut c: Config = toml::from_str(&text)
            .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for spec in &mut c.plugins.load {
            if spec.path.is_relative() {
                spec.path = dir.join(&spec.path);
            }
        }
        if let Some(k) = &mut c.flock.key_file {
            if k.is_relative() {
                *k = dir.join(&*k);
            }
        }
        if let Some(tls) = &mut c.ws.tls {
            for file in [&mut tls.cert, &mut tls.key] {
                if file.is_relative() && !file.as_os_str().is_empty() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(c)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.timers;
        let l = &self.login;
        let checks: [(bool, &str); 13] = [
            (
                self.limits.max_registrations > 0,
                "limits.max_registrations must be at least 1",
            ),
            (
                self.limits.max_replay_records > 0,
                "limits.max_replay_records must be at least 1",
            ),
            (
                self.limits.max_pending_checks > 0,
                "limits.max_pending_checks must be at least 1",
            ),
            (
                self.limits.rate_table_slots > 0,
                "limits.rate_table_slots must be at least 1",
            ),
            (
                t.keepalive_interval < t.entry_lifetime,
                "timers.keepalive_interval must be shorter than timers.entry_lifetime",
            ),
            (
                !t.rto_initial.is_zero() && t.rto_initial <= t.rto_max,
                "timers.rto_initial must be > 0 and ≤ timers.rto_max",
            ),
            (
                t.entry_lifetime >= Duration::from_secs(1),
                "timers.entry_lifetime must be at least 1s",
            ),
            (
                t.token_lifetime >= 2 * t.entry_lifetime,
                "timers.token_lifetime must be at least twice timers.entry_lifetime",
            ),
            (
                self.socket.batch >= 1 && self.socket.batch <= 1024,
                "socket.batch must be 1..=1024",
            ),
            (l.max_sessions > 0, "login.max_sessions must be at least 1"),
            (l.max_attempts > 0, "login.max_attempts must be at least 1"),
            (
                !l.give_up_after.is_zero() && l.give_up_after <= l.session_lifetime,
                "login.give_up_after must be > 0 and ≤ login.session_lifetime",
            ),
            (
                self.plugins.threads > 0
                    && self.plugins.queue > 0
                    && !self.plugins.budget.is_zero(),
                "plugins.threads, plugins.queue and plugins.budget must be > 0",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(msg.to_string());
        }
        self.validate_flock()?;
        self.ws.validate().map_err(|e| format!("ws: {e}"))
    }

    /// The `[flock]` list, if one is configured (`None`: a flock of one).
    pub fn membership(&self) -> Option<Membership> {
        let f = &self.flock;
        let me = self.flock_index().unwrap_or(0);
        (!f.servers.is_empty()).then(|| Membership {
            servers: f
                .servers
                .iter()
                .map(|s| Member {
                    udp: s.udp,
                    ws: s.ws,
                })
                .collect(),
            me,
        })
    }

    /// `[flock] index` (or `--flock-index`), else the entry listing the bound UDP address.
    fn flock_index(&self) -> Result<usize, String> {
        let f = &self.flock;
        match f.index {
            Some(i) => Ok(i),
            None if f.servers.is_empty() => Ok(0),
            None => f.servers.iter().position(|s| s.udp == self.udp).ok_or_else(|| {
                format!(
                    "[flock]: no index, and udp {} is none of the listed addresses: set flock.index or --flock-index, or bind --udp to this server's listed address",
                    self.udp
                )
            }),
        }
    }

    /// A well-formed list that names this server, and the key every server shares. The bound
    /// UDP address must be this server's entry, or the unspecified address with its port (behind
    /// a NAT or a load balancer that keeps the port).
    fn validate_flock(&self) -> Result<(), String> {
        let f = &self.flock;
        let index = self.flock_index()?;
        let Some(m) = self.membership() else {
            if index != 0 {
                return Err(format!("flock.index is {index} but [flock] lists no servers (a flock of one has index 0)"));
            }
            return Ok(());
        };
        m.validate().map_err(|e| format!("[flock]: {e}"))?;
        if m.servers.len() > 1 && f.key_file.is_none() {
            return Err(format!(
                "[flock] lists {} servers but no flock.key_file: every server must load the same flock key (see docs/OPERATIONS.md)",
                m.servers.len()
            ));
        }
        let own = m.servers[m.me].udp;
        if self.udp != own && !(self.udp.ip().is_unspecified() && self.udp.port() == own.port()) {
            return Err(format!(
                "udp {} is not this server's address in [flock]: server {} is {own} (bind {own}, or {}:{})",
                self.udp,
                m.me,
                if own.is_ipv4() { "0.0.0.0" } else { "[::]" },
                own.port()
            ));
        }
        Ok(())
    }

    /// The shard settings for one of `cores` cores: bounds are split evenly.
    pub fn shard(&self, cores: usize) -> ServerConfig {
        let split = |n: usize| n.div_ceil(cores.max(1)).max(1);
        let t = &self.timers;
        ServerConfig {
            entry_lifetime: t.entry_lifetime,
            keepalive_interval: t.keepalive_interval,
            check_window: t.check_window,
            rto_initial: t.rto_initial,
            rto_max: t.rto_max,
            token_lifetime: t.token_lifetime,
            nonce_lifetime: t.nonce_lifetime,
            timestamp_tolerance: t.timestamp_tolerance,
            max_registrations: split(self.limits.max_registrations),
            max_replay_records: split(self.limits.max_replay_records),
            max_pending_checks: split(self.limits.max_pending_checks),
            checks_per_ip_burst: self.limits.checks_per_ip_burst,
            checks_per_ip_per_minute: self.limits.checks_per_ip_per_minute,
            rate_table_slots: self.limits.rate_table_slots,
            answer_small_binding: self.stun.answer_small_binding,
            sweep_interval: t.sweep_interval,
            login: LoginConfig {
                max_sessions: split(self.login.max_sessions),
                persona_cache_bytes: split(self.login.persona_cache_bytes),
                max_personas_bytes: self.login.max_personas_bytes,
                max_sdp_bytes: self.login.max_sdp_bytes,
                max_candidates: self.login.max_candidates,
                give_up_after: self.login.give_up_after,
                session_lifetime: self.login.session_lifetime,
                max_attempts: self.login.max_attempts,
                request_validity: self.login.request_validity,
            },
            // Turned on by flockd when plugins with those hooks are loaded.
            policy: PolicyConfig::default(),
            // Set by flockd from `[flock]` once the flock key is loaded (it keys the peers).
            flock: Default::default(),
        }
    }
}

/// The settings that only a restart applies and that differ between `running` and `new`
/// (by name, e.g. `[timers]`). Everything else a SIGHUP applies live: the plugins' `config`
/// strings and the gateway's keys but `ws.listen` and `ws.threads`.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<String> {
    let mut changed: Vec<String> = vec![];
    let mut check = |differs: bool, what: &str| {
        if differs {
            changed.push(what.to_string());
        }
    };
    check(running.udp != new.udp, "udp");
    check(running.data_dir != new.data_dir, "data_dir");
    check(
        running.cores != new.cores || running.cpus != new.cpus || running.pin != new.pin,
        "cores/cpus/pin",
    );
    check(running.log != new.log, "log");
    check(running.limits != new.limits, "[limits]");
    check(running.timers != new.timers, "[timers]");
    check(running.socket != new.socket, "[socket]");
    check(running.stun != new.stun, "[stun]");
    check(running.login != new.login, "[login]");
    check(running.ws_enabled != new.ws_enabled, "ws_enabled");
    check(running.flock != new.flock, "[flock]");
    let p = (&running.plugins, &new.plugins);
    check(
        p.0.threads != p.1.threads || p.0.queue != p.1.queue || p.0.budget != p.1.budget,
        "plugins.threads/queue/budget",
    );
    check(
        !same_plugin_list(&p.0.load, &p.1.load),
        "the plugin list ([[plugins.load]] paths)",
    );
    if running.ws_enabled && new.ws_enabled {
        changed.extend(
            running
                .ws
                .restart_only_changes(&new.ws)
                .into_iter()
                .map(String::from),
        );
    }
    changed
}

/// The same libraries in the same order (their `config` strings may differ).
pub fn same_plugin_list(a: &[flock_plugins::PluginSpec], b: &[flock_plugins::PluginSpec]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.path == y.path)
}

#[cfg(test)]
mod doc_check;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let c: Config = toml::from_str("udp = \"127.0.0.1:9999\"\n[timers]\nentry_lifetime = \"3s\"\nkeepalive_interval = \"1s\"\n").unwrap();
        assert_eq!(c.udp.port(), 9999);
        assert_eq!(c.timers.entry_lifetime, Duration::from_secs(3));
        assert_eq!(c.timers.check_window, Duration::from_secs(60));
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("udpp = \"x\"")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(toml::from_str::<Config>("[timers]\nentry_lifetime = \"soon\"").is_err());
    }

    #[test]
    fn nonsense_is_refused() {
        let mut c = Config::default();
        c.timers.keepalive_interval = Duration::from_secs(90);
        assert!(c.validate().unwrap_err().contains("keepalive_interval"));
    }

    fn flock_config(index: usize, udp: &str) -> Config {
        let text = format!(
            "udp = \"{udp}\"\n[flock]\nindex = {index}\nkey_file = \"k/flock.key\"\n\
             [[flock.servers]]\nudp = \"10.0.0.1:3478\"\nws = \"10.0.0.1:8080\"\n\
             [[flock.servers]]\nudp = \"10.0.0.2:3478\"\nws = \"10.0.0.2:8080\"\n"
        );
        let dir =
            std::env::temp_dir().join(format!("flockd-config-{}-{index}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flockd.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.flock.key_file.as_deref(),
            Some(dir.join("k/flock.key").as_path()),
            "relative to the config file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        c
    }

    #[test]
    fn flock_section_is_checked() {
        flock_config(1, "10.0.0.2:3478").validate().unwrap();
        flock_config(0, "0.0.0.0:3478").validate().unwrap();
        let m = flock_config(1, "10.0.0.2:3478").membership().unwrap();
        assert_eq!(
            (m.me, m.servers.len(), m.servers[0].ws.port()),
            (1, 2, 8080)
        );
        let err = |c: Config| c.validate().unwrap_err();
        assert!(err(flock_config(2, "10.0.0.2:3478"))
            .contains("index 2 is not in the list of 2 servers"));
        let e = err(flock_config(0, "10.0.0.2:3478"));
        assert!(e.contains("udp 10.0.0.2:3478 is not this server's address in [flock]: server 0 is 10.0.0.1:3478"), "{e}");
        assert!(err(flock_config(0, "0.0.0.0:3479")).contains("not this server's address"));
        // No index: the entry with the bound address, or a clear error.
        let mut c = flock_config(0, "10.0.0.2:3478");
        c.flock.index = None;
        c.validate().unwrap();
        assert_eq!(c.membership().unwrap().me, 1);
        c.udp = "0.0.0.0:3478".parse().unwrap();
        assert!(err(c).contains("no index, and udp 0.0.0.0:3478 is none of the listed addresses"));
        let mut c = flock_config(0, "10.0.0.1:3478");
        c.flock.key_file = None;
        assert!(err(c.clone()).contains("no flock.key_file"));
        c.flock.servers.truncate(1);
        c.validate().expect("one server may use data_dir/flock.key");
        c.flock.servers[0].udp = "10.0.0.1:0".parse().unwrap();
        assert!(err(c.clone()).contains("unusable udp address 10.0.0.1:0"));
        let mut c = flock_config(0, "10.0.0.1:3478");
        c.flock.servers[1].udp = c.flock.servers[0].udp;
        assert!(err(c).contains("servers 0 and 1 have the same udp address"));
        let c = Config {
            flock: Flock {
                index: Some(1),
                ..Flock::default()
            },
            ..Config::default()
        };
        assert!(err(c).contains("flock.index is 1 but [flock] lists no servers"));
        Config::default().validate().unwrap();
        assert!(Config::default().membership().is_none());
    }

    #[test]
    fn one_core_on_the_defaults_runs_the_librarys_default_shard() {
        let (ours, library) = (Config::default().shard(1), ServerConfig::default());
        assert_eq!(format!("{ours:?}"), format!("{library:?}"));
    }

    #[test]
    fn bounds_split_over_cores() {
        let mut c = Config::default();
        c.limits.max_registrations = 10;
        assert_eq!(c.shard(3).max_registrations, 4);
        assert_eq!(c.shard(1).max_registrations, 10);
    }

    #[test]
    fn what_needs_a_restart() {
        let spec = |path: &str, config: &str| flock_plugins::PluginSpec {
            path: path.into(),
            config: config.into(),
        };
        let mut a = Config::default();
        a.plugins.load = vec![spec("/x/a.so", "rate=1")];
        let mut b = a.clone();
        b.plugins.load[0].config = "rate=2".into();
        b.ws.max_sockets_per_ip = 3;
        b.ws.idle_timeout = Duration::from_secs(5);
        assert!(
            restart_only_changes(&a, &b).is_empty(),
            "plugin settings and gateway limits reload live"
        );
        b.timers.entry_lifetime = Duration::from_secs(90);
        b.limits.max_registrations = 7;
        b.plugins.load.push(spec("/x/b.so", ""));
        b.ws.threads = 9;
        let changed = restart_only_changes(&a, &b);
        assert_eq!(
            changed,
            [
                "[limits]",
                "[timers]",
                "the plugin list ([[plugins.load]] paths)",
                "ws.threads"
            ]
        );
    }
}
