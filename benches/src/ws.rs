//! The websocket side of flockd under load: `flock-bench login` (full browser log-ins per
//! second) and `flock-bench ws-idle` (resident memory per idle websocket). `flock-ws-bench` is
//! the same two commands under their old names (`logins`, `idle`).
//!
//! `login` runs N SDK appliances in-process (registered with flockd over UDP, their own answer
//! rate limit raised so that the flock is what is measured) and C browsers that each log in
//! again and again over a fresh websocket: open → personas → login → accepted → offer (2 chunks),
//! a candidate and end-of-candidates → answer → end-of-candidates → close 1000. Like the packet
//! modes it has a warm-up (not counted), one progress line a second on stderr, CPU use over the
//! measured interval, and a [`Report`] for `--json` (`answered` = log-ins completed, `lost` =
//! log-ins failed or timed out, latency = one whole log-in).

use crate::hist::Histogram;
use crate::proc_stat::{self, CpuTimes};
use crate::report::{Latency, PhaseReport, Report};
use crate::sys;
use clap::Args;
use flock_appliance::{ApplianceConfig, Candidate, Decision, Event};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Seconds as a number ("5", "0.5") or a human duration ("10s", "1min").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(Duration::from_secs_f64(x)),
        Ok(_) => Err(format!("{s}: not a duration")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{s}: {e}")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// flockd's websocket address.
    #[arg(long, visible_alias = "ws", value_name = "ADDR")]
    pub target: SocketAddr,
    /// flockd's process id (its VmRSS is read from /proc).
    #[arg(long, visible_alias = "target-pid", value_name = "PID")]
    pub pid: u32,
    /// Websockets to open.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Distinct loopback source addresses (127.0.1.1 onwards) to spread them over (the gateway
    /// bounds sockets per client IP).
    #[arg(long, default_value_t = 200)]
    pub sources: u8,
    /// Open wss (TLS) websockets, trusting this PEM certificate (server name `localhost`).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// flockd's websocket address (its `[ws] listen`).
    #[arg(long, visible_alias = "ws", value_name = "ADDR")]
    pub target: SocketAddr,
    /// flockd's UDP address (the appliances register there).
    #[arg(long, value_name = "ADDR")]
    pub udp: SocketAddr,
    /// Log in over wss (TLS), trusting this PEM certificate (server name `localhost`); each
    /// log-in is a new connection and a full handshake.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The flock public key, hex (`flockd --print-flock-key`).
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "flock_key_dir",
        conflicts_with = "flock_key_dir"
    )]
    pub flock_key: Option<String>,
    /// flockd's data directory: the flock public key is read from its `flock.pub`.
    #[arg(long, value_name = "DIR")]
    pub flock_key_dir: Option<PathBuf>,
    /// SDK appliances run in-process (browsers take them in turn).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub appliances: usize,
    /// Browsers logging in at once.
    #[arg(long, value_name = "C", default_value_t = 32)]
    pub concurrency: usize,
    /// Measured time after the warm-up: seconds ("5") or "10s".
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_duration)]
    pub duration: Duration,
    /// Log-ins before measuring (not counted).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A log-in not finished after this long fails.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub login_timeout: Duration,
    /// CPU to pin the whole load (browsers and appliances) to.
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
    /// Report this process's CPU use (flockd's pid) over the measured interval.
    #[arg(long, value_name = "PID")]
    pub target_pid: Option<u32>,
    /// Name of the server under test, recorded in the JSON.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `f` on a one-worker tokio runtime (after pinning this thread, so every thread started
/// from it inherits the CPU).
pub fn block_on<T>(
    cpu: Option<usize>,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    if let Some(cpu) = cpu {
        flock_udp::pin_current_thread(cpu).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(f)
}

fn check_loopback(a: SocketAddr) -> Result<(), String> {
    if a.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{a} is not a loopback address"))
    }
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".to_string())
}

/// `ws-idle`: opens `count` websockets and reports flockd's resident memory per socket.
pub async fn idle(a: IdleArgs) -> Result<(), String> {
    check_loopback(a.target)?;
    let tls = a
        .tls_ca
        .as_deref()
        .map(|ca| crate::tls::client(ca, false))
        .transpose()?;
    let before = rss_kib(a.pid)?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let src = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1,
            1 + (i % a.sources.max(1) as usize) as u8,
        ));
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
        let stream = sock
            .connect(a.target)
            .await
            .map_err(|e| format!("socket {i}: connect: {e}"))?;
        let stream = crate::tls::wrap(stream, tls.as_ref())
            .await
            .map_err(|e| format!("socket {i}: {e}"))?;
        let url = crate::tls::ws_url(a.target, tls.is_some());
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| format!("socket {i}: handshake: {e}"))?;
        sockets.push(ws);
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(a.pid)?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / a.count as f64;
    println!(
        "idle websockets: {} open in {:.1} s",
        sockets.len(),
        opened.as_secs_f64()
    );
    println!(
        "flockd RSS: {before} KiB before, {after} KiB after: {per:.0} bytes per idle websocket"
    );
    println!(
        "{}",
        json!({"mode": "idle", "sockets": a.count, "rss_before_kib": before, "rss_after_kib": after, "bytes_per_socket": per.round()})
    );
    drop(sockets);
    Ok(())
}

const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;

/// The appliances' SDP offer: about 1.2 KB, so two SIGNAL chunks.
fn offer() -> String {
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while s.len() < 1200 {
        s.push_str("a=x-filler:0123456789abcdef0123456789abcdef\r\n");
    }
    s
}

/// Starts `a.appliances` SDK appliances and waits until each is registered; returns their names.
async fn start_appliances(a: &LoginArgs, flock_key: [u8; 32]) -> Result<Vec<String>, String> {
    let mut names = vec![];
    for i in 0..a.appliances {
        let name = format!("bench-{i}-{}", std::process::id());
        let mut cfg = ApplianceConfig::new(
            name.parse().map_err(|e| format!("{e:?}"))?,
            a.udp,
            flock_key,
        );
        // Measure the flock, not the appliances' own answer rate limit (4/s by default).
        cfg.login_answer_burst = 10_000;
        cfg.login_answer_refill = Duration::from_micros(1000);
        let key = flock_proto::testing::keypair(i as u8);
        let mut h = flock_appliance::spawn(cfg, key, "127.0.0.1:0".parse().unwrap())
            .map_err(|e| e.to_string())?;
        h.set_personas(Some(LIST.to_vec()))
            .map_err(|e| e.to_string())?;
        h.set_authenticator(|r| {
            if r.credential == b"pwd:bench" {
                Decision::Accept
            } else {
                Decision::BadCredentials
            }
        })
        .map_err(|e| e.to_string())?;
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
                    let _ = h.add_candidate(
                        session,
                        Candidate {
                            candidate: format!(
                                "candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
                            ),
                            mid: Some("0".into()),
                        },
                    );
                    let _ = h.end_of_candidates(session);
                }
            }
        });
        names.push(name);
    }
    Ok(names)
}

/// Counters the browsers bump as they go (for the progress lines).
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

/// What one browser measured: log-ins started, completed and failed inside the measured window.
struct Browser {
    hist: Histogram,
    started: u64,
    failed: u64,
}

/// `login`: log-ins per second, end to end.
pub async fn login(a: LoginArgs) -> Result<Report, String> {
    check_loopback(a.target)?;
    check_loopback(a.udp)?;
    let flock_key: [u8; 32] = match (&a.flock_key, &a.flock_key_dir) {
        (Some(hex), _) => flock_proto::identity::from_hex(hex)
            .and_then(|v| v.try_into().ok())
            .ok_or("--flock-key: 64 hex digits")?,
        (None, Some(dir)) => crate::modes::keepalive::read_flock_key(dir)?,
        (None, None) => return Err("--flock-key or --flock-key-dir is required".into()),
    };
    if a.appliances == 0 || a.concurrency == 0 {
        return Err("--appliances and --concurrency must be at least 1".into());
    }
    let tls = a
        .tls_ca
        .as_deref()
        .map(|ca| crate::tls::client(ca, false))
        .transpose()?;
    let names = Arc::new(start_appliances(&a, flock_key).await?);
    let start = Instant::now();
    let measure_start = start + a.warmup;
    let measure_end = measure_start + a.duration;
    let progress = Arc::new(Progress::default());
    let mut tasks = vec![];
    for c in 0..a.concurrency {
        let (names, progress, tls) = (names.clone(), progress.clone(), tls.clone());
        let (ws, stride, timeout) = (a.target, a.concurrency, a.login_timeout);
        tasks.push(tokio::spawn(async move {
            let mut b = Browser {
                hist: Histogram::new(),
                started: 0,
                failed: 0,
            };
            // Browsers take the appliances in turn (an appliance remembers its recent log-ins
            // for replay protection, 256 at most, so one must not take them all).
            let mut next = c;
            while Instant::now() < measure_end {
                let name = &names[next % names.len()];
                next += stride;
                let t = Instant::now();
                let counted = t >= measure_start;
                progress.started.fetch_add(1, Relaxed);
                let ok = matches!(
                    tokio::time::timeout(timeout, one_login(ws, tls.as_ref(), name)).await,
                    Ok(Ok(()))
                );
                let end = Instant::now();
                if ok {
                    progress.done.fetch_add(1, Relaxed);
                } else {
                    progress.failed.fetch_add(1, Relaxed);
                }
                if counted && end <= measure_end {
                    b.started += 1;
                    if ok {
                        // Nanoseconds, as the packet modes record them.
                        b.hist.record(end.duration_since(t).as_nanos() as u64);
                    } else {
                        b.failed += 1;
                    }
                }
                // A log-in started inside the window that ends after it counts nowhere.
            }
            b
        }));
    }

    // Progress once a second, CPU samples at the edges of the measured window.
    let sample = || {
        (
            Instant::now(),
            sys::cpu_time(libc::RUSAGE_SELF),
            a.target_pid.and_then(proc_stat::process_cpu),
            CpuTimes::now(),
        )
    };
    let mut first = None;
    let mut last = None;
    let mut next_line = start + Duration::from_secs(1);
    let mut prev_done = 0;
    let mut second = 0;
    loop {
        let now = Instant::now();
        if first.is_none() && now >= measure_start {
            first = Some(sample());
        }
        if last.is_none() && now >= measure_end {
            last = Some(sample());
            break;
        }
        if !a.quiet && now >= next_line {
            next_line += Duration::from_secs(1);
            second += 1;
            let (s, d, f) = (
                progress.started.load(Relaxed),
                progress.done.load(Relaxed),
                progress.failed.load(Relaxed),
            );
            let phase = if now < measure_start {
                "warmup"
            } else {
                "login"
            };
            eprintln!("[{phase} {second:>3}s] started {s:>8} done {d:>8} ({:>6}/s) failed {f:>5} in flight {}", d - prev_done, s - d - f);
            prev_done = d;
        }
        let wake = [measure_start, measure_end, next_line]
            .into_iter()
            .filter(|&t| t > now)
            .min()
            .unwrap_or(now);
        tokio::time::sleep(
            wake.saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        )
        .await;
    }
    let (hist, started, failed) = {
        let (mut hist, mut started, mut failed) = (Histogram::new(), 0, 0);
        for t in tasks {
            let b = t.await.map_err(|e| e.to_string())?;
            hist.merge(&b.hist);
            started += b.started;
            failed += b.failed;
        }
        (hist, started, failed)
    };
    let (first, last) = (first.expect("sampled"), last.expect("sampled"));
    let elapsed = last.0.duration_since(first.0).max(Duration::from_millis(1));
    let secs = elapsed.as_secs_f64();
    let pct = |d: Duration| (1000.0 * d.as_secs_f64() / secs).round() / 10.0;
    let us = |q: f64| (hist.quantile(q) as f64 / 1e2).round() / 10.0;
    let done = hist.count();
    let phase = PhaseReport {
        phase: "login".into(),
        seconds: (secs * 1000.0).round() / 1000.0,
        sent: started,
        answered: done,
        answered_per_s: (done as f64 / secs).round(),
        lost: failed,
        loss_pct: if started == 0 {
            0.0
        } else {
            (1e4 * failed as f64 / started as f64).round() / 100.0
        },
        bad: 0,
        late: 0,
        unsolicited: 0,
        errors: failed,
        latency: Latency {
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: us(1.0),
        },
        gen_cpu_pct: pct(last.1.saturating_sub(first.1)),
        target_cpu_pct: match (first.2, last.2) {
            (Some(x), Some(y)) => Some(pct(y.saturating_sub(x))),
            _ => None,
        },
        cpu_busy_pct: first
            .3
            .busy_since(&last.3)
            .into_iter()
            .map(|x| (x * 10.0).round() / 10.0)
            .collect(),
        target_queue_bytes_mean: None,
        target_queue_bytes_max: None,
        target_drops: None,
        datagrams_per_send_call: 0.0,
        datagrams_per_recv_call: 0.0,
        gso_disabled: false,
    };
    Ok(Report {
        label: a.label.clone(),
        mode: "login".into(),
        target: a.target.to_string(),
        threads: 1,
        sockets: a.concurrency,
        window: 1,
        rate: None,
        gso: false,
        request_bytes: 0,
        phases: vec![phase],
    })
}

/// The human summary of a `login` report.
pub fn login_summary(r: &Report, appliances: usize) -> String {
    let Some(p) = r.phases.first() else {
        return String::new();
    };
    let target = p
        .target_cpu_pct
        .map_or("-".to_string(), |x| format!("{x:.0}%"));
    let per_login =
        p.target_cpu_pct
            .filter(|_| p.answered_per_s > 0.0)
            .map_or(String::new(), |x| {
                format!(
                    " (≈ {:.0} µs of flockd CPU per log-in)",
                    x / 100.0 * 1e6 / p.answered_per_s
                )
            });
    let cpus: Vec<String> = p
        .cpu_busy_pct
        .iter()
        .enumerate()
        .map(|(i, x)| format!("cpu{i} {x:.0}%"))
        .collect();
    format!(
        "flock-bench login -> {}  browsers={} appliances={appliances}\n  \
         login {:>7.2}s  done {:>8}  {:>7.0}/s  failed {} of {} started ({:.2}%)\n  \
         log-in latency p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs\n  \
         CPU: load {:.0}%  flockd {target}{per_login}  [{}]\n",
        r.target,
        r.sockets,
        p.seconds,
        p.answered,
        p.answered_per_s,
        p.lost,
        p.sent,
        p.loss_pct,
        p.latency.p50_us,
        p.latency.p99_us,
        p.latency.p999_us,
        p.latency.max_us,
        p.gen_cpu_pct,
        cpus.join(", ")
    )
}

/// One whole log-in, as a browser does it.
async fn one_login(
    ws: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    name: &str,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(ws)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let stream = crate::tls::wrap(tcp, tls).await?;
    let (mut s, _) = tokio_tungstenite::client_async(crate::tls::ws_url(ws, tls.is_some()), stream)
        .await
        .map_err(|e| e.to_string())?;
    let send = |v: Value| Message::text(v.to_string());
    s.send(send(json!({"type": "open", "appliance": name})))
        .await
        .map_err(|e| e.to_string())?;
    let mut sent_answer = false;
    loop {
        let m = s
            .next()
            .await
            .ok_or("closed early")?
            .map_err(|e| e.to_string())?;
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
            Some("personas") => {
                s.send(send(
                    json!({"type": "login", "persona": "alice", "credential": "pwd:bench"}),
                ))
                .await
            }
            Some("offer") if !sent_answer => {
                sent_answer = true;
                s.send(send(
                    json!({"type": "answer", "sdp": "v=0\r\na=x-answer\r\n"}),
                ))
                .await
            }
            Some("end-of-candidates") => s.send(send(json!({"type": "end-of-candidates"}))).await,
            Some("error") => return Err(v.to_string()),
            _ => Ok(()),
        }
        .map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("-1").is_err() && parse_duration("soon").is_err());
    }
}
