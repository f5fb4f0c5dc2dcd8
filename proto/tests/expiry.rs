//! A registration lives at most 60 s after the last valid keep-alive.

use flock_proto::server::ServerConfig;
use flock_testkit::hand_driven::*;
use std::time::Duration;

#[test]
fn entry_dies_sixty_seconds_after_last_keepalive() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let ka = T0 + Duration::from_secs(30);
    keepalive(&mut d, &mut s, ka, src);
    assert!(s
        .lookup(ka + Duration::from_millis(59_999), &d.name)
        .is_some());
    assert!(s.lookup(ka + Duration::from_secs(60), &d.name).is_none());
}

#[test]
fn registration_without_keepalive_dies_at_sixty_seconds_and_is_swept() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    register(&mut d, &mut s, T0, addr("198.51.100.7:40000"));
    assert!(s.lookup(T0 + Duration::from_secs(59), &d.name).is_some());
    assert!(s.lookup(T0 + Duration::from_secs(60), &d.name).is_none());
    advance(&mut s, T0 + Duration::from_secs(70));
    assert_eq!(s.occupancy().0, 0, "swept from memory");
    assert_eq!(s.stats().swept, 1);
}

#[test]
fn shortened_lifetime_is_honoured() {
    let cfg = ServerConfig {
        entry_lifetime: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    let mut d = Device::new("box", 1);
    register(&mut d, &mut s, T0, addr("198.51.100.7:40000"));
    assert!(s.lookup(T0 + Duration::from_secs(2), &d.name).is_some());
    assert!(s.lookup(T0 + Duration::from_secs(3), &d.name).is_none());
}

#[test]
fn expired_name_can_be_taken_by_another_key() {
    let mut s = server(ServerConfig::default());
    let mut a = Device::new("box", 1);
    let mut b = Device::new("box", 2);
    register(&mut a, &mut s, T0, addr("198.51.100.7:40000"));
    let later = T0 + Duration::from_secs(61);
    assert!(matches!(
        register(&mut b, &mut s, later, addr("203.0.113.1:1")),
        Answer::Registered(_)
    ));
    // A's still-valid token no longer holds the name.
    assert_eq!(
        keepalive(&mut a, &mut s, later, addr("198.51.100.7:40000")).code(),
        Some(flock_proto::wire::registration::code::NAME_TAKEN)
    );
}
