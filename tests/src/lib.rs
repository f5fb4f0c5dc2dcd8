//! Helpers shared by the end-to-end tests: a real `flockd` process on loopback, raw UDP
//! clients, and appliances from the SDK. Every wait here is bounded.

pub mod browser;
pub mod flock;
pub mod lossy_proxy;
pub mod net;
pub mod serving;
pub mod simulator;

use flock_proto::identity::from_hex;
use flock_proto::testing::{Answer, Device};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use flock_testkit::{lines_of, workspace_bin, TempDir};

/// A running `flockd` on 127.0.0.1, killed on drop.
pub struct Flockd {
    child: Option<Child>,
    pub udp: SocketAddr,
    /// The websocket gateway's address (`None` with `--no-ws`).
    pub ws: Option<SocketAddr>,
    pub flock_public_key: [u8; 32],
    pub data_dir: TempDir,
    log: mpsc::Receiver<String>,
    pub log_lines: Vec<String>,
}

impl Flockd {
    /// Starts flockd on a free loopback port with `extra` flags, waits until it is ready.
    pub fn start(extra: &[&str]) -> Flockd {
        Flockd::start_in(TempDir::new("flockd"), extra)
    }

    /// Same, reusing a data directory (to restart with the same secrets).
    pub fn start_in(data_dir: TempDir, extra: &[&str]) -> Flockd {
        let mut cmd = Command::new(workspace_bin("flockd"));
        if !extra.contains(&"--udp") {
            cmd.args(["--udp", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--ws") && !extra.contains(&"--no-ws") {
            cmd.args(["--ws", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(["--no-pin", "--log", "info", "--data-dir"])
            .arg(&data_dir.0)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flockd");
        let stderr = child.stderr.take().unwrap();
        let log = lines_of(stderr);
        let mut d = Flockd {
            child: Some(child),
            udp: "0.0.0.0:0".parse().unwrap(),
            ws: None,
            flock_public_key: [0; 32],
            data_dir,
            log,
            log_lines: vec![],
        };
        let ready = d.wait_for_log("flockd ready", Duration::from_secs(20));
        d.udp = field(&ready, "udp")
            .parse()
            .expect("udp address in ready line");
        d.ws = field(&ready, "ws").parse().ok();
        let hex = std::fs::read_to_string(d.data_dir.0.join("flock.pub")).unwrap();
        d.flock_public_key = from_hex(&hex).unwrap().try_into().unwrap();
        d
    }

    /// Waits for a log line containing `needle`, returning it. Panics after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.log_lines.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.log_lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {timeout:?}; log so far:\n{}",
                    self.log_lines.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        send_signal(child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Collect the rest of the log.
                while let Ok(line) = self.log.recv_timeout(Duration::from_millis(200)) {
                    self.log_lines.push(line);
                }
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("flockd did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`, `libc::SIGTERM`) without waiting for anything; does
    /// nothing once the server has stopped.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            send_signal(c.id(), sig);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Stops the server and hands back its data directory (for a restart).
    pub fn into_data_dir(mut self) -> TempDir {
        self.terminate();
        std::mem::replace(&mut self.data_dir, TempDir(PathBuf::new()))
    }
}

impl Drop for Flockd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn send_signal(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The value of `key=value` in a tracing log line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + key.len()
        + 1;
    let rest = &line[start..];
    rest.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches('"')
}

/// A raw UDP client on 127.0.0.1 with a receive timeout.
pub fn raw_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Sends `req` and waits for one answer (None on timeout).
pub fn request(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A loopback UDP port that was free a moment ago (for servers that must keep their port
/// across a restart).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Registers `d` from `sock` over the wire, doing the nonce round trip; checks every answer is
/// no larger than its request.
pub fn register_over(d: &mut Device, sock: &UdpSocket, server: SocketAddr) -> Answer {
    for _ in 0..2 {
        let txid = d.txid();
        let ts = d.stamp(now_ms());
        let req = d.register_bytes(ts, &txid);
        let bytes = request(sock, server, &req).expect("an answer to REGISTER");
        assert!(
            bytes.len() <= req.len(),
            "answer {} > request {}",
            bytes.len(),
            req.len()
        );
        let a = Answer::read(&bytes);
        d.absorb(&a);
        if a.code() != Some(flock_proto::wire::registration::code::NONCE_REQUIRED) {
            return a;
        }
    }
    panic!("nonce round trip did not converge")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits for the first event matching `want`, skipping others; panics after `timeout`.
pub async fn wait_event(
    a: &mut flock_appliance::ApplianceHandle,
    timeout: Duration,
    what: &str,
    want: impl Fn(&flock_appliance::Event) -> bool,
) -> flock_appliance::Event {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = vec![];
    loop {
        match tokio::time::timeout_at(deadline, a.next_event()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("appliance stopped while waiting for {what}; saw {seen:?}"),
            Err(_) => panic!("no {what} within {timeout:?}; saw {seen:?}"),
        }
    }
}

/// Waits for `a`'s registration; panics after `timeout`.
pub async fn wait_until_registered(a: &mut flock_appliance::ApplianceHandle, timeout: Duration) {
    wait_event(a, timeout, "registration", |e| {
        matches!(e, flock_appliance::Event::Registered { .. })
    })
    .await;
}

/// An SDK appliance named `name` (key from `seed`) talking to `server`.
pub fn appliance(server: &Flockd, name: &str, seed: u8) -> flock_appliance::ApplianceHandle {
    let cfg = flock_appliance::ApplianceConfig::new(
        name.parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(seed),
        "127.0.0.1:0".parse().unwrap(),
    )
    .expect("spawn appliance")
}
