//! Plain HTTP on the websocket port: the page, the client module, the health check, and the
//! answers to everything else.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn pages_and_health() {
    let (gw, _cores) = start(1, |_| {});
    let addr = gw.local_addr();

    let (status, head, body) = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-cache"), "{head}");
    assert_eq!(body, include_bytes!("../web/index.html"));

    let (status, head, body) = http(addr, b"GET /flock.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/javascript"), "{head}");
    assert_eq!(body, include_bytes!("../web/flock.js"));

    let (status, _, body) = http(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
}

#[tokio::test]
async fn other_requests() {
    let (gw, _cores) = start(1, |_| {});
    let addr = gw.local_addr();
    assert_eq!(http(addr, b"GET /nope HTTP/1.1\r\n\r\n").await.0, 404);
    let (status, head, _) = http(addr, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"));
    assert_eq!(
        http(addr, b"GET /ws HTTP/1.1\r\n\r\n").await.0,
        426,
        "no upgrade"
    );
    assert_eq!(http(addr, b"GARBAGE\r\n\r\n").await.0, 400);
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http(addr, long.as_bytes()).await.0, 400);
    assert_eq!(gw.stats().bad_requests, 2);
}

#[tokio::test]
async fn a_slow_request_head_is_dropped() {
    let (gw, _cores) = start(1, |c| {
        c.handshake_timeout = std::time::Duration::from_millis(200)
    });
    let mut s = tokio::net::TcpStream::connect(gw.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut out = Vec::new();
    let n = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("closed in time");
    assert!(
        n.is_err() || out.is_empty(),
        "no answer to an unfinished head"
    );
}
