//! A message over `max_message` ends the session with `too-large` and close 1009; the next
//! session works.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn oversize_frame_is_too_large() {
    let (gw, mut cores) = start(1, |c| c.max_message = 4096);
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = open_with_personas(&mut ws, &mut cores, "box").await;
    let sdp = "a".repeat(70 * 1024);
    ws.send_raw(Message::text(
        json!({"type":"answer","sdp":sdp}).to_string(),
    ))
    .await;
    assert_eq!(
        ws.expect_error("too-large").await,
        Closed::new(1009, "too-large")
    );
    cores
        .expect(session, flock_proto::login::Command::Close)
        .await;

    // Just under the bound is fine.
    let mut ws = Browser::connect(gw.local_addr()).await;
    let name = "b".repeat(200);
    let pad = "x".repeat(3800);
    ws.send(json!({"type":"open","appliance":name,"pad":pad}))
        .await;
    cores.expect_open(&name).await;
}

#[tokio::test]
async fn default_bound_is_64_kib() {
    let (gw, _cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send_raw(Message::text("x".repeat(64 * 1024 + 1))).await;
    assert_eq!(
        ws.expect_error("too-large").await,
        Closed::new(1009, "too-large")
    );
}
