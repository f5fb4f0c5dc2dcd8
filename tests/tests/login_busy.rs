//! Log-ins faster than an appliance answers (a burst of 8 answers, then one per second) fail at
//! once with the typed error `appliance-busy` (close 1013), against a real flockd and an SDK
//! appliance: not after a retransmission, and not as the server's own `busy`.
mod ws_client;

use flock_appliance::Event;
use flock_tests::{appliance, wait_event, Flockd};
use std::time::{Duration, Instant};
use ws_client::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_ins_past_the_answer_rate_fail_fast_with_appliance_busy() {
    let server = Flockd::start(&[]);
    let ws = server.ws.unwrap();
    let mut h = appliance(&server, "busy-box", 1);
    wait_event(&mut h, WAIT, "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    // Eight browsers get the persona list (one answer each: the burst).
    let mut held = vec![];
    for _ in 0..8 {
        let mut b = Browser::connect(ws).await;
        b.open("busy-box").await;
        b.expect("personas").await;
        held.push(b);
    }
    // The ninth, at once: the appliance answers 508 and the browser is told so right away.
    let started = Instant::now();
    let mut b = Browser::connect(ws).await;
    b.open("busy-box").await;
    let closed = b.expect_error("appliance-busy").await;
    assert_eq!(closed.code, 1013, "try again later");
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "failed fast, before the 500 ms retransmission: {:?}",
        started.elapsed()
    );
    // A second later the appliance answers again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut b = Browser::connect(ws).await;
    b.open("busy-box").await;
    b.expect("personas").await;
}
