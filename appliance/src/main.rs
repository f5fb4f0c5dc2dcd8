//! flock-appliance: runs one or many simulated appliances against a flock server.

use clap::Parser;
use flock_appliance::keys::{self, public_key_from_hex};
use flock_appliance::webrtc::{PeerEvent, PeerOptions, Peers, WebRtcPeer, CHANNEL_LABEL};
use flock_appliance::{
    spawn, ApplianceConfig, ApplianceHandle, Candidate, Decision, Event, SessionNonce,
};
use flock_proto::identity::{self, PUBLIC_KEY_LEN};
use flock_proto::wire::login::MAX_CREDENTIAL_LEN;
use flock_proto::wire::registration::code;
use flock_proto::Name;
use ring::signature::Ed25519KeyPair;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const ABOUT: &str = "Simulated Flock appliances: register names with a flock server over UDP, keep them registered, let browsers log in";

const LONG_ABOUT: &str = "\
Simulated Flock appliances: register names with a flock server over UDP and keep them registered.

Each appliance has its own Ed25519 key (DIR/<name>.key, created on first use) and its own UDP
socket. It registers its name (answering the server's nonce challenge), sends keep-alives at the
interval the server asks for, registers again when the server refuses its token, and answers
address checks signed by the pinned flock key. Every event is printed on stdout, one line each.

With --personas FILE the appliances also let browsers log in through the flock: they serve the
persona list of FILE (ids and names, never the passwords) and accept the credential
\"pwd:<password>\" for a persona. Each accepted log-in gets a real WebRTC peer: an SDP offer
with one data channel (\"flock\"), its host candidate (its own UDP socket) and
end-of-candidates; the browser's answer and candidates are applied as they come, and every text
message on the data channel is answered with \"echo: <message>\". Printed as they happen: the
log-in, the browser's answer and candidates, then the peer's 'webrtc connected', 'data channel
\"flock\" open', 'message \"hi\", echoed' and 'webrtc peer closed: <reason>' (with --json the
events webrtc_connected, channel_open, channel_message and webrtc_stopped); 'webrtc: …'
(webrtc_error) says why the browser's answer or a candidate was not applied. Credentials are
never printed. Without --personas every log-in is denied.

The peers' sockets bind the loopback address when --server is a loopback address (then they
send to loopback addresses only, and the browser must run on this machine), else the --bind IP,
else the address this machine reaches the server from. At most --max-peers run at once in the
process (a new log-in closes the oldest), each for at most --peer-lifetime seconds.";

const AFTER_HELP: &str = "\
Examples:
  flock-appliance --name kitchen --flock-key @flock-data/flock.pub
  flock-appliance --name kitchen --flock-key @flock-data/flock.pub --personas personas.toml
  flock-appliance --server 10.0.0.1:3478 --name sim --count 1000 --flock-key 3b6a27bc... --json
  flock-appliance --name ci --flock-key @flock.pub --exit-after-register

An appliance restarted on a new port while its previous registration is still alive (up to a
minute after it stopped) is registered again only once the server has checked the old address
(up to its check window, 60 s by default): that is the protocol protecting names, not a hang.

Personas file (TOML):
  credentials_required = false   # optional: true = the browser enters user name (matched
                                 # against id) and password; no list is served
  [[persona]]
  id = \"alice\"                   # 1 to 255 bytes, unique
  name = \"Alice\"                 # shown to the browser, at most 255 bytes
  password = \"wonderland\"        # the credential is \"pwd:wonderland\"
  deny = false                   # optional: right password, but policy refuses this persona

Log-ins: each appliance answers the flock's persona and log-in requests at a limited rate (a
burst of 8, then one per second, as PROTOCOL.md §4.5 says); a log-in past it is answered 508
at once and the browser gets `appliance-busy` (try again shortly). So is a log-in past 32
accepted sessions signalling at once, or one refused by the replay memory (--login-memory).

Exit status: 0 on success or Ctrl-C; 1 if an appliance gives up or is refused (with
--exit-after-register) or a socket or key file fails; 2 on bad arguments.";

#[derive(Parser, Debug)]
#[command(name = "flock-appliance", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Args {
    /// Flock server to register with: IP:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3478", value_parser = parse_server)]
    server: SocketAddr,

    /// Appliance name: 1 to 255 characters among a-z, 0-9, '.', '_' and '-' (upper case is
    /// folded to lower case). With --count N > 1 the appliances are NAME-0 ... NAME-{N-1}.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Name,

    /// Number of appliances to run in this process, each with its own key and socket.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,

    /// Directory of the appliances' keys (DIR/<name>.key, PKCS#8, created with mode 0600 if
    /// missing).
    #[arg(long, value_name = "DIR", default_value = "appliance-keys")]
    key_dir: PathBuf,

    /// The flock's Ed25519 public key, pinned: 64 hex digits, or @FILE to read them from a file
    /// (e.g. @flock-data/flock.pub). Only address checks signed by it are answered.
    #[arg(long, value_name = "HEX|@FILE", value_parser = parse_flock_key)]
    flock_key: FlockKey,

    /// Local IP to bind the sockets to (each on a free port); IP:PORT fixes the port (only with
    /// --count 1). [default: 0.0.0.0, or :: for an IPv6 server]
    #[arg(long, value_name = "IP", value_parser = parse_bind)]
    bind: Option<SocketAddr>,

    /// Abandon a request after this many seconds without an answer (then pause and start over).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    give_up_after: u64,

    /// Exit (status 0) once every appliance has registered; exit with status 1 as soon as one
    /// gives up or is refused.
    #[arg(long)]
    exit_after_register: bool,

    /// Print events as JSON objects, one per line, e.g.
    /// {"event":"registered","name":"box","mapped":"192.0.2.7:40000"}.
    #[arg(long)]
    json: bool,

    /// Spread the appliances' starts evenly over this many seconds (gentler on the server).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_seconds)]
    ramp_up: f64,

    /// Let browsers log in: personas, passwords and policy from this TOML file (format below).
    /// Without it every log-in is denied.
    #[arg(long, value_name = "FILE", value_parser = parse_personas_file)]
    personas: Option<Personas>,

    /// Log-in decisions each appliance remembers (about 40 bytes each), so that a retransmitted
    /// or replayed CONNECT gets its first answer again and never opens a second connection. A
    /// decision is kept until its CONNECT is stale: the request's valid-until (10 s after the
    /// flock sent it, by default) plus 10 minutes of allowed clock skew. When N are kept, the
    /// one expiring first is forgotten and every CONNECT valid no longer than it is refused
    /// (508: the browser sees `appliance-busy`). The default is more than the answer rate
    /// lets in within that time (log-in answers: a burst of 8, then one per second; past it a
    /// log-in is answered 508 at once, `appliance-busy`).
    #[arg(long, value_name = "N", default_value_t = flock_appliance::machine::DEFAULT_LOGIN_MEMORY, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1..), |n| n as usize))]
    login_memory: usize,

    /// WebRTC peers (one per accepted log-in) running at once in this process; a log-in past
    /// it closes the oldest peer.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_peers: u32,

    /// Seconds a log-in's WebRTC peer (and its data channel) lives at most.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    peer_lifetime: u64,

    /// Diagnostics on stderr: a tracing filter such as "warn", "debug",
    /// "flock_appliance=debug".
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    log: String,
}

#[derive(Clone, Copy, Debug)]
struct FlockKey([u8; PUBLIC_KEY_LEN]);

/// The --personas file, checked.
#[derive(Clone)]
struct Personas(Arc<PersonasFile>);

/// Written by hand: never shows a password.
impl std::fmt::Debug for Personas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.0.persona.iter().map(|p| p.id.as_str()).collect();
        f.debug_struct("Personas")
            .field("credentials_required", &self.0.credentials_required)
            .field("ids", &ids)
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonasFile {
    #[serde(default)]
    credentials_required: bool,
    #[serde(default)]
    persona: Vec<PersonaEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonaEntry {
    id: String,
    name: String,
    password: String,
    #[serde(default)]
    deny: bool,
}

/// Personas the flock's gateway takes (more are refused there, so refuse them here first).
const MAX_PERSONAS: usize = 256;

fn parse_personas_file(path: &str) -> Result<Personas, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_personas(&text).map_err(|e| format!("{path}: {e}"))
}

fn parse_personas(text: &str) -> Result<Personas, String> {
    let file: PersonasFile =
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if file.persona.is_empty() {
        return Err("no [[persona]] entries (each needs id, name and password)".into());
    }
    if file.persona.len() > MAX_PERSONAS {
        return Err(format!(
            "{} personas, at most {MAX_PERSONAS}",
            file.persona.len()
        ));
    }
    for (i, p) in file.persona.iter().enumerate() {
        let which = format!("persona {} (id {:?})", i + 1, p.id);
        if p.id.is_empty() || p.id.len() > 255 {
            return Err(format!("{which}: id must be 1 to 255 bytes"));
        }
        if p.name.len() > 255 {
            return Err(format!("{which}: name is over 255 bytes"));
        }
        if p.password.is_empty() || p.password.len() + 4 > MAX_CREDENTIAL_LEN {
            return Err(format!(
                "{which}: password must be 1 to {} bytes",
                MAX_CREDENTIAL_LEN - 4
            ));
        }
        if file.persona[..i].iter().any(|q| q.id == p.id) {
            return Err(format!("{which}: duplicate id"));
        }
    }
    Ok(Personas(Arc::new(file)))
}

impl Personas {
    /// The list served to the flock: ids and names only.
    fn list_json(&self) -> Option<Vec<u8>> {
        if self.0.credentials_required {
            return None;
        }
        let mut s = String::from("[");
        for (i, p) in self.0.persona.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"id\":");
            json_str(&mut s, &p.id);
            s.push_str(",\"name\":");
            json_str(&mut s, &p.name);
            s.push('}');
        }
        s.push(']');
        Some(s.into_bytes())
    }

    /// `persona` is the persona id, or the user name when credentials are entered separately:
    /// either way matched against `id`.
    fn decide(&self, persona: &str, credential: &[u8]) -> Decision {
        let Some(p) = self.0.persona.iter().find(|p| p.id == persona) else {
            return Decision::BadCredentials;
        };
        let good = credential
            .strip_prefix(b"pwd:")
            .is_some_and(|pwd| constant_time_eq(pwd, p.password.as_bytes()));
        match (good, p.deny) {
            (false, _) => Decision::BadCredentials,
            (true, true) => Decision::Deny,
            (true, false) => Decision::Accept,
        }
    }
}

/// Compares without an early exit, so timing does not tell how much of a password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The IP the WebRTC peers bind (and show as their host candidate): loopback for a loopback
/// server (nothing leaves the machine), else the --bind IP, else the local address of the route
/// to the server (a connected UDP socket tells it; nothing is sent).
fn peer_ip(server: SocketAddr, bind: SocketAddr) -> io::Result<IpAddr> {
    if server.ip().is_loopback() {
        return Ok(server.ip());
    }
    if !bind.ip().is_unspecified() {
        return Ok(bind.ip());
    }
    let probe = UdpSocket::bind(SocketAddr::new(bind.ip(), 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() || !s.contains(':') {
        return Err("a port is required (IP:PORT or HOST:PORT, e.g. 127.0.0.1:3478)".into());
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

fn parse_name(s: &str) -> Result<Name, String> {
    s.parse::<Name>().map_err(|e| e.to_string())
}

fn parse_flock_key(s: &str) -> Result<FlockKey, String> {
    let (text, origin) = match s.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
            format!("{path}: "),
        ),
        None => (s.to_string(), String::new()),
    };
    public_key_from_hex(&text)
        .map(FlockKey)
        .map_err(|e| format!("{origin}{e}"))
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| "expected an IP address (or IP:PORT)".into())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number of seconds, 0 or more".into()),
    }
}

/// One appliance to run.
struct Plan {
    config: ApplianceConfig,
    key: Ed25519KeyPair,
    personas: Option<Personas>,
}

/// Startup errors, with the exit status they deserve.
enum Fail {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .init(),
        Err(e) => return fail(Fail::Usage(format!("bad --log filter {:?}: {e}", args.log))),
    }
    let (plans, bind, peer_ip) = match prepare(&args) {
        Ok(p) => p,
        Err(f) => return fail(f),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(Fail::Runtime(format!("cannot start the runtime: {e}"))),
    };
    let webrtc = peer_ip.map(|ip| {
        Arc::new(Webrtc {
            ip,
            lifetime: Duration::from_secs(args.peer_lifetime),
            peers: Mutex::new(Peers::new(args.max_peers as usize)),
        })
    });
    runtime.block_on(run(&args, plans, bind, webrtc))
}

fn fail(f: Fail) -> ExitCode {
    match f {
        Fail::Usage(msg) => {
            eprintln!("flock-appliance: {msg}");
            ExitCode::from(2)
        }
        Fail::Runtime(msg) => {
            eprintln!("flock-appliance: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments together and loads (or creates) the keys. Returns the appliances, the
/// address their sockets bind, and with --personas the IP of the log-ins' WebRTC peers.
fn prepare(args: &Args) -> Result<(Vec<Plan>, SocketAddr, Option<IpAddr>), Fail> {
    let bind = match args.bind {
        Some(b) => {
            if b.is_ipv4() != args.server.is_ipv4() && !(b.is_ipv6() && b.ip().is_unspecified()) {
                return Err(Fail::Usage(format!(
                    "--bind {} cannot reach the server {}",
                    b.ip(),
                    args.server
                )));
            }
            if b.port() != 0 && args.count > 1 {
                return Err(Fail::Usage(
                    "--bind with a port needs --count 1 (each appliance has its own socket)".into(),
                ));
            }
            b
        }
        None if args.server.is_ipv6() => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    let peer_ip = match &args.personas {
        Some(_) => Some(peer_ip(args.server, bind).map_err(|e| {
            Fail::Runtime(format!(
                "cannot find this machine's address towards {}: {e}",
                args.server
            ))
        })?),
        None => None,
    };
    let names: Vec<Name> = if args.count == 1 {
        vec![args.name]
    } else {
        (0..args.count)
            .map(|i| {
                let full = format!("{}-{i}", args.name);
                full.parse::<Name>().map_err(|e| {
                    Fail::Usage(format!(
                        "--name is too long for --count {}: NAME-{i} would be {} bytes ({e})",
                        args.count,
                        full.len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let path = args.key_dir.join(format!("{name}.key"));
        let (key, created) =
            keys::load_or_create(&path).map_err(|e| Fail::Runtime(e.to_string()))?;
        if created {
            tracing::info!("created {}", path.display());
        }
        let mut config = ApplianceConfig::new(name, args.server, args.flock_key.0);
        config.give_up_after = Duration::from_secs(args.give_up_after);
        config.login_memory = args.login_memory;
        plans.push(Plan {
            config,
            key,
            personas: args.personas.clone(),
        });
    }
    Ok((plans, bind, peer_ip))
}

/// What the appliance tasks tell the main loop.
enum Report {
    Started {
        index: usize,
        local: SocketAddr,
        identity: String,
    },
    Event {
        index: usize,
        event: Event,
    },
    Failed {
        index: usize,
        error: io::Error,
    },
    /// What a log-in's WebRTC peer did, or why the signalling could not be applied to it.
    Peer {
        index: usize,
        session: SessionNonce,
        event: Result<PeerEvent, String>,
    },
}

async fn run(
    args: &Args,
    plans: Vec<Plan>,
    bind: SocketAddr,
    webrtc: Option<Arc<Webrtc>>,
) -> ExitCode {
    let count = plans.len();
    let names: Vec<Name> = plans.iter().map(|p| p.config.name).collect();
    let (report_tx, mut reports) = mpsc::channel::<Report>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let step = if count > 1 {
        Duration::from_secs_f64(args.ramp_up / count as f64)
    } else {
        Duration::ZERO
    };
    let mut tasks = Vec::with_capacity(count);
    for (index, plan) in plans.into_iter().enumerate() {
        let delay = step * index as u32;
        tasks.push(tokio::spawn(appliance(
            index,
            plan,
            bind,
            delay,
            webrtc.clone(),
            report_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(report_tx);

    let mut out = Output { json: args.json };
    let mut registered = vec![false; count];
    let mut registered_count = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let status = loop {
        let report = tokio::select! {
            r = reports.recv() => r,
            _ = &mut ctrl_c => {
                tracing::info!("interrupted");
                break ExitCode::SUCCESS;
            }
        };
        let Some(report) = report else {
            break ExitCode::SUCCESS;
        };
        match report {
            Report::Started {
                index,
                local,
                identity,
            } => out.started(&names[index], local, &identity),
            Report::Failed { index, error } => {
                eprintln!(
                    "flock-appliance: {}: cannot open a socket on {bind}: {error}",
                    names[index]
                );
                break ExitCode::FAILURE;
            }
            Report::Peer {
                index,
                session,
                event,
            } => out.peer(&names[index], &session, &event),
            Report::Event { index, event } => {
                out.event(&names[index], &event);
                match event {
                    Event::Registered { .. } if !registered[index] => {
                        registered[index] = true;
                        registered_count += 1;
                        if args.exit_after_register && registered_count == count {
                            break ExitCode::SUCCESS;
                        }
                    }
                    Event::GaveUp | Event::Refused { .. } if args.exit_after_register => {
                        eprintln!("flock-appliance: {}: {event}", names[index]);
                        break ExitCode::FAILURE;
                    }
                    _ => {}
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    drop(reports); // nobody blocks on a full channel while stopping
    let all = futures_join(tasks);
    if tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .is_err()
    {
        tracing::warn!("some appliances did not stop in time");
    }
    status
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs one appliance: waits its turn, binds, forwards its events until told to stop.
async fn appliance(
    index: usize,
    plan: Plan,
    bind: SocketAddr,
    delay: Duration,
    webrtc: Option<Arc<Webrtc>>,
    reports: mpsc::Sender<Report>,
    mut stop: watch::Receiver<bool>,
) {
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
    let mut handle = match spawn(plan.config, plan.key, bind) {
        Ok(h) => h,
        Err(error) => {
            let _ = reports.send(Report::Failed { index, error }).await;
            return;
        }
    };
    if let Some(p) = plan.personas {
        let _ = handle.set_personas(p.list_json());
        let _ = handle.set_authenticator(move |r| p.decide(r.persona, r.credential));
    }
    let started = Report::Started {
        index,
        local: handle.local_addr(),
        identity: handle.fingerprint().to_hex(),
    };
    // The peers' events (from their threads), tagged with the session.
    let (peer_tx, mut peer_events) = mpsc::channel::<(SessionNonce, PeerEvent)>(64);
    if reports.send(started).await.is_ok() {
        loop {
            tokio::select! {
                event = handle.next_event() => match event {
                    Some(event) => {
                        let errors = match &webrtc {
                            Some(w) => w.signal(index, &handle, &event, &peer_tx).await,
                            None => vec![],
                        };
                        let session = event_session(&event);
                        if reports.send(Report::Event { index, event }).await.is_err() {
                            break;
                        }
                        for e in errors {
                            let Some(session) = session else { break };
                            let _ = reports.send(Report::Peer { index, session, event: Err(e) }).await;
                        }
                    }
                    None => break,
                },
                Some((session, event)) = peer_events.recv() => {
                    if let (PeerEvent::Stopped(_), Some(w)) = (&event, &webrtc) {
                        w.forget(index, &session);
                    }
                    let report = Report::Peer { index, session, event: Ok(event) };
                    if reports.send(report).await.is_err() {
                        break;
                    }
                }
                _ = stop.changed() => break,
            }
        }
    }
    handle.shutdown().await;
}

/// The session an event is about, if any.
fn event_session(event: &Event) -> Option<SessionNonce> {
    match event {
        Event::LoginAccepted { session, .. }
        | Event::LoginRefused { session, .. }
        | Event::RemoteAnswer { session, .. }
        | Event::RemoteCandidate { session, .. }
        | Event::RemoteEndOfCandidates { session }
        | Event::SessionDone { session }
        | Event::SessionFailed { session, .. } => Some(*session),
        _ => None,
    }
}

/// The log-ins' WebRTC peers, shared by the appliances of the process (with --personas).
struct Webrtc {
    /// What the peers bind (see [`peer_ip`]).
    ip: IpAddr,
    lifetime: Duration,
    /// Keyed by appliance index and session.
    peers: Mutex<Peers<(usize, SessionNonce)>>,
}

impl Webrtc {
    /// Plays the appliance's side of the signalling for `event`: a peer, its offer, candidate
    /// and end-of-candidates for an accepted log-in; the browser's answer and candidates to
    /// its peer. Returns what went wrong (the log-in carries on; the browser sees no channel).
    async fn signal(
        &self,
        index: usize,
        handle: &ApplianceHandle,
        event: &Event,
        peer_events: &mpsc::Sender<(SessionNonce, PeerEvent)>,
    ) -> Vec<String> {
        let mut errors = vec![];
        match event {
            Event::LoginAccepted { session, .. } => {
                let (tx, s) = (peer_events.clone(), *session);
                let options = PeerOptions {
                    bind: self.ip,
                    lifetime: self.lifetime,
                    // A full channel loses the event, not the peer (bounded like the rest).
                    on_event: Some(Box::new(move |e| {
                        let _ = tx.try_send((s, e));
                    })),
                };
                match blocking(move || WebRtcPeer::start(options).map_err(|e| e.to_string())).await
                {
                    Ok((peer, offer)) => {
                        let _ = handle.send_offer(s, offer);
                        for (candidate, mid) in peer.local_candidates() {
                            let _ = handle.add_candidate(s, Candidate { candidate, mid });
                        }
                        let _ = handle.end_of_candidates(s);
                        let out = self.lock().insert((index, s), Arc::new(peer));
                        drop_peers(out);
                    }
                    Err(e) => errors.push(format!("cannot start a WebRTC peer: {e}")),
                }
            }
            Event::RemoteAnswer { session, sdp } => {
                if let Some(peer) = self.peer(index, session) {
                    let sdp = sdp.clone();
                    if let Err(e) = blocking(move || peer.accept_answer(&sdp)).await {
                        errors.push(format!("answer not applied: {e}"));
                    }
                }
            }
            Event::RemoteCandidate { session, candidate } => {
                if let Some(peer) = self.peer(index, session) {
                    let c = candidate.clone();
                    let r =
                        blocking(move || peer.add_remote_candidate(&c.candidate, c.mid.as_deref()));
                    if let Err(e) = r.await {
                        errors.push(format!("candidate not applied: {e}"));
                    }
                }
            }
            // Signalling failed: a peer that never connected has nothing more to do.
            Event::SessionFailed { session, .. } => {
                if let Some(peer) = self.peer(index, session).filter(|p| !p.state().connected) {
                    peer.close("signalling failed");
                }
            }
            _ => {}
        }
        errors
    }

    fn peer(&self, index: usize, session: &SessionNonce) -> Option<Arc<WebRtcPeer>> {
        self.lock().get(&(index, *session))
    }

    /// Drops a peer that stopped.
    fn forget(&self, index: usize, session: &SessionNonce) {
        let peer = self.lock().remove(&(index, *session));
        drop_peers(peer.into_iter().collect());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Peers<(usize, SessionNonce)>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a blocking peer call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// Dropping a peer joins its thread: not on the async threads.
fn drop_peers(peers: Vec<Arc<WebRtcPeer>>) {
    if !peers.is_empty() {
        tokio::task::spawn_blocking(move || drop(peers));
    }
}

/// Event lines on stdout, human or JSON.
struct Output {
    json: bool,
}

impl Output {
    fn line(&mut self, line: &str) {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    fn started(&mut self, name: &Name, local: SocketAddr, identity: &str) {
        let line = if self.json {
            json(&[
                ("event", J::S("started")),
                ("name", J::S(name.as_str())),
                ("local", J::A(local)),
                ("identity", J::S(identity)),
            ])
        } else {
            format!("{name}: started on {local}, identity {identity}")
        };
        self.line(&line);
    }

    /// A line about a log-in's WebRTC peer.
    fn peer(&mut self, name: &Name, session: &SessionNonce, event: &Result<PeerEvent, String>) {
        let line = if self.json {
            let n = ("name", J::S(name.as_str()));
            let hex = identity::to_hex(session);
            let s = ("session", J::S(&hex));
            match event {
                Ok(PeerEvent::Connected) => json(&[("event", J::S("webrtc_connected")), n, s]),
                Ok(PeerEvent::ChannelOpen) => json(&[
                    ("event", J::S("channel_open")),
                    n,
                    s,
                    ("label", J::S(CHANNEL_LABEL)),
                ]),
                Ok(PeerEvent::Message(text)) => json(&[
                    ("event", J::S("channel_message")),
                    n,
                    s,
                    ("text", J::S(shorten(text))),
                ]),
                Ok(PeerEvent::Stopped(reason)) => json(&[
                    ("event", J::S("webrtc_stopped")),
                    n,
                    s,
                    ("reason", J::S(reason)),
                ]),
                Err(e) => json(&[("event", J::S("webrtc_error")), n, s, ("error", J::S(e))]),
            }
        } else {
            let what = match event {
                Ok(PeerEvent::Connected) => "webrtc connected".to_string(),
                Ok(PeerEvent::ChannelOpen) => format!("data channel {CHANNEL_LABEL:?} open"),
                Ok(PeerEvent::Message(text)) => format!("message {:?}, echoed", shorten(text)),
                Ok(PeerEvent::Stopped(reason)) => format!("webrtc peer closed: {reason}"),
                Err(e) => format!("webrtc: {e}"),
            };
            format!(
                "{name}: session {}: {what}",
                identity::to_hex(&session[..4])
            )
        };
        self.line(&line);
    }

    fn event(&mut self, name: &Name, event: &Event) {
        if !self.json {
            self.line(&format!("{name}: {event}"));
            if let Event::RemoteAnswer { sdp, .. } = event {
                for l in sdp.lines() {
                    self.line(&format!("    {l}"));
                }
            }
            return;
        }
        let n = ("name", J::S(name.as_str()));
        let hex = |s: &SessionNonce| identity::to_hex(s);
        let line = match event {
            Event::Registered { mapped } => {
                json(&[("event", J::S("registered")), n, ("mapped", J::A(*mapped))])
            }
            Event::MappedAddressChanged { old, new } => json(&[
                ("event", J::S("mapped_address_changed")),
                n,
                ("old", J::A(*old)),
                ("new", J::A(*new)),
            ]),
            Event::KeptAlive { mapped } => {
                json(&[("event", J::S("kept_alive")), n, ("mapped", J::A(*mapped))])
            }
            Event::TokenRefused => json(&[("event", J::S("token_refused")), n]),
            Event::Refused { code: c } => json(&[
                ("event", J::S("refused")),
                n,
                ("code", J::N(u64::from(*c))),
                ("reason", J::S(code::reason(*c))),
            ]),
            Event::Redirected { from, to } => json(&[
                ("event", J::S("redirected")),
                n,
                ("from", J::A(*from)),
                ("to", J::A(*to)),
            ]),
            Event::CheckAnswered { from } => {
                json(&[("event", J::S("check_answered")), n, ("from", J::A(*from))])
            }
            Event::GaveUp => json(&[("event", J::S("gave_up")), n]),
            Event::LoginAccepted { session, persona } => json(&[
                ("event", J::S("login_accepted")),
                n,
                ("session", J::S(&hex(session))),
                ("persona", J::S(persona)),
            ]),
            Event::LoginRefused {
                session,
                persona,
                code: c,
            } => json(&[
                ("event", J::S("login_refused")),
                n,
                ("session", J::S(&hex(session))),
                ("persona", J::S(persona)),
                ("code", J::N(u64::from(*c))),
                ("reason", J::S(flock_proto::wire::login::code::reason(*c))),
            ]),
            Event::RemoteAnswer { session, sdp } => json(&[
                ("event", J::S("remote_answer")),
                n,
                ("session", J::S(&hex(session))),
                ("sdp", J::S(sdp)),
            ]),
            Event::RemoteCandidate { session, candidate } => json(&[
                ("event", J::S("remote_candidate")),
                n,
                ("session", J::S(&hex(session))),
                ("candidate", J::S(&candidate.candidate)),
                ("mid", J::S(candidate.mid.as_deref().unwrap_or(""))),
            ]),
            Event::RemoteEndOfCandidates { session } => json(&[
                ("event", J::S("remote_end_of_candidates")),
                n,
                ("session", J::S(&hex(session))),
            ]),
            Event::SessionDone { session } => json(&[
                ("event", J::S("session_done")),
                n,
                ("session", J::S(&hex(session))),
            ]),
            Event::SessionFailed { session, reason } => json(&[
                ("event", J::S("session_failed")),
                n,
                ("session", J::S(&hex(session))),
                ("reason", J::S(&reason.to_string())),
            ]),
        };
        self.line(&line);
    }
}

/// A data-channel message as printed: at most 200 characters.
fn shorten(text: &str) -> &str {
    text.char_indices()
        .nth(200)
        .map_or(text, |(i, _)| &text[..i])
}

/// A JSON value of an event line.
enum J<'a> {
    S(&'a str),
    A(SocketAddr),
    N(u64),
}

/// One flat JSON object.
fn json(fields: &[(&str, J<'_>)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_str(&mut s, k);
        s.push(':');
        match v {
            J::S(v) => json_str(&mut s, v),
            J::A(a) => json_str(&mut s, &a.to_string()),
            J::N(n) => {
                let _ = write!(s, "{n}");
            }
        }
    }
    s.push('}');
    s
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        let a: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(
            json(&[
                ("event", J::S("registered")),
                ("name", J::S("x")),
                ("mapped", J::A(a)),
                ("code", J::N(7))
            ]),
            r#"{"event":"registered","name":"x","mapped":"[2001:db8::1]:5","code":7}"#
        );
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(
            parse_server("127.0.0.1:3478").unwrap(),
            "127.0.0.1:3478".parse().unwrap()
        );
        assert!(parse_server("127.0.0.1").unwrap_err().contains("port"));
        assert!(parse_server("nonsense").unwrap_err().contains("port"));
        assert!(parse_server("localhost:3478").is_ok());
        assert_eq!(parse_bind("::").unwrap(), "[::]:0".parse().unwrap());
        assert!(parse_bind("x").is_err());
        assert!(parse_name("Box-1").is_ok());
        assert!(parse_name("a b").unwrap_err().contains("0x20"));
        assert!(parse_flock_key(&"ab".repeat(32)).is_ok());
        assert!(parse_flock_key("abcd")
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(parse_flock_key("@/nonexistent/flock.pub")
            .unwrap_err()
            .contains("cannot read /nonexistent/flock.pub"));
        assert!(parse_seconds("-1").is_err());
        Args::try_parse_from([
            "flock-appliance",
            "--name",
            "x",
            "--flock-key",
            &"00".repeat(32),
        ])
        .unwrap();
        assert!(
            Args::try_parse_from(["flock-appliance", "--name", "x"]).is_err(),
            "--flock-key is required"
        );
        assert!(Args::try_parse_from([
            "flock-appliance",
            "--name",
            "x",
            "--flock-key",
            "00",
            "--count",
            "0"
        ])
        .is_err());
    }

    const PERSONAS: &str = r#"
[[persona]]
id = "alice"
name = "Alice \"A\""
password = "wonderland"

[[persona]]
id = "bob"
name = "Bob"
password = "builder"
deny = true
"#;

    #[test]
    fn personas_file() {
        let p = parse_personas(PERSONAS).unwrap();
        let list = String::from_utf8(p.list_json().unwrap()).unwrap();
        assert_eq!(
            list,
            r#"[{"id":"alice","name":"Alice \"A\""},{"id":"bob","name":"Bob"}]"#
        );
        assert!(!list.contains("wonderland") && !format!("{p:?}").contains("wonderland"));
        assert_eq!(p.decide("alice", b"pwd:wonderland"), Decision::Accept);
        assert_eq!(
            p.decide("alice", b"pwd:wonderlan"),
            Decision::BadCredentials
        );
        assert_eq!(p.decide("alice", b"wonderland"), Decision::BadCredentials);
        assert_eq!(
            p.decide("carol", b"pwd:wonderland"),
            Decision::BadCredentials
        );
        assert_eq!(p.decide("bob", b"pwd:builder"), Decision::Deny);
        assert_eq!(p.decide("bob", b"pwd:x"), Decision::BadCredentials);
        let p = parse_personas(&format!("credentials_required = true\n{PERSONAS}")).unwrap();
        assert_eq!(p.list_json(), None);
        assert_eq!(p.decide("alice", b"pwd:wonderland"), Decision::Accept);
    }

    #[test]
    fn bad_personas_files_say_why() {
        let err = |t: &str| parse_personas(t).unwrap_err();
        assert!(err("").contains("no [[persona]]"));
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\n").contains("password"),
            "{}",
            err("[[persona]]\nid = \"a\"\nname = \"A\"\n")
        );
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"p\"\ncolour = 1\n")
                .contains("unknown field")
        );
        assert!(
            err("[[persona]]\nid = \"\"\nname = \"A\"\npassword = \"p\"\n").contains("id must be")
        );
        assert!(
            err("[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"\"\n")
                .contains("password must be")
        );
        let twice = "[[persona]]\nid = \"a\"\nname = \"A\"\npassword = \"p\"\n".repeat(2);
        assert!(err(&twice).contains("persona 2 (id \"a\"): duplicate id"));
        assert!(err("credentials_required = \"yes\"").contains("invalid type"));
        assert!(parse_personas_file("/nonexistent/p.toml")
            .unwrap_err()
            .contains("cannot read /nonexistent/p.toml"));
    }

    #[test]
    fn peers_bind_loopback_for_a_loopback_server() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:3478".parse().unwrap();
        assert_eq!(
            peer_ip("127.0.0.1:3478".parse().unwrap(), any).unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(peer_ip(v6, "[::]:0".parse().unwrap()).unwrap(), v6.ip());
        // Not loopback: the --bind IP (no route lookup, nothing sent).
        assert_eq!(
            peer_ip(
                "192.0.2.1:3478".parse().unwrap(),
                "127.0.0.5:0".parse().unwrap()
            )
            .unwrap(),
            IpAddr::from([127, 0, 0, 5])
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
