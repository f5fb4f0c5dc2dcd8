//! `keepalive` and `register` modes against a real flockd.

use flock_testkit::bench::*;
use flock_testkit::{workspace_bin, TempDir};
use std::process::Command;

fn flockd(dir: &TempDir) -> Server {
    let mut cmd = Command::new(workspace_bin("flockd"));
    cmd.args([
        "--udp",
        "127.0.0.1:0",
        "--no-ws",
        "--no-pin",
        "--cores",
        "1",
        "--log",
        "info",
        "--data-dir",
    ])
    .arg(&dir.0);
    Server::spawn(cmd, "flockd ready")
}

#[test]
fn keepalive_50_appliances_no_loss() {
    let data = TempDir::new("ka-data");
    let d = flockd(&data);
    let out = TempDir::new("ka-out");
    let target = d.udp.to_string();
    let key_dir = data.0.to_string_lossy().to_string();
    let r = run_json(
        &[
            "keepalive",
            "--target",
            &target,
            "--appliances",
            "50",
            "--sockets",
            "8",
            "--window",
            "4",
            "--rate",
            "2000",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--flock-key-dir",
            &key_dir,
        ],
        &out,
    );
    let setup = phase(&r, "register-setup");
    assert_eq!(
        setup["answered"], 58,
        "50 REGISTERs + 8 nonce round trips: {setup}"
    );
    assert_eq!(setup["bad"], 0, "{setup}");
    let p = phase(&r, "keepalive");
    assert!(p["answered"].as_u64().unwrap() > 500, "{p}");
    assert_eq!(
        (p["lost"].as_u64(), p["bad"].as_u64()),
        (Some(0), Some(0)),
        "{p}"
    );
    assert_eq!(
        r["request_bytes"], 100,
        "20 header + NAME 12 + IDENTITY 36 + TOKEN 24 + FINGERPRINT 8"
    );
}

#[test]
fn register_mode_counts_signed_registrations() {
    let data = TempDir::new("reg-data");
    let d = flockd(&data);
    let out = TempDir::new("reg-out");
    let target = d.udp.to_string();
    let r = run_json(
        &[
            "register",
            "--target",
            &target,
            "--appliances",
            "16",
            "--sockets",
            "4",
            "--window",
            "2",
            "--rate",
            "500",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
        ],
        &out,
    );
    let p = phase(&r, "register");
    assert!(p["answered"].as_u64().unwrap() > 100, "{p}");
    assert_eq!(
        (p["lost"].as_u64(), p["bad"].as_u64()),
        (Some(0), Some(0)),
        "{p}"
    );
}
