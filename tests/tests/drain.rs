//! SIGTERM drains a real flockd: the listener closes at once, a new `open` or `login` on a
//! socket already open gets `busy`, a log-in already past `login` finishes normally (close
//! 1000, its signalling still relayed over UDP by the cores) within `ws.drain_timeout`, one
//! still under way at the deadline is closed with 1001; flockd then exits 0 and logs how many
//! finished and how many were cut.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{appliance, field, wait_until_registered, Flockd, TempDir};
use serde_json::json;
use std::time::Duration;

fn start_with(dir: &TempDir, toml: &str) -> Flockd {
    let file = dir.0.join("flockd.toml");
    std::fs::write(&file, toml).unwrap();
    Flockd::start(&["--config", file.to_str().unwrap()])
}

async fn serving_box(server: &Flockd) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
    let mut h = appliance(server, "my-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    run_appliance(h, LIST, Behaviour::offer_and_candidate(50001))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_log_in_finish_and_refuses_new_ones() {
    let dir = TempDir::new("drain");
    let mut server = start_with(&dir, "[ws]\ndrain_timeout = \"8s\"\n");
    let ws = server.ws.unwrap();
    let mut app = serving_box(&server).await;

    let mut running = mid_signalling(server.ws.unwrap(), "my-box").await;
    let mut idle = Browser::connect(ws).await;
    let mut choosing = Browser::connect(ws).await;
    choosing.open("my-box").await;
    choosing.expect("personas").await;

    server.signal(libc::SIGTERM);
    let draining = server.wait_for_log("websocket gateway draining", WAIT);
    assert_eq!(field(&draining, "running"), "1", "{draining}");

    // No new websocket: the listener is closed.
    let refused = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{ws}/ws")),
    )
    .await
    .expect("bounded");
    assert!(
        refused.is_err(),
        "a new websocket was accepted during the drain"
    );
    // No new log-in on the sockets already open.
    idle.open("my-box").await;
    assert_eq!(idle.expect_error("busy").await.code, 1013);
    assert!(server.is_running());
    choosing.login("alice", "wonderland").await;
    assert_eq!(choosing.expect_error("busy").await.code, 1013);

    // The running log-in finishes normally; the cores still relay its signalling.
    let answer = "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\na=x-answer\r\n";
    running.send(json!({"type": "answer", "sdp": answer})).await;
    running
        .send(json!({"type": "candidate", "candidate": candidate(60001).candidate, "sdpMid": "0"}))
        .await;
    running.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(
        running.closed().await,
        Closed {
            code: 1000,
            reason: "done".into()
        }
    );
    let e = next_matching(&mut app, "the answer", |e| {
        matches!(e, Event::RemoteAnswer { .. })
    })
    .await;
    assert!(matches!(e, Event::RemoteAnswer { sdp, .. } if sdp == answer));
    next_matching(&mut app, "the session's end", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;

    assert_eq!(server.terminate(), Some(0));
    let line = server.wait_for_log("websocket gateway drained", Duration::from_secs(1));
    assert_eq!(
        (
            field(&line, "finished"),
            field(&line, "done"),
            field(&line, "cut")
        ),
        ("1", "1", "0"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_in_still_running_at_the_deadline_is_cut_with_going_away() {
    let dir = TempDir::new("drain-cut");
    let mut server = start_with(&dir, "[ws]\ndrain_timeout = \"1s\"\n");
    let _app = serving_box(&server).await;
    let mut stuck = mid_signalling(server.ws.unwrap(), "my-box").await;

    let t = std::time::Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(
        stuck.closed().await,
        Closed {
            code: 1001,
            reason: "going away".into()
        }
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "cut before the drain timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(server.terminate(), Some(0));
    let line = server.wait_for_log("websocket gateway drained", Duration::from_secs(1));
    assert_eq!(
        (
            field(&line, "running"),
            field(&line, "finished"),
            field(&line, "cut")
        ),
        ("1", "0", "1"),
        "{line}"
    );
}
