//! A hook that overruns its budget is answered `Deny` at the deadline (filters: `None`), the
//! timeout is counted, the late result is discarded and the runner keeps working; a full queue
//! denies at once.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn runner(threads: usize, queue: usize, budget_ms: u64) -> Runner {
    let plugins = Arc::new(Plugins::load(&[testkit("")]).unwrap());
    Runner::new(plugins, threads, queue, Duration::from_millis(budget_ms)).unwrap()
}

#[test]
fn overrun_denies_at_the_deadline_and_is_counted() {
    let r = runner(2, 16, 150);
    let t = Instant::now();
    assert_eq!(
        block_on(r.authorize_login(login("app", "sleep-1000", "192.0.2.1:1"))),
        Verdict::Deny
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(800),
        "{took:?}"
    );
    // The other thread still answers while one is stuck in the plugin.
    assert_eq!(
        block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.filter_personas(personas("sleep-1000", &["a"]))),
        None
    );
    let (tx, rx) = mpsc::channel();
    r.admit_registration_then(registration("sleep-1000", [1; 32]), move |v| {
        tx.send(v).unwrap()
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(Verdict::Deny));

    let s = r.stats();
    assert_eq!(
        (s.calls, s.denied, s.timeouts, s.errors, s.queue_full),
        (4, 3, 3, 0, 0),
        "{s:?}"
    );
    // The late results arrive and are dropped: nothing changes, and every thread works again.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(r.stats().denied, 3);
    for _ in 0..4 {
        assert_eq!(
            block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
            Verdict::Allow
        );
    }
}

#[test]
fn a_call_that_timed_out_in_the_queue_is_not_run() {
    let r = runner(1, 16, 100);
    let first = r.authorize_login(login("app", "sleep-300", "192.0.2.1:1"));
    // Queued behind the first; answered at its deadline. If it still ran after the first, the
    // single thread would be busy until 1.3 s and the last call would time out.
    let second = r.authorize_login(login("app", "sleep-1000", "192.0.2.1:1"));
    assert_eq!(block_on(first), Verdict::Deny);
    assert_eq!(block_on(second), Verdict::Deny);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        block_on(r.authorize_login(login("app", "alice", "192.0.2.1:1"))),
        Verdict::Allow
    );
    assert_eq!(r.stats().timeouts, 2);
}

#[test]
fn a_full_queue_denies_at_once() {
    let r = runner(1, 1, 2000);
    let busy = r.authorize_login(login("app", "sleep-300", "192.0.2.1:1"));
    std::thread::sleep(Duration::from_millis(50)); // the worker took it
    let queued = r.authorize_login(login("app", "alice", "192.0.2.1:1"));
    let t = Instant::now();
    assert_eq!(
        block_on(r.authorize_login(login("app", "bob", "192.0.2.1:1"))),
        Verdict::Deny
    );
    assert!(t.elapsed() < Duration::from_millis(100));
    assert_eq!(r.stats().queue_full, 1);
    assert_eq!(block_on(busy), Verdict::Allow);
    assert_eq!(block_on(queued), Verdict::Allow);
}

#[test]
fn answers_reach_tokio_and_plain_threads_alike() {
    let r = Arc::new(runner(2, 16, 1000));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let r2 = r.clone();
    let v = rt.block_on(async move {
        r2.authorize_login(login("app", "sleep-20", "192.0.2.1:1"))
            .await
    });
    assert_eq!(v, Verdict::Allow);
    // From many threads at once.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let r = r.clone();
            std::thread::spawn(move || {
                block_on(r.authorize_login(login("app", &format!("p{i}"), "192.0.2.1:1")))
            })
        })
        .collect();
    assert!(handles
        .into_iter()
        .all(|h| h.join().unwrap() == Verdict::Allow));
}
