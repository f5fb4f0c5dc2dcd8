//! A session's commands go to the core chosen at `open`, and `Close` follows on disconnect.

use flock_proto::login::Command;
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use serde_json::json;

#[tokio::test]
async fn commands_reach_the_owning_core_and_close_follows() {
    let (gw, mut cores) = start(3, |_| {});
    let mut sessions = Vec::new();
    for name in ["box1", "box2", "box0"] {
        let mut ws = Browser::connect(gw.local_addr()).await;
        ws.send(json!({"type":"open","appliance":name})).await;
        let (core, session, sink) = cores.expect_open(name).await;
        assert_eq!(core, (name.as_bytes()[3] - b'0') as usize);
        sessions.push((ws, core, session, sink));
    }
    let ids: Vec<u64> = sessions.iter().map(|s| s.2).collect();
    assert!(
        ids.windows(2).all(|w| w[0] != w[1]),
        "distinct session ids: {ids:?}"
    );

    // Each session's login lands on its own core.
    for (ws, core, session, sink) in &mut sessions {
        sink.try_send(flock_proto::login::Event::Personas(
            flock_proto::login::Personas::CredentialsRequired,
        ))
        .unwrap();
        assert_eq!(ws.recv().await["type"], "credentials-required");
        ws.send(json!({"type":"login","persona":"bob","credential":"pwd:x"}))
            .await;
        let (got_core, msg) = cores.next().await;
        assert_eq!((got_core, msg.session), (*core, *session));
        assert!(matches!(msg.command, Command::Login { .. }));
    }

    // Dropping the websocket (no close frame) and closing it properly both send Close.
    let (ws, core, session, _sink) = sessions.remove(0);
    drop(ws);
    let (got_core, msg) = cores.next().await;
    assert_eq!(
        (got_core, msg.session, msg.command),
        (core, session, Command::Close)
    );
    let (mut ws, core, session, _sink) = sessions.remove(0);
    ws.ws.close(None).await.unwrap();
    let (got_core, msg) = cores.next().await;
    assert_eq!(
        (got_core, msg.session, msg.command),
        (core, session, Command::Close)
    );
}
