//! Policy plugins loaded by a real flockd, observed through real registrations and log-ins:
//! the Rust allowlist admits only listed name/key pairs, the Rust log-in rate limit answers
//! `rate-limited`, the C example denies and hides a persona; a hook that overruns its budget or
//! panics denies while the server carries on; every start-up error stops flockd with a message.

use flock_appliance::Event;
use flock_plugins::testing::{build_c_plugin, plugin_lib, BROKEN_C, DENY_PERSONA_C};
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{appliance, wait_event, wait_until_registered, workspace_bin, Flockd, TempDir};
use std::path::Path;
use std::process::Command;

/// Writes a flockd config loading `plugins` (path, config) and returns its path.
fn config(dir: &TempDir, extra: &str, plugins: &[(&Path, &str)]) -> String {
    let mut toml = format!("{extra}\n[plugins]\nbudget = \"300ms\"\n");
    for (path, cfg) in plugins {
        toml.push_str(&format!(
            "[[plugins.load]]\npath = {:?}\nconfig = {:?}\n",
            path.display().to_string(),
            cfg
        ));
    }
    let file = dir.0.join("flockd.toml");
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

fn fingerprint_hex(seed: u8) -> String {
    let key = flock_proto::testing::keypair(seed);
    flock_proto::identity::Fingerprint::of(&flock_proto::identity::public_key(&key)).to_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_admits_only_listed_names_and_keys() {
    let dir = TempDir::new("allowlist");
    let list = dir.0.join("allow.txt");
    std::fs::write(
        &list,
        format!("# name fingerprint\nlisted-box {}\n", fingerprint_hex(1)),
    )
    .unwrap();
    let cfg = config(
        &dir,
        "",
        &[(
            &plugin_lib("flock-plugin-allowlist"),
            list.to_str().unwrap(),
        )],
    );
    let server = Flockd::start(&["--config", &cfg]);

    let mut ok = appliance(&server, "listed-box", 1);
    wait_until_registered(&mut ok, WAIT).await;
    let mut wrong_key = appliance(&server, "listed-box-2", 1);
    let e = wait_event(&mut wrong_key, WAIT, "a refusal", |e| {
        matches!(e, Event::Refused { .. } | Event::Registered { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Refused {
            code: flock_proto::wire::registration::code::NOT_ADMITTED
        }
    );
    let mut stranger = appliance(&server, "listed-box", 2);
    let e = wait_event(&mut stranger, WAIT, "a refusal", |e| {
        matches!(e, Event::Refused { .. } | Event::Registered { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Refused {
            code: flock_proto::wire::registration::code::NAME_TAKEN
        },
        "a key change the list does not allow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ratelimit_answers_rate_limited_across_websockets() {
    let dir = TempDir::new("ratelimit");
    let cfg = config(
        &dir,
        "",
        &[(
            &plugin_lib("flock-plugin-login-ratelimit"),
            "per_ip=2/min,burst=2",
        )],
    );
    let server = Flockd::start(&["--config", &cfg]);
    let mut h = appliance(&server, "my-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    for attempt in 0..3 {
        let mut b = Browser::connect(server.ws.unwrap()).await;
        b.open("my-box").await;
        b.expect("personas").await;
        b.login("alice", "guess").await;
        let v = b.recv().await;
        if attempt < 2 {
            assert_eq!(v["type"], "rejected", "attempt {attempt}: {v}");
        } else {
            assert_eq!(v["code"], "rate-limited", "{v}");
            assert!(v["retry_after_ms"].as_u64().unwrap() > 0, "{v}");
            assert_eq!(b.closed().await.code, 1013);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_plugin_denies_and_hides_a_persona() {
    let dir = TempDir::new("c-plugin");
    let lib = build_c_plugin(
        Path::new(DENY_PERSONA_C),
        &dir.0.join("libdeny_persona.so"),
        &[],
    );
    let cfg = config(&dir, "", &[(&lib, "deny")]);
    let server = Flockd::start(&["--config", &cfg]);
    let mut h = appliance(&server, "my-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);

    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("my-box").await;
    let p = b.expect("personas").await;
    assert_eq!(
        p["personas"],
        serde_json::json!([{"id": "alice", "name": "Alice"}]),
        "the denied persona is hidden"
    );
    b.login("deny", "whatever").await; // typed by hand all the same
    assert_eq!(b.expect_error("denied").await.code, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrun_and_panic_deny_and_the_server_carries_on() {
    let dir = TempDir::new("misbehave");
    let cfg = config(&dir, "", &[(&plugin_lib("flock-plugin-testkit"), "")]);
    let mut server = Flockd::start(&["--config", &cfg]);
    let mut h = appliance(&server, "my-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(
        h,
        LIST,
        Behaviour::Signal {
            offer: offer(),
            candidates: vec![],
        },
    );
    for persona in ["sleep-2000", "panic"] {
        let mut b = Browser::connect(server.ws.unwrap()).await;
        b.open("my-box").await;
        b.expect("personas").await;
        b.login(persona, "x").await;
        assert_eq!(b.expect_error("denied").await.code, 1008, "{persona}");
    }
    // Still serving: a well-behaved log-in goes through.
    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("my-box").await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    server.terminate();
    let runner = server.wait_for_log("plugin runner", std::time::Duration::from_secs(1));
    assert!(
        flock_tests::field(&runner, "timeouts")
            .parse::<u64>()
            .unwrap()
            >= 1,
        "{runner}"
    );
    assert!(
        flock_tests::field(&runner, "errors")
            .parse::<u64>()
            .unwrap()
            >= 1,
        "{runner}"
    );
}

/// flockd must refuse to start, naming the plugin and the reason.
fn refuses(plugin: &Path, cfg: &str, reason: &str) {
    let dir = TempDir::new("refuse");
    let file = config(&dir, "", &[(plugin, cfg)]);
    let out = Command::new(workspace_bin("flockd"))
        .args([
            "--config",
            &file,
            "--udp",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--no-pin",
            "--data-dir",
        ])
        .arg(dir.0.join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot load plugins")
            && err.contains(&plugin.display().to_string())
            && err.contains(reason),
        "want {reason:?} in:\n{err}"
    );
}

#[test]
fn every_start_up_error_stops_flockd_with_a_message() {
    let dir = TempDir::new("broken");
    refuses(&dir.0.join("missing.so"), "", "");
    let not_lib = dir.0.join("not-a-library.so");
    std::fs::write(&not_lib, "hello").unwrap();
    refuses(&not_lib, "", "");
    for (flag, reason) in [
        ("-DWRONG_ABI", "ABI"),
        ("-DTOO_SMALL", "small"),
        ("-DNO_SYMBOL", "flock_plugin_v1"),
        ("-DINIT_FAILS", "init"),
    ] {
        let lib = build_c_plugin(
            Path::new(BROKEN_C),
            &dir.0.join(format!("lib{}.so", &flag[2..])),
            &[flag],
        );
        refuses(&lib, "", reason);
    }
    refuses(
        &plugin_lib("flock-plugin-testkit"),
        "init=fail",
        "asked to fail",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_registrations_log_ins_and_audit_events() {
    let dir = TempDir::new("audit");
    let log = dir.0.join("hooks.log");
    let cfg = config(&dir, "[timers]\nentry_lifetime = \"2s\"\nkeepalive_interval = \"1s\"\nsweep_interval = \"200ms\"\n", &[(&plugin_lib("flock-plugin-testkit"), &format!("log={}", log.display()))]);
    let server = Flockd::start(&["--config", &cfg]);
    let mut h = appliance(&server, "audited-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("audited-box").await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    drop(_app); // the appliance stops: no more keep-alives, the registration expires

    let want = [
        "admit Registration",
        "audit Registered",
        "filter PersonaQuery",
        "login LoginAttempt",
        "audit LoginOk",
        "audit Expired",
    ];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if want.iter().all(|w| text.contains(w)) {
            assert!(
                text.contains("audited-box") && text.contains("127.0.0.1"),
                "{text}"
            );
            assert!(
                !text.contains("wonderland"),
                "a credential reached a plugin:\n{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hooks seen so far:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
