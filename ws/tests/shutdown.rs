//! Shutdown closes open websockets with 1001 "going away" and stops accepting.

use flock_proto::login::Command;
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn shutdown_says_going_away() {
    let (gw, mut cores) = start(1, |_| {});
    let addr = gw.local_addr();
    let mut ws = Browser::connect(addr).await;
    let (session, _sink) = open_with_personas(&mut ws, &mut cores, "box").await;
    let idle = Browser::connect(addr).await;

    let t = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || gw.shutdown());
    assert_eq!(ws.closed().await, Closed::new(1001, "going away"));
    cores.expect(session, Command::Close).await;
    drop(idle);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("bounded")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
