//! The runner's per-hook latency histograms count every hook run, in the bucket of its
//! duration: fast calls in the low buckets, a hook that sleeps past its budget in a high one
//! (observed when it ends, though the caller was answered at the deadline).

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Index of the first bucket whose bound is at least `d`.
fn bucket_of(d: Duration) -> usize {
    LATENCY_BOUNDS
        .iter()
        .position(|b| d <= *b)
        .unwrap_or(LATENCY_BOUNDS.len())
}

#[test]
fn every_hook_run_is_timed_in_its_own_histogram() {
    let plugins = Arc::new(Plugins::load(&[testkit("")]).unwrap());
    let r = Runner::new(plugins, 2, 16, Duration::from_millis(100)).unwrap();
    for _ in 0..5 {
        assert_eq!(
            block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
            Verdict::Allow
        );
    }
    assert_eq!(
        block_on(r.authorize_login(login("app", "sleep-30", "192.0.2.1:1"))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.filter_personas(personas("app", &["a", "b"]))),
        Some(vec![true, true])
    );
    assert_eq!(
        block_on(r.admit_registration(registration("sleep-300", [1; 32]))),
        Verdict::Deny,
        "over budget"
    );
    r.audit(AuditEvent::Registered {
        name: "sleep-5".into(),
        fingerprint: [2; 32],
        addr: addr("192.0.2.7:1"),
    });

    // The overrun and the audit event end on their threads a little later: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.latency(Hook::AdmitRegistration).count() < 1 || r.latency(Hook::Audit).count() < 1 {
        assert!(
            Instant::now() < deadline,
            "{:?} {:?}",
            r.latency(Hook::AdmitRegistration),
            r.latency(Hook::Audit)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let login = r.latency(Hook::AuthorizeLogin);
    assert_eq!(login.count(), 6, "{login:?}");
    // The sleeping call is in a bucket at or above 25 ms (a loaded machine may push it higher).
    assert_eq!(
        login.buckets[bucket_of(Duration::from_millis(30))..]
            .iter()
            .sum::<u64>(),
        1,
        "{login:?}"
    );
    assert!(login.sum >= Duration::from_millis(30), "{login:?}");
    assert_eq!(r.latency(Hook::FilterPersonas).count(), 1);

    let admit = r.latency(Hook::AdmitRegistration);
    assert_eq!(admit.count(), 1);
    assert!(
        admit.sum >= Duration::from_millis(300),
        "timed to its end, past the 100 ms budget: {admit:?}"
    );
    assert_eq!(
        admit.buckets[bucket_of(Duration::from_millis(300))..]
            .iter()
            .sum::<u64>(),
        1,
        "{admit:?}"
    );

    let audit = r.latency(Hook::Audit);
    assert_eq!(audit.count(), 1);
    assert!(audit.sum >= Duration::from_millis(5), "{audit:?}");
    // Counters and histograms agree on the calls that ran.
    assert_eq!(r.stats().calls, 8);
    assert_eq!(r.stats().timeouts, 1);
}

#[test]
fn names_of_the_hooks_are_the_abi_names() {
    let names: Vec<_> = Hook::ALL.iter().map(|h| h.name()).collect();
    assert_eq!(
        names,
        [
            "admit_registration",
            "authorize_login",
            "filter_personas",
            "audit"
        ]
    );
}
