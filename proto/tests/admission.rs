//! Admission and audit for an operator's policy, in simulated time: a first registration (or a
//! key change) waits for the policy's verdict and is answered when it comes; verdicts are cached;
//! keep-alives never ask; audit events report registrations, moves and expiry; bounds hold.

use flock_proto::server::{PolicyConfig, PolicyEvent, ServerConfig};
use flock_proto::testing::{Answer, Device};
use flock_proto::wire::registration::code;
use flock_testkit::hand_driven::*;
use std::time::Duration;

fn config(admission: bool, audit: bool) -> ServerConfig {
    ServerConfig {
        policy: PolicyConfig {
            admission,
            audit,
            max_admissions: 2,
            ..PolicyConfig::default()
        },
        ..ServerConfig::default()
    }
}

fn events(s: &mut Host) -> Vec<PolicyEvent> {
    s.policy()
}

#[test]
fn first_registration_waits_for_the_verdict_then_is_answered() {
    let mut s = server(config(true, false));
    let src = addr("192.0.2.1:4000");
    let mut d = Device::new("box", 1);
    assert!(
        register(&mut d, &mut s, T0, src).is_silent(),
        "no answer before the verdict"
    );
    // A retransmission does not ask twice.
    assert!(register(&mut d, &mut s, T0 + Duration::from_millis(500), src).is_silent());
    let asked = events(&mut s);
    assert_eq!(
        asked,
        [PolicyEvent::Admit {
            name: d.name,
            fingerprint: d.fingerprint(),
            addr: src,
            key_change: false
        }]
    );
    assert!(s.lookup(T0, &d.name).is_none());

    s.admission(
        T0 + Duration::from_millis(700),
        &d.name,
        &d.fingerprint(),
        true,
    );
    let sent = drain(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, src);
    let a = Answer::read(&sent[0].1);
    assert!(matches!(a, Answer::Registered(_)), "{a:?}");
    d.absorb(&a);
    assert_eq!(s.lookup(T0, &d.name).unwrap().addr, src);
    // Keep-alives and re-registrations of the same identity never ask.
    assert!(matches!(
        keepalive(&mut d, &mut s, T0, src),
        Answer::KeptAlive(_)
    ));
    assert!(matches!(
        register(&mut d, &mut s, T0, src),
        Answer::Registered(_)
    ));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.stats().admissions_asked, 1);
}

#[test]
fn a_denied_identity_gets_442_now_and_from_the_cache() {
    let mut s = server(config(true, false));
    let src = addr("192.0.2.1:4000");
    let mut d = Device::new("box", 1);
    assert!(register(&mut d, &mut s, T0, src).is_silent());
    assert_eq!(events(&mut s).len(), 1);
    s.admission(T0, &d.name, &d.fingerprint(), false);
    let sent = drain(&mut s);
    assert_eq!(Answer::read(&sent[0].1).code(), Some(code::NOT_ADMITTED));
    // Within the verdict's lifetime: refused at once, without asking.
    assert_eq!(
        register(&mut d, &mut s, T0 + Duration::from_secs(1), src).code(),
        Some(code::NOT_ADMITTED)
    );
    assert!(events(&mut s)
        .iter()
        .all(|e| !matches!(e, PolicyEvent::Admit { .. })));
    // After it, the policy is asked again.
    assert!(register(&mut d, &mut s, T0 + Duration::from_secs(61), src).is_silent());
    assert_eq!(events(&mut s).len(), 1);
    // A verdict for another identity answers nobody.
    let other = Device::new("box", 2);
    s.admission(T0, &d.name, &other.fingerprint(), true);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_key_change_is_asked_and_may_take_the_name() {
    let mut s = server(config(true, false));
    let (a_src, b_src) = (addr("192.0.2.1:4000"), addr("192.0.2.2:4000"));
    let mut a = Device::new("box", 1);
    register(&mut a, &mut s, T0, a_src);
    s.admission(T0, &a.name, &a.fingerprint(), true);
    drain(&mut s);
    events(&mut s);
    let mut b = Device::new("box", 2);
    assert!(register(&mut b, &mut s, T0, b_src).is_silent());
    assert_eq!(
        events(&mut s),
        [PolicyEvent::Admit {
            name: b.name,
            fingerprint: b.fingerprint(),
            addr: b_src,
            key_change: true
        }]
    );
    s.admission(T0, &b.name, &b.fingerprint(), false);
    assert_eq!(
        Answer::read(&drain(&mut s)[0].1).code(),
        Some(code::NAME_TAKEN)
    );
    assert_eq!(s.lookup(T0, &a.name).unwrap().addr, a_src);

    let mut c = Device::new("box", 3);
    assert!(register(&mut c, &mut s, T0, b_src).is_silent());
    s.admission(T0, &c.name, &c.fingerprint(), true);
    assert!(matches!(
        Answer::read(&drain(&mut s)[0].1),
        Answer::Registered(_)
    ));
    assert_eq!(
        s.lookup(T0, &c.name).unwrap().fingerprint_prefix,
        c.fingerprint().prefix()
    );
}

#[test]
fn without_admission_nothing_is_asked_and_keys_stay_first_come() {
    let mut s = server(config(false, false));
    let mut a = Device::new("box", 1);
    assert!(matches!(
        register(&mut a, &mut s, T0, addr("192.0.2.1:1")),
        Answer::Registered(_)
    ));
    let mut b = Device::new("box", 2);
    assert_eq!(
        register(&mut b, &mut s, T0, addr("192.0.2.2:1")).code(),
        Some(code::NAME_TAKEN)
    );
    assert!(events(&mut s).is_empty());
}

#[test]
fn waiting_admissions_are_bounded() {
    let mut s = server(config(true, false));
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let mut d = Device::new(name, i as u8 + 1);
        assert!(register(&mut d, &mut s, T0, addr(&format!("192.0.2.{}:1", i + 1))).is_silent());
    }
    assert_eq!(events(&mut s).len(), 2);
    assert_eq!(s.stats().admissions_full, 1);
    assert_eq!(s.admission_occupancy().0, 2);
}

#[test]
fn audit_reports_registration_move_and_expiry() {
    let cfg = ServerConfig {
        check_window: Duration::from_secs(5),
        ..config(false, true)
    };
    let mut s = server(cfg);
    let (old, new) = (addr("192.0.2.1:4000"), addr("192.0.2.9:5000"));
    let mut d = Device::new("box", 1);
    register(&mut d, &mut s, T0, old);
    assert_eq!(
        events(&mut s),
        [PolicyEvent::Registered {
            name: d.name,
            fingerprint: d.fingerprint(),
            addr: old
        }]
    );
    // Moves when the old address stays silent through the check window.
    d.nonce = None;
    assert!(register(&mut d, &mut s, T0, new).is_silent());
    advance(&mut s, T0 + Duration::from_secs(6));
    let moved = events(&mut s);
    assert!(
        moved.contains(&PolicyEvent::AddressChanged {
            name: d.name,
            fingerprint: d.fingerprint(),
            old,
            new
        }),
        "{moved:?}"
    );
    // Nothing keeps it alive: it expires and the sweep reports it.
    advance(&mut s, T0 + Duration::from_secs(80));
    let gone = events(&mut s);
    assert!(
        gone.iter().any(|e| matches!(e, PolicyEvent::Expired { fingerprint_prefix, addr, .. } if *fingerprint_prefix == d.fingerprint().prefix() && *addr == new)),
        "{gone:?}"
    );
}
