//! The whole browser log-in over IPv6: the websocket on [::1], the appliance on [::1] over UDP.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{wait_event, Flockd};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_over_ipv6() {
    let server = Flockd::start(&["--udp", "[::1]:0", "--ws", "[::1]:0"]);
    let ws = server.ws.unwrap();
    assert!(ws.is_ipv6() && server.udp.is_ipv6(), "{ws} {}", server.udp);
    let cfg = flock_appliance::ApplianceConfig::new(
        "v6-box".parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    let mut h = flock_appliance::spawn(
        cfg,
        flock_proto::testing::keypair(6),
        "[::1]:0".parse().unwrap(),
    )
    .unwrap();
    wait_event(&mut h, WAIT, "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let mut app = run_appliance(
        h,
        LIST,
        Behaviour::Signal {
            offer: offer(),
            candidates: vec![candidate(7)],
        },
    );

    let mut b = Browser::connect(ws).await;
    b.open("v6-box").await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    b.expect("offer").await;
    b.expect("candidate").await;
    b.expect("end-of-candidates").await;
    b.send(json!({"type": "answer", "sdp": "v=0\r\n"})).await;
    b.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(b.closed().await.code, 1000);
    next_matching(&mut app, "the session's end", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;
}
