//! With two cores: every datagram is answered by the core owning its name. With steering (the
//! default) the kernel hands appliances' datagrams straight to that core, so none crosses cores;
//! with the flow hash (`--no-steering`) those landing on the other core are forwarded.
use flock_appliance::Event;
use flock_tests::{appliance, field, wait_event, Flockd};
use std::time::Duration;

/// Registers 40 appliances on a two-core flockd started with `extra`, waits for a keep-alive
/// from each, stops the server and returns (received, forwarded) from its stop line.
async fn serve_fleet(extra: &[&str]) -> (u64, u64) {
    let mut args = vec!["--cores", "2", "--keepalive-interval", "300ms"];
    args.extend_from_slice(extra);
    let mut server = Flockd::start(&args);
    let ready = server.wait_for_log("flockd ready", Duration::from_secs(5));
    let expected = if extra.contains(&"--no-steering") {
        "off"
    } else {
        "on"
    };
    assert_eq!(field(&ready, "steering"), expected, "{ready}");
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
    let n = |k| field(&stopped, k).parse::<u64>().unwrap();
    (n("received"), n("forwarded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steered_datagrams_reach_their_owner_without_crossing_cores() {
    let (received, forwarded) = serve_fleet(&[]).await;
    // 40 appliances × (REGISTER probe, REGISTER, ≥ 1 KEEPALIVE): all carry their core hint.
    assert!(received >= 120, "received {received}");
    assert_eq!(forwarded, 0, "a steered datagram crossed cores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_steering_datagrams_on_the_wrong_core_are_forwarded() {
    let (received, forwarded) = serve_fleet(&["--no-steering"]).await;
    assert!(received >= 120, "received {received}");
    // 40 sockets spread by the kernel's flow hash: some land on the wrong core (all on the
    // right one would have odds of about 2^-40).
    assert!(forwarded > 0, "no datagram crossed cores");
}
