//! Black box: flockd and the `flock-appliance` simulator as separate processes, its personas and
//! passwords from a `--personas` file; a websocket browser logs in and the simulator reports the
//! browser's answer, candidate and the session's end.
mod ws_client;

use flock_tests::{workspace_bin, Flockd, TempDir};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use ws_client::*;

const PERSONAS: &str = "[[persona]]\nid = \"alice\"\nname = \"Alice\"\npassword = \"wonderland\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_serves_a_browser_log_in() {
    let server = Flockd::start(&[]);
    let dir = TempDir::new("simulator");
    let personas = dir.0.join("personas.toml");
    std::fs::write(&personas, PERSONAS).unwrap();
    let mut sim = Command::new(workspace_bin("flock-appliance"))
        .args([
            "--server",
            &server.udp.to_string(),
            "--name",
            "sim-box",
            "--bind",
            "127.0.0.1:0",
        ])
        .args([
            "--flock-key",
            &flock_proto::identity::to_hex(&server.flock_public_key),
        ])
        .arg("--key-dir")
        .arg(&dir.0)
        .arg("--personas")
        .arg(&personas)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flock-appliance");
    let (tx, lines) = mpsc::channel();
    let stdout = sim.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = vec![];
    let mut wait_line = |needle: &str| {
        let deadline = Instant::now() + WAIT;
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => seen.push(l),
                Err(_) => panic!(
                    "simulator never printed {needle:?}; printed:\n{}",
                    seen.join("\n")
                ),
            }
        }
        seen.join("\n")
    };
    wait_line("registered");

    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("sim-box").await;
    assert_eq!(
        b.expect("personas").await["personas"],
        json!([{"id": "alice", "name": "Alice"}])
    );
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    assert!(b.expect("offer").await["sdp"]
        .as_str()
        .unwrap()
        .starts_with("v=0"));
    b.expect("candidate").await;
    b.expect("candidate").await;
    b.expect("end-of-candidates").await;
    b.send(json!({"type": "answer", "sdp": "v=0\r\na=x-browser\r\n"}))
        .await;
    b.send(json!({"type": "candidate", "candidate": "candidate:9 1 udp 1 127.0.0.1 9999 typ host", "sdpMid": "0"})).await;
    b.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(b.closed().await.code, 1000);

    let out = wait_line(" done");
    assert!(
        out.contains("remote answer") && out.contains("candidate:9"),
        "{out}"
    );
    assert!(
        !out.contains("wonderland"),
        "the simulator printed a credential:\n{out}"
    );
    let _ = sim.kill();
    let _ = sim.wait();
}
