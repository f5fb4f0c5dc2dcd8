//! A live reconfigure (what flockd does on SIGHUP): new limits apply to new connections and
//! admissions at once, sockets already open stay, `listen`/`threads` keep their running value
//! and are named, and an invalid configuration changes nothing.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn new_limits_apply_to_new_sockets_and_open_ones_stay() {
    let (gw, mut cores) = start(1, |c| c.max_sockets_per_ip = 3);
    let addr = gw.local_addr();
    let mut first = Browser::connect(addr).await;
    let _second = Browser::connect(addr).await;

    let before = gw.config();
    let mut new = before.clone();
    new.max_sockets_per_ip = 1;
    new.max_message = 4096;
    new.threads += 1;
    new.listen = "127.0.0.1:1".parse().unwrap();
    let r = gw.reconfigure(new).expect("a valid configuration");
    assert_eq!(r.applied, ["ws.max_message", "ws.max_sockets_per_ip"]);
    assert_eq!(r.need_restart, ["ws.listen", "ws.threads"]);
    let live = gw.config();
    assert_eq!((live.max_sockets_per_ip, live.max_message), (1, 4096));
    assert_eq!(
        (live.listen, live.threads),
        (before.listen, before.threads),
        "kept until a restart"
    );
    assert_eq!(gw.local_addr(), addr);

    // Two sockets are open, over the new bound of one: they stay, a third is refused.
    assert_eq!(Browser::try_connect(addr, &[]).await.err(), Some(429));
    first
        .send(json!({"type": "open", "appliance": "still-here"}))
        .await;
    cores.expect_open("still-here").await;

    // The lowered message bound holds for a socket accepted after the reload.
    drop(first);
    drop(_second);
    let mut late = loop {
        match Browser::try_connect(addr, &[]).await {
            Ok(ws) => break ws,
            Err(429) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => panic!("unexpected refusal {e}"),
        }
    };
    late.send_raw(Message::text("x".repeat(5000))).await;
    assert_eq!(
        late.expect_error("too-large").await,
        Closed::new(1009, "too-large")
    );
}

#[tokio::test]
async fn an_invalid_configuration_changes_nothing() {
    let (gw, _cores) = start(1, |c| c.max_sockets_per_ip = 1);
    let before = gw.config();
    let mut bad = before.clone();
    bad.max_sockets_per_ip = 100;
    bad.max_message = 10;
    let e = gw
        .reconfigure(bad)
        .expect_err("max_message under 1024 is refused");
    assert!(e.contains("max_message"), "{e}");
    assert_eq!(gw.config().max_sockets_per_ip, 1);
    let _a = Browser::connect(gw.local_addr()).await;
    assert_eq!(
        Browser::try_connect(gw.local_addr(), &[]).await.err(),
        Some(429),
        "the old bound still holds"
    );
}
