//! flockd: the Flock rendezvous server.
//!
//! Starts with no arguments on the embedded defaults (UDP 0.0.0.0:3478, websocket and demo page
//! on 0.0.0.0:8080, all cores, secrets in ./flock-data). A TOML file (`--config`) overrides the defaults and flags override the file.

mod config;
mod link;
mod metrics;
mod plugins;
mod secrets;
mod shard;

use clap::Parser;
use config::Config;
use flock_engine::{
    CoreStats, CpuChoice, Engine, EngineConfig, EngineHandle, Steering, SteeringState,
};
use flock_proto::server::{FlockConfig, Keys};
use flock_proto::token::ProofKeys;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "flockd",
    version,
    about = "Flock rendezvous server: appliances stay reachable over UDP, browsers log in to them over a websocket"
)]
struct Args {
    /// TOML configuration file (see docs/CONFIG.md); flags below override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to serve appliances on [default: 0.0.0.0:3478].
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// TCP address of the websocket gateway and demo page [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_ws")]
    ws: Option<SocketAddr>,
    /// Serve no websocket (UDP only).
    #[arg(long)]
    no_ws: bool,
    /// Serve https/wss with this PEM certificate chain (with --tls-key; [ws.tls] cert).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "no_ws"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert: PKCS#8, SEC1 or PKCS#1 ([ws.tls] key).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Origin a browser may connect from (repeatable; "*" for any) [default: same host only].
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Directory for the server secret and the flock key [default: ./flock-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Number of cores to use [default: all].
    #[arg(long, value_name = "N", conflicts_with = "cpus")]
    cores: Option<usize>,
    /// Exact CPUs to run on, core 0 on the first, e.g. "1", "2-3" or "3,1" (keeps a load generator
    /// off the server's CPUs).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Let the kernel's flow hash pick the core for each datagram (cores then forward what
    /// another owns) instead of steering it to its owner ([socket] steering = false).
    #[arg(long)]
    no_steering: bool,
    /// Registration lifetime after the last keep-alive, e.g. "60s".
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    entry_lifetime: Option<Duration>,
    /// Keep-alive interval asked of appliances, e.g. "30s".
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    keepalive_interval: Option<Duration>,
    /// How long the old address of a moving name has to answer, e.g. "60s".
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    check_window: Option<Duration>,
    /// Most registrations held by this server.
    #[arg(long, value_name = "N")]
    max_registrations: Option<usize>,
    /// Log filter, e.g. "info", "debug", "flockd=debug".
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// This server's index in the `[flock]` server list (overrides `[flock] index`; e.g. a
    /// systemd instance name). Without either, the entry listing the bound --udp address.
    #[arg(long, value_name = "N")]
    flock_index: Option<usize>,
    /// Print the flock public key (hex) from the data directory and exit.
    #[arg(long)]
    print_flock_key: bool,
}

/// A parsed `--cpus` value. A newtype, because clap treats `Option<Vec<_>>` as a multi-value
/// argument and would hand the parser's `Vec` to the wrong accessor.
#[derive(Clone, Debug)]
struct CpuList(Vec<usize>);

/// The kernel steering rule for flock datagrams: a STUN header (magic cookie at byte 4) whose
/// transaction id starts with the core hint of the name it is about (PROTOCOL.md §2).
fn steering() -> Steering {
    Steering {
        min_len: flock_proto::stun::HEADER_LEN as u32,
        match_offset: 4,
        match_value: flock_proto::stun::MAGIC_COOKIE,
        hint_offset: flock_proto::name::CORE_HINT_OFFSET as u32,
    }
}

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    flock_udp::parse_cpu_list(s).map(CpuList)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flockd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: &Args) -> Result<Config, String> {
    let mut c = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.udp {
        c.udp = v;
    }
    if let Some(v) = args.ws {
        c.ws.listen = v;
    }
    if args.no_ws {
        c.ws_enabled = false;
    }
    if !args.allow_origin.is_empty() {
        c.ws.allowed_origins = args.allow_origin.clone();
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = c.ws.tls.get_or_insert_with(Default::default);
        (tls.cert, tls.key) = (cert.clone(), key.clone());
    }
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = args.cores {
        c.cores = v;
        c.cpus.clear();
    }
    if let Some(CpuList(v)) = &args.cpus {
        c.cpus = v.clone();
    }
    if args.no_pin {
        c.pin = false;
    }
    if args.no_steering {
        c.socket.steering = false;
    }
    if let Some(v) = args.entry_lifetime {
        c.timers.entry_lifetime = v;
    }
    if let Some(v) = args.keepalive_interval {
        c.timers.keepalive_interval = v;
    }
    if let Some(v) = args.check_window {
        c.timers.check_window = v;
    }
    if let Some(v) = args.max_registrations {
        c.limits.max_registrations = v;
    }
    if let Some(v) = &args.log {
        c.log = v.clone();
    }
    if let Some(v) = args.flock_index {
        c.flock.index = Some(v);
    }
    c.validate()?;
    Ok(c)
}

fn run(args: Args) -> Result<(), String> {
    let c = settings(&args)?;
    // Before any thread starts (the plugin runner's included), so that all inherit the mask.
    let signals = block_signals();
    let secrets = secrets::Secrets::load_or_create(&c.data_dir, c.flock.key_file.as_deref())?;
    let flock_pub =
        flock_proto::identity::to_hex(&flock_proto::identity::public_key(&secrets.flock_key));
    if args.print_flock_key {
        println!("{flock_pub}");
        return Ok(());
    }
    start_logging(&c)?;
    let loaded = start_plugins(&c)?;
    let flock = match c.membership() {
        Some(m) => m.flock_config(secrets.peer_secret),
        None => FlockConfig {
            peer_secret: secrets.peer_secret,
            ..FlockConfig::default()
        },
    };
    let ready = ReadyLine::new(&c, &flock, &loaded, flock_pub);
    let keys = boot_keys(secrets)?;
    let snapshots = Arc::new(metrics::CoreSnapshots::default());
    // Shared (weakly) with `/metrics`; `join_engine` takes it back.
    let engine = Arc::new(start_engine(&c, flock, keys, &loaded, snapshots.clone())?);
    let gateway = match start_gateway(&c, &engine, &loaded, snapshots) {
        Ok(g) => g,
        Err(e) => {
            engine.shutdown();
            let _ = join_engine(engine);
            return Err(e);
        }
    };
    if let Some(p) = &loaded.core_policy {
        let _ = p.commander.set(
            engine
                .commander::<shard::CoreCmd>()
                .expect("the shard's command type"),
        );
    }
    ready.log(&engine, gateway.as_ref());

    let mut running = c.clone();
    let sig = loop {
        match wait_for_signal(&signals) {
            libc::SIGHUP => reload(&args, &mut running, &loaded.runner, gateway.as_ref()),
            sig => break sig,
        }
    };
    tracing::info!(signal = sig, "shutting down");
    stop(gateway, engine, &loaded)
}

fn start_logging(c: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&c.log)
        .map_err(|e| format!("invalid log filter {:?}: {e}", c.log))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// The plugins loaded, their runner's threads, and what the cores and the gateway ask them.
struct LoadedPlugins {
    names: Vec<String>,
    runner: Arc<flock_plugins::Runner>,
    /// The cores' side (admission, audit); `None` without plugins.
    core_policy: Option<Arc<plugins::CorePolicy>>,
}

fn start_plugins(c: &Config) -> Result<LoadedPlugins, String> {
    let chain = flock_plugins::Plugins::load(&c.plugins.load)
        .map_err(|e| format!("cannot load plugins: {e}"))?;
    let with_plugins = !chain.is_empty();
    let names: Vec<String> = chain.names().iter().map(|s| s.to_string()).collect();
    let runner = Arc::new(
        flock_plugins::Runner::new(
            Arc::new(chain),
            c.plugins.threads,
            c.plugins.queue,
            c.plugins.budget,
        )
        .map_err(|e| format!("cannot start the plugin threads: {e}"))?,
    );
    let core_policy = with_plugins.then(|| {
        Arc::new(plugins::CorePolicy {
            runner: runner.clone(),
            commander: std::sync::OnceLock::new(),
        })
    });
    Ok(LoadedPlugins {
        names,
        runner,
        core_policy,
    })
}

/// This start's keys. Its nonces (PROTOCOL.md §6) are bound to a random of this boot: those
/// issued before a restart are refused, so the cores' replay guards (in memory) never need to
/// outlive the process.
fn boot_keys(secrets: secrets::Secrets) -> Result<Keys, String> {
    let mut boot = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut boot)
        .map_err(|_| "system random generator failed".to_string())?;
    Ok(Keys {
        proof: ProofKeys::from_secret(&secrets.server_secret).for_boot(&boot),
        flock: Arc::new(secrets.flock_key),
    })
}

fn start_engine(
    c: &Config,
    flock: FlockConfig,
    keys: Keys,
    loaded: &LoadedPlugins,
    snapshots: Arc<metrics::CoreSnapshots>,
) -> Result<EngineHandle, String> {
    let mut engine_config = EngineConfig::new(c.udp);
    engine_config.cpus = if !c.cpus.is_empty() {
        CpuChoice::List(c.cpus.clone())
    } else if c.cores > 0 {
        CpuChoice::Count(c.cores)
    } else {
        CpuChoice::All
    };
    engine_config.pin = c.pin;
    engine_config.recv_buffer_bytes = c.socket.recv_buffer;
    engine_config.send_buffer_bytes = c.socket.send_buffer;
    engine_config.batch = c.socket.batch;
    if c.socket.steering {
        engine_config.steering = Some(steering());
    }
    let settings = c.clone();
    let core_policy = loaded.core_policy.clone();
    Engine::start(engine_config, move |core, cores| {
        let mut config = settings.shard(cores);
        config.flock = flock.clone();
        config.policy.admission = core_policy.is_some();
        config.policy.audit = core_policy.is_some();
        snapshots.init(cores);
        shard::FlockShard::new(
            config,
            keys.clone(),
            flock_proto::server::CoreSlot { index: core, cores },
            core_policy.clone(),
            snapshots.clone(),
        )
    })
    .map_err(|e| format!("cannot start the UDP engine: {e}"))
}

/// The websocket gateway, if `[ws]` is on.
fn start_gateway(
    c: &Config,
    engine: &Arc<EngineHandle>,
    loaded: &LoadedPlugins,
    snapshots: Arc<metrics::CoreSnapshots>,
) -> Result<Option<flock_ws::GatewayHandle>, String> {
    if !c.ws_enabled {
        return Ok(None);
    }
    let commander = engine
        .commander::<shard::CoreCmd>()
        .expect("the shard's command type");
    let policy: Arc<dyn flock_ws::Policy> = if loaded.core_policy.is_some() {
        Arc::new(plugins::PluginPolicy(loaded.runner.clone()))
    } else {
        Arc::new(flock_ws::AllowAll)
    };
    let source = metrics::FlockMetrics {
        engine: Arc::downgrade(engine),
        cores: snapshots,
        runner: loaded.runner.clone(),
    };
    flock_ws::Gateway::start_full(
        c.ws.clone(),
        Arc::new(link::EngineLink { commander }),
        policy,
        Some(Arc::new(source)),
    )
    .map(Some)
    .map_err(|e| format!("cannot start the websocket gateway on {}: {e}", c.ws.listen))
}

/// What the "flockd ready" line says that the engine and the gateway do not know.
struct ReadyLine {
    plugins: String,
    data_dir: String,
    flock_key: String,
    flock_index: usize,
    flock_servers: usize,
    flock_digest: String,
}

impl ReadyLine {
    fn new(c: &Config, flock: &FlockConfig, loaded: &LoadedPlugins, flock_key: String) -> Self {
        ReadyLine {
            plugins: match loaded.names.is_empty() {
                true => "none".to_string(),
                false => loaded.names.join(","),
            },
            data_dir: c.data_dir.display().to_string(),
            flock_key,
            flock_index: flock.me,
            flock_servers: flock.size(),
            flock_digest: match flock.servers.is_empty() {
                true => "none".to_string(),
                false => flock_proto::identity::to_hex(&flock.digest[..4]),
            },
        }
    }

    fn log(&self, engine: &EngineHandle, gateway: Option<&flock_ws::GatewayHandle>) {
        let ws_addr = gateway.map_or("off".to_string(), |g| g.local_addr().to_string());
        let buffers = engine.socket_buffers();
        let steering = match engine.steering() {
            SteeringState::On => "on",
            SteeringState::Off => "off",
            SteeringState::Failed(why) => {
                tracing::warn!(
                    error = %why,
                    "the kernel refused the steering program: datagrams reach cores by flow hash and \
                     cores forward what another owns (set [socket] steering = false to silence this)"
                );
                "failed"
            }
        };
        tracing::info!(
            udp = %engine.local_addr(),
            ws = %ws_addr,
            plugins = %self.plugins,
            cores = engine.cores(),
            recv_buffer = buffers.recv_bytes,
            steering,
            data_dir = %self.data_dir,
            flock_key = %self.flock_key,
            flock_index = self.flock_index,
            flock_servers = self.flock_servers,
            flock_digest = %self.flock_digest,
            "flockd ready"
        );
    }
}

/// Browsers first: the drain (log-ins under way finish, on the cores that keep running
/// meanwhile), then "going away" for the rest, then the cores; each part logs what it did.
fn stop(
    gateway: Option<flock_ws::GatewayHandle>,
    engine: Arc<EngineHandle>,
    loaded: &LoadedPlugins,
) -> Result<(), String> {
    if let Some(g) = gateway {
        let st = g.stats();
        let r = g.shutdown();
        tracing::info!(
            running = r.running,
            finished = r.finished,
            done = r.done,
            cut = r.cut,
            drain_ms = r.elapsed.as_millis() as u64,
            connections = st.accepted,
            sessions = st.sessions,
            "websocket gateway drained and shut down: {} of {} log-ins under way finished, {} cut",
            r.finished,
            r.running,
            r.cut
        );
    }
    engine.shutdown();
    let t = CoreStats::total(&engine.stats());
    join_engine(engine).map_err(|e| format!("engine stopped with an error: {e}"))?;
    tracing::info!(
        received = t.received,
        answered = t.answered,
        transmitted = t.transmitted,
        forwarded = t.forwarded_out,
        dropped_mesh_full = t.dropped_mesh_full,
        dropped_misrouted = t.dropped_misrouted,
        dropped_truncated = t.dropped_truncated,
        kernel_drops = t.kernel_drops.unwrap_or(0),
        "stopped"
    );
    if loaded.core_policy.is_some() {
        let s = loaded.runner.stats();
        tracing::info!(
            calls = s.calls,
            denied = s.denied,
            timeouts = s.timeouts,
            errors = s.errors,
            queue_full = s.queue_full,
            audit_dropped = s.audit_dropped,
            "plugin runner"
        );
    }
    Ok(())
}

/// Joins the engine once `/metrics` has let go of it (a scrape holds it for a moment at most;
/// the gateway is stopped by then anyway). Dropping the last handle stops and joins it too.
fn join_engine(mut engine: Arc<EngineHandle>) -> std::io::Result<()> {
    for _ in 0..200 {
        match Arc::try_unwrap(engine) {
            Ok(e) => return e.join(),
            Err(shared) => engine = shared,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!("engine still shared at shutdown; it stops when the last scrape ends");
    Ok(())
}

/// SIGHUP: re-reads `--config` (flags still override it) and applies what can change live —
/// the plugins' settings (each `init` run again, the new chain swapped in whole; on a failure
/// the old chain stays) and the gateway's settings but `ws.listen`/`ws.threads` — and, with
/// or without `--config`, re-reads the TLS certificate and key. Nothing else is touched:
/// registrations, log-ins, caches and sockets stay. Settings that need a restart are named in
/// a warning and keep their running values.
fn reload(
    args: &Args,
    running: &mut Config,
    runner: &flock_plugins::Runner,
    gateway: Option<&flock_ws::GatewayHandle>,
) {
    if args.config.is_some() {
        reload_config(args, running, runner, gateway);
    } else {
        tracing::info!("SIGHUP: flockd was started without --config: nothing to reload but the TLS certificate, if any");
    }
    match gateway.and_then(|g| g.reload_tls()) {
        Some(flock_ws::Reload::Replaced) => tracing::info!("SIGHUP: new TLS certificate in use"),
        Some(flock_ws::Reload::Unchanged) => tracing::info!("SIGHUP: TLS certificate unchanged"),
        // Logged by the gateway, naming the file.
        Some(flock_ws::Reload::Failed(_)) | None => {}
    }
}

fn reload_config(
    args: &Args,
    running: &mut Config,
    runner: &flock_plugins::Runner,
    gateway: Option<&flock_ws::GatewayHandle>,
) {
    let Some(path) = &args.config else {
        return;
    };
    let new = match settings(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %path.display(), "SIGHUP: config not reloaded, the running settings stay: {e}");
            return;
        }
    };
    let need_restart = config::restart_only_changes(running, &new);
    if !need_restart.is_empty() {
        tracing::warn!(
            changed = %need_restart.join(", "),
            "SIGHUP: these settings changed but only apply at a restart; they keep their running values"
        );
    }
    let plugins = if runner.plugins().is_empty() {
        "none"
    } else if !config::same_plugin_list(&running.plugins.load, &new.plugins.load) {
        "kept (the plugin list changed: restart to load it)"
    } else {
        match runner
            .plugins()
            .reinit(&new.plugins.load)
            .map(|p| runner.replace_plugins(Arc::new(p)))
        {
            Ok(Ok(_old)) => {
                // The old chain's states are left to the plugins (never freed: no destroy hook).
                running.plugins.load = new.plugins.load.clone();
                "re-initialized"
            }
            Ok(Err(_)) => {
                tracing::error!("SIGHUP: the re-initialized plugins have other hooks; the previous plugin settings stay in force");
                "kept (re-init refused)"
            }
            Err(e) => {
                tracing::error!("SIGHUP: plugin re-init failed; the previous plugin settings stay in force: {e}");
                "kept (re-init failed)"
            }
        }
    };
    let ws = match gateway {
        None => "off".to_string(),
        Some(g) => match g.reconfigure(new.ws.clone()) {
            Ok(r) => {
                running.ws = g.config();
                if r.applied.is_empty() {
                    "unchanged".to_string()
                } else {
                    r.applied.join(",")
                }
            }
            Err(e) => {
                tracing::error!("SIGHUP: websocket settings not reloaded: {e}");
                "kept (invalid)".to_string()
            }
        },
    };
    tracing::info!(config = %path.display(), plugins, ws = %ws, restart_needed = need_restart.len(), "SIGHUP: config reloaded");
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread before any other starts, so every thread
/// inherits the mask and the main thread alone receives them with `sigwait` (an unblocked
/// SIGHUP would kill the process).
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a stack-allocated, initialized signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` was initialized by `block_signals`; `sig` is a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
