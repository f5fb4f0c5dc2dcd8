//! Behind a reverse proxy: from `trusted_proxies` the PROXY header (v1, v2) or the forwarding
//! headers name the client, and that address is what the per-IP bound, `metrics_allow`, the
//! origin check's scheme and the policy see; from anyone else those are refused or ignored.
//! The trusted proxy is 127.0.0.1; untrusted sources connect from 127.0.0.2.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use flock_ws::policy::BoxFuture;
use flock_ws::{LoginAttempt, Outcome, Persona, Policy, Verdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: &str = "127.0.0.1";
const STRANGER: &str = "127.0.0.2";

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8080\r\n").into_bytes()
}

fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0, 12]);
    h.extend(client);
    h.extend([127, 0, 0, 1]);
    h.extend(port.to_be_bytes());
    h.extend(8080u16.to_be_bytes());
    h
}

use flock_testkit::browser::{tcp_from, Browser};

/// One raw HTTP request from `source` after `preface`; the status, 0 if closed unanswered.
async fn get_via(source: &str, addr: SocketAddr, preface: &[u8], request: &str) -> u16 {
    let mut tcp = tcp_from(source, addr).await;
    let _ = tcp.write_all(preface).await;
    let _ = tcp.write_all(request.as_bytes()).await;
    // Up to the end of the answer's head (a 101 leaves the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn proxy_protocol_names_the_client_for_the_per_ip_bound() {
    let (gw, _cores) = start(1, |c| {
        c.trusted_proxies = vec![format!("{PROXY}/32")];
        c.proxy_protocol = true;
        c.max_sockets_per_ip = 2;
    });
    let addr = gw.local_addr();
    // Client A through the proxy, by v1 and by v2: two places, then 429.
    let _a1 = Browser::try_connect_from(PROXY, addr, &v1("203.0.113.7", 4001), &[])
        .await
        .unwrap();
    let _a2 = Browser::try_connect_from(PROXY, addr, &v2([203, 0, 113, 7], 4002), &[])
        .await
        .unwrap();
    assert_eq!(
        Browser::try_connect_from(PROXY, addr, &v1("203.0.113.7", 4003), &[])
            .await
            .err(),
        Some(429)
    );
    // Client B through the same proxy is not affected, nor is the proxy's own address.
    let _b = Browser::try_connect_from(PROXY, addr, &v2([203, 0, 113, 8], 4004), &[])
        .await
        .unwrap();
    let _b2 = Browser::try_connect_from(PROXY, addr, &v1("203.0.113.8", 4005), &[])
        .await
        .unwrap();
    // A trusted proxy must send the header.
    assert_eq!(
        Browser::try_connect_from(PROXY, addr, b"", &[]).await.err(),
        Some(0)
    );
    // Anyone else may not: refused (closed), counted.
    let before = gw.stats().refused_proxy;
    assert_eq!(
        Browser::try_connect_from(STRANGER, addr, &v1("203.0.113.9", 1), &[])
            .await
            .err(),
        Some(0)
    );
    assert_eq!(
        Browser::try_connect_from(STRANGER, addr, &v2([203, 0, 113, 9], 1), &[])
            .await
            .err(),
        Some(0)
    );
    assert_eq!(gw.stats().refused_proxy, before + 2);
    // ... but without one they are served as themselves.
    let _s = Browser::try_connect_from(STRANGER, addr, b"", &[])
        .await
        .unwrap();
    let _s2 = Browser::try_connect_from(STRANGER, addr, b"", &[])
        .await
        .unwrap();
    assert_eq!(
        Browser::try_connect_from(STRANGER, addr, b"", &[])
            .await
            .err(),
        Some(429)
    );
}

#[tokio::test]
async fn forwarding_headers_count_from_trusted_hops_only() {
    let (gw, _cores) = start(1, |c| {
        c.trusted_proxies = vec![format!("{PROXY}/32")];
        c.max_sockets_per_ip = 2;
    });
    let addr = gw.local_addr();
    let xff = |v: &'static str| [("X-Forwarded-For", v)];
    let _a1 = Browser::try_connect_from(PROXY, addr, b"", &xff("203.0.113.7"))
        .await
        .unwrap();
    // A client's own X-Forwarded-For entry (left of the proxy's) changes nothing.
    let _a2 = Browser::try_connect_from(PROXY, addr, b"", &xff("198.51.100.1, 203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(
        Browser::try_connect_from(PROXY, addr, b"", &xff("203.0.113.7"))
            .await
            .err(),
        Some(429)
    );
    let _b = Browser::try_connect_from(PROXY, addr, b"", &[("Forwarded", "for=203.0.113.8")])
        .await
        .unwrap();
    // From an untrusted source the header is ignored: it counts as itself.
    let _s1 = Browser::try_connect_from(STRANGER, addr, b"", &xff("203.0.113.50"))
        .await
        .unwrap();
    let _s2 = Browser::try_connect_from(STRANGER, addr, b"", &xff("203.0.113.51"))
        .await
        .unwrap();
    assert_eq!(
        Browser::try_connect_from(STRANGER, addr, b"", &xff("203.0.113.52"))
            .await
            .err(),
        Some(429)
    );
}

#[tokio::test]
async fn metrics_allow_and_origin_scheme_use_the_client() {
    let (gw, _cores) = start(1, |c| {
        c.trusted_proxies = vec![format!("{PROXY}/32")];
        c.metrics_allow = vec!["127.0.0.0/8".into(), "10.9.0.0/16".into()];
    });
    let addr = gw.local_addr();
    let metrics = |xff: &str| format!("GET /metrics HTTP/1.1\r\nX-Forwarded-For: {xff}\r\n\r\n");
    // Through the proxy for a client outside metrics_allow: 403 (the proxy is loopback).
    assert_eq!(
        get_via(PROXY, addr, b"", &metrics("203.0.113.7")).await,
        403
    );
    assert_eq!(get_via(PROXY, addr, b"", &metrics("10.9.1.1")).await, 200);
    // A direct loopback client's forged header does not lock it out, nor let others in.
    assert_eq!(
        get_via(STRANGER, addr, b"", &metrics("203.0.113.7")).await,
        200
    );

    // The scheme for the origin check: X-Forwarded-Proto from the proxy only.
    let upgrade = |proto: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: flock.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: https://flock.example\r\nX-Forwarded-Proto: {proto}\r\n\r\n"
        )
    };
    assert_eq!(get_via(PROXY, addr, b"", &upgrade("https")).await, 101);
    assert_eq!(get_via(PROXY, addr, b"", &upgrade("http")).await, 403);
    assert_eq!(get_via(STRANGER, addr, b"", &upgrade("https")).await, 403);
}

/// Records the client address the policy is shown.
#[derive(Default)]
struct Recorder(Mutex<Vec<IpAddr>>);

impl Policy for Recorder {
    fn authorize_login(&self, _: LoginAttempt) -> BoxFuture<Verdict> {
        Box::pin(std::future::ready(Verdict::Allow))
    }
    fn filter_personas(
        &self,
        _: String,
        client: SocketAddr,
        personas: Vec<Persona>,
    ) -> BoxFuture<Option<Vec<Persona>>> {
        self.0.lock().unwrap().push(client.ip());
        Box::pin(std::future::ready(Some(personas)))
    }
    fn audit_login(&self, _: &LoginAttempt, _: Outcome) {}
}

#[tokio::test]
async fn the_policy_sees_the_client_not_the_proxy() {
    let policy = Arc::new(Recorder::default());
    let (gw, mut cores) = start_with_policy(1, policy.clone(), |c| {
        c.trusted_proxies = vec![format!("{PROXY}/32")];
        c.proxy_protocol = true;
    });
    let addr = gw.local_addr();
    let mut ws = Browser::try_connect_from(PROXY, addr, &v2([203, 0, 113, 7], 4001), &[])
        .await
        .unwrap();
    let _first = open_with_personas(&mut ws, &mut cores, "my-box").await;
    let mut direct =
        Browser::try_connect_from(STRANGER, addr, b"", &[("X-Forwarded-For", "198.51.100.1")])
            .await
            .unwrap();
    let _second = open_with_personas(&mut direct, &mut cores, "my-box").await;
    assert_eq!(
        *policy.0.lock().unwrap(),
        [
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            STRANGER.parse().unwrap()
        ]
    );
}
