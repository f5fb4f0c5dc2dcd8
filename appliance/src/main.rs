//! flock-appliance: runs one or many simulated appliances against a flock server.

use clap::Parser;
use flock_appliance::keys::{self, public_key_from_hex};
use flock_appliance::{spawn, ApplianceConfig, Event};
use flock_proto::identity::PUBLIC_KEY_LEN;
use flock_proto::msg::code;
use flock_proto::Name;
use ring::signature::Ed25519KeyPair;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const ABOUT: &str = "Simulated Flock appliances: register names with a flock server over UDP and keep them registered";

const LONG_ABOUT: &str = "\
Simulated Flock appliances: register names with a flock server over UDP and keep them registered.

Each appliance has its own Ed25519 key (DIR/<name>.key, created on first use) and its own UDP
socket. It registers its name (answering the server's nonce challenge), sends keep-alives at the
interval the server asks for, registers again when the server refuses its token, and answers
address checks signed by the pinned flock key. Every event is printed on stdout, one line each.";

const AFTER_HELP: &str = "\
Examples:
  flock-appliance --name kitchen --flock-key @flock-data/flock.pub
  flock-appliance --server 10.0.0.1:3478 --name sim --count 1000 --flock-key 3b6a27bc... --json
  flock-appliance --name ci --flock-key @flock.pub --exit-after-register

An appliance restarted on a new port while its previous registration is still alive (up to a
minute after it stopped) is registered again only once the server has checked the old address
(up to its check window, 60 s by default): that is the protocol protecting names, not a hang.

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

    /// Diagnostics on stderr: a tracing filter such as "warn", "debug",
    /// "flock_appliance=debug".
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    log: String,
}

#[derive(Clone, Copy, Debug)]
struct FlockKey([u8; PUBLIC_KEY_LEN]);

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() || !s.contains(':') {
        return Err("a port is required (IP:PORT or HOST:PORT, e.g. 127.0.0.1:3478)".into());
    }
    let mut addrs = s.to_socket_addrs().map_err(|e| format!("cannot resolve {s}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{s} resolves to no address"))
}

fn parse_name(s: &str) -> Result<Name, String> {
    s.parse::<Name>().map_err(|e| e.to_string())
}

fn parse_flock_key(s: &str) -> Result<FlockKey, String> {
    let (text, origin) = match s.strip_prefix('@') {
        Some(path) => {
            (std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?, format!("{path}: "))
        }
        None => (s.to_string(), String::new()),
    };
    public_key_from_hex(&text).map(FlockKey).map_err(|e| format!("{origin}{e}"))
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    s.parse::<SocketAddr>().map_err(|_| "expected an IP address (or IP:PORT)".into())
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
}

/// Startup errors, with the exit status they deserve.
enum Fail {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).init(),
        Err(e) => return fail(Fail::Usage(format!("bad --log filter {:?}: {e}", args.log))),
    }
    let (plans, bind) = match prepare(&args) {
        Ok(p) => p,
        Err(f) => return fail(f),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(Fail::Runtime(format!("cannot start the runtime: {e}"))),
    };
    runtime.block_on(run(&args, plans, bind))
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

/// Checks the arguments together and loads (or creates) the keys.
fn prepare(args: &Args) -> Result<(Vec<Plan>, SocketAddr), Fail> {
    let bind = match args.bind {
        Some(b) => {
            if b.is_ipv4() != args.server.is_ipv4() && !(b.is_ipv6() && b.ip().is_unspecified()) {
                return Err(Fail::Usage(format!("--bind {} cannot reach the server {}", b.ip(), args.server)));
            }
            if b.port() != 0 && args.count > 1 {
                return Err(Fail::Usage("--bind with a port needs --count 1 (each appliance has its own socket)".into()));
            }
            b
        }
        None if args.server.is_ipv6() => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    let names: Vec<Name> = if args.count == 1 {
        vec![args.name]
    } else {
        (0..args.count)
            .map(|i| {
                let full = format!("{}-{i}", args.name);
                full.parse::<Name>().map_err(|e| {
                    Fail::Usage(format!("--name is too long for --count {}: NAME-{i} would be {} bytes ({e})", args.count, full.len()))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let path = args.key_dir.join(format!("{name}.key"));
        let (key, created) = keys::load_or_create(&path).map_err(|e| Fail::Runtime(e.to_string()))?;
        if created {
            tracing::info!("created {}", path.display());
        }
        let mut config = ApplianceConfig::new(name, args.server, args.flock_key.0);
        config.give_up_after = Duration::from_secs(args.give_up_after);
        plans.push(Plan { config, key });
    }
    Ok((plans, bind))
}

/// What the appliance tasks tell the main loop.
enum Report {
    Started { index: usize, local: SocketAddr, identity: String },
    Event { index: usize, event: Event },
    Failed { index: usize, error: io::Error },
}

async fn run(args: &Args, plans: Vec<Plan>, bind: SocketAddr) -> ExitCode {
    let count = plans.len();
    let names: Vec<Name> = plans.iter().map(|p| p.config.name).collect();
    let (report_tx, mut reports) = mpsc::channel::<Report>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let step = if count > 1 { Duration::from_secs_f64(args.ramp_up / count as f64) } else { Duration::ZERO };
    let mut tasks = Vec::with_capacity(count);
    for (index, plan) in plans.into_iter().enumerate() {
        let delay = step * index as u32;
        tasks.push(tokio::spawn(appliance(index, plan, bind, delay, report_tx.clone(), stop_rx.clone())));
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
        let Some(report) = report else { break ExitCode::SUCCESS };
        match report {
            Report::Started { index, local, identity } => out.started(&names[index], local, &identity),
            Report::Failed { index, error } => {
                eprintln!("flock-appliance: {}: cannot open a socket on {bind}: {error}", names[index]);
                break ExitCode::FAILURE;
            }
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
    if tokio::time::timeout(Duration::from_secs(5), all).await.is_err() {
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
    let started = Report::Started { index, local: handle.local_addr(), identity: handle.fingerprint().to_hex() };
    if reports.send(started).await.is_ok() {
        loop {
            tokio::select! {
                event = handle.next_event() => match event {
                    Some(event) => if reports.send(Report::Event { index, event }).await.is_err() { break },
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
    }
    handle.shutdown().await;
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
            json(&[("event", J::S("started")), ("name", J::S(name.as_str())), ("local", J::A(local)), ("identity", J::S(identity))])
        } else {
            format!("{name}: started on {local}, identity {identity}")
        };
        self.line(&line);
    }

    fn event(&mut self, name: &Name, event: &Event) {
        if !self.json {
            self.line(&format!("{name}: {event}"));
            return;
        }
        let n = ("name", J::S(name.as_str()));
        let line = match *event {
            Event::Registered { mapped } => json(&[("event", J::S("registered")), n, ("mapped", J::A(mapped))]),
            Event::MappedAddressChanged { old, new } => {
                json(&[("event", J::S("mapped_address_changed")), n, ("old", J::A(old)), ("new", J::A(new))])
            }
            Event::KeptAlive { mapped } => json(&[("event", J::S("kept_alive")), n, ("mapped", J::A(mapped))]),
            Event::TokenRefused => json(&[("event", J::S("token_refused")), n]),
            Event::Refused { code: c } => {
                json(&[("event", J::S("refused")), n, ("code", J::N(u64::from(c))), ("reason", J::S(code::reason(c)))])
            }
            Event::CheckAnswered { from } => json(&[("event", J::S("check_answered")), n, ("from", J::A(from))]),
            Event::GaveUp => json(&[("event", J::S("gave_up")), n]),
        };
        self.line(&line);
    }
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
            json(&[("event", J::S("registered")), ("name", J::S("x")), ("mapped", J::A(a)), ("code", J::N(7))]),
            r#"{"event":"registered","name":"x","mapped":"[2001:db8::1]:5","code":7}"#
        );
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(parse_server("127.0.0.1:3478").unwrap(), "127.0.0.1:3478".parse().unwrap());
        assert!(parse_server("127.0.0.1").unwrap_err().contains("port"));
        assert!(parse_server("nonsense").unwrap_err().contains("port"));
        assert!(parse_server("localhost:3478").is_ok());
        assert_eq!(parse_bind("::").unwrap(), "[::]:0".parse().unwrap());
        assert!(parse_bind("x").is_err());
        assert!(parse_name("Box-1").is_ok());
        assert!(parse_name("a b").unwrap_err().contains("0x20"));
        assert!(parse_flock_key(&"ab".repeat(32)).is_ok());
        assert!(parse_flock_key("abcd").unwrap_err().contains("64 hex digits"));
        assert!(parse_flock_key("@/nonexistent/flock.pub").unwrap_err().contains("cannot read /nonexistent/flock.pub"));
        assert!(parse_seconds("-1").is_err());
        Args::try_parse_from(["flock-appliance", "--name", "x", "--flock-key", &"00".repeat(32)]).unwrap();
        assert!(Args::try_parse_from(["flock-appliance", "--name", "x"]).is_err(), "--flock-key is required");
        assert!(Args::try_parse_from(["flock-appliance", "--name", "x", "--flock-key", "00", "--count", "0"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
