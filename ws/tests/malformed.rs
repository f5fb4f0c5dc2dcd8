//! Whatever breaks the protocol ends that session with `malformed` (close 1008); other
//! sessions on the same gateway carry on.
//!
//! A message over `max_message` ends the session with `too-large` and close 1009; the next
//! session works.

use flock_proto::login::{Command, Event};
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn expect_malformed(gw: &flock_ws::GatewayHandle, first: Message) {
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send_raw(first).await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
}

#[tokio::test]
async fn bad_messages_are_malformed_and_others_carry_on() {
    let (gw, mut cores) = start(1, |_| {});
    // A session that stays open across the bad ones.
    let mut good = Browser::connect(gw.local_addr()).await;
    let (session, sink) = open_with_personas(&mut good, &mut cores, "box").await;

    for bad in [
        Message::text("not json"),
        Message::text(r#"{"type":"open","appliance":"box"} trailing"#),
        Message::text(r#"["open"]"#),
        Message::text(r#"{"type":"hello"}"#),
        Message::text(r#"{"type":"open"}"#),
        Message::text(r#"{"type":"open","appliance":"no spaces inside"}"#),
        Message::text(r#"{"type":"open","appliance":""}"#),
        Message::text(r#"{"type":"login","persona":"a","credential":"pwd:x"}"#),
        Message::text(r#"{"type":"answer","sdp":"v=0"}"#),
        Message::text(r#"{"type":"end-of-candidates"}"#),
        Message::binary(&b"\x00\x01"[..]),
    ] {
        expect_malformed(&gw, bad).await;
    }
    cores
        .expect_none(std::time::Duration::from_millis(100))
        .await;

    // Out of order after open: an answer before the offer.
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (s2, _sink2) = open_with_personas(&mut ws, &mut cores, "box").await;
    ws.send(json!({"type":"answer","sdp":"v=0"})).await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
    cores.expect(s2, Command::Close).await;

    // A second open on the same websocket.
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (s3, _sink3) = open_with_personas(&mut ws, &mut cores, "box").await;
    ws.send(json!({"type":"open","appliance":"box"})).await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
    cores.expect(s3, Command::Close).await;

    // The first session still works.
    good.login("alice", "x").await;
    cores.expect_login(session, "alice", "x").await;
    sink.try_send(Event::Accepted).unwrap();
    assert_eq!(good.recv().await, json!({"type":"accepted"}));
}

#[tokio::test]
async fn a_binary_frame_mid_session_is_malformed() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = open_with_personas(&mut ws, &mut cores, "box").await;
    ws.send_raw(Message::binary(&b"{}"[..])).await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
    cores.expect(session, Command::Close).await;
}

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
