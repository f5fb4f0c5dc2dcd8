//! flock-ws-bench: the websocket side of flockd under load. See `flock-ws-bench --help`.
//!
//! - `idle`: opens N websockets to a running flockd (spread over loopback source addresses, since
//!   the gateway bounds sockets per IP) and reports flockd's resident memory per socket.
//! - `logins`: runs in-process SDK appliances against a running flockd and C concurrent browsers
//!   that each log in again and again (personas → login → offer → candidates → answer →
//!   end-of-candidates → close), and reports log-ins per second with latency percentiles.

use clap::{Args, Parser, Subcommand};
use flock_appliance::{ApplianceConfig, Candidate, Decision, Event};
use flock_benches::hist::Histogram;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
#[command(name = "flock-ws-bench", version, about = "Websocket load for flockd: idle-socket memory and log-ins per second (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open N idle websockets and report flockd's resident memory per socket.
    Idle(IdleArgs),
    /// Full log-ins in a loop from C concurrent browsers to in-process appliances.
    Logins(LoginArgs),
}

#[derive(Args, Debug)]
struct IdleArgs {
    /// flockd's websocket address.
    #[arg(long)]
    ws: SocketAddr,
    /// flockd's process id (its VmRSS is read from /proc).
    #[arg(long)]
    pid: u32,
    /// Websockets to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Distinct loopback source addresses (127.0.1.1 onwards) to spread them over.
    #[arg(long, default_value_t = 200)]
    sources: u8,
}

#[derive(Args, Debug)]
struct LoginArgs {
    #[arg(long)]
    ws: SocketAddr,
    /// flockd's UDP address (the appliances register there).
    #[arg(long)]
    udp: SocketAddr,
    /// The flock public key, hex (flockd --print-flock-key).
    #[arg(long)]
    flock_key: String,
    #[arg(long, default_value_t = 16)]
    appliances: usize,
    /// Browsers logging in at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run, e.g. "10s".
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
    let r = match cli.command {
        Cmd::Idle(a) => rt.block_on(idle(a)),
        Cmd::Logins(a) => rt.block_on(logins(a)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flock-ws-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_loopback(a: SocketAddr) -> Result<(), String> {
    if a.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{a} is not a loopback address"))
    }
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".to_string())
}

async fn idle(a: IdleArgs) -> Result<(), String> {
    check_loopback(a.ws)?;
    let before = rss_kib(a.pid)?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i % a.sources.max(1) as usize) as u8));
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind(SocketAddr::new(src, 0)).map_err(|e| format!("bind {src}: {e}"))?;
        let stream = sock.connect(a.ws).await.map_err(|e| format!("socket {i}: connect: {e}"))?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", a.ws), stream).await.map_err(|e| format!("socket {i}: handshake: {e}"))?;
        sockets.push(ws);
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(a.pid)?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / a.count as f64;
    println!("idle websockets: {} open in {:.1} s", sockets.len(), opened.as_secs_f64());
    println!("flockd RSS: {before} KiB before, {after} KiB after: {:.0} bytes per idle websocket", per);
    println!("{}", json!({"mode": "idle", "sockets": a.count, "rss_before_kib": before, "rss_after_kib": after, "bytes_per_socket": per.round()}));
    drop(sockets);
    Ok(())
}

const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;

fn offer() -> String {
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while s.len() < 1200 {
        s.push_str("a=x-filler:0123456789abcdef0123456789abcdef\r\n");
    }
    s
}

async fn logins(a: LoginArgs) -> Result<(), String> {
    check_loopback(a.ws)?;
    check_loopback(a.udp)?;
    let pk: [u8; 32] = flock_proto::identity::from_hex(&a.flock_key).and_then(|v| v.try_into().ok()).ok_or("--flock-key: 64 hex digits")?;
    let mut names = vec![];
    for i in 0..a.appliances {
        let name = format!("bench-{i}-{}", std::process::id());
        let mut cfg = ApplianceConfig::new(name.parse().map_err(|e| format!("{e:?}"))?, a.udp, pk);
        // Measure the flock, not the appliances' own answer rate limit (4/s by default).
        cfg.login_answer_burst = 10_000;
        cfg.login_answer_refill = Duration::from_micros(1000);
        let key = flock_proto::testing::keypair(i as u8);
        let mut h = flock_appliance::spawn(cfg, key, "127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
        h.set_personas(Some(LIST.to_vec())).map_err(|e| e.to_string())?;
        h.set_authenticator(|r| if r.credential == b"pwd:bench" { Decision::Accept } else { Decision::BadCredentials }).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, h.next_event()).await {
                Ok(Some(Event::Registered { .. })) => break,
                Ok(Some(_)) => {}
                _ => return Err(format!("appliance {name} did not register")),
            }
        }
        tokio::spawn(async move {
            let offer = offer();
            while let Some(e) = h.next_event().await {
                if let Event::LoginAccepted { session, .. } = e {
                    let _ = h.send_offer(session, offer.clone());
                    let port = 40000 + (session[0] as u16);
                    let _ = h.add_candidate(session, Candidate { candidate: format!("candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"), mid: Some("0".into()) });
                    let _ = h.end_of_candidates(session);
                }
            }
        });
        names.push(name);
    }
    let end = Instant::now() + a.duration;
    let mut tasks = vec![];
    for c in 0..a.concurrency {
        let names = names.clone();
        let (ws, stride) = (a.ws, a.concurrency);
        tasks.push(tokio::spawn(async move {
            let (mut hist, mut errors) = (Histogram::new(), 0u64);
            // Browsers take the appliances in turn (an appliance remembers its recent log-ins
            // for replay protection, 256 at most, so one must not take them all).
            let mut next = c;
            while Instant::now() < end {
                let name = &names[next % names.len()];
                next += stride;
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), one_login(ws, name)).await {
                    Ok(Ok(())) => hist.record(t.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (hist, errors)
        }));
    }
    let started = Instant::now();
    let (mut hist, mut errors) = (Histogram::new(), 0);
    for t in tasks {
        let (h, e) = t.await.map_err(|e| e.to_string())?;
        hist.merge(&h);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = hist.count() as f64 / secs;
    println!(
        "log-ins: {} done, {errors} failed in {secs:.1} s: {rate:.0}/s; latency p50 {} µs, p99 {} µs, max {} µs ({} browsers, {} appliances)",
        hist.count(),
        hist.quantile(0.5),
        hist.quantile(0.99),
        hist.max(),
        a.concurrency,
        a.appliances
    );
    println!(
        "{}",
        json!({"mode": "logins", "done": hist.count(), "failed": errors, "per_second": rate.round(), "p50_us": hist.quantile(0.5), "p99_us": hist.quantile(0.99), "concurrency": a.concurrency, "appliances": a.appliances})
    );
    Ok(())
}

/// One whole log-in, as a browser does it.
async fn one_login(ws: SocketAddr, name: &str) -> Result<(), String> {
    let (mut s, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/ws")).await.map_err(|e| e.to_string())?;
    let send = |v: Value| Message::text(v.to_string());
    s.send(send(json!({"type": "open", "appliance": name}))).await.map_err(|e| e.to_string())?;
    let mut sent_answer = false;
    loop {
        let m = s.next().await.ok_or("closed early")?.map_err(|e| e.to_string())?;
        let v: Value = match m {
            Message::Text(t) => serde_json::from_str(&t).map_err(|e| e.to_string())?,
            Message::Close(f) => {
                return match f {
                    Some(f) if u16::from(f.code) == 1000 => Ok(()),
                    other => Err(format!("closed: {other:?}")),
                }
            }
            _ => continue,
        };
        match v["type"].as_str() {
            Some("personas") => s.send(send(json!({"type": "login", "persona": "alice", "credential": "pwd:bench"}))).await,
            Some("offer") if !sent_answer => {
                sent_answer = true;
                s.send(send(json!({"type": "answer", "sdp": "v=0\r\na=x-answer\r\n"}))).await
            }
            Some("end-of-candidates") => s.send(send(json!({"type": "end-of-candidates"}))).await,
            Some("error") => return Err(v.to_string()),
            _ => Ok(()),
        }
        .map_err(|e| e.to_string())?;
    }
}
