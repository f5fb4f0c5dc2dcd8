//! Every failure the core reports reaches the browser as its typed error and close code; so
//! do the gateway's own: a bad persona list, a dropped session. A core whose queue is full: the
//! browser gets `busy` (close 1013), at open or later.

use flock_proto::login::{Command, Event, Failure, Personas};
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn each_failure_maps_to_its_code() {
    let (gw, mut cores) = start(1, |_| {});
    let cases = [
        (Failure::UnknownAppliance, "unknown-appliance", 1008),
        (Failure::Unreachable, "appliance-unreachable", 1011),
        (Failure::BadCredentials, "bad-credentials", 1008),
        (Failure::Denied, "denied", 1008),
        (Failure::Timeout, "timeout", 1011),
        (Failure::OwnerDown, "owner-down", 1011),
        (Failure::Busy, "busy", 1013),
        (Failure::ApplianceBusy, "appliance-busy", 1013),
        (Failure::Malformed, "malformed", 1008),
    ];
    for (failure, code, close) in cases {
        let mut ws = Browser::connect(gw.local_addr()).await;
        ws.send(json!({"type":"open","appliance":"box"})).await;
        let (_, session, sink) = cores.expect_open("box").await;
        sink.try_send(Event::Failed(failure)).unwrap();
        assert_eq!(ws.expect_error(code).await, Closed::new(close, code));
        cores.expect(session, Command::Close).await;
    }
    assert_eq!(gw.stats().session_errors, 9);
}

#[tokio::test]
async fn a_bad_persona_list_is_malformed() {
    let (gw, mut cores) = start(1, |_| {});
    for list in [&b"not json"[..], br#"[{"id":"a"}]"#] {
        let mut ws = Browser::connect(gw.local_addr()).await;
        ws.send(json!({"type":"open","appliance":"box"})).await;
        let (_, session, sink) = cores.expect_open("box").await;
        sink.try_send(Event::Personas(Personas::List(Arc::from(list))))
            .unwrap();
        let msg = ws.recv().await;
        assert_eq!(msg["code"], "malformed");
        assert!(
            msg["message"].as_str().unwrap().contains("persona list"),
            "{msg}"
        );
        assert_eq!(ws.closed().await.code, 1008);
        cores.expect(session, Command::Close).await;
    }
}

#[tokio::test]
async fn a_session_the_core_dropped_is_busy() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send(json!({"type":"open","appliance":"box"})).await;
    let (_, session, sink) = cores.expect_open("box").await;
    drop(sink);
    assert_eq!(ws.expect_error("busy").await, Closed::new(1013, "busy"));
    cores.expect(session, Command::Close).await;
}

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
