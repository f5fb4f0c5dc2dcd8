//! With two cores, datagrams that the kernel hands to the core not owning the name are
//! forwarded to the owner and answered correctly.
use flock_appliance::Event;
use flock_tests::{appliance, field, wait_event, Flockd};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_appliance_is_served_whatever_core_receives_it() {
    let mut server = Flockd::start(&["--cores", "2", "--keepalive-interval", "300ms"]);
    let mut fleet: Vec<_> = (0..40)
        .map(|i| appliance(&server, &format!("box-{i}"), i as u8 + 1))
        .collect();
    for a in &mut fleet {
        let local = a.local_addr();
        let e = wait_event(a, Duration::from_secs(10), "registration", |e| {
            matches!(e, Event::Registered { .. })
        })
        .await;
        assert_eq!(e, Event::Registered { mapped: local });
    }
    for a in &mut fleet {
        wait_event(a, Duration::from_secs(5), "keep-alive", |e| {
            matches!(e, Event::KeptAlive { .. })
        })
        .await;
    }
    for a in fleet {
        a.shutdown().await;
    }
    assert_eq!(server.terminate(), Some(0));
    let stopped = server.wait_for_log("stopped", Duration::from_secs(1));
    let forwarded: u64 = field(&stopped, "forwarded").parse().unwrap();
    // 40 sockets spread by the kernel's reuseport hash: some land on the wrong core (all on the
    // right one would have odds of about 2^-40).
    assert!(forwarded > 0, "no datagram crossed cores: {stopped}");
}
