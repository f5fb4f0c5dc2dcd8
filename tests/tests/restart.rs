//! A restarted server (same data directory) takes appliances back from their tokens, without
//! asking them to register again. Over IPv4 (`_v4`) and IPv6 (`_v6`, ::1).
use flock_appliance::Event;
use flock_tests::net::{appliance, Family, Family::V4, Family::V6};
use flock_tests::{wait_event, TempDir};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_are_back_within_one_keepalive_interval_v4() {
    appliances_are_back_within_one_keepalive_interval(V4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_are_back_within_one_keepalive_interval_v6() {
    appliances_are_back_within_one_keepalive_interval(V6).await;
}

async fn appliances_are_back_within_one_keepalive_interval(fam: Family) {
    let udp = fam.addr(fam.free_udp_port()).to_string();
    let args = ["--udp", udp.as_str(), "--keepalive-interval", "300ms"];
    let server = fam.flockd_in(TempDir::new("restart"), &args);
    let mut a = appliance(&server, "survivor", 1);
    wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let dir = server.into_data_dir();
    let _server = fam.flockd_in(dir, &args);
    let back = std::time::Instant::now();
    // The next answer is a keep-alive: the token issued before the restart is still good.
    let e = wait_event(
        &mut a,
        Duration::from_secs(10),
        "an answer after the restart",
        |e| {
            matches!(
                e,
                Event::KeptAlive { .. } | Event::TokenRefused | Event::Registered { .. }
            )
        },
    )
    .await;
    assert!(
        matches!(e, Event::KeptAlive { .. }),
        "expected a keep-alive, got {e:?}"
    );
    // How long after the restarted server was ready (the appliance retransmits its keep-alive
    // with backoff while the server is down, so this includes up to one retransmission timeout).
    println!(
        "restart ({fam:?}): kept alive {:.0} ms after the server was back",
        back.elapsed().as_secs_f64() * 1000.0
    );
    a.shutdown().await;
}
