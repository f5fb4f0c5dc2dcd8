//! The C example (`examples/deny_persona.c`), compiled with `cc` against the header and
//! loaded: it denies log-ins as its configured persona and hides it from persona lists.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

fn deny_persona(dir: &TempDir) -> std::path::PathBuf {
    testing::build_c_plugin(
        testing::DENY_PERSONA_C.as_ref(),
        &dir.0.join("libdeny_persona.so"),
        &[],
    )
}

#[test]
fn denies_and_hides_the_configured_persona() {
    let dir = TempDir::new("cplugin");
    let p = Plugins::load(&[spec(deny_persona(&dir), "guest")]).unwrap();
    assert_eq!(p.names(), ["deny-persona"]);
    assert_eq!(
        p.authorize_login(&login("oven", "guest", "192.0.2.1:1")),
        Verdict::Deny
    );
    assert_eq!(
        p.authorize_login(&login("oven", "guestx", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.authorize_login(&login("oven", "alice", "192.0.2.1:1")),
        Verdict::Allow
    );
    assert_eq!(
        p.filter_personas(&personas("oven", &["alice", "guest", "bob"])),
        Some(vec![true, false, true])
    );
    // NULL hooks: no opinion.
    assert_eq!(
        p.admit_registration(&registration("oven", [0; 32])),
        Verdict::Allow
    );
    assert_eq!(p.errors(), 0);
}

#[test]
fn chained_with_a_rust_plugin_through_the_runner() {
    let dir = TempDir::new("cplugin-chain");
    let p = Plugins::load(&[spec(deny_persona(&dir), "guest"), testkit("hide=alice")]).unwrap();
    let r = Runner::new(Arc::new(p), 2, 16, Duration::from_secs(1)).unwrap();
    assert_eq!(
        block_on(r.authorize_login(login("oven", "guest", "192.0.2.1:1"))),
        Verdict::Deny
    );
    assert_eq!(
        block_on(r.authorize_login(login("oven", "bob", "192.0.2.1:1"))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.filter_personas(personas("oven", &["alice", "guest", "bob"]))),
        Some(vec![false, false, true])
    );
}
