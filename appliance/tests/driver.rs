//! The tokio driver over real loopback sockets, against the real server state machine served
//! over UDP by this test (wall-clock time, short timers). Every wait is bounded.

use flock_appliance::{spawn, ApplianceHandle, Event};
use flock_proto::server::ServerConfig;
use flock_testkit::sim::{self, config, keypair, server_with, FLOCK_SEED, SECRET};
use flock_testkit::udp_server::{serve_udp, wall, SharedHost};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn expect(
    h: &mut ApplianceHandle,
    within: Duration,
    want: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = vec![];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, h.next_event()).await {
            Ok(Some(e)) => {
                let done = want(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("the appliance stopped; events: {seen:?}"),
            Err(_) => panic!("timed out; events: {seen:?}"),
        }
    }
}

fn registered_at(addr: SocketAddr) -> impl Fn(&Event) -> bool {
    move |e| *e == Event::Registered { mapped: addr }
}

#[tokio::test]
async fn registers_then_follows_address_changes() {
    let config = ServerConfig {
        check_window: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let server: SharedHost = Arc::new(Mutex::new(server_with(config, SECRET, FLOCK_SEED)));
    let (server_addr, _) = serve_udp(server.clone()).await;
    let name = sim::name("box");

    let mut h = spawn(
        sim::config("box", server_addr),
        keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let first = h.local_addr();
    assert_eq!(h.name(), &name);
    expect(&mut h, Duration::from_secs(5), registered_at(first)).await;
    assert!(h.status().state.is_registered());
    assert_eq!(h.status().mapped, Some(first));
    assert_eq!(
        server.lock().unwrap().lookup(wall(), &name).unwrap().addr,
        first
    );

    // A new port, the old one still receiving: the CHECK reaches the appliance, which answers
    // from the new port, and the name moves at once.
    let second = h
        .rebind_keeping_old("127.0.0.1:0".parse().unwrap())
        .unwrap();
    assert_eq!(h.local_addr(), second);
    let events = expect(&mut h, Duration::from_secs(5), registered_at(second)).await;
    assert!(events.contains(&Event::TokenRefused), "{events:?}");
    assert!(
        events.contains(&Event::CheckAnswered { from: server_addr }),
        "{events:?}"
    );
    assert!(
        events.contains(&Event::MappedAddressChanged {
            old: first,
            new: second
        }),
        "{events:?}"
    );
    assert_eq!(
        server.lock().unwrap().lookup(wall(), &name).unwrap().addr,
        second
    );

    // A new port, the old one closed: the server moves the name when its 2 s window closes.
    let started = std::time::Instant::now();
    let third = h.rebind("127.0.0.1:0".parse().unwrap()).unwrap();
    let events = expect(&mut h, Duration::from_secs(8), registered_at(third)).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CheckAnswered { .. })),
        "{events:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.lock().unwrap().lookup(wall(), &name).unwrap().addr,
        third
    );
    assert!(
        h.status().stats.retransmitted > 0,
        "REGISTER retransmitted while the server checked"
    );

    h.shutdown().await;
}

#[tokio::test]
async fn keepalives_use_the_server_interval_and_events_survive_slow_readers() {
    let config = ServerConfig {
        keepalive_interval: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server: SharedHost = Arc::new(Mutex::new(server_with(config, SECRET, FLOCK_SEED)));
    let (server_addr, _) = serve_udp(server.clone()).await;
    let mut h = spawn(
        sim::config("box", server_addr),
        keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let local = h.local_addr();
    expect(&mut h, Duration::from_secs(5), registered_at(local)).await;
    let events = expect(&mut h, Duration::from_secs(5), |e| {
        matches!(e, Event::KeptAlive { .. })
    })
    .await;
    assert_eq!(events, vec![Event::KeptAlive { mapped: local }]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = h.status();
    assert!(status.stats.keepalives >= 3, "{status:?}");
    assert_eq!(status.events_dropped, 0);
    h.shutdown().await;
}

#[test]
fn spawn_outside_a_runtime_is_an_error() {
    let err = spawn(
        config("box", "127.0.0.1:9".parse().unwrap()),
        keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_appliance() {
    // Nothing listens there: the appliance just retransmits. Dropping the handle ends its task,
    // which closes the socket: its port becomes free again.
    let h = spawn(
        config("box", "127.0.0.1:9".parse().unwrap()),
        keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let local = h.local_addr();
    drop(h);
    let mut rebound = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(s) = std::net::UdpSocket::bind(local) {
            rebound = Some(s);
            break;
        }
    }
    assert!(rebound.is_some(), "the socket was not closed");
}
