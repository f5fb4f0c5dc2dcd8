//! A browser logs in through a real flockd to a real SDK appliance over loopback: personas,
//! a wrong then a right password, the appliance's chunked offer and candidates, the browser's
//! answer and candidates, end-of-candidates both ways, and the flock's normal close.

use flock_appliance::Event;
use flock_testkit::browser::*;
use flock_tests::serving::*;
use flock_tests::{appliance, wait_until_registered, Flockd};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_and_signalling_goes_both_ways() {
    let mut server = Flockd::start(&["--cores", "2"]);
    let mut h = appliance(&server, "my-box", 1);
    wait_until_registered(&mut h, WAIT).await;
    let offer = offer();
    let mut app = run_appliance(
        h,
        LIST,
        Behaviour::Signal {
            offer: offer.clone(),
            candidates: vec![candidate(50001), candidate(50002)],
        },
    );

    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("  My-Box ").await; // normalized like the appliance's own name
    let personas = b.expect("personas").await;
    assert_eq!(
        personas["personas"],
        json!([{"id": "alice", "name": "Alice"}, {"id": "deny", "name": "Refused by policy"}])
    );
    b.login("alice", "guess").await;
    assert_eq!(b.expect("rejected").await["attempts_left"], 2);
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    assert_eq!(b.expect("offer").await["sdp"], offer.as_str());
    for port in [50001, 50002] {
        let c = b.expect("candidate").await;
        assert_eq!(
            (c["candidate"].as_str().unwrap(), &c["sdpMid"]),
            (candidate(port).candidate.as_str(), &json!("0"))
        );
    }
    b.expect("end-of-candidates").await;

    let answer = "v=0\r\no=- 9 2 IN IP4 127.0.0.1\r\na=x-answer\r\n".repeat(30);
    b.send(json!({"type": "answer", "sdp": answer})).await;
    b.send(json!({"type": "candidate", "candidate": candidate(60001).candidate, "sdpMid": "0"}))
        .await;
    b.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(
        b.closed().await,
        Closed {
            code: 1000,
            reason: "done".into()
        }
    );

    // The appliance got the answer, the candidate and end-of-candidates, in order, and finished.
    let e = next_matching(&mut app, "the answer", |e| {
        matches!(e, Event::RemoteAnswer { .. })
    })
    .await;
    assert!(matches!(e, Event::RemoteAnswer { sdp, .. } if sdp == answer));
    let e = next_matching(&mut app, "a candidate", |e| {
        matches!(e, Event::RemoteCandidate { .. })
    })
    .await;
    assert!(matches!(e, Event::RemoteCandidate { candidate: got, .. } if got == candidate(60001)));
    next_matching(&mut app, "end-of-candidates", |e| {
        matches!(e, Event::RemoteEndOfCandidates { .. })
    })
    .await;
    next_matching(&mut app, "the session's end", |e| {
        matches!(e, Event::SessionDone { .. })
    })
    .await;

    // Credentials reach the appliance and nowhere else: not in the server's log.
    server.terminate();
    let log = server.log_lines.join("\n");
    assert!(
        !log.contains("wonderland") && !log.contains("guess"),
        "credential in the log:\n{log}"
    );
}
