//! The `flock-appliance` simulator binary as a child process (killed on drop), with its stdout
//! lines collected for assertions. Every wait is bounded.

use crate::{lines_of, workspace_bin, Flockd};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Simulator {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far (as far as the waits have read).
    pub seen: Vec<String>,
}

impl Simulator {
    /// Starts `flock-appliance --server <server's UDP> --name NAME --key-dir DIR --personas
    /// PERSONAS`, pinning the server's key by file (`--flock-key @DATA_DIR/flock.pub`, as the
    /// README does), then `extra`.
    pub fn start(
        server: &Flockd,
        name: &str,
        dir: &Path,
        personas: &Path,
        extra: &[&str],
    ) -> Simulator {
        let mut flock_key = OsString::from("@");
        flock_key.push(server.data_dir.0.join("flock.pub"));
        let mut child = Command::new(workspace_bin("flock-appliance"))
            .args(["--server", &server.udp.to_string(), "--name", name])
            .arg("--flock-key")
            .arg(flock_key)
            .arg("--key-dir")
            .arg(dir)
            .arg("--personas")
            .arg(personas)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flock-appliance");
        let lines = lines_of(child.stdout.take().unwrap());
        Simulator {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Waits until a line containing `needle` was printed; returns every line so far, joined.
    /// Panics with them after `timeout`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "simulator never printed {needle:?} within {timeout:?}; printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        self.seen.join("\n")
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
