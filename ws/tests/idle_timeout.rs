//! A silent browser fails with `timeout`; so does a log-in that outlives `session_timeout`.

use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use futures_util::SinkExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn idle_websocket_times_out() {
    let (gw, mut cores) = start(1, |c| c.idle_timeout = Duration::from_millis(300));
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = open_with_personas(&mut ws, &mut cores, "box").await;
    let t = Instant::now();
    assert_eq!(
        ws.expect_error("timeout").await,
        Closed::new(1011, "timeout")
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    cores
        .expect(session, flock_proto::login::Command::Close)
        .await;
}

#[tokio::test]
async fn pings_keep_it_alive_but_not_past_the_session_limit() {
    let (gw, _cores) = start(1, |c| {
        c.idle_timeout = Duration::from_millis(300);
        c.session_timeout = Duration::from_millis(900);
    });
    let mut ws = Browser::connect(gw.local_addr()).await;
    let t = Instant::now();
    // Ping every 100 ms; the server answers pongs, which `recv` skips.
    let pinger = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if ws.ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                break;
            }
            if t.elapsed() > Duration::from_millis(600) {
                break;
            }
        }
    };
    pinger.await;
    assert_eq!(
        ws.expect_error("timeout").await,
        Closed::new(1011, "timeout")
    );
    assert!(
        t.elapsed() >= Duration::from_millis(850),
        "{:?}",
        t.elapsed()
    );
}
