//! The echo server answers in both modes; the `stun` and `echo` load modes validate its answers.

use flock_testkit::bench::*;
use flock_testkit::TempDir;
use std::net::UdpSocket;
use std::time::Duration;

fn round_trip(server: &Server, payload: &[u8]) -> Vec<u8> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.connect(server.udp).unwrap();
    c.send(payload).unwrap();
    let mut buf = [0u8; 2048];
    let n = c.recv(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

#[test]
fn mmsg_and_plain_echo() {
    for mode in ["mmsg", "plain"] {
        let s = echo_server(mode, false);
        for payload in [&b"hello"[..], &[7u8; 1200][..]] {
            assert_eq!(round_trip(&s, payload), payload, "{mode}");
        }
    }
}

#[test]
fn stun_mode_against_stun_echo_server() {
    for mode in ["mmsg", "plain"] {
        let s = echo_server(mode, true);
        let dir = TempDir::new(&format!("stun-{mode}"));
        let target = s.udp.to_string();
        let pid = s.pid().to_string();
        let args = [
            "stun",
            "--target",
            &target,
            "--rate",
            "2000",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
            "--sockets",
            "8",
        ];
        let r = run_json(&[&args[..], &["--target-pid", &pid]].concat(), &dir);
        let p = phase(&r, "stun");
        assert!(p["answered"].as_u64().unwrap() > 400, "{p}");
        assert_eq!(p["lost"], 0, "{p}");
        assert_eq!(p["bad"], 0, "{p}");
        assert_eq!(p["loss_pct"], 0.0);
        assert!(p["target_cpu_pct"].is_number(), "{p}");
        assert!(p["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn echo_mode_validates_echoes_and_stun_mode_rejects_them() {
    let s = echo_server("mmsg", false);
    let dir = TempDir::new("echo");
    let target = s.udp.to_string();
    let base = [
        "--target",
        &target,
        "--rate",
        "2000",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--sockets",
        "4",
    ];
    let r = run_json(&[&["echo"][..], &base[..]].concat(), &dir);
    let p = phase(&r, "echo");
    assert!(p["answered"].as_u64().unwrap() > 300, "{p}");
    assert_eq!(
        (p["lost"].as_u64(), p["bad"].as_u64()),
        (Some(0), Some(0)),
        "{p}"
    );
    // An echoed Binding request is not a Binding success: every answer is bad.
    let r = run_json(&[&["stun"][..], &base[..]].concat(), &dir);
    let p = phase(&r, "stun");
    assert_eq!(p["answered"], 0, "{p}");
    assert!(p["bad"].as_u64().unwrap() > 300, "{p}");
}

#[test]
fn refuses_remote_targets() {
    let out = std::process::Command::new(flock_bench())
        .args(["stun", "--target", "192.0.2.1:3478", "--duration", "0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}
