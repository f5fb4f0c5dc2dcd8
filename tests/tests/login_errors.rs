//! Every typed error a browser can get from a real flockd, with shortened log-in timers: unknown
//! appliance, appliance unreachable, bad credentials after the attempt limit, denied by policy,
//! an appliance that goes silent after accepting, malformed and oversize frames — and none of
//! them harms another session running beside it. Log-ins faster than an appliance answers (a burst of 8 answers, then one per second) fail at
//! once with the typed error `appliance-busy` (close 1013), against a real flockd and an SDK
//! appliance: not after a retransmission, and not as the server's own `busy`.

use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{appliance, wait_until_registered, Flockd, TempDir};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// flockd with log-in give-up shortened to 1 s.
fn server() -> (Flockd, TempDir) {
    let dir = TempDir::new("login-errors");
    let cfg = dir.0.join("flockd.toml");
    std::fs::write(&cfg, "[login]\ngive_up_after = \"1s\"\n").unwrap();
    (
        Flockd::start(&["--cores", "2", "--config", cfg.to_str().unwrap()]),
        dir,
    )
}

async fn registered(server: &Flockd, name: &str, seed: u8) -> flock_appliance::ApplianceHandle {
    let mut h = appliance(server, name, seed);
    wait_until_registered(&mut h, WAIT).await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_unreachable_denied_bad_credentials_and_silence() {
    let (server, _dir) = server();
    let ws = server.ws.unwrap();

    let mut b = Browser::connect(ws).await;
    b.open("nobody-here").await;
    assert_eq!(b.expect_error("unknown-appliance").await.code, 1008);

    let mut b = Browser::connect(ws).await;
    b.open("Not A Valid Name!").await;
    assert_eq!(b.expect_error("malformed").await.code, 1008);

    // Registered, then gone: its registration lives on, but nobody answers PERSONAS.
    let gone = registered(&server, "gone-box", 2).await;
    gone.shutdown().await;
    let mut b = Browser::connect(ws).await;
    b.open("gone-box").await;
    assert_eq!(b.expect_error("appliance-unreachable").await.code, 1011);

    let _app = run_appliance(
        registered(&server, "my-box", 1).await,
        LIST,
        Behaviour::Signal {
            offer: offer(),
            candidates: vec![],
        },
    );
    let mut b = Browser::connect(ws).await;
    b.open("my-box").await;
    b.expect("personas").await;
    b.login("deny", "whatever").await;
    assert_eq!(b.expect_error("denied").await.code, 1008);

    let mut b = Browser::connect(ws).await;
    b.open("my-box").await;
    b.expect("personas").await;
    for left in [2, 1] {
        b.login("alice", "guess").await;
        assert_eq!(b.expect("rejected").await["attempts_left"], left);
    }
    b.login("alice", "guess").await;
    assert_eq!(b.expect_error("bad-credentials").await.code, 1008);

    // Accepts, then never sends its offer: the flock gives up after 1 s with a typed timeout.
    let _mute = run_appliance(
        registered(&server, "mute-box", 3).await,
        LIST,
        Behaviour::Mute,
    );
    let mut b = Browser::connect(ws).await;
    b.open("mute-box").await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    assert_eq!(b.expect_error("timeout").await.code, 1011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_frames_end_only_their_own_session() {
    let (server, _dir) = server();
    let ws = server.ws.unwrap();
    let _app = run_appliance(
        registered(&server, "my-box", 1).await,
        LIST,
        Behaviour::offer_and_candidate(5),
    );

    // A good session, half-way through, while others misbehave.
    let mut good = Browser::connect(ws).await;
    good.open("my-box").await;
    good.expect("personas").await;

    let mut bad = Browser::connect(ws).await;
    bad.send_raw(Message::text("{not json")).await;
    assert_eq!(bad.expect_error("malformed").await.code, 1008);

    let mut binary = Browser::connect(ws).await;
    binary.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(binary.expect_error("malformed").await.code, 1008);

    let mut early = Browser::connect(ws).await;
    early.open("my-box").await;
    early.send(json!({"type": "answer", "sdp": "v=0"})).await; // before any offer
    let v = early.recv().await;
    let v = if v["type"] == "personas" {
        early.recv().await
    } else {
        v
    };
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("malformed")),
        "{v}"
    );

    let mut huge = Browser::connect(ws).await;
    huge.send_raw(Message::text(format!(
        "{{\"type\":\"open\",\"appliance\":\"{}\"}}",
        "a".repeat(100_000)
    )))
    .await;
    assert_eq!(huge.expect_error("too-large").await.code, 1009);

    good.login("alice", "wonderland").await;
    good.expect("accepted").await;
    good.expect("offer").await;
    good.expect("candidate").await;
    good.expect("end-of-candidates").await;
    good.send(json!({"type": "answer", "sdp": "v=0\r\n"})).await;
    good.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(good.closed().await.code, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_ins_past_the_answer_rate_fail_fast_with_appliance_busy() {
    let server = Flockd::start(&[]);
    let ws = server.ws.unwrap();
    let mut h = appliance(&server, "busy-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    // Sixteen browsers at once: the appliance answers eight (its burst) and about one more per
    // second; every other one is told at once that the appliance is busy.
    let began = Instant::now();
    let tries: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut b = Browser::connect(ws).await;
                let opened = Instant::now();
                b.open("busy-box").await;
                let v = b.recv().await;
                let took = opened.elapsed();
                let code = if v["type"] == "error" {
                    Some(b.closed().await.code)
                } else {
                    None
                };
                (v, took, code, b)
            })
        })
        .collect();
    let mut listed = 0;
    let mut busy = 0;
    let mut held = vec![];
    for t in tries {
        let (v, took, code, b) = t.await.unwrap();
        match v["type"].as_str() {
            Some("personas") => listed += 1,
            Some("error") => {
                assert_eq!(v["code"], "appliance-busy", "{v}");
                assert_eq!(code, Some(1013), "try again later");
                assert!(
                    took < Duration::from_millis(450),
                    "failed fast, before the 500 ms retransmission: {took:?}"
                );
                busy += 1;
            }
            _ => panic!("unexpected {v}"),
        }
        held.push(b);
    }
    let allowed = 8 + began.elapsed().as_secs() as usize + 1;
    assert!(
        listed >= 8 && listed <= allowed,
        "{listed} answered, at most {allowed}"
    );
    assert_eq!(listed + busy, 16);
    assert!(busy > 0, "some log-ins past the rate");
    // A second later the appliance answers again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut b = Browser::connect(ws).await;
    b.open("busy-box").await;
    b.expect("personas").await;
}
