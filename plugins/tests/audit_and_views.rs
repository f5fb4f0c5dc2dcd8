//! Requests and events reach a Rust plugin intact (addresses, fingerprints, optional fields),
//! audit events in order on their own thread, dropped and counted when their queue is full.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn read_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n || Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_field_crosses_the_abi() {
    let dir = TempDir::new("views");
    let log = dir.0.join("log");
    let r = Runner::new(
        Arc::new(Plugins::load(&[testkit(&format!("log={}", log.display()))]).unwrap()),
        2,
        16,
        Duration::from_secs(2),
    )
    .unwrap();
    let mut fp = [0u8; 32];
    fp.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8 * 7);
    let reg = Registration {
        name: "oven.kitchen".into(),
        fingerprint: fp,
        addr: addr("[2001:db8::1]:3478"),
        key_change: true,
    };
    let mut no_origin = login("oven.kitchen", "alice", "203.0.113.9:55000");
    no_origin.origin = None;
    let with_origin = login("oven.kitchen", "bob", "[::ffff:10.0.0.1]:1");
    let query = personas("oven.kitchen", &["alice", "bob"]);
    let events = [
        AuditEvent::Registered {
            name: "a".into(),
            fingerprint: fp,
            addr: addr("192.0.2.1:9"),
        },
        AuditEvent::Expired {
            name: "b".into(),
            fingerprint: fp,
            addr: addr("[fe80::1]:9"),
        },
        AuditEvent::AddressChanged {
            name: "c".into(),
            fingerprint: fp,
            old: addr("192.0.2.1:9"),
            new: addr("192.0.2.2:10"),
        },
        AuditEvent::LoginOk {
            appliance: "d".into(),
            persona: "alice".into(),
            client: addr("192.0.2.3:11"),
        },
        AuditEvent::LoginFailed {
            appliance: "e".into(),
            persona: "".into(),
            client: addr("192.0.2.4:12"),
            reason: "bad-credentials".into(),
        },
    ];

    assert_eq!(block_on(r.admit_registration(reg.clone())), Verdict::Allow);
    assert_eq!(
        block_on(r.authorize_login(no_origin.clone())),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.authorize_login(with_origin.clone())),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.filter_personas(query.clone())),
        Some(vec![true, true])
    );
    for e in &events {
        r.audit(e.clone());
    }
    let mut want = vec![
        format!("admit {reg:?}"),
        format!("login {no_origin:?}"),
        format!("login {with_origin:?}"),
        format!("filter {query:?}"),
    ];
    want.extend(events.iter().map(|e| format!("audit {e:?}")));
    assert_eq!(read_lines(&log, want.len()), want);
}

#[test]
fn a_slow_audit_drops_events_not_calls() {
    let p = Arc::new(Plugins::load(&[testkit("")]).unwrap());
    let r = Runner::new(p, 1, 2, Duration::from_millis(200)).unwrap();
    let slow = AuditEvent::Registered {
        name: "sleep-300".into(),
        fingerprint: [0; 32],
        addr: addr("192.0.2.1:1"),
    };
    for _ in 0..10 {
        r.audit(slow.clone());
    }
    assert!(r.stats().audit_dropped >= 7, "{:?}", r.stats());
    // Hooks have their own threads: unaffected.
    assert_eq!(
        block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
        Verdict::Allow
    );
}
