//! A core whose queue is full: the browser gets `busy` (close 1013), at open or later.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn full_queue_at_open_is_busy() {
    let (gw, mut cores) = start(1, |_| {});
    cores.link.full[0].store(true, Ordering::SeqCst);
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send(json!({"type":"open","appliance":"box"})).await;
    assert_eq!(ws.expect_error("busy").await, Closed::new(1013, "busy"));
    // Nothing was opened, so there is nothing to close.
    cores.link.full[0].store(false, Ordering::SeqCst);
    cores.expect_none(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn full_queue_at_login_is_busy() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (_session, _sink) = open_with_personas(&mut ws, &mut cores, "box").await;
    cores.link.full[0].store(true, Ordering::SeqCst);
    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:x"}))
        .await;
    assert_eq!(ws.expect_error("busy").await, Closed::new(1013, "busy"));
    // The Close that follows meets the same full queue: best effort, the core sees the
    // closed event sink instead.
    cores.expect_none(Duration::from_millis(100)).await;
}
