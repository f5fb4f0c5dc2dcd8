//! Reload: `Plugins::reinit` runs each `init` again with its new config into a new chain, and
//! `Runner::replace_plugins` swaps it in for calls from then on. A failing re-init, another
//! library or another list length leaves the running chain alone.

use flock_plugins::*;
use flock_testkit::plugins::*;
use std::sync::Arc;
use std::time::Duration;

const LIB: &str = "flock-plugin-allowlist";

fn list(dir: &TempDir, file: &str, names: &[&str]) -> String {
    let path = dir.0.join(file);
    let body: String = names
        .iter()
        .map(|n| format!("{n} {}\n", "AB".repeat(32)))
        .collect();
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_reinit_chain_swapped_into_the_runner_applies_to_new_calls() {
    let dir = TempDir::new("reload");
    let lib = flock_plugins::testing::plugin_lib(LIB);
    let first = Arc::new(Plugins::load(&[spec(&lib, &list(&dir, "a", &["oven"]))]).unwrap());
    let r = Runner::new(first.clone(), 1, 8, Duration::from_secs(1)).unwrap();
    let key = [0xab; 32];
    assert_eq!(
        block_on(r.admit_registration(registration("oven", key))),
        Verdict::Allow
    );
    assert_eq!(
        block_on(r.admit_registration(registration("fridge", key))),
        Verdict::Deny
    );

    let second = first
        .reinit(&[spec(&lib, &list(&dir, "b", &["fridge"]))])
        .expect("same library, new config");
    let old = r
        .replace_plugins(Arc::new(second))
        .unwrap_or_else(|_| panic!("same hooks"));
    assert!(Arc::ptr_eq(&old, &first));
    assert_eq!(
        block_on(r.admit_registration(registration("oven", key))),
        Verdict::Deny,
        "the new list"
    );
    assert_eq!(
        block_on(r.admit_registration(registration("fridge", key))),
        Verdict::Allow
    );
    // The old chain still answers by itself (a call that started before the swap).
    assert_eq!(
        first.admit_registration(&registration("oven", key)),
        Verdict::Allow
    );
}

#[test]
fn a_failing_or_changed_reinit_leaves_the_running_chain() {
    let dir = TempDir::new("reload-bad");
    let lib = flock_plugins::testing::plugin_lib(LIB);
    let good = list(&dir, "a", &["oven"]);
    let p = Plugins::load(&[spec(&lib, &good)]).unwrap();

    let err = p
        .reinit(&[spec(&lib, "/nonexistent/list")])
        .err()
        .expect("init fails")
        .to_string();
    assert!(err.contains("/nonexistent/list"), "{err}");
    let err = p
        .reinit(&[spec(&lib, &good), spec(&lib, &good)])
        .err()
        .expect("longer list")
        .to_string();
    assert!(err.contains("2 plugins configured, 1 loaded"), "{err}");
    let other = flock_plugins::testing::plugin_lib("flock-plugin-login-ratelimit");
    let err = p
        .reinit(&[spec(&other, "per_ip=1/min")])
        .err()
        .expect("another library")
        .to_string();
    assert!(err.contains("is loaded at this place"), "{err}");
    assert_eq!(
        p.admit_registration(&registration("oven", [0xab; 32])),
        Verdict::Allow,
        "still the first config"
    );

    // A runner refuses a chain with other hooks (none vs some): the threads were sized for it.
    let r = Runner::new(Arc::new(p), 1, 8, Duration::from_secs(1)).unwrap();
    assert!(r
        .replace_plugins(Arc::new(Plugins::load(&[]).unwrap()))
        .is_err());
    assert_eq!(r.plugins().names(), ["allowlist"]);
}
