//! A flock of three flockd processes (127.0.0.1–3) serves every browser at every server: a
//! log-in through any server reaches appliances owned by the others (LOOKUP at the owner, then
//! straight to the appliance), falls back to relaying through the owner when the appliance's
//! NAT drops strangers, reports `owner-down` quickly while the owner is away and works again
//! once it is back, and a server running another membership list is refused loudly.

use flock_appliance::{ApplianceConfig, ApplianceHandle, Event};
use flock_proto::testing::keypair;
use flock_testkit::browser::*;
use flock_tests::flock::{metric, scrape, Flock};
use flock_tests::serving::*;
use flock_tests::wait_until_registered;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Shortened timers: keep-alives every second, quick retransmissions.
const FLAGS: &[&str] = &["--keepalive-interval", "1s"];

/// An SDK appliance named `name`, configured with server `via` of the flock (it follows the
/// redirect to the owner), registered.
async fn registered(
    flock: &Flock,
    name: &str,
    via: usize,
    seed: u8,
    tweak: impl FnOnce(&mut ApplianceConfig),
) -> ApplianceHandle {
    let mut cfg = ApplianceConfig::new(
        name.parse().unwrap(),
        flock.udp()[via],
        flock.servers[0].flock_public_key,
    );
    cfg.rto_max = Duration::from_secs(1);
    cfg.give_up_after = Duration::from_secs(3);
    cfg.retry_pause = Duration::from_millis(300);
    cfg.retry_pause_max = Duration::from_secs(1);
    tweak(&mut cfg);
    let mut h = flock_appliance::spawn(cfg, keypair(seed), "127.0.0.1:0".parse().unwrap())
        .expect("spawn appliance");
    wait_until_registered(&mut h, WAIT).await;
    assert_eq!(
        h.status().server,
        flock.udp()[flock.owner(name)],
        "{name} registered at its owner"
    );
    h
}

fn serving(h: ApplianceHandle) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
    run_appliance(h, LIST, Behaviour::offer_and_candidate(50001))
}

/// A whole log-in through the gateway at `ws`; Err says where it stopped.
async fn log_in(ws: SocketAddr, name: &str) -> Result<(), String> {
    let mut b = Browser::connect(ws).await;
    b.open(name).await;
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
            return Err(format!("offer garbled: {v}"));
        }
    }
    b.send(json!({"type": "answer", "sdp": "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\na=x-answer\r\n"}))
        .await;
    b.send(json!({"type": "candidate", "candidate": candidate(60001).candidate, "sdpMid": "0"}))
        .await;
    b.send(json!({"type": "end-of-candidates"})).await;
    match b.closed().await {
        Closed { code: 1000, .. } => Ok(()),
        other => Err(format!("closed with {other:?}")),
    }
}

/// Polls server `i`'s metric `name` (published once a second) until `ok` holds.
async fn metric_reaches(flock: &Flock, i: usize, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = metric(&scrape(flock.servers[i].ws.unwrap()), name);
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "server {i}: {name} stayed at {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_logs_browsers_in_to_appliances_owned_by_the_others() {
    let flock = Flock::start(3, FLAGS);
    let mut apps = vec![];
    for owner in 0..3 {
        let name = flock.name_owned_by(owner, "flock-login");
        // Configured with the next server: it gets there through a redirect.
        let h = registered(&flock, &name, (owner + 1) % 3, owner as u8 + 1, |_| {}).await;
        apps.push((name, serving(h)));
    }
    for via in 0..3 {
        for (owner, (name, _)) in apps.iter().enumerate() {
            let ws = flock.servers[via].ws.unwrap();
            log_in(ws, name)
                .await
                .unwrap_or_else(|e| panic!("{name} (owner {owner}) through server {via}: {e}"));
        }
    }
    for (name, rx) in &mut apps {
        let mut done = 0;
        while let Ok(e) = rx.try_recv() {
            done += usize::from(matches!(e, Event::SessionDone { .. }));
        }
        assert_eq!(done, 3, "{name}: one session per serving server");
    }
    // Each server looked up the two names it does not own, and never needed the relay.
    for i in 0..3 {
        metric_reaches(
            &flock,
            i,
            "flock_peer_lookups_total{core=\"0\",direction=\"sent\"}",
            |v| v >= 2,
        )
        .await;
        metric_reaches(
            &flock,
            i,
            "flock_peer_lookups_total{core=\"0\",direction=\"answered\"}",
            |v| v >= 2,
        )
        .await;
        assert_eq!(
            metric(
                &scrape(flock.servers[i].ws.unwrap()),
                "flock_peer_relay_fallbacks_total"
            ),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_behind_a_strict_nat_is_reached_through_its_owner() {
    let flock = Flock::start(3, FLAGS);
    let name = flock.name_owned_by(1, "strict-nat");
    // It drops every datagram from an address it never sent to: only its owner gets through.
    let h = registered(&flock, &name, 1, 7, |c| c.only_known_peers = true).await;
    let mut rx = serving(h);
    log_in(flock.servers[0].ws.unwrap(), &name)
        .await
        .expect("a log-in relayed through the owner");
    next_matching(&mut rx, "the session's end", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;
    metric_reaches(&flock, 0, "flock_peer_relay_fallbacks_total", |v| v == 1).await;
    metric_reaches(
        &flock,
        1,
        "flock_peer_relayed_total{core=\"0\",direction=\"to_appliance\"}",
        |v| v > 0,
    )
    .await;
    metric_reaches(
        &flock,
        1,
        "flock_peer_relayed_total{core=\"0\",direction=\"to_peer\"}",
        |v| v > 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_down_is_reported_quickly_and_service_resumes_when_it_is_back() {
    let mut flock = Flock::start(3, FLAGS);
    let name = flock.name_owned_by(2, "owner-down");
    let h = registered(&flock, &name, 2, 9, |_| {}).await;
    let mut rx = serving(h);
    let other = flock.name_owned_by(1, "owner-up");
    let mut rx_other = serving(registered(&flock, &other, 1, 10, |_| {}).await);
    // Through server 1 while the owner is up (server 0 has never looked the name up: a cached
    // location would let it reach the appliance even with the owner away, for a few seconds).
    log_in(flock.servers[1].ws.unwrap(), &name)
        .await
        .expect("while the owner is up");

    flock.stop(2);
    let t = Instant::now();
    let mut b = Browser::connect(flock.servers[0].ws.unwrap()).await;
    b.open(&name).await;
    assert_eq!(b.expect_error("owner-down").await.code, 1011);
    let took = t.elapsed();
    eprintln!("owner-down after {took:?}");
    assert!(took < Duration::from_secs(8), "owner-down took {took:?}");
    // Nothing else broke: names owned by the servers still up work through either of them.
    log_in(flock.servers[0].ws.unwrap(), &other)
        .await
        .expect("another owner, while server 2 is down");
    log_in(flock.servers[1].ws.unwrap(), &other)
        .await
        .expect("its own name, while server 2 is down");
    next_matching(&mut rx_other, "a session", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;

    // The owner comes back with its secrets: the appliance's next keep-alive is taken again.
    flock.start_again(2, None);
    next_matching(&mut rx, "a keep-alive at the restarted owner", |e| {
        matches!(e, Event::KeptAlive { .. } | Event::Registered { .. })
    })
    .await;
    log_in(flock.servers[0].ws.unwrap(), &name)
        .await
        .expect("after the owner came back, no restart elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_membership_list_is_refused_loudly() {
    let mut flock = Flock::start(3, FLAGS);
    let name = flock.name_owned_by(2, "split");
    let h = registered(&flock, &name, 2, 11, |_| {}).await;
    let _rx = serving(h);

    // Server 2 restarts with a list that differs (server 0's websocket port): another digest.
    let mut addrs = flock.addrs();
    let spare = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    addrs[0].1 = spare;
    let other = flock.dir.0.join("other.toml");
    std::fs::write(&other, flock_tests::flock::flock_toml("flock.key", &addrs)).unwrap();
    flock.start_again(2, Some(&other));
    let ours = flock_tests::field(
        &flock.servers[0].wait_for_log("flockd ready", WAIT),
        "flock_digest",
    )
    .to_string();
    let theirs = flock_tests::field(
        &flock.servers[2].wait_for_log("flockd ready", WAIT),
        "flock_digest",
    )
    .to_string();
    assert_ne!(ours, theirs);
    // Before any log-in: server 2 probed its peers at start, and both sides say so.
    let line = flock.servers[0].wait_for_log("another membership list", WAIT);
    assert!(
        line.contains("ERROR") && line.contains(&theirs) && line.contains("peer=2"),
        "{line}"
    );
    let line = flock.servers[2].wait_for_log("another membership list", WAIT);
    assert!(line.contains("ERROR") && line.contains(&ours), "{line}");

    let mut b = Browser::connect(flock.servers[0].ws.unwrap()).await;
    b.open(&name).await;
    assert_eq!(
        b.expect_error("owner-down").await.code,
        1011,
        "a split flock serves nobody across the split"
    );
    metric_reaches(&flock, 0, "flock_peer_membership_mismatch_total", |v| v > 0).await;
}
