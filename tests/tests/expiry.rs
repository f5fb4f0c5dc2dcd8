//! With shortened timers: a silent appliance's registration expires, and the name is free again.
use flock_proto::msg::code;
use flock_proto::testing::{Answer, Device};
use flock_tests::{raw_client, register_over, Flockd};
use std::time::{Duration, Instant};

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
