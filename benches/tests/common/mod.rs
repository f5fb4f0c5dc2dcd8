//! Helpers for the tests: child processes killed on drop, ready lines read with a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn flock_bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flock-bench"))
}

/// A binary of the workspace, next to this test's directory (`cargo build --workspace --bins`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("flock-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed on drop, with the UDP address from its ready line.
pub struct Server {
    child: Child,
    pub udp: SocketAddr,
}

impl Server {
    /// Spawns `cmd` and waits (at most 10 s) for a stderr line containing `ready` and `udp=ADDR`.
    pub fn spawn(mut cmd: Command, ready: &str) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = ready.to_string();
        let udp = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("server ready line");
            if !line.contains(&ready) {
                continue;
            }
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("udp="))
                .expect("udp= in ready line");
            break addr.parse().expect("address");
        };
        Server { child, udp }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn echo_server(mode: &str, stun: bool) -> Server {
    let mut cmd = Command::new(flock_bench());
    cmd.args([
        "echo-server",
        "--addr",
        "127.0.0.1:0",
        "--mode",
        mode,
        "--duration",
        "20",
    ]);
    if stun {
        cmd.arg("--stun");
    }
    Server::spawn(cmd, "echo-server ready")
}

/// Runs flock-bench with `args` plus `--json FILE`, checks it succeeded, returns the JSON.
pub fn run_json(args: &[&str], dir: &TempDir) -> serde_json::Value {
    let json = dir.0.join("out.json");
    let out: Output = Command::new(flock_bench())
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .stdin(Stdio::null())
        .output()
        .expect("run flock-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "flock-bench failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid json")
}

pub fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["phase"] == name)
        .expect("phase present")
}
