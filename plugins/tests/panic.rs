//! A Rust plugin that panics: the SDK catches it at the boundary, the host denies and counts
//! an error, and the process (and the runner) carry on.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_panic_denies_and_the_process_lives_on() {
    let p = Plugins::load(&[testkit("")]).unwrap();
    assert_eq!(
        p.admit_registration(&registration("panic", [0; 32])),
        Verdict::Deny
    );
    assert_eq!(
        p.authorize_login(&login("app", "panic", "192.0.2.1:1")),
        Verdict::Deny
    );
    assert_eq!(p.filter_personas(&personas("panic", &["a", "b"])), None);
    p.audit(&AuditEvent::Registered {
        name: "panic".into(),
        fingerprint: [0; 32],
        addr: addr("192.0.2.1:1"),
    });
    assert_eq!(p.errors(), 3, "audit panics are swallowed, not counted");
    assert_eq!(
        p.authorize_login(&login("app", "alice", "192.0.2.1:1")),
        Verdict::Allow
    );
}

#[test]
fn through_the_runner() {
    let p = Arc::new(Plugins::load(&[testkit("")]).unwrap());
    let r = Runner::new(p, 1, 8, Duration::from_secs(2)).unwrap();
    assert_eq!(
        block_on(r.authorize_login(login("app", "panic", "192.0.2.1:1"))),
        Verdict::Deny
    );
    assert_eq!(
        block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
        Verdict::Allow
    );
    let s = r.stats();
    assert_eq!((s.calls, s.denied, s.errors, s.timeouts), (2, 1, 1, 0));
}
