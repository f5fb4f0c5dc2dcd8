//! Certificate rotation on a real flockd serving wss: a log-in opened on the first certificate
//! completes across every rotation; new handshakes see the new certificate after SIGHUP and,
//! without a signal, after the files change; a broken file keeps the running certificate,
//! is logged with its name and counted in `/metrics`.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_testkit::tls::{peer_serial, TestCa};
use flock_tests::serving::*;
use flock_tests::{appliance, wait_until_registered, Flockd, TempDir};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serial(ca: &TestCa, addr: SocketAddr) -> u64 {
    let s = TestCa::connect(ca.client_config(), addr)
        .await
        .expect("TLS");
    peer_serial(&s)
}

async fn wait_serial(ca: &TestCa, addr: SocketAddr, want: u64) {
    let deadline = Instant::now() + WAIT;
    while serial(ca, addr).await != want {
        assert!(Instant::now() < deadline, "serial {want} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(ca: &TestCa, addr: SocketAddr) -> String {
    let mut s = TestCa::connect(ca.client_config(), addr)
        .await
        .expect("TLS");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_an_open_wss_log_in() {
    let ca = TestCa::new();
    let dir = TempDir::new("tls-rotation");
    ca.leaf(1).write(&dir.0);
    let config = dir.0.join("flockd.toml");
    std::fs::write(
        &config,
        "[ws.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nwatch_interval = \"200ms\"\n",
    )
    .unwrap();
    let mut server = Flockd::start(&["--config", config.to_str().unwrap()]);
    let gateway = server.ws.unwrap();
    let h = appliance(&server, "my-box", 3);
    let mut h = h;
    wait_until_registered(&mut h, WAIT).await;
    let mut app = run_appliance(h, LIST, Behaviour::offer_and_candidate(50001));

    // A log-in begun on certificate 1.
    let mut b = Browser::connect_tls(gateway, ca.client_config()).await;
    b.open("my-box").await;
    b.expect("personas").await;
    assert_eq!(serial(&ca, gateway).await, 1);

    // SIGHUP after certbot-style renewal in place.
    ca.leaf(2).write(&dir.0);
    server.signal(libc::SIGHUP);
    server.wait_for_log("new TLS certificate in use", WAIT);
    assert_eq!(serial(&ca, gateway).await, 2);

    // No signal: the watcher sees the new files.
    ca.leaf(3).write(&dir.0);
    wait_serial(&ca, gateway, 3).await;

    // A half-written certificate: the running one stays; the failure is named and counted.
    std::fs::write(dir.0.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIC").unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_log("TLS certificate not reloaded", WAIT);
    assert!(line.contains("cert.pem"), "{line}");
    assert_eq!(serial(&ca, gateway).await, 3);
    let m = metrics(&ca, gateway).await;
    assert!(
        m.contains("flock_ws_tls_cert_reload_failures_total 1\n"),
        "{m}"
    );
    assert!(m.contains("flock_ws_tls_cert_reloads_total 2\n"), "{m}");

    // The log-in from before the rotations completes.
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    assert_eq!(b.expect("offer").await["sdp"], offer().as_str());
    b.expect("candidate").await;
    b.expect("end-of-candidates").await;
    next_matching(&mut app, "the accepted log-in", |e| {
        matches!(e, Event::LoginAccepted { .. })
    })
    .await;
}
