//! Command line of `flock-bench`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "flock-bench",
    version,
    about = "Packet-rate load generator for flockd (and a baseline UDP echo server)",
    long_about = "Packet-rate load generator for flockd.\n\n\
        `echo-server` is a minimal UDP responder: the kernel's UDP path with (almost) no work per \
        packet, to compare flockd against. The load modes (`stun`, `echo`, `keepalive`, \
        `register`) send requests from many source sockets with sendmmsg and UDP GSO, match \
        answers by transaction id, and report answered/s, loss, latency percentiles and CPU use. \
        `login` runs whole browser log-ins over websockets (log-ins/s), `ws-idle` measures \
        flockd's memory per idle websocket.\n\n\
        `stalls` measures how often the machine itself pauses a busy thread.\n\n\
        Targets must be on loopback unless --allow-remote is given."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Minimal UDP responder (baseline): echoes every datagram, or answers STUN Binding.
    EchoServer(EchoServerArgs),
    /// STUN Binding requests (padded with SOFTWARE, with FINGERPRINT); checks each answer.
    Stun(LoadArgs),
    /// Binding-sized datagrams to an echo server; checks each echo.
    Echo(LoadArgs),
    /// Registers N appliances, then sends keep-alives round-robin over them.
    Keepalive(KeepaliveArgs),
    /// Full signed REGISTERs (nonce cached per socket), replayed round-robin over N names.
    Register(RegisterArgs),
    /// Full browser log-ins over websockets, end to end, to in-process SDK appliances:
    /// log-ins per second and their latency.
    Login(crate::ws::LoginArgs),
    /// Opens N idle websockets and reports flockd's resident memory per socket.
    WsIdle(crate::ws::IdleArgs),
    /// Full or resumed TLS handshakes per second on flockd's browser port, with flockd's CPU
    /// per handshake.
    TlsHandshakes(crate::tls::HandshakeArgs),
    /// Reads `--json` results and writes a bar chart (SVG) and/or a markdown table of the
    /// medians per server (`--label`) and mode, with ratios to a baseline.
    Chart(ChartArgs),
    /// Spins one thread per CPU and reports how often and how long the machine pauses it
    /// (the floor under any server's tail latency on this box).
    Stalls(StallsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct StallsArgs {
    /// CPUs to measure, one spinning thread each: "0", "0,1", "0-3" [default: unpinned, one].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpu: Option<CpuList>,
    /// Seconds to spin.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ChartArgs {
    /// JSON files, or directories whose `*.json` files are read (not recursively). Each file is
    /// one run; runs with the same label and mode are rounds of one bar.
    #[arg(long, value_name = "PATH", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// SVG file to draw the chart into.
    #[arg(long, value_name = "FILE.svg")]
    pub output: Option<PathBuf>,
    /// Markdown file to write the table into (it is printed on stdout either way).
    #[arg(long, value_name = "FILE.md")]
    pub table: Option<PathBuf>,
    /// Label of the runs the ratios refer to (their `stun` or `echo` median); repeat for more
    /// table columns, the first one is printed on the bars.
    #[arg(long, value_name = "LABEL", default_value = "echo-server mmsg")]
    pub baseline: Vec<String>,
    /// Chart title.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "flock-bench: answered/s on one pinned core (loopback)"
    )]
    pub title: String,
}

/// A CPU list argument ("0", "0,2", "2-3").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    flock_udp::parse_cpu_list(s).map(CpuList)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EchoMode {
    /// recvmmsg/sendmmsg, batches of 32.
    Mmsg,
    /// One recvfrom and one sendto per datagram.
    Plain,
}

#[derive(Args, Debug, Clone)]
pub struct EchoServerArgs {
    /// Address to listen on (port 0 picks one; the ready line on stderr tells which).
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub addr: SocketAddr,
    #[arg(long, value_enum, default_value = "mmsg")]
    pub mode: EchoMode,
    /// CPU to pin the server to.
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
    /// Answer STUN Binding requests with a Binding success (XOR-MAPPED-ADDRESS, FINGERPRINT)
    /// instead of echoing; like flockd, requests smaller than the answer get none.
    #[arg(long)]
    pub stun: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0)]
    pub duration: f64,
    /// SO_RCVBUF/SO_SNDBUF in bytes (forced past the sysctl limit when root).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub sock_buf: usize,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server to load (loopback only unless --allow-remote).
    #[arg(long, value_name = "ADDR")]
    pub target: SocketAddr,
    /// Measured seconds (after the warm-up).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub warmup: f64,
    /// CPUs for the generator threads: "0", "0,2", "2-3". With more threads than listed CPUs,
    /// threads take consecutive CPUs after the last one listed.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpu: Option<CpuList>,
    /// Generator threads (sockets are dealt out round-robin).
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub threads: usize,
    /// Source sockets (ports).
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub sockets: usize,
    /// Requests in flight per socket.
    #[arg(long, value_name = "W", default_value_t = 8)]
    pub window: usize,
    /// Target requests per second over all threads [default: as fast as answers come back].
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// A request unanswered after this many milliseconds is lost.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub timeout_ms: u64,
    /// Name of the server under test, recorded in the JSON (`chart` groups by it).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Report this process's CPU use (e.g. the server's pid) over the measured interval.
    #[arg(long, value_name = "PID")]
    pub target_pid: Option<u32>,
    /// Send one datagram per message (sendmmsg only) instead of UDP GSO trains.
    #[arg(long)]
    pub no_gso: bool,
    /// Never block in epoll: spin (the generator's CPU then reads 100 %).
    #[arg(long)]
    pub busy_poll: bool,
    /// SO_RCVBUF/SO_SNDBUF per source socket in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub sock_buf: usize,
    /// Allow a target outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    pub allow_remote: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct KeepaliveArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Appliances to register and keep alive (appliance i uses socket i mod K).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub appliances: usize,
    /// Appliance names are PREFIX followed by the index.
    #[arg(long, value_name = "PREFIX", default_value = "bench-")]
    pub name_prefix: String,
    /// Data directory of the flock (reads flock.pub) so that CHECKs sent to the appliances are
    /// verified and answered, as a real appliance would.
    #[arg(long, value_name = "DIR")]
    pub flock_key_dir: Option<PathBuf>,
    /// Longest the registration phase may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub register_timeout: f64,
}

#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Distinct names (PREFIX and an index; name i on socket i mod K), each signed once and
    /// replayed (the server verifies each and refuses it as taken before: 438).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub appliances: usize,
    #[arg(long, value_name = "PREFIX", default_value = "bench-reg-")]
    pub name_prefix: String,
    /// Longest the initial registration phase may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub register_timeout: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "flock-bench",
            "stun",
            "--target",
            "127.0.0.1:3478",
            "--cpu",
            "0-1",
            "--rate",
            "1000",
        ])
        .unwrap();
        let Command::Stun(a) = c.command else {
            panic!("stun")
        };
        assert_eq!(a.cpu, Some(CpuList(vec![0, 1])));
        assert_eq!(
            (a.duration, a.warmup, a.sockets, a.window),
            (5.0, 1.0, 64, 8)
        );
        let c = Cli::try_parse_from([
            "flock-bench",
            "keepalive",
            "--target",
            "127.0.0.1:1",
            "--appliances",
            "10",
        ])
        .unwrap();
        let Command::Keepalive(k) = c.command else {
            panic!("keepalive")
        };
        assert_eq!((k.appliances, k.name_prefix.as_str()), (10, "bench-"));
        assert!(Cli::try_parse_from([
            "flock-bench",
            "echo-server",
            "--mode",
            "plain",
            "--cpu",
            "1",
            "--stun"
        ])
        .is_ok());
    }
}
