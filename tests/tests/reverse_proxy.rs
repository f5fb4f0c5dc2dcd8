//! flockd behind a real reverse proxy (Debian's HAProxy, on loopback): through a TCP frontend
//! that sends PROXY protocol v2, and through an HTTP frontend that adds X-Forwarded-For. The
//! proxy (127.0.0.1) is trusted; browsers connect from 127.0.0.2 and 127.0.0.3. The 65th
//! websocket from one client gets 429 while the other client is unaffected; headers from
//! untrusted sources are refused or ignored; `/metrics` is judged on the client behind the
//! proxy.

use flock_tests::{Flockd, TempDir};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HAPROXY: &str = "/usr/sbin/haproxy";
const WAIT: Duration = Duration::from_secs(10);
const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

/// HAProxy in the foreground, killed on drop.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts HAProxy with a PROXY-v2 TCP frontend to `pp_backend` and an HTTP frontend with
/// X-Forwarded-For to `xff_backend`; returns it and the two frontends.
fn haproxy(
    dir: &Path,
    pp_backend: SocketAddr,
    xff_backend: SocketAddr,
) -> (Haproxy, SocketAddr, SocketAddr) {
    assert!(
        Path::new(HAPROXY).exists(),
        "{HAPROXY} is missing: install the Debian package `haproxy`"
    );
    let (pp, xff) = (free_tcp_port(), free_tcp_port());
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 2000\n\
             defaults\n  maxconn 2000\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout tunnel 60s\n\
             frontend pp\n  mode tcp\n  bind 127.0.0.1:{pp}\n  default_backend pp_flockd\n\
             backend pp_flockd\n  mode tcp\n  server f {pp_backend} send-proxy-v2\n\
             frontend xff\n  mode http\n  bind 127.0.0.1:{xff}\n  option forwardfor\n  default_backend xff_flockd\n\
             backend xff_flockd\n  mode http\n  server f {xff_backend}\n"
        ),
    )
    .unwrap();
    let child = Command::new(HAPROXY)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let proxy = Haproxy(child);
    let addrs: [SocketAddr; 2] = [
        format!("127.0.0.1:{pp}").parse().unwrap(),
        format!("127.0.0.1:{xff}").parse().unwrap(),
    ];
    let deadline = Instant::now() + WAIT;
    for a in addrs {
        while std::net::TcpStream::connect(a).is_err() {
            assert!(Instant::now() < deadline, "haproxy is not listening on {a}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (proxy, addrs[0], addrs[1])
}

use flock_testkit::browser::{tcp_from, Browser};

async fn get(source: &str, addr: SocketAddr, path: &str) -> u16 {
    let mut tcp = tcp_from(source, addr).await;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: flock\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// 64 websockets from `source` through `front` are taken, the 65th is refused with 429,
/// and `other` still gets in: the bound counts the client behind the proxy, not the proxy.
async fn per_client_bound(front: SocketAddr, source: &str, other: &str) {
    let mut open = Vec::new();
    for i in 0..64 {
        match Browser::try_connect_from(source, front, b"", &[]).await {
            Ok(w) => open.push(w),
            Err(status) => panic!("websocket {i} from {source} refused: {status}"),
        }
    }
    assert_eq!(
        Browser::try_connect_from(source, front, b"", &[])
            .await
            .err(),
        Some(429),
        "the 65th"
    );
    let _other = Browser::try_connect_from(other, front, b"", &[])
        .await
        .expect("another client is unaffected");
}

fn config(dir: &Path, name: &str, body: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, body).unwrap();
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_the_bounds_count_each_client() {
    let dir = TempDir::new("haproxy");
    let pp_flockd = Flockd::start(&[
        "--config",
        &config(
            &dir.0,
            "pp.toml",
            "[ws]\ntrusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = true\n",
        ),
    ]);
    let xff_flockd = Flockd::start(&[
        "--config",
        &config(
            &dir.0,
            "xff.toml",
            "[ws]\ntrusted_proxies = [\"127.0.0.1/32\"]\nmetrics_allow = [\"127.0.0.1/32\"]\n",
        ),
    ]);
    let (pp_direct, xff_direct) = (pp_flockd.ws.unwrap(), xff_flockd.ws.unwrap());
    let (_proxy, pp_front, xff_front) = haproxy(&dir.0, pp_direct, xff_direct);

    // PROXY protocol v2 through HAProxy's TCP frontend.
    per_client_bound(pp_front, A, B).await;
    // A PROXY header straight from an untrusted source is refused.
    let forged = b"PROXY TCP4 203.0.113.9 127.0.0.1 1 2\r\n";
    assert_eq!(
        Browser::try_connect_from(B, pp_direct, forged, &[])
            .await
            .err(),
        Some(0)
    );

    // X-Forwarded-For through HAProxy's HTTP frontend.
    per_client_bound(xff_front, A, B).await;
    // From an untrusted source the header is ignored: its own address fills up.
    let mut held = Vec::new();
    for i in 0..64 {
        let forged = format!("198.51.100.{i}");
        held.push(
            Browser::try_connect_from(B, xff_direct, b"", &[("X-Forwarded-For", &forged)])
                .await
                .expect("a direct websocket"),
        );
    }
    assert_eq!(
        Browser::try_connect_from(B, xff_direct, b"", &[("X-Forwarded-For", "198.51.100.200")])
            .await
            .err(),
        Some(429)
    );
    drop(held);

    // /metrics through the proxy is refused for a client outside metrics_allow, even though
    // the proxy itself is allowed; the proxy host asking directly is served.
    assert_eq!(get(A, xff_front, "/metrics").await, 403);
    assert_eq!(get("127.0.0.1", xff_direct, "/metrics").await, 200);
}
