//! The `login-ratelimit` example: token buckets per client IP (IPv6 /64) and per appliance,
//! shared by every websocket, with a retry-after; bounded tables.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

const LIB: &str = "flock-plugin-login-ratelimit";

fn retry(v: Verdict) -> Duration {
    match v {
        Verdict::RetryAfter(d) => d,
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_ip_across_websockets() {
    let p = load(LIB, "per_ip=60/min,burst=3,appliance_burst=100");
    // Each websocket has its own source port: same bucket.
    for port in 1..=3 {
        assert_eq!(
            p.authorize_login(&login("oven", "alice", &format!("192.0.2.1:{port}"))),
            Verdict::Allow
        );
    }
    let wait = retry(p.authorize_login(&login("oven", "alice", "192.0.2.1:4")));
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert_eq!(
        p.authorize_login(&login("oven", "alice", "192.0.2.2:4")),
        Verdict::Allow,
        "another IP"
    );
    // IPv6: one /64 is one client.
    for host in 1..=3 {
        assert_eq!(
            p.authorize_login(&login("oven", "bob", &format!("[2001:db8:0:1::{host}]:1"))),
            Verdict::Allow
        );
    }
    retry(p.authorize_login(&login("oven", "bob", "[2001:db8:0:1::99]:1")));
    assert_eq!(
        p.authorize_login(&login("oven", "bob", "[2001:db8:0:2::1]:1")),
        Verdict::Allow
    );
    // A dual-stack socket's IPv4-mapped addresses are separate IPv4 clients.
    for host in 1..=3 {
        assert_eq!(
            p.authorize_login(&login(
                "oven",
                "carol",
                &format!("[::ffff:198.51.100.{host}]:1")
            )),
            Verdict::Allow
        );
    }
}

#[test]
fn per_appliance_across_clients() {
    let p = load(
        LIB,
        "per_ip=1000/min,burst=100,per_appliance=6/min,appliance_burst=2",
    );
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.2:1")),
        Verdict::Allow
    );
    let wait = retry(p.authorize_login(&login("oven", "a", "192.0.2.3:1")));
    assert!(
        wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert_eq!(
        p.authorize_login(&login("fridge", "a", "192.0.2.3:1")),
        Verdict::Allow
    );
}

#[test]
fn refills_over_time() {
    let p = load(LIB, "per_ip=5/s,burst=1");
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.1:1")),
        Verdict::Allow
    );
    retry(p.authorize_login(&login("oven", "a", "192.0.2.1:1")));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.1:1")),
        Verdict::Allow
    );
}

#[test]
fn tables_are_bounded() {
    let p = load(LIB, "per_ip=2/s,burst=1,max_entries=2");
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.2:1")),
        Verdict::Allow
    );
    // Full of buckets still refilling: a new client waits.
    retry(p.authorize_login(&login("oven", "a", "192.0.2.3:1")));
    // Refilled buckets are forgotten (the table is swept at most once a second).
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        p.authorize_login(&login("oven", "a", "192.0.2.3:1")),
        Verdict::Allow
    );
}

#[test]
fn shared_by_every_thread() {
    let p = Arc::new(load(LIB, "per_ip=1/h,burst=5"));
    let r = Arc::new(Runner::new(p, 2, 64, Duration::from_secs(2)).unwrap());
    let allowed: usize = (0..4)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                (0..5)
                    .filter(|i| {
                        block_on(r.authorize_login(login(
                            "oven",
                            "a",
                            &format!("192.0.2.1:{}", t * 10 + i),
                        )))
                        .is_allow()
                    })
                    .count()
            })
        })
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(allowed, 5);
    assert_eq!(r.stats().denied, 15);
}

#[test]
fn bad_config_stops_the_start() {
    let lib = flock_plugins::testing::plugin_lib(LIB);
    for (config, want) in [
        ("per_ip=5/fortnight", "`5/fortnight`: expected a rate"),
        ("burst=0", "burst: a number ≥ 1"),
        ("speed=3", "unknown setting `speed`"),
        ("per_ip", "expected key=value"),
    ] {
        let err = Plugins::load(&[spec(&lib, config)])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(want), "{config}: {err}");
    }
}
