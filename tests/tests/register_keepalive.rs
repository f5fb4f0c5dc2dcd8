//! An SDK appliance registers with a real flockd and keeps itself alive.
use flock_appliance::Event;
use flock_tests::{appliance, wait_event, Flockd};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliance_registers_then_keeps_alive() {
    let server = Flockd::start(&["--keepalive-interval", "300ms", "--entry-lifetime", "3s"]);
    let mut a = appliance(&server, "my-box", 1);
    let local = a.local_addr();
    let e = wait_event(&mut a, Duration::from_secs(5), "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::Registered { mapped: local },
        "the server reports the address it sees"
    );
    for _ in 0..3 {
        let e = wait_event(&mut a, Duration::from_secs(3), "keep-alive", |e| {
            matches!(e, Event::KeptAlive { .. })
        })
        .await;
        assert_eq!(e, Event::KeptAlive { mapped: local });
    }
    let st = a.status();
    assert!(st.state.is_registered(), "{st:?}");
    a.shutdown().await;
}
