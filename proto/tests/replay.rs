//! A signed REGISTER is taken once: retransmissions and replays of it (and of anything signed
//! before it) are refused, across expiry, from the same port or another, and after a restart
//! with the same secret. Sans-IO; `tests/tests/replay.rs` does the same over real sockets.

use flock_proto::server::ServerConfig;
use flock_proto::testing::Answer;
use flock_proto::wire::registration::code;
use flock_testkit::hand_driven::*;
use std::time::Duration;

const X: &str = "198.51.100.7:40000";
const Y: &str = "203.0.113.9:50000";

/// The owner registers from X; returns the signed REGISTER the server took.
fn owner_registers(s: &mut Host, d: &mut Device) -> Vec<u8> {
    let first = d.txid();
    let ts = d.stamp(T0.0);
    let a = exchange(s, T0, addr(X), &d.register_bytes(ts, &first));
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED));
    d.absorb(&a);
    let txid = d.txid();
    let ts = d.stamp(T0.0);
    let taken = d.register_bytes(ts, &txid);
    let a = exchange(s, T0, addr(X), &taken);
    assert!(matches!(a, Answer::Registered(_)));
    d.absorb(&a);
    taken
}

#[test]
fn a_register_replayed_after_its_registration_expired_is_refused() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let captured = owner_registers(&mut s, &mut d);
    // The owner goes offline: its registration expires; whoever holds X replays.
    let later = T0 + Duration::from_secs(61);
    advance(&mut s, later);
    assert!(s.lookup(later, &d.name).is_none(), "expired");
    let a = exchange(&mut s, later, addr(X), &captured);
    assert_eq!(a.code(), Some(code::STALE_NONCE), "{a:?}");
    assert!(s.lookup(later, &d.name).is_none(), "nothing registered");
    assert_eq!(s.stats().register_replays, 1);
    assert_eq!(s.stats().registered, 1);
    // Also just before the nonce expires (10 min), and from another port of X's host.
    let edge = T0 + Duration::from_secs(599);
    assert_eq!(
        exchange(&mut s, edge, addr(X), &captured).code(),
        Some(code::STALE_NONCE)
    );
    let other_port = addr("198.51.100.7:40001");
    assert_eq!(
        exchange(&mut s, edge, other_port, &captured).code(),
        Some(code::NONCE_REQUIRED),
        "the nonce is bound to X's port"
    );
    // The owner itself, signing anew, is taken as always.
    assert!(matches!(
        register(&mut d, &mut s, edge, addr(X)),
        Answer::Registered(_)
    ));
}

#[test]
fn a_replay_while_the_owner_is_registered_elsewhere_starts_nothing() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let captured = owner_registers(&mut s, &mut d);
    // The owner moves to Y (its check of X finds nobody, the name moves).
    let t = T0 + Duration::from_secs(1);
    assert!(register(&mut d, &mut s, t, addr(Y)).is_silent());
    advance(&mut s, T0 + Duration::from_secs(70));
    let now = T0 + Duration::from_secs(70);
    assert_eq!(s.lookup(now, &d.name).unwrap().addr, addr(Y));
    let checks = s.stats().checks_started;
    // X's new holder replays the REGISTER of X: no check of Y, no move.
    let a = exchange(&mut s, now, addr(X), &captured);
    assert_eq!(a.code(), Some(code::STALE_NONCE));
    assert_eq!(s.stats().checks_started, checks);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.lookup(now, &d.name).unwrap().addr, addr(Y));
}

#[test]
fn a_register_is_taken_once_even_while_live_at_the_same_address() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let captured = owner_registers(&mut s, &mut d);
    // Retransmitted (its answer lost) or replayed from X itself: no second token.
    let a = exchange(&mut s, T0 + Duration::from_secs(5), addr(X), &captured);
    assert_eq!(a.code(), Some(code::STALE_NONCE));
    // An older REGISTER of the same owner, never sent before, is refused too.
    let txid = d.txid();
    let older = d.register_bytes(T0.0 - 1, &txid);
    assert_eq!(
        exchange(&mut s, T0 + Duration::from_secs(5), addr(X), &older).code(),
        Some(code::STALE_NONCE)
    );
}

#[test]
fn a_restarted_server_with_the_same_secret_refuses_nonces_from_before() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let captured = owner_registers(&mut s, &mut d);
    // Same secret, new boot (its own random bytes): the replay guard is gone with the memory,
    // and so is every nonce issued before.
    let mut restarted = flock_proto::server::Server::new(
        ServerConfig::default(),
        keys_for_boot(b"server secret", &[0xb1; 16]),
        XorShift(0x1234_5678_9abc_def1),
    );
    let later = T0 + Duration::from_secs(61);
    let a = exchange(&mut restarted, later, addr(X), &captured);
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED), "{a:?}");
    assert!(restarted.lookup(later, &d.name).is_none());
    // Tokens survive the restart, by design: just after it, they bring registrations back.
    assert!(matches!(
        keepalive(
            &mut d,
            &mut restarted,
            later + Duration::from_secs(1),
            addr(X)
        ),
        Answer::KeptAlive(_)
    ));
}

#[test]
fn a_captured_keepalive_does_not_bring_back_a_registration_that_expired() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    owner_registers(&mut s, &mut d);
    let txid = d.txid();
    let captured = d.keepalive_bytes(&txid);
    // The owner goes offline; its registration expires. The token (1 h) is still valid, but
    // a KEEPALIVE replayed from X does not take the name back: that needs a signed REGISTER.
    let later = T0 + Duration::from_secs(61);
    advance(&mut s, later);
    assert!(s.lookup(later, &d.name).is_none());
    assert_eq!(
        exchange(&mut s, later, addr(X), &captured).code(),
        Some(code::REREGISTER)
    );
    assert!(s.lookup(later, &d.name).is_none());
    // A restarted server (empty table) takes it back in its first entry lifetime (60 s), when
    // registrations from before the restart may still be alive; after that, no more.
    let mut restarted = server(ServerConfig::default());
    assert!(matches!(
        exchange(&mut restarted, later, addr(X), &captured),
        Answer::KeptAlive(_)
    ));
    let mut other = server(ServerConfig::default());
    other.handle_timeout(later);
    assert_eq!(
        exchange(
            &mut other,
            later + Duration::from_secs(60),
            addr(X),
            &captured
        )
        .code(),
        Some(code::REREGISTER)
    );
}

#[test]
fn the_replay_guard_is_bounded_and_the_server_stays_up() {
    let cfg = ServerConfig {
        max_replay_records: 3,
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    let mut devices: Vec<Device> = (0..3u8)
        .map(|i| Device::new(&format!("box{i}"), i + 1))
        .collect();
    for (i, d) in devices.iter_mut().enumerate() {
        let a = register(d, &mut s, T0, addr(&format!("192.0.2.{}:1000", i + 1)));
        assert!(matches!(a, Answer::Registered(_)));
    }
    assert_eq!(s.replay_records(), 3);
    let mut late = Device::new("late", 9);
    let a = register(&mut late, &mut s, T0, addr("192.0.2.9:1000"));
    assert_eq!(a.code(), Some(code::CAPACITY), "{a:?}");
    assert_eq!(s.stats().replay_full, 1);
    assert!(s.lookup(T0, &late.name).is_none(), "refused without effect");
    // Names already remembered keep working; keep-alives never need the guard.
    let (d, home, t) = (
        &mut devices[0],
        addr("192.0.2.1:1000"),
        T0 + Duration::from_secs(1),
    );
    assert!(matches!(
        register(d, &mut s, t, home),
        Answer::Registered(_)
    ));
    assert!(matches!(
        keepalive(d, &mut s, t, home),
        Answer::KeptAlive(_)
    ));
    // Records are forgotten with their nonces (10 min): then there is room again.
    let later = T0 + Duration::from_secs(601);
    advance(&mut s, later);
    assert!(matches!(
        register(&mut late, &mut s, later, addr("192.0.2.9:1000")),
        Answer::Registered(_)
    ));
    assert!(s.replay_records() <= 3);
}

#[test]
fn records_are_forgotten_once_their_register_is_stale() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    owner_registers(&mut s, &mut d);
    assert_eq!(s.replay_records(), 1);
    advance(
        &mut s,
        T0 + Duration::from_secs(600) + Duration::from_secs(6),
    );
    assert_eq!(s.replay_records(), 0, "swept once the nonce expired");
}
