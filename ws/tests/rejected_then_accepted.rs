//! Wrong credentials, then right ones, in one session.

use flock_proto::login::{Command, Event};
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;

#[tokio::test]
async fn rejected_then_accepted() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, sink) = open_with_personas(&mut ws, &mut cores, "my-box").await;

    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:wrong"}))
        .await;
    cores
        .expect(
            session,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:wrong".into(),
            },
        )
        .await;
    sink.try_send(Event::Rejected { attempts_left: 2 }).unwrap();
    assert_eq!(
        ws.recv().await,
        json!({"type":"rejected","attempts_left":2})
    );

    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:wonderland"}))
        .await;
    cores
        .expect(
            session,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:wonderland".into(),
            },
        )
        .await;
    sink.try_send(Event::Accepted).unwrap();
    assert_eq!(ws.recv().await, json!({"type":"accepted"}));
    sink.try_send(Event::Offer { sdp: "v=0".into() }).unwrap();
    assert_eq!(ws.recv().await, json!({"type":"offer","sdp":"v=0"}));
}

#[tokio::test]
async fn a_second_login_while_one_is_pending_is_malformed() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = open_with_personas(&mut ws, &mut cores, "my-box").await;
    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:a"}))
        .await;
    cores
        .expect(
            session,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:a".into(),
            },
        )
        .await;
    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:b"}))
        .await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
    cores.expect(session, Command::Close).await;
}
