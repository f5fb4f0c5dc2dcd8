//! A restarted server (same data directory) takes appliances back from their tokens, without
//! asking them to register again.
use flock_appliance::Event;
use flock_tests::{appliance, free_udp_port, wait_event, Flockd, TempDir};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_are_back_within_one_keepalive_interval() {
    let udp = format!("127.0.0.1:{}", free_udp_port());
    let args = ["--udp", udp.as_str(), "--keepalive-interval", "300ms"];
    let server = Flockd::start_in(TempDir::new("restart"), &args);
    let mut a = appliance(&server, "survivor", 1);
    wait_event(&mut a, Duration::from_secs(5), "registration", |e| matches!(e, Event::Registered { .. })).await;
    let dir = server.into_data_dir();
    let _server = Flockd::start_in(dir, &args);
    // The next answer is a keep-alive: the token issued before the restart is still good.
    let e = wait_event(&mut a, Duration::from_secs(10), "an answer after the restart", |e| {
        matches!(e, Event::KeptAlive { .. } | Event::TokenRefused | Event::Registered { .. })
    })
    .await;
    assert!(matches!(e, Event::KeptAlive { .. }), "expected a keep-alive, got {e:?}");
    a.shutdown().await;
}
