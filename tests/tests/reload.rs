//! SIGHUP reloads a real flockd's plugin settings without losing state: with the log-in rate
//! limit at a generous rate, a rewritten config with a strict one plus SIGHUP brings
//! `rate-limited` back, while the appliance registered before keeps its registration and its
//! keep-alives; a config change that needs a restart is named in a warning; a failing
//! re-init keeps the previous chain; without `--config` there is nothing to reload.

use flock_appliance::Event;
use flock_plugins::testing::plugin_lib;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{field, wait_until_registered, Flockd, TempDir};
use std::path::Path;
use std::time::Duration;

fn write_config(file: &Path, limits: &str, rate: &str) {
    let lib = plugin_lib("flock-plugin-login-ratelimit");
    let toml = format!(
        "[limits]\n{limits}\n[timers]\nentry_lifetime = \"3s\"\nkeepalive_interval = \"300ms\"\n\
         [plugins]\nbudget = \"300ms\"\n[[plugins.load]]\npath = {:?}\nconfig = {rate:?}\n",
        lib.display().to_string()
    );
    std::fs::write(file, toml).unwrap();
}

/// One log-in attempt with a wrong password on a new websocket: `rejected`, or the error code.
async fn attempt(server: &Flockd) -> String {
    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("my-box").await;
    b.expect("personas").await;
    b.login("alice", "guess").await;
    let v = b.recv().await;
    if v["type"] == "rejected" {
        return "rejected".into();
    }
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(b.closed().await.code, 1013, "{v}");
    v["code"].as_str().unwrap().to_string()
}

/// Skips the events queued so far, then waits for a fresh keep-alive.
async fn fresh_keepalive(app: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) {
    while app.try_recv().is_ok() {}
    next_matching(app, "a keep-alive after the reload", |e| {
        matches!(e, Event::KeptAlive { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_stricter_rate_limit_and_keeps_registrations() {
    let dir = TempDir::new("reload");
    let file = dir.0.join("flockd.toml");
    write_config(&file, "", "per_ip=600/min,burst=100");
    let mut server = Flockd::start(&["--config", file.to_str().unwrap()]);
    // Log-ins back to back: more than an appliance answers by default (8, then one a second).
    let mut cfg = flock_appliance::ApplianceConfig::new(
        "my-box".parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    cfg.login_answer_burst = 64;
    let mut h = flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    wait_until_registered(&mut h, WAIT).await;
    let mut app = run_appliance(h, LIST, Behaviour::Mute);
    for _ in 0..3 {
        assert_eq!(attempt(&server).await, "rejected", "a generous rate");
    }

    // A strict rate, and a [limits] change that only a restart applies.
    write_config(&file, "max_registrations = 1000", "per_ip=1/min,burst=1");
    server.signal(libc::SIGHUP);
    let done = server.wait_for_log("SIGHUP: config reloaded", WAIT);
    assert_eq!(field(&done, "plugins"), "re-initialized", "{done}");
    let warning = server.wait_for_log("only apply at a restart", Duration::from_secs(1));
    assert!(
        warning.contains("[limits]") && !warning.contains("[timers]"),
        "{warning}"
    );

    // No state lost: the appliance is still registered and its keep-alives still work.
    fresh_keepalive(&mut app).await;
    assert_eq!(
        attempt(&server).await,
        "rejected",
        "the new bucket's one token"
    );
    assert_eq!(attempt(&server).await, "rate-limited");

    // A failing re-init keeps the previous (strict) chain: the server never runs without policy.
    write_config(&file, "max_registrations = 1000", "per_ip=whenever");
    server.signal(libc::SIGHUP);
    server.wait_for_log("plugin re-init failed", WAIT);
    assert_eq!(attempt(&server).await, "rate-limited");
    fresh_keepalive(&mut app).await;

    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn sighup_without_a_config_file_changes_nothing() {
    let mut server = Flockd::start(&[]);
    server.signal(libc::SIGHUP);
    server.wait_for_log("nothing to reload", WAIT);
    assert!(server.is_running(), "SIGHUP must not stop flockd");
    assert_eq!(server.terminate(), Some(0));
}
