//! Appliances behind a lossy, duplicating, reordering link (a seeded UDP proxy on loopback):
//! they register and keep alive at 10 %, 20 % and 30 % loss each way, and full browser log-ins
//! (websocket straight to flockd, UDP between flockd and the appliance through the proxy)
//! complete at 10 % and 20 %. Success rates are printed (`--nocapture`).
mod ws_client;

use flock_appliance::{ApplianceConfig, ApplianceHandle, Event};
use flock_tests::lossy_proxy::{Impairment, LossyProxy};
use flock_tests::{Flockd, TempDir};
use serde_json::json;
use std::time::Duration;
use ws_client::*;

/// flockd with shortened timers (docs/CONFIG.md).
fn server(dir: &TempDir) -> Flockd {
    let toml = r#"
[timers]
entry_lifetime = "8s"
keepalive_interval = "300ms"
rto_initial = "200ms"
rto_max = "1s"
[login]
give_up_after = "10s"
session_lifetime = "60s"
request_validity = "10s"
"#;
    let file = dir.0.join("flockd.toml");
    std::fs::write(&file, toml).unwrap();
    Flockd::start(&["--config", file.to_str().unwrap()])
}

/// An SDK appliance whose server address is the proxy.
fn proxied(server: &Flockd, proxy: &LossyProxy, name: &str, seed: u8) -> ApplianceHandle {
    let mut cfg = ApplianceConfig::new(name.parse().unwrap(), proxy.addr(), server.flock_public_key);
    cfg.rto_initial = Duration::from_millis(200);
    cfg.rto_max = Duration::from_secs(1);
    cfg.give_up_after = Duration::from_secs(8);
    cfg.retry_pause = Duration::from_millis(300);
    cfg.retry_pause_max = Duration::from_secs(2);
    cfg.signal_give_up_after = Duration::from_secs(12);
    cfg.session_timeout = Duration::from_secs(30);
    flock_appliance::spawn(cfg, flock_proto::testing::keypair(seed), "127.0.0.1:0".parse().unwrap()).expect("spawn appliance")
}

const APPLIANCES: usize = 5;
const KEEPALIVES: usize = 5;

/// Every appliance registers, then gets `KEEPALIVES` keep-alives answered, within a bound.
async fn register_and_keep_alive(loss: f64, seed: u64) {
    let dir = TempDir::new("lossy-reg");
    let server = server(&dir);
    let proxy = LossyProxy::start(server.udp, Impairment::lossy(loss, seed));
    let mut tasks = vec![];
    for i in 0..APPLIANCES {
        let mut h = proxied(&server, &proxy, &format!("lossy-{i}"), i as u8 + 1);
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let (mut registered, mut kept, mut other) = (false, 0usize, vec![]);
            while kept < KEEPALIVES {
                match tokio::time::timeout_at(deadline, h.next_event()).await {
                    Ok(Some(Event::Registered { .. })) => registered = true,
                    Ok(Some(Event::KeptAlive { .. })) if registered => kept += 1,
                    Ok(Some(e)) => other.push(e),
                    Ok(None) | Err(_) => break,
                }
            }
            h.shutdown().await;
            (registered, kept, other)
        }));
    }
    let mut ok = 0;
    let mut report = vec![];
    for (i, t) in tasks.into_iter().enumerate() {
        let (registered, kept, other) = t.await.unwrap();
        if registered && kept >= KEEPALIVES {
            ok += 1;
        }
        report.push(format!("lossy-{i}: registered={registered} keep-alives={kept} other events={other:?}"));
    }
    println!(
        "registration at {:.0} % loss: {ok}/{APPLIANCES} appliances registered and kept alive {KEEPALIVES}× (proxy: {})",
        loss * 100.0,
        proxy.stats.summary()
    );
    assert_eq!(ok, APPLIANCES, "at {:.0} % loss:\n{}", loss * 100.0, report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_survives_10_percent_loss() {
    register_and_keep_alive(0.10, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_survives_20_percent_loss() {
    register_and_keep_alive(0.20, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_survives_30_percent_loss() {
    register_and_keep_alive(0.30, 30).await;
}

const ATTEMPTS: usize = 10;

/// One full log-in by a browser; Err says where it stopped.
async fn one_login(gateway: std::net::SocketAddr, name: String) -> Result<(), String> {
    let mut b = Browser::connect(gateway).await;
    b.open(&name).await;
    let v = b.recv().await;
    if v["type"] != "personas" {
        return Err(format!("instead of personas: {v}"));
    }
    b.login("alice", "wonderland").await;
    for want in ["accepted", "offer", "candidate", "end-of-candidates"] {
        let v = b.recv().await;
        if v["type"] != want {
            return Err(format!("instead of {want}: {v}"));
        }
        if want == "offer" && v["sdp"] != offer().as_str() {
            return Err("offer garbled".into());
        }
    }
    b.send(json!({"type": "answer", "sdp": "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\na=x-answer\r\n".repeat(30)})).await;
    b.send(json!({"type": "candidate", "candidate": candidate(60001).candidate, "sdpMid": "0"})).await;
    b.send(json!({"type": "end-of-candidates"})).await;
    let closed = b.closed().await;
    if closed != (Closed { code: 1000, reason: "done".into() }) {
        return Err(format!("closed with {closed:?}"));
    }
    Ok(())
}

/// `ATTEMPTS` log-ins at once, each to its own appliance behind the proxy; returns successes.
async fn logins(loss: f64, seed: u64) -> usize {
    let dir = TempDir::new("lossy-login");
    let server = server(&dir);
    let proxy = LossyProxy::start(server.udp, Impairment::lossy(loss, seed));
    let mut apps = vec![];
    for i in 0..ATTEMPTS {
        let mut h = proxied(&server, &proxy, &format!("login-{i}"), i as u8 + 1);
        flock_tests::wait_event(&mut h, Duration::from_secs(10), "registration", |e| matches!(e, Event::Registered { .. })).await;
        apps.push(run_appliance(h, LIST, Behaviour::Signal { offer: offer(), candidates: vec![candidate(50001)] }));
    }
    let gateway = server.ws.unwrap();
    let tasks: Vec<_> = (0..ATTEMPTS)
        .map(|i| tokio::spawn(tokio::time::timeout(Duration::from_secs(25), one_login(gateway, format!("login-{i}")))))
        .collect();
    let mut ok = 0;
    let mut failures = vec![];
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(Ok(()))) => ok += 1,
            Ok(Ok(Err(e))) => failures.push(format!("login-{i}: {e}")),
            Ok(Err(_)) => failures.push(format!("login-{i}: over 25 s")),
            Err(e) => failures.push(format!("login-{i}: {e}")), // a bounded wait in ws_client expired
        }
    }
    println!(
        "log-in at {:.0} % loss: {ok}/{ATTEMPTS} succeeded (proxy: {}){}",
        loss * 100.0,
        proxy.stats.summary(),
        if failures.is_empty() { String::new() } else { format!("\n  {}", failures.join("\n  ")) }
    );
    drop(apps);
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_completes_at_10_percent_loss() {
    assert_eq!(logins(0.10, 110).await, ATTEMPTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_completes_at_20_percent_loss() {
    assert_eq!(logins(0.20, 120).await, ATTEMPTS);
}
