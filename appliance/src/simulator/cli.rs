//! The command line: flags, their help and their parsers.

use crate::personas::*;
use clap::Parser;
use flock_appliance::keys::public_key_from_hex;
use flock_proto::identity::PUBLIC_KEY_LEN;
use flock_proto::Name;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

pub(crate) const ABOUT: &str = "Simulated Flock appliances: register names with a flock server over UDP, keep them registered, let browsers log in";

pub(crate) const LONG_ABOUT: &str = "\
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

pub(crate) const AFTER_HELP: &str = "\
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
pub(crate) struct Args {
    /// Flock server to register with: IP:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3478", value_parser = parse_server)]
    pub(crate) server: SocketAddr,

    /// Appliance name: 1 to 255 characters among a-z, 0-9, '.', '_' and '-' (upper case is
    /// folded to lower case). With --count N > 1 the appliances are NAME-0 ... NAME-{N-1}.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: Name,

    /// Number of appliances to run in this process, each with its own key and socket.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) count: u32,

    /// Directory of the appliances' keys (DIR/<name>.key, PKCS#8, created with mode 0600 if
    /// missing).
    #[arg(long, value_name = "DIR", default_value = "appliance-keys")]
    pub(crate) key_dir: PathBuf,

    /// The flock's Ed25519 public key, pinned: 64 hex digits, or @FILE to read them from a file
    /// (e.g. @flock-data/flock.pub). Only address checks signed by it are answered.
    #[arg(long, value_name = "HEX|@FILE", value_parser = parse_flock_key)]
    pub(crate) flock_key: FlockKey,

    /// Local IP to bind the sockets to (each on a free port); IP:PORT fixes the port (only with
    /// --count 1). [default: 0.0.0.0, or :: for an IPv6 server]
    #[arg(long, value_name = "IP", value_parser = parse_bind)]
    pub(crate) bind: Option<SocketAddr>,

    /// Abandon a request after this many seconds without an answer (then pause and start over).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) give_up_after: u64,

    /// Exit (status 0) once every appliance has registered; exit with status 1 as soon as one
    /// gives up or is refused.
    #[arg(long)]
    pub(crate) exit_after_register: bool,

    /// Print events as JSON objects, one per line, e.g.
    /// {"event":"registered","name":"box","mapped":"192.0.2.7:40000"}.
    #[arg(long)]
    pub(crate) json: bool,

    /// Spread the appliances' starts evenly over this many seconds (gentler on the server).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_seconds)]
    pub(crate) ramp_up: f64,

    /// Let browsers log in: personas, passwords and policy from this TOML file (format below).
    /// Without it every log-in is denied.
    #[arg(long, value_name = "FILE", value_parser = parse_personas_file)]
    pub(crate) personas: Option<Personas>,

    /// Log-in decisions each appliance remembers (about 40 bytes each), so that a retransmitted
    /// or replayed CONNECT gets its first answer again and never opens a second connection. A
    /// decision is kept until its CONNECT is stale: the request's valid-until (10 s after the
    /// flock sent it, by default) plus 10 minutes of allowed clock skew. When N are kept, the
    /// one expiring first is forgotten and every CONNECT valid no longer than it is refused
    /// (508: the browser sees `appliance-busy`). The default is more than the answer rate
    /// lets in within that time (log-in answers: a burst of 8, then one per second; past it a
    /// log-in is answered 508 at once, `appliance-busy`).
    #[arg(long, value_name = "N", default_value_t = flock_appliance::machine::DEFAULT_LOGIN_MEMORY, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1..), |n| n as usize))]
    pub(crate) login_memory: usize,

    /// WebRTC peers (one per accepted log-in) running at once in this process; a log-in past
    /// it closes the oldest peer.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) max_peers: u32,

    /// Seconds a log-in's WebRTC peer (and its data channel) lives at most.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) peer_lifetime: u64,

    /// Diagnostics on stderr: a tracing filter such as "warn", "debug",
    /// "flock_appliance=debug".
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    pub(crate) log: String,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FlockKey(pub(crate) [u8; PUBLIC_KEY_LEN]);

pub(crate) fn parse_server(s: &str) -> Result<SocketAddr, String> {
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

pub(crate) fn parse_name(s: &str) -> Result<Name, String> {
    s.parse::<Name>().map_err(|e| e.to_string())
}

pub(crate) fn parse_flock_key(s: &str) -> Result<FlockKey, String> {
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

pub(crate) fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| "expected an IP address (or IP:PORT)".into())
}

pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number of seconds, 0 or more".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
