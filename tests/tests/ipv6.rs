//! flockd serves appliances over IPv6 (::1) and reports IPv6 reflexive addresses.
//!
//! The whole browser log-in over IPv6: the websocket on [::1], the appliance on [::1] over UDP.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{wait_event, wait_until_registered, Flockd};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_registers_and_keeps_alive_over_ipv6() {
    let server = Flockd::start(&["--udp", "[::1]:0", "--keepalive-interval", "300ms"]);
    assert!(server.udp.is_ipv6(), "{}", server.udp);
    let cfg = flock_appliance::ApplianceConfig::new(
        "v6-box".parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    let mut a = flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(3),
        "[::1]:0".parse().unwrap(),
    )
    .unwrap();
    let local = a.local_addr();
    let e = wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    assert_eq!(e, Event::Registered { mapped: local });
    let e = wait_event(&mut a, Duration::from_secs(3), "keep-alive", |e| {
        matches!(e, Event::KeptAlive { .. })
    })
    .await;
    assert_eq!(e, Event::KeptAlive { mapped: local });
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_socket_serves_ipv4_as_ipv4() {
    let server = Flockd::start(&["--udp", "[::]:0"]);
    let v4 = std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), server.udp.port());
    let cfg = flock_appliance::ApplianceConfig::new(
        "v4-box".parse().unwrap(),
        v4,
        server.flock_public_key,
    );
    let mut a = flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(4),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let local = a.local_addr();
    let e = wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Registered { mapped: local },
        "reported as plain IPv4, not ::ffff:127.0.0.1"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_over_ipv6() {
    let server = Flockd::start(&["--udp", "[::1]:0", "--ws", "[::1]:0"]);
    let ws = server.ws.unwrap();
    assert!(ws.is_ipv6() && server.udp.is_ipv6(), "{ws} {}", server.udp);
    let cfg = flock_appliance::ApplianceConfig::new(
        "v6-box".parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    let mut h = flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(6),
        "[::1]:0".parse().unwrap(),
    )
    .unwrap();
    wait_until_registered(&mut h, WAIT).await;
    let mut app = run_appliance(h, LIST, Behaviour::offer_and_candidate(7));

    let mut b = mid_signalling(ws, "v6-box").await;
    b.send(json!({"type": "answer", "sdp": "v=0\r\n"})).await;
    b.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(b.closed().await.code, 1000);
    next_matching(&mut app, "the session's end", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;
}
