//! For flock-bench's tests: its binary, servers it starts (killed on drop, ready lines read
//! with a deadline), its JSON reports.

use crate::{lines_of, workspace_bin, TempDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The `flock-bench` binary (built with the benches' tests).
pub fn flock_bench() -> PathBuf {
    workspace_bin("flock-bench")
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
        let rx = lines_of(stderr);
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

/// `flock-bench echo-server` on 127.0.0.1 in `mode`, answering STUN with `stun`.
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

/// The phase called `name` of a report.
pub fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["phase"] == name)
        .expect("phase present")
}
