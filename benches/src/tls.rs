//! The TLS side of the websocket benchmarks: a client that trusts one PEM certificate (the
//! benchmark's own, for `localhost`), used by `ws-idle --tls-ca` and `login --tls-ca`, and
//! `flock-bench tls-handshakes`: full or resumed TLS handshakes per second against flockd's
//! browser port, with flockd's CPU per handshake.

use crate::proc_stat;
use clap::Args;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A plain or TLS connection, for the websocket client.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TLS client for `localhost` that trusts the certificates in `ca` (PEM).
pub fn client(ca: &Path, resume: bool) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// `stream` as is, or after a TLS handshake with `tls`.
pub async fn wrap(
    stream: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Box<dyn Io>, String> {
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let s = TlsConnector::from(config.clone())
                .connect(ServerName::try_from("localhost").unwrap(), stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Ok(Box::new(s))
        }
    }
}

/// The websocket URL for `target`, `wss://localhost:port/ws` over TLS.
pub fn ws_url(target: SocketAddr, tls: bool) -> String {
    if tls {
        format!("wss://localhost:{}/ws", target.port())
    } else {
        format!("ws://{target}/ws")
    }
}

#[derive(Args, Debug, Clone)]
pub struct HandshakeArgs {
    /// flockd's TLS websocket address (loopback).
    #[arg(long, value_name = "ADDR")]
    pub target: SocketAddr,
    /// flockd's process id (its CPU time is read from /proc).
    #[arg(long, value_name = "PID")]
    pub target_pid: u32,
    /// PEM certificate to trust (flockd's, or its CA); the server name is `localhost`.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: PathBuf,
    /// Resume sessions (TLS 1.3 tickets) after each worker's first handshake.
    #[arg(long)]
    pub resume: bool,
    /// Handshakes under way at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Measured time, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Unmeasured time first, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Pin this process to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

/// `tls-handshakes`: each worker connects, completes a handshake, asks `/healthz` once, reads
/// the answer to the end, and again.
pub async fn handshakes(a: HandshakeArgs) -> Result<(), String> {
    if !a.target.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", a.target));
    }
    if !(a.duration > 0.0 && a.duration <= 600.0 && a.warmup >= 0.0 && a.warmup <= 60.0) {
        return Err("--duration must be in (0, 600] and --warmup in [0, 60] seconds".into());
    }
    let config = client(&a.tls_ca, a.resume)?;
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(a.warmup + a.duration);
    let mut workers = vec![];
    for _ in 0..a.concurrency.max(1) {
        let (config, done, resumed, failed) = (
            config.clone(),
            done.clone(),
            resumed.clone(),
            failed.clone(),
        );
        let target = a.target;
        workers.push(tokio::spawn(async move {
            while Instant::now() < end {
                let outcome = async {
                    let tcp = TcpStream::connect(target)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = tcp.set_nodelay(true);
                    let mut s = TlsConnector::from(config.clone())
                        .connect(ServerName::try_from("localhost").unwrap(), tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    let was_resumed = matches!(
                        s.get_ref().1.handshake_kind(),
                        Some(rustls::HandshakeKind::Resumed)
                    );
                    // One request, read to the end: a TLS 1.3 server sends its tickets after
                    // the handshake, so the next connection can resume with them.
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut answer = Vec::new();
                    let _ = s.read_to_end(&mut answer).await;
                    if !answer.starts_with(b"HTTP/1.1 200") {
                        return Err("no 200 from /healthz".to_string());
                    }
                    Ok::<bool, String>(was_resumed)
                };
                match tokio::time::timeout(Duration::from_secs(5), outcome).await {
                    Ok(Ok(r)) => {
                        done.fetch_add(1, Relaxed);
                        resumed.fetch_add(u64::from(r), Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let (d0, r0, cpu0, t0) = (
        done.load(Relaxed),
        resumed.load(Relaxed),
        proc_stat::process_cpu(a.target_pid).ok_or("cannot read flockd's CPU time")?,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let (d1, r1, cpu1, elapsed) = (
        done.load(Relaxed),
        resumed.load(Relaxed),
        proc_stat::process_cpu(a.target_pid).ok_or("cannot read flockd's CPU time")?,
        t0.elapsed(),
    );
    for w in workers {
        let _ = w.await;
    }
    let n = d1 - d0;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    let per = if n > 0 { cpu / n as f64 } else { 0.0 };
    println!(
        "tls handshakes ({}): {:.0}/s over {:.1} s, {} resumed, {} failed; flockd CPU {:.2} s = {:.0} us per handshake = {:.0} handshakes per flockd core-second",
        if a.resume { "resumed" } else { "full" },
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        r1 - r0,
        failed.load(Relaxed),
        cpu,
        per * 1e6,
        if per > 0.0 { 1.0 / per } else { 0.0 },
    );
    println!(
        "{}",
        serde_json::json!({"mode": "tls-handshakes", "resume": a.resume, "handshakes": n,
            "resumed": r1 - r0, "per_second": n as f64 / elapsed.as_secs_f64(),
            "flockd_cpu_us_per_handshake": per * 1e6})
    );
    Ok(())
}
