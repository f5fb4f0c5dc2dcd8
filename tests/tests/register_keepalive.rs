//! An SDK appliance registers with a real flockd and keeps itself alive; with shortened timers,
//! a silent appliance's registration expires, and the name is free again.

use flock_appliance::Event;
use flock_proto::testing::{Answer, Device};
use flock_proto::wire::registration::code;
use flock_tests::{appliance, raw_client, register_over, wait_event, Flockd};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_registers_then_keeps_alive() {
    let server = Flockd::start(&["--keepalive-interval", "300ms", "--entry-lifetime", "3s"]);
    let mut a = appliance(&server, "my-box", 1);
    let local = a.local_addr();
    let e = wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Registered { mapped: local },
        "the server reports the address it sees"
    );
    for _ in 0..3 {
        let e = wait_event(&mut a, Duration::from_secs(3), "keep-alive", |e| {
            matches!(e, Event::KeptAlive { .. })
        })
        .await;
        assert_eq!(e, Event::KeptAlive { mapped: local });
    }
    let st = a.status();
    assert!(st.state.is_registered(), "{st:?}");
    a.shutdown().await;
}

#[test]
fn registration_expires_after_its_lifetime() {
    let server = Flockd::start(&["--entry-lifetime", "2s", "--keepalive-interval", "1s"]);
    let (sock_a, sock_b) = (raw_client(), raw_client());
    let mut a = Device::new("quiet-box", 1);
    let mut b = Device::new("quiet-box", 2);
    assert!(matches!(
        register_over(&mut a, &sock_a, server.udp),
        Answer::Registered(_)
    ));
    let registered = Instant::now();
    // While A's registration lives, B (another key) is refused.
    assert_eq!(
        register_over(&mut b, &sock_b, server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    // A stays silent. Within the lifetime (at most 2 s, at least 1 s given whole seconds) it dies.
    let deadline = registered + Duration::from_secs(4);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        match register_over(&mut b, &sock_b, server.udp) {
            Answer::Registered(_) => break,
            other => assert_eq!(other.code(), Some(code::NAME_TAKEN)),
        }
        assert!(
            Instant::now() < deadline,
            "A's registration outlived its 2 s lifetime"
        );
    }
    assert!(
        registered.elapsed() >= Duration::from_millis(900),
        "expired too early: {:?}",
        registered.elapsed()
    );
}
