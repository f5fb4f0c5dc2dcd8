//! No plugins (the default): everything is allowed, every persona shown, and the runner
//! answers on the caller's thread at once.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn none_allows_all() {
    let p = Plugins::none();
    assert!(p.is_empty() && p.names().is_empty());
    assert_eq!(
        p.admit_registration(&registration("any", [0; 32])),
        Verdict::Allow
    );
    assert_eq!(
        p.authorize_login(&login("any", "one", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.filter_personas(&personas("any", &["a", "b"])),
        Some(vec![true, true])
    );
    p.audit(&AuditEvent::Expired {
        name: "any".into(),
        fingerprint: [0; 32],
        addr: addr("192.0.2.1:1"),
    });
    assert_eq!(Plugins::load(&[]).unwrap().names(), Vec::<&str>::new());
}

#[test]
fn the_runner_answers_inline() {
    let r = Runner::new(Arc::new(Plugins::none()), 4, 16, Duration::from_millis(1)).unwrap();
    let me = std::thread::current().id();
    let mut answered = None;
    let (tx, rx) = std::sync::mpsc::channel();
    r.admit_registration_then(registration("any", [0; 32]), move |v| {
        tx.send((v, std::thread::current().id())).unwrap()
    });
    if let Ok(a) = rx.try_recv() {
        answered = Some(a);
    }
    assert_eq!(
        answered,
        Some((Verdict::Allow, me)),
        "answered before returning, on this thread"
    );
    assert_eq!(
        block_on(r.authorize_login(login("any", "one", "192.0.2.1:1"))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.filter_personas(personas("any", &["a"]))),
        Some(vec![true])
    );
    r.audit(AuditEvent::Expired {
        name: "any".into(),
        fingerprint: [0; 32],
        addr: addr("192.0.2.1:1"),
    });
    let s = r.stats();
    assert_eq!(
        (s.calls, s.denied, s.timeouts, s.audit_dropped),
        (3, 0, 0, 0)
    );
}
