//! Socket bounds: 429 over the per-IP bound, 503 over the total; only live sockets count.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use std::time::Duration;

/// Waits until the gateway counts `n` open sockets (a closed socket is freed asynchronously).
async fn open_sockets(gw: &flock_ws::GatewayHandle, n: u64) {
    tokio::time::timeout(WAIT, async {
        while gw.stats().open_sockets != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("open sockets stayed at {}", gw.stats().open_sockets));
}

#[tokio::test]
async fn per_ip_bound_is_429() {
    let (gw, _cores) = start(1, |c| c.max_sockets_per_ip = 2);
    let addr = gw.local_addr();
    let a = Browser::connect(addr).await;
    let _b = Browser::connect(addr).await;
    assert_eq!(Browser::try_connect(addr, &[]).await.err(), Some(429));
    let (status, _, _) = http(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 429, "every socket counts");
    assert_eq!(gw.stats().refused_per_ip, 2);

    drop(a);
    open_sockets(&gw, 1).await;
    assert!(
        Browser::try_connect(addr, &[]).await.is_ok(),
        "a closed socket frees its place"
    );
}

#[tokio::test]
async fn total_bound_is_503() {
    let (gw, _cores) = start(1, |c| c.max_sockets = 1);
    let addr = gw.local_addr();
    let _a = Browser::connect(addr).await;
    assert_eq!(Browser::try_connect(addr, &[]).await.err(), Some(503));
    assert_eq!(gw.stats().refused_full, 1);
}
