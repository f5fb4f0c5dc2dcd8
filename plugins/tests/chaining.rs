//! Several plugins: every one must allow; the first deny wins; the longest retry-after wins;
//! persona filters are ANDed; error codes deny and are counted.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::time::Duration;

#[test]
fn all_must_allow() {
    let p = Plugins::load(&[
        testkit("deny=evil"),
        testkit("retry=bob:3000"),
        testkit("retry=bob:5000,deny=worse"),
    ])
    .unwrap();
    assert_eq!(p.names(), ["testkit", "testkit", "testkit"]);
    assert_eq!(
        p.authorize_login(&login("app", "alice", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.authorize_login(&login("app", "bob", "192.0.2.1:1")),
        Verdict::RetryAfter(Duration::from_secs(5))
    );
    assert_eq!(
        p.authorize_login(&login("evil", "alice", "192.0.2.1:1")),
        Verdict::Deny
    );
    // A deny after a retry-after still denies.
    assert_eq!(
        p.authorize_login(&login("worse", "bob", "192.0.2.1:1")),
        Verdict::Deny
    );
    assert_eq!(
        p.admit_registration(&registration("evil", [0; 32])),
        Verdict::Deny
    );
    assert_eq!(
        p.admit_registration(&registration("good", [0; 32])),
        Verdict::Allow
    );
}

#[test]
fn filters_are_anded() {
    let p = Plugins::load(&[testkit("hide=a"), testkit("hide=c")]).unwrap();
    assert_eq!(
        p.filter_personas(&personas("app", &["a", "b", "c"])),
        Some(vec![false, true, false])
    );
    assert_eq!(p.filter_personas(&personas("app", &[])), Some(vec![]));
}

#[test]
fn error_codes_deny_and_are_counted() {
    let dir = TempDir::new("errors");
    let p = Plugins::load(&[
        testkit(""),
        spec(broken_plugin(&dir, &["-DHOOK_ERRORS"]), ""),
    ])
    .unwrap();
    assert_eq!(
        p.admit_registration(&registration("good", [0; 32])),
        Verdict::Deny
    );
    assert_eq!(
        p.authorize_login(&login("app", "alice", "192.0.2.1:1")),
        Verdict::Deny
    );
    assert_eq!(p.filter_personas(&personas("app", &["a"])), None);
    assert_eq!(p.errors(), 3);
}
