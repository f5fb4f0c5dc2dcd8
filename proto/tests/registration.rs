//! First registration, keep-alives, tokens, identity rules.

use flock_proto::server::ServerConfig;
use flock_proto::token::Token;
use flock_proto::wire::registration::code;
use flock_testkit::hand_driven::*;
use std::time::Duration;

#[test]
fn register_needs_a_nonce_for_its_source_then_succeeds() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    let txid = d.txid();
    let first = exchange(&mut s, T0, src, &d.register_bytes(T0.0, &txid));
    assert_eq!(first.code(), Some(code::NONCE_REQUIRED));
    assert!(
        s.lookup(T0, &d.name).is_none(),
        "no state before the signature is checked"
    );
    let Answer::Registered(r) = register(&mut d, &mut s, T0, src) else {
        panic!()
    };
    assert_eq!(r.mapped, src);
    assert_eq!(r.keepalive_interval_ms, 30_000);
    let reg = s.lookup(T0, &d.name).unwrap();
    assert_eq!(reg.addr, src);
    assert_eq!(reg.fingerprint_prefix, d.fingerprint().prefix());
}

#[test]
fn nonce_from_another_address_is_refused() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    register(&mut d, &mut s, T0, addr("198.51.100.7:40000"));
    // A captured registration (with its nonce) replayed from elsewhere is not even verified.
    let txid = d.txid();
    let replay = d.register_bytes(T0.0, &txid);
    let a = exchange(&mut s, T0, addr("203.0.113.9:5000"), &replay);
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED));
    assert_eq!(
        s.lookup(T0, &d.name).unwrap().addr,
        addr("198.51.100.7:40000")
    );
    assert_eq!(s.stats().checks_started, 0);
}

#[test]
fn stale_nonce_gets_a_fresh_one() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let later = T0 + Duration::from_secs(601);
    let txid = d.txid();
    let a = exchange(&mut s, later, src, &d.register_bytes(later.0, &txid));
    let Answer::Error(e) = a else { panic!("{a:?}") };
    assert_eq!(e.code, code::STALE_NONCE);
    d.nonce = e.nonce;
    assert!(matches!(
        register(&mut d, &mut s, later, src),
        Answer::Registered(_)
    ));
}

#[test]
fn keepalive_refreshes_with_one_token_check() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let mut now = T0;
    for _ in 0..20 {
        now = now + Duration::from_secs(30);
        let Answer::KeptAlive(k) = keepalive(&mut d, &mut s, now, src) else {
            panic!()
        };
        assert_eq!(k.mapped, src);
    }
    assert_eq!(s.lookup(now, &d.name).unwrap().addr, src);
    assert_eq!(s.stats().keepalives, 20);
}

#[test]
fn token_is_refreshed_past_half_life() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let first = d.token.unwrap();
    let Answer::KeptAlive(k) = keepalive(&mut d, &mut s, T0 + Duration::from_secs(30), src) else {
        panic!()
    };
    assert!(k.token.is_none(), "young token is kept");
    let mut now = T0;
    while now < T0 + Duration::from_secs(1830) {
        now = now + Duration::from_secs(30);
        keepalive(&mut d, &mut s, now, src);
    }
    assert_ne!(d.token.unwrap(), first, "token was refreshed");
    assert!(d.token.unwrap().expiry > first.expiry);
}

#[test]
fn forged_or_foreign_token_must_reregister() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let good = d.token.unwrap();
    d.token = Some(Token {
        expiry: good.expiry,
        mac: [0; 16],
    });
    assert_eq!(
        keepalive(&mut d, &mut s, T0, src).code(),
        Some(code::REREGISTER)
    );
    d.token = Some(Token {
        expiry: good.expiry + 1,
        ..good
    });
    assert_eq!(
        keepalive(&mut d, &mut s, T0, src).code(),
        Some(code::REREGISTER)
    );
    d.token = Some(good);
    assert_eq!(
        keepalive(&mut d, &mut s, T0, addr("198.51.100.7:40001")).code(),
        Some(code::REREGISTER)
    );
    // Another server (another secret) does not accept it either.
    let mut other =
        flock_proto::server::Server::new(ServerConfig::default(), keys(b"other"), XorShift(5));
    assert_eq!(
        keepalive(&mut d, &mut other, T0, src).code(),
        Some(code::REREGISTER)
    );
    assert_eq!(s.stats().tokens_refused, 3);
}

#[test]
fn restarted_server_takes_appliances_back_from_their_tokens() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let mut restarted = server(ServerConfig::default());
    let now = T0 + Duration::from_secs(30);
    assert!(matches!(
        keepalive(&mut d, &mut restarted, now, src),
        Answer::KeptAlive(_)
    ));
    assert_eq!(restarted.lookup(now, &d.name).unwrap().addr, src);
}

#[test]
fn another_key_cannot_take_a_live_name() {
    let mut s = server(ServerConfig::default());
    let mut owner = Device::new("box", 1);
    let mut thief = Device::new("box", 2);
    let home = addr("198.51.100.7:40000");
    register(&mut owner, &mut s, T0, home);
    let a = register(&mut thief, &mut s, T0, addr("203.0.113.9:5000"));
    assert_eq!(a.code(), Some(code::NAME_TAKEN));
    // Not even from the owner's own address.
    assert_eq!(
        register(&mut thief, &mut s, T0, home).code(),
        Some(code::NAME_TAKEN)
    );
    assert_eq!(
        s.lookup(T0, &owner.name).unwrap().fingerprint_prefix,
        owner.fingerprint().prefix()
    );
    assert_eq!(s.stats().checks_started, 0);
}

#[test]
fn bad_signature_and_clock_skew_are_refused() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let txid = d.txid();
    let mut bytes = d.register_bytes(T0.0, &txid);
    // Flip a bit of the signature (last attribute before FINGERPRINT), then fix FINGERPRINT.
    let sig_at = bytes.len() - 8 - 64;
    bytes[sig_at] ^= 1;
    refingerprint(&mut bytes);
    assert_eq!(
        exchange(&mut s, T0, src, &bytes).code(),
        Some(code::BAD_SIGNATURE)
    );
    let txid = d.txid();
    let old = d.register_bytes((T0 - Duration::from_secs(601)).0, &txid);
    assert_eq!(
        exchange(&mut s, T0, src, &old).code(),
        Some(code::CLOCK_SKEW)
    );
}

fn refingerprint(bytes: &mut [u8]) {
    let n = bytes.len();
    let crc = crc32fast::hash(&bytes[..n - 8]) ^ 0x5354_554E;
    bytes[n - 4..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_retransmitted_register_is_taken_once_and_the_appliance_re_signs() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("198.51.100.7:40000");
    register(&mut d, &mut s, T0, src);
    let txid = d.txid();
    let ts = d.stamp(T0.0);
    let bytes = d.register_bytes(ts, &txid);
    let a = exchange(&mut s, T0, src, &bytes);
    assert!(matches!(a, Answer::Registered(_)));
    // Its answer was lost: the retransmission is not taken again (no second token: it could be
    // a replay), but answered with a fresh nonce, and the appliance's new REGISTER is taken.
    let b = exchange(&mut s, T0 + Duration::from_millis(500), src, &bytes);
    assert_eq!(b.code(), Some(code::STALE_NONCE));
    d.absorb(&b);
    assert!(matches!(
        register(&mut d, &mut s, T0 + Duration::from_millis(500), src),
        Answer::Registered(_)
    ));
    assert_eq!(s.occupancy(), (1, 0));
    assert_eq!(s.stats().registered, 3);
}
