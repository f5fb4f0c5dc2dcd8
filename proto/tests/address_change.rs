//! Same name, same key, new address: the old address is challenged before the name moves.

use flock_proto::server::ServerConfig;
use flock_proto::stun::Message;
use flock_proto::testing::Answer;
use flock_proto::wire::registration::{self, code};
use flock_testkit::hand_driven::*;
use std::time::Duration;

const OLD: &str = "198.51.100.7:40000";
const NEW: &str = "198.51.100.7:40999";

fn moved_setup() -> (Host, Device) {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    register(&mut d, &mut s, T0, addr(OLD));
    (s, d)
}

fn is_check(bytes: &[u8]) -> bool {
    Message::parse(bytes).unwrap().method() == flock_proto::wire::method::CHECK
}

#[test]
fn silent_old_address_loses_the_name_after_the_window() {
    let (mut s, mut d) = moved_setup();
    let a = register(&mut d, &mut s, T0, addr(NEW));
    assert!(a.is_silent(), "no answer to the new address while checking");
    let first = drain(&mut s);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, addr(OLD));
    assert!(is_check(&first[0].1));
    let reg = s.lookup(T0, &d.name).unwrap();
    assert_eq!((reg.addr, reg.moving_to), (addr(OLD), Some(addr(NEW))));

    // The appliance keeps the old registration alive from nowhere (silent), and keeps retrying.
    let sent = advance(&mut s, T0 + Duration::from_millis(59_999));
    let times: Vec<u64> = sent.iter().map(|(t, _, _)| t.0 - T0.0).collect();
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 15500, 23500, 31500, 39500, 47500, 55500]
    );
    assert!(sent
        .iter()
        .all(|(_, dst, b)| *dst == addr(OLD) && is_check(b)));
    assert_eq!(
        s.lookup(T0 + Duration::from_millis(59_999), &d.name)
            .unwrap()
            .addr,
        addr(OLD)
    );

    // The appliance signs its REGISTER again (a new timestamp and transaction id).
    let txid = d.txid();
    let ts = d.stamp(T0.0 + 59_000);
    let retry = d.register_bytes(ts, &txid);
    assert!(exchange(&mut s, T0 + Duration::from_secs(59), addr(NEW), &retry).is_silent());

    let end = advance(&mut s, T0 + Duration::from_secs(60));
    assert_eq!(end.len(), 1, "the new address gets its answer at once");
    assert_eq!(end[0].1, addr(NEW));
    let m = Message::parse(&end[0].2).unwrap();
    assert_eq!(m.transaction_id(), &txid, "answers the latest REGISTER");
    assert_eq!(
        registration::Registered::parse(&m).unwrap().mapped,
        addr(NEW)
    );
    let now = T0 + Duration::from_secs(60);
    assert_eq!(s.lookup(now, &d.name).unwrap().addr, addr(NEW));
    assert_eq!(s.lookup(now, &d.name).unwrap().moving_to, None);
    assert_eq!(s.stats().moved, 1);
}

#[test]
fn right_appliance_answering_from_old_address_keeps_the_name() {
    let (mut s, mut d) = moved_setup();
    register(&mut d, &mut s, T0, addr(NEW));
    let (_, check) = drain(&mut s).remove(0);
    let answer = d.answer_check(&check);
    assert!(exchange(&mut s, T0 + Duration::from_millis(100), addr(OLD), &answer).is_silent());
    let now = T0 + Duration::from_secs(61);
    let reg = s.lookup(T0 + Duration::from_secs(1), &d.name).unwrap();
    assert_eq!((reg.addr, reg.moving_to), (addr(OLD), None));
    let out = advance(&mut s, now);
    assert_eq!(out.len(), 1, "no more checks, no move: {out:?}");
    assert_eq!(out[0].1, addr(NEW));
    assert_eq!(
        Answer::read(&out[0].2).code(),
        Some(code::NAME_TAKEN),
        "the REGISTER from the new address is refused"
    );
    assert_eq!(s.stats().checks_kept_old, 1);
    assert_eq!(s.stats().moved, 0);
}

#[test]
fn wrong_identity_at_old_address_moves_the_name_at_once() {
    let (mut s, mut d) = moved_setup();
    register(&mut d, &mut s, T0, addr(NEW));
    let (_, check) = drain(&mut s).remove(0);
    let stranger = Device::new("box", 9);
    let answer = stranger.answer_check(&check);
    exchange(&mut s, T0 + Duration::from_millis(100), addr(OLD), &answer);
    let now = T0 + Duration::from_millis(100);
    assert_eq!(s.lookup(now, &d.name).unwrap().addr, addr(NEW));
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(NEW));
}

#[test]
fn right_appliance_answering_from_its_new_address_moves_the_name() {
    let (mut s, mut d) = moved_setup();
    register(&mut d, &mut s, T0, addr(NEW));
    let (_, check) = drain(&mut s).remove(0);
    let answer = d.answer_check(&check);
    exchange(&mut s, T0 + Duration::from_millis(100), addr(NEW), &answer);
    assert_eq!(
        s.lookup(T0 + Duration::from_millis(100), &d.name)
            .unwrap()
            .addr,
        addr(NEW)
    );
}

#[test]
fn answer_with_another_transaction_id_is_ignored() {
    let (mut s, mut d) = moved_setup();
    register(&mut d, &mut s, T0, addr(NEW));
    let (_, check) = drain(&mut s).remove(0);
    // A wrong-identity answer would move the name at once, but only with the CHECK's txid.
    let m = Message::parse(&check).unwrap();
    let c = registration::Check::parse(&m).unwrap();
    let mut buf = [0u8; 1200];
    let other_txid = [0x55; 12];
    let n = registration::encode_check_answer(
        &mut buf,
        &other_txid,
        &c.name,
        &Device::new("box", 9).key,
        &c.challenge,
    )
    .unwrap();
    exchange(&mut s, T0, addr(OLD), &buf[..n]);
    let reg = s.lookup(T0, &d.name).unwrap();
    assert_eq!((reg.addr, reg.moving_to), (addr(OLD), Some(addr(NEW))));
}

#[test]
fn retransmitted_register_does_not_start_a_second_check() {
    let (mut s, mut d) = moved_setup();
    register(&mut d, &mut s, T0, addr(NEW));
    for i in 1..10 {
        let txid = d.txid();
        // The REGISTER the check is for, again (its signed timestamp is the last one).
        let bytes = d.register_bytes(d.last_timestamp, &txid);
        assert!(exchange(
            &mut s,
            T0 + Duration::from_millis(100 * i),
            addr(NEW),
            &bytes
        )
        .is_silent());
    }
    assert_eq!(s.stats().checks_started, 1);
    assert_eq!(drain(&mut s).len(), 1, "one CHECK, not ten");
}

#[test]
fn keepalive_from_the_new_address_gets_no_answer_while_checking() {
    let (mut s, mut d) = moved_setup();
    let token_for_new = {
        // A token the appliance once got at the new address (it lived there before).
        let mut s2 = server(ServerConfig::default());
        let mut d2 = Device::new("box", 1);
        register(&mut d2, &mut s2, T0, addr(NEW));
        d2.token
    };
    register(&mut d, &mut s, T0, addr(NEW));
    d.token = token_for_new;
    assert!(keepalive(&mut d, &mut s, T0 + Duration::from_secs(1), addr(NEW)).is_silent());
}

#[test]
fn keepalive_from_an_unregistered_address_must_reregister() {
    let (mut s, mut d) = moved_setup();
    // The token is bound to OLD: from NEW it does not verify.
    assert_eq!(
        keepalive(&mut d, &mut s, T0, addr(NEW)).code(),
        Some(code::REREGISTER)
    );
}

#[test]
fn old_registration_expiring_during_the_check_moves_the_name() {
    let (mut s, mut d) = moved_setup();
    let start = T0 + Duration::from_secs(30);
    register(&mut d, &mut s, start, addr(NEW));
    drain(&mut s);
    advance(&mut s, T0 + Duration::from_secs(62));
    assert_eq!(
        s.lookup(T0 + Duration::from_secs(62), &d.name)
            .unwrap()
            .addr,
        addr(NEW)
    );
}

#[test]
fn checks_are_rate_limited_per_source_ip() {
    let cfg = ServerConfig {
        checks_per_ip_burst: 3,
        checks_per_ip_per_minute: 0,
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    for i in 0..10u8 {
        let mut d = Device::new(&format!("box{i}"), i + 1);
        register(&mut d, &mut s, T0, addr(&format!("192.0.2.{}:1000", i + 1)));
        // All of them move to ports of one IP.
        register(
            &mut d,
            &mut s,
            T0,
            addr(&format!("203.0.113.5:{}", 2000 + i as u16)),
        );
    }
    assert_eq!(s.stats().checks_started, 3);
    assert_eq!(s.stats().checks_rate_limited, 7);
}

#[test]
fn pending_checks_are_bounded() {
    let cfg = ServerConfig {
        max_pending_checks: 2,
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    for i in 0..5u8 {
        let mut d = Device::new(&format!("box{i}"), i + 1);
        register(&mut d, &mut s, T0, addr(&format!("192.0.2.{}:1000", i + 1)));
        register(
            &mut d,
            &mut s,
            T0,
            addr(&format!("198.51.100.{}:2000", i + 1)),
        );
    }
    assert_eq!(s.occupancy(), (5, 2));
    assert_eq!(s.stats().checks_full, 3);
}

#[test]
fn the_name_moves_the_moment_the_old_registration_expires() {
    let (mut s, mut d) = moved_setup();
    // Registered at T0 (lives until T0 + 60 s); the move starts at T0 + 30 s. CHECKs go out at
    // +0.5, 1.5, 3.5, 7.5, 15.5, 23.5 and the next would be at T0 + 61.5 s.
    let start = T0 + Duration::from_secs(30);
    assert!(register(&mut d, &mut s, start, addr(NEW)).is_silent());
    drain(&mut s);
    let sent = advance(&mut s, T0 + Duration::from_secs(60));
    let to_new: Vec<_> = sent
        .iter()
        .filter(|(_, dst, _)| *dst == addr(NEW))
        .collect();
    assert_eq!(to_new.len(), 1, "answered once the old registration ended");
    assert_eq!(
        to_new[0].0,
        T0 + Duration::from_secs(60),
        "at once, not at the next CHECK"
    );
    let m = Message::parse(&to_new[0].2).unwrap();
    assert_eq!(
        registration::Registered::parse(&m).unwrap().mapped,
        addr(NEW)
    );
    assert_eq!(
        s.lookup(T0 + Duration::from_secs(60), &d.name)
            .unwrap()
            .addr,
        addr(NEW)
    );
}

#[test]
fn a_keepalive_from_the_old_address_keeps_the_check_to_its_window() {
    let (mut s, mut d) = moved_setup();
    let start = T0 + Duration::from_secs(30);
    let mut old_device = Device::new("box", 1);
    old_device.token = d.token;
    register(&mut d, &mut s, start, addr(NEW));
    drain(&mut s);
    // The old address is alive for keep-alives (not for CHECKs): its registration now ends at
    // T0 + 110 s, after the check window (T0 + 90 s).
    let t = T0 + Duration::from_secs(50);
    advance(&mut s, t);
    assert!(matches!(
        keepalive(&mut old_device, &mut s, t, addr(OLD)),
        Answer::KeptAlive(_)
    ));
    advance(&mut s, T0 + Duration::from_secs(89));
    assert_eq!(
        s.lookup(T0 + Duration::from_secs(89), &d.name)
            .unwrap()
            .addr,
        addr(OLD)
    );
    advance(&mut s, T0 + Duration::from_secs(90));
    assert_eq!(
        s.lookup(T0 + Duration::from_secs(90), &d.name)
            .unwrap()
            .addr,
        addr(NEW),
        "the window closed"
    );
}

#[test]
fn retransmissions_after_a_kept_check_start_no_new_check() {
    let (mut s, mut d) = moved_setup();
    // The REGISTER from the new address, by hand so that it can be sent again as it was.
    let first = d.txid();
    let ts = d.stamp(T0.0);
    let a = exchange(&mut s, T0, addr(NEW), &d.register_bytes(ts, &first));
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED));
    d.absorb(&a);
    let txid = d.txid();
    let ts = d.stamp(T0.0);
    let req = d.register_bytes(ts, &txid);
    assert!(exchange(&mut s, T0, addr(NEW), &req).is_silent());
    let (_, check) = drain(&mut s).remove(0);
    // Retransmissions while the check runs join it.
    assert!(exchange(&mut s, T0 + Duration::from_millis(50), addr(NEW), &req).is_silent());
    // The appliance answers from the old address: the name stays, the REGISTER is refused.
    let answer = d.answer_check(&check);
    let t = T0 + Duration::from_millis(100);
    assert!(exchange(&mut s, t, addr(OLD), &answer).is_silent());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(NEW));
    let refusal = Answer::read(&out[0].1);
    assert_eq!(refusal.code(), Some(code::NAME_TAKEN));
    assert_eq!(
        Message::parse(&out[0].1).unwrap().transaction_id(),
        &txid,
        "answers the REGISTER"
    );
    // Its retransmissions (same transaction id, same bytes) get the same answer, and start
    // nothing: not eight checks in five seconds, none.
    for i in 1..=8u64 {
        let at = t + Duration::from_millis(600 * i);
        let a = exchange(&mut s, at, addr(NEW), &req);
        assert_eq!(a.code(), Some(code::NAME_TAKEN), "{a:?}");
        assert!(drain(&mut s).is_empty(), "no CHECK");
    }
    assert_eq!(s.stats().checks_started, 1);
    assert_eq!(s.lookup(t, &d.name).unwrap().addr, addr(OLD));
}

#[test]
fn a_register_whose_check_is_not_started_gets_no_answer_and_is_retried() {
    let cfg = ServerConfig {
        checks_per_ip_burst: 1,
        checks_per_ip_per_minute: 6,
        ..ServerConfig::default()
    };
    let mut s = server(cfg);
    let mut a = Device::new("box-a", 1);
    let mut b = Device::new("box-b", 2);
    register(&mut a, &mut s, T0, addr("192.0.2.1:1000"));
    register(&mut b, &mut s, T0, addr("192.0.2.2:1000"));
    // Both move to one IP: the first check takes its budget, the second is not started.
    assert!(register(&mut a, &mut s, T0, addr("203.0.113.5:2000")).is_silent());
    let first = b.txid();
    let ts = b.stamp(T0.0);
    let r = exchange(
        &mut s,
        T0,
        addr("203.0.113.5:2001"),
        &b.register_bytes(ts, &first),
    );
    b.absorb(&r);
    let txid = b.txid();
    let ts = b.stamp(T0.0);
    let req = b.register_bytes(ts, &txid);
    assert!(exchange(&mut s, T0, addr("203.0.113.5:2001"), &req).is_silent());
    assert_eq!(s.stats().checks_started, 1);
    assert_eq!(s.stats().checks_rate_limited, 1);
    // A retransmission before the budget refills (one check per 10 s): still nothing.
    let t = T0 + Duration::from_secs(5);
    assert!(exchange(&mut s, t, addr("203.0.113.5:2001"), &req).is_silent());
    assert_eq!(s.stats().checks_started, 1);
    // After it: the same REGISTER starts its check (it was not taken as a replay).
    let t = T0 + Duration::from_secs(11);
    assert!(exchange(&mut s, t, addr("203.0.113.5:2001"), &req).is_silent());
    assert_eq!(s.stats().checks_started, 2);
    assert_eq!(
        s.lookup(t, &b.name).unwrap().moving_to,
        Some(addr("203.0.113.5:2001"))
    );
}

#[test]
fn keepalive_from_the_new_address_with_the_old_token_gets_441_while_checking() {
    let (mut s, mut d) = moved_setup();
    let old_token = d.token;
    assert!(register(&mut d, &mut s, T0, addr(NEW)).is_silent());
    d.token = old_token;
    // The token is bound to the old address: refused like any token from the wrong address.
    assert_eq!(
        keepalive(&mut d, &mut s, T0 + Duration::from_secs(1), addr(NEW)).code(),
        Some(code::REREGISTER)
    );
}
