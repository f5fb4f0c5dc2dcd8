//! A whole log-in, JSON both ways, ending in close 1000 "done" and `Close` to the core; wrong
//! credentials, then right ones, in one session.

use flock_proto::login::{Candidate, Command, Event};
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;

#[tokio::test]
async fn full_flow_ends_in_close_1000() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, sink) = open_with_personas(&mut ws, &mut cores, "my-box").await;

    ws.login("alice", "wonderland").await;
    cores.expect_login(session, "alice", "wonderland").await;
    sink.try_send(Event::Accepted).unwrap();
    assert_eq!(ws.recv().await, json!({"type":"accepted"}));
    sink.try_send(Event::Offer {
        sdp: "v=0\r\n".into(),
    })
    .unwrap();
    assert_eq!(ws.recv().await, json!({"type":"offer","sdp":"v=0\r\n"}));
    let c = Candidate {
        candidate: "candidate:1 1 udp 1 192.0.2.7 5 typ host".into(),
        mid: Some("0".into()),
    };
    sink.try_send(Event::Candidate(c.clone())).unwrap();
    assert_eq!(
        ws.recv().await,
        json!({"type":"candidate","candidate":c.candidate,"sdpMid":"0"})
    );
    sink.try_send(Event::Candidate(Candidate {
        mid: None,
        ..c.clone()
    }))
    .unwrap();
    assert_eq!(
        ws.recv().await,
        json!({"type":"candidate","candidate":c.candidate,"sdpMid":null})
    );

    ws.send(json!({"type":"answer","sdp":"v=0 answer"})).await;
    cores
        .expect(
            session,
            Command::Answer {
                sdp: "v=0 answer".into(),
            },
        )
        .await;
    ws.send(json!({"type":"candidate","candidate":"candidate:2","sdpMid":"0"}))
        .await;
    cores
        .expect(
            session,
            Command::Candidate(Candidate {
                candidate: "candidate:2".into(),
                mid: Some("0".into()),
            }),
        )
        .await;
    ws.send(json!({"type":"candidate","candidate":"candidate:3"}))
        .await;
    cores
        .expect(
            session,
            Command::Candidate(Candidate {
                candidate: "candidate:3".into(),
                mid: None,
            }),
        )
        .await;
    sink.try_send(Event::EndOfCandidates).unwrap();
    assert_eq!(ws.recv().await, json!({"type":"end-of-candidates"}));
    ws.send(json!({"type":"end-of-candidates"})).await;
    cores.expect(session, Command::EndOfCandidates).await;

    sink.try_send(Event::Done).unwrap();
    assert_eq!(ws.closed().await, Closed::new(1000, "done"));
    cores.expect(session, Command::Close).await;
    let stats = gw.stats();
    assert_eq!(
        (stats.sessions, stats.sessions_done, stats.session_errors),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn credentials_required_then_login() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send(json!({"type":"open","appliance":"  My-Box "}))
        .await;
    let (_, session, sink) = cores.expect_open("my-box").await;
    sink.try_send(Event::Personas(
        flock_proto::login::Personas::CredentialsRequired,
    ))
    .unwrap();
    assert_eq!(ws.recv().await, json!({"type":"credentials-required"}));
    ws.login("bob", "x").await;
    cores.expect_login(session, "bob", "x").await;
}

#[tokio::test]
async fn the_largest_persona_list_and_a_large_offer_get_through() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    ws.send(json!({"type":"open","appliance":"box"})).await;
    let (_, _session, sink) = cores.expect_open("box").await;
    let long = "é".repeat(126); // 252 bytes; ids up to 255
    let list: Vec<_> = (0..256)
        .map(|i| json!({"id": format!("{i}{long}"), "name": long, "photo": "x".repeat(500)}))
        .collect();
    let bytes = serde_json::to_vec(&list).unwrap();
    sink.try_send(Event::Personas(flock_proto::login::Personas::List(
        bytes.into(),
    )))
    .unwrap();
    let got = ws.recv().await;
    assert_eq!(got["personas"].as_array().unwrap().len(), 256);
    assert_eq!(
        got["personas"][255],
        json!({"id": format!("255{long}"), "name": long})
    );
    sink.try_send(Event::Offer {
        sdp: "s".repeat(200_000),
    })
    .unwrap();
    assert_eq!(ws.recv().await["sdp"].as_str().unwrap().len(), 200_000);
}

#[tokio::test]
async fn rejected_then_accepted() {
    let (gw, mut cores) = start(1, |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, sink) = open_with_personas(&mut ws, &mut cores, "my-box").await;

    ws.login("alice", "wrong").await;
    cores.expect_login(session, "alice", "wrong").await;
    sink.try_send(Event::Rejected { attempts_left: 2 }).unwrap();
    assert_eq!(
        ws.recv().await,
        json!({"type":"rejected","attempts_left":2})
    );

    ws.login("alice", "wonderland").await;
    cores.expect_login(session, "alice", "wonderland").await;
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
    ws.login("alice", "a").await;
    cores.expect_login(session, "alice", "a").await;
    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:b"}))
        .await;
    assert_eq!(
        ws.expect_error("malformed").await,
        Closed::new(1008, "malformed")
    );
    cores.expect(session, Command::Close).await;
}
