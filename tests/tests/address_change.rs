//! An appliance whose address changes (it rebinds to a new port) gets its name moved after the
//! server has challenged the old address.
use flock_appliance::Event;
use flock_tests::{appliance, wait_event, Flockd};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_old_address_moves_after_the_check_window() {
    let server = Flockd::start(&[
        "--check-window",
        "2s",
        "--keepalive-interval",
        "300ms",
        "--entry-lifetime",
        "10s",
    ]);
    let mut a = appliance(&server, "mover", 1);
    let old = a.local_addr();
    wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    // The old socket closes: CHECKs to it go nowhere.
    let new = a.rebind("127.0.0.1:0".parse().unwrap()).unwrap();
    let moved_at = Instant::now();
    let e = wait_event(
        &mut a,
        Duration::from_secs(8),
        "registration at the new address",
        |e| matches!(e, Event::Registered { mapped } if *mapped == new),
    )
    .await;
    let waited = moved_at.elapsed();
    assert_eq!(e, Event::Registered { mapped: new });
    assert_ne!(old, new);
    assert!(
        waited >= Duration::from_millis(1500),
        "moved after {waited:?}, before the 2 s check window"
    );
    // And it stays alive there.
    let e = wait_event(&mut a, Duration::from_secs(3), "keep-alive", |e| {
        matches!(e, Event::KeptAlive { .. })
    })
    .await;
    assert_eq!(e, Event::KeptAlive { mapped: new });
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_answering_the_check_moves_at_once() {
    // A NAT whose old mapping still delivers: the CHECK reaches the appliance, which answers
    // from its new address, proving it moved.
    let server = Flockd::start(&[
        "--check-window",
        "30s",
        "--keepalive-interval",
        "300ms",
        "--entry-lifetime",
        "40s",
    ]);
    let mut a = appliance(&server, "mover", 1);
    let old = a.local_addr();
    wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let new = a
        .rebind_keeping_old("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let e = wait_event(&mut a, Duration::from_secs(5), "an answered check", |e| {
        matches!(e, Event::CheckAnswered { .. })
    })
    .await;
    assert_eq!(e, Event::CheckAnswered { from: server.udp });
    let e = wait_event(
        &mut a,
        Duration::from_secs(5),
        "registration at the new address",
        |e| matches!(e, Event::Registered { mapped } if *mapped == new),
    )
    .await;
    assert_eq!(e, Event::Registered { mapped: new });
    assert_ne!(old, new);
    a.shutdown().await;
}
