//! TLS on the gateway port: https and wss with a certificate from a CA made here, every key
//! format, rotation (explicit, by the watcher, through a symlink swap, refusing broken files)
//! without touching open websockets, the bounds that run before any TLS work, and the
//! plain-HTTP redirect listener.

use flock_proto::login::Command;
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use flock_testkit::tls::{peer_serial, Leaf, TestCa};
use flock_testkit::TempDir;
use flock_ws::{GatewayConfig, Reload, TlsConfig};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn tls_config(cert: &Path, key: &Path) -> TlsConfig {
    TlsConfig {
        cert: cert.into(),
        key: key.into(),
        ..TlsConfig::default()
    }
}

fn start_tls(
    leaf: &Leaf,
    dir: &Path,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> (flock_ws::GatewayHandle, Cores) {
    let (cert, key) = leaf.write(dir);
    start(1, |c| {
        c.tls = Some(tls_config(&cert, &key));
        tweak(c);
    })
}

/// One HTTP/1.1 exchange over `stream`: (status, body).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

async fn tls(ca: &TestCa, addr: SocketAddr) -> TlsStream<TcpStream> {
    tokio::time::timeout(WAIT, TestCa::connect(ca.client_config(), addr))
        .await
        .expect("TLS in time")
        .expect("TLS handshake")
}

/// Waits (bounded) until a new handshake shows `serial`.
async fn wait_serial(ca: &TestCa, addr: SocketAddr, serial: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = peer_serial(&tls(ca, addr).await);
        if got == serial {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still serial {got}, wanted {serial}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_everything_over_tls_1_2_and_1_3() {
    let ca = TestCa::new();
    let dir = TempDir::new("serve");
    let leaf = ca.leaf(7);
    let (gw, mut cores) = start_tls(&leaf, &dir.0, |_| {});
    let addr = gw.local_addr();

    let stream = tls(&ca, addr).await;
    let (_, conn) = stream.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(peer_serial(&stream), 7);
    assert_eq!(exchange(stream, "/healthz").await, (200, "ok".into()));
    let (status, page) = exchange(tls(&ca, addr).await, "/").await;
    assert!(status == 200 && page.contains("<html"), "{status} {page}");
    let (status, js) = exchange(tls(&ca, addr).await, "/flock.js").await;
    assert!(status == 200 && js.contains("export"), "{status}");
    let (status, metrics) = exchange(tls(&ca, addr).await, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("flock_ws_tls_handshakes_total{outcome=\"ok\"} 4\n"),
        "{metrics}"
    );
    let expiry = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flock_ws_tls_cert_expiry_timestamp_seconds "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("expiry metric");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry > now, "rcgen's leaf expires in the future: {expiry}");

    // TLS 1.2 only.
    let v12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(root_of(&ca))
    .with_no_client_auth();
    let s12 = TestCa::connect(Arc::new(v12), addr).await.expect("TLS 1.2");
    assert_eq!(
        s12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(exchange(s12, "/healthz").await.0, 200);

    // wss: the session reaches the core as over ws.
    let mut ws = Browser::connect_tls(addr, ca.client_config()).await;
    ws.send(json!({"type": "open", "appliance": "my-box"}))
        .await;
    cores.expect_open("my-box").await;

    // A plain request to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

fn root_of(ca: &TestCa) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

use rustls::pki_types::pem::PemObject;

/// Runs openssl (installed with Debian) with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Process::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn takes_pkcs8_sec1_and_pkcs1_keys() {
    let dir = TempDir::new("keys");
    let d = &dir.0;
    // SEC1 (EC PRIVATE KEY), PKCS#1 (RSA PRIVATE KEY) and PKCS#8 (PRIVATE KEY, Ed25519).
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ],
    );
    openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"]);
    openssl(
        d,
        &["genpkey", "-algorithm", "ed25519", "-out", "pkcs8.pem"],
    );
    for (key, marker) in [
        ("sec1.pem", "BEGIN EC PRIVATE KEY"),
        ("pkcs1.pem", "BEGIN RSA PRIVATE KEY"),
        ("pkcs8.pem", "BEGIN PRIVATE KEY"),
    ] {
        assert!(std::fs::read_to_string(d.join(key))
            .unwrap()
            .contains(marker));
        let cert = format!("{key}.crt");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-key",
                key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ],
        );
        let (gw, _cores) = start(1, |c| {
            c.tls = Some(tls_config(&d.join(&cert), &d.join(key)))
        });
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(d.join(&cert)).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let s = TestCa::connect(Arc::new(client), gw.local_addr())
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(exchange(s, "/healthz").await, (200, "ok".into()), "{key}");
    }
}

#[tokio::test]
async fn refuses_to_start_on_bad_files() {
    let ca = TestCa::new();
    let dir = TempDir::new("bad");
    let (cert, key) = ca.leaf(1).write(&dir.0);
    let other = ca.leaf(2);
    let config = |cert: &Path, key: &Path| GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(tls_config(cert, key)),
        ..GatewayConfig::default()
    };
    let link = cores_link();
    let err = |c| {
        flock_ws::Gateway::start(c, link.clone())
            .err()
            .expect("refused")
            .to_string()
    };
    let missing = dir.0.join("missing.pem");
    assert!(err(config(&missing, &key)).contains("missing.pem"));
    std::fs::write(dir.0.join("junk.pem"), "not a pem").unwrap();
    assert!(err(config(&dir.0.join("junk.pem"), &key)).contains("junk.pem"));
    std::fs::write(dir.0.join("other.key"), &other.key_pem).unwrap();
    let e = err(config(&cert, &dir.0.join("other.key")));
    assert!(
        e.contains("other.key") && e.contains("does not go with"),
        "{e}"
    );
}

fn cores_link() -> Arc<dyn flock_ws::CoreLink> {
    let (_, cores) = start(1, |_| {});
    cores.link.clone()
}

#[tokio::test]
async fn rotation_keeps_open_sessions_and_refuses_broken_files() {
    let ca = TestCa::new();
    let dir = TempDir::new("rotate");
    let (gw, mut cores) = start_tls(&ca.leaf(1), &dir.0, |c| {
        c.tls.as_mut().unwrap().watch_interval = Duration::from_millis(100);
    });
    let addr = gw.local_addr();
    assert_eq!(peer_serial(&tls(&ca, addr).await), 1);

    // A session opened on the first certificate.
    let mut ws = Browser::connect_tls(addr, ca.client_config()).await;
    let (session, sink) = open_with_personas(&mut ws, &mut cores, "my-box").await;

    // Explicit reload (SIGHUP).
    ca.leaf(2).write(&dir.0);
    assert_eq!(gw.reload_tls(), Some(Reload::Replaced));
    assert_eq!(peer_serial(&tls(&ca, addr).await), 2);
    assert_eq!(gw.reload_tls(), Some(Reload::Unchanged));

    // Rewritten in place, no signal: the watcher sees it.
    ca.leaf(3).write(&dir.0);
    wait_serial(&ca, addr, 3).await;

    // Kubernetes swaps a symlinked directory.
    let v4 = dir.0.join("v4");
    std::fs::create_dir(&v4).unwrap();
    let (c4, k4) = ca.leaf(4).write(&v4);
    let link = dir.0.join("live");
    std::os::unix::fs::symlink(&v4, &link).unwrap();
    let (cert_via_link, key_via_link) = (link.join("cert.pem"), link.join("key.pem"));
    // Point the gateway at the symlinked paths (a reconfigure, as SIGHUP with a new config).
    let mut config = gw.config();
    config.tls.as_mut().unwrap().cert = cert_via_link.clone();
    config.tls.as_mut().unwrap().key = key_via_link.clone();
    gw.reconfigure(config).unwrap();
    wait_serial(&ca, addr, 4).await;
    let v5 = dir.0.join("v5");
    std::fs::create_dir(&v5).unwrap();
    ca.leaf(5).write(&v5);
    let tmp = dir.0.join("live.tmp");
    std::os::unix::fs::symlink(&v5, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    wait_serial(&ca, addr, 5).await;
    drop((c4, k4));

    // Broken and half-written files keep the running certificate, and count.
    let failures = gw.stats().tls.unwrap().cert_reload_failures;
    std::fs::write(v5.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    match gw.reload_tls() {
        Some(Reload::Failed(e)) => assert!(e.contains("cert.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mismatched = ca.leaf(6);
    std::fs::write(v5.join("cert.pem"), &mismatched.chain_pem).unwrap();
    match gw.reload_tls() {
        Some(Reload::Failed(e)) => assert!(e.contains("key.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        peer_serial(&tls(&ca, addr).await),
        5,
        "the old certificate stays"
    );
    let stats = gw.stats().tls.unwrap();
    assert_eq!(
        stats.cert_reload_failures,
        failures + 2,
        "each broken content counted once"
    );
    assert_eq!(stats.cert_reloads, 4);

    // The session from before every rotation carries on.
    ws.send(json!({"type": "login", "persona": "alice", "credential": "pwd:x"}))
        .await;
    let (_, msg) = cores.next().await;
    assert_eq!(msg.session, session);
    assert!(
        matches!(msg.command, Command::Login { .. }),
        "{:?}",
        msg.command
    );
    drop(sink);
}

/// Reads until the server closes; true if it closed without sending a byte.
async fn closed_silently(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(WAIT, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn bounds_apply_before_tls_work() {
    let ca = TestCa::new();
    let dir = TempDir::new("bounds");
    let leaf = ca.leaf(1);
    let (gw, _cores) = start_tls(&leaf, &dir.0, |c| c.max_sockets_per_ip = 1);
    let addr = gw.local_addr();
    let _held = TcpStream::connect(addr).await.unwrap();
    let over = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_silently(over).await,
        "over the per-IP bound: closed, no TLS"
    );
    assert!(TestCa::connect(ca.client_config(), addr).await.is_err());
    let s = gw.stats();
    assert_eq!(
        (s.refused_per_ip, s.tls_handshakes, s.tls_handshake_failures),
        (2, 0, 0)
    );
    drop(gw);

    // Concurrent handshakes have their own bound.
    let dir = TempDir::new("handshakes");
    let (gw, _cores) = start_tls(&leaf, &dir.0, |c| {
        c.tls.as_mut().unwrap().max_handshakes = 1
    });
    let addr = gw.local_addr();
    let silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TestCa::connect(ca.client_config(), addr).await.is_err());
    assert_eq!(gw.stats().refused_handshakes, 1);
    drop(silent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        peer_serial(&tls(&ca, addr).await),
        1,
        "the place is free again"
    );
    drop(gw);

    // The handshake timeout covers the TLS handshake.
    let dir = TempDir::new("timeout");
    let (gw, _cores) = start_tls(&leaf, &dir.0, |c| {
        c.handshake_timeout = Duration::from_millis(300)
    });
    let started = Instant::now();
    assert!(closed_silently(TcpStream::connect(gw.local_addr()).await.unwrap()).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Counted as the connection's task ends, just after the socket closed.
    let deadline = Instant::now() + WAIT;
    while gw.stats().handshake_timeouts != 1 {
        assert!(Instant::now() < deadline, "timeout not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn origins_over_tls_are_https() {
    let ca = TestCa::new();
    let dir = TempDir::new("origin");
    let (gw, _cores) = start_tls(&ca.leaf(1), &dir.0, |_| {});
    let addr = gw.local_addr();
    let upgrade = |origin: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
            addr.port()
        )
    };
    let status = |req: String| {
        let ca = &ca;
        async move {
            let mut s = tls(ca, addr).await;
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&buf[..n])
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .to_string()
        }
    };
    let port = addr.port();
    assert_eq!(
        status(upgrade(&format!("https://localhost:{port}"))).await,
        "101"
    );
    assert_eq!(
        status(upgrade(&format!("http://localhost:{port}"))).await,
        "403"
    );
    assert_eq!(
        status(upgrade("https://localhost")).await,
        "403",
        "other port"
    );
    assert_eq!(status(upgrade("null")).await, "403");
}

#[tokio::test]
async fn redirect_listener_sends_browsers_to_https() {
    let ca = TestCa::new();
    let dir = TempDir::new("redirect");
    let (gw, _cores) = start_tls(&ca.leaf(1), &dir.0, |c| {
        c.tls.as_mut().unwrap().redirect_listen = Some("127.0.0.1:0".parse().unwrap())
    });
    let redirect = gw.redirect_addr().expect("redirect listener");
    let (status, head, _) = http(
        redirect,
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
    )
    .await;
    assert_eq!(status, 308);
    let location = format!(
        "Location: https://localhost:{}/index.html?x=1",
        gw.local_addr().port()
    );
    assert!(head.contains(&location), "{head}");
    assert_eq!(
        http(redirect, b"GET / HTTP/1.1\r\n\r\n").await.0,
        400,
        "no Host"
    );
}
