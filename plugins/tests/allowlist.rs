//! The `allowlist` example: only listed names with their listed key fingerprint register.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

const LIB: &str = "flock-plugin-allowlist";

#[test]
fn admits_only_listed_name_key_pairs() {
    let dir = TempDir::new("allowlist");
    let list = dir.0.join("allowlist");
    let oven = [0xab; 32];
    std::fs::write(
        &list,
        format!(
            "# name  fingerprint\noven.kitchen {}  # the oven\n\nfridge {}\n",
            "AB".repeat(32),
            "01".repeat(32)
        ),
    )
    .unwrap();
    let p = Arc::new(load(LIB, list.to_str().unwrap()));
    assert_eq!(p.names(), ["allowlist"]);
    assert_eq!(
        p.admit_registration(&registration("oven.kitchen", oven)),
        Verdict::Allow
    );
    assert_eq!(
        p.admit_registration(&registration("oven.kitchen", [0xac; 32])),
        Verdict::Deny,
        "another key"
    );
    assert_eq!(
        p.admit_registration(&registration("fridge", [1; 32])),
        Verdict::Allow
    );
    assert_eq!(
        p.admit_registration(&registration("toaster", oven)),
        Verdict::Deny,
        "unlisted"
    );
    let mut key_change = registration("fridge", oven);
    key_change.key_change = true;
    assert_eq!(p.admit_registration(&key_change), Verdict::Deny);
    // It has no opinion on log-ins.
    assert_eq!(
        p.authorize_login(&login("toaster", "alice", "192.0.2.1:1")),
        Verdict::Allow
    );

    let r = Runner::new(p, 1, 8, Duration::from_secs(1)).unwrap();
    assert_eq!(
        block_on(r.admit_registration(registration("oven.kitchen", oven))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.admit_registration(registration("toaster", oven))),
        Verdict::Deny
    );
    assert_eq!(r.stats().denied, 1);
}

#[test]
fn bad_config_stops_the_start() {
    let err = Plugins::load(&[spec(testing_lib(), "/nonexistent/list")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("init of `allowlist` failed") && err.contains("/nonexistent/list"),
        "{err}"
    );
    let dir = TempDir::new("allowlist-bad");
    let list = dir.0.join("list");
    std::fs::write(&list, "oven 00\n").unwrap();
    let err = Plugins::load(&[spec(testing_lib(), list.to_str().unwrap())])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(":1: expected `name fingerprint-hex`"), "{err}");
}

fn testing_lib() -> std::path::PathBuf {
    flock_plugins::testing::plugin_lib(LIB)
}
