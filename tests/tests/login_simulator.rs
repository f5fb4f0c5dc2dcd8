//! Black box: flockd and the `flock-appliance` simulator as separate processes, its personas and
//! passwords from a `--personas` file; a websocket browser logs in, gets the simulator's real
//! WebRTC offer and loopback host candidate, and the simulator reports the browser's answer (which
//! its WebRTC peer refuses: this browser is no WebRTC peer), candidate and the session's end.
//! A second log-in's peer replaces the first (--max-peers) and ends at --peer-lifetime.
//! `browser_demo.rs` runs the simulator with a real browser, through to the data channel.

use flock_testkit::browser::*;
use flock_tests::simulator::Simulator;
use flock_tests::{Flockd, TempDir};
use serde_json::json;

const PERSONAS: &str = "[[persona]]\nid = \"alice\"\nname = \"Alice\"\npassword = \"wonderland\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_serves_a_browser_log_in() {
    let server = Flockd::start(&[]);
    let dir = TempDir::new("simulator");
    let personas = dir.0.join("personas.toml");
    std::fs::write(&personas, PERSONAS).unwrap();
    // One peer at a time, for 5 s: the second log-in below replaces the first one's peer.
    let extra = [
        "--bind",
        "127.0.0.1",
        "--max-peers",
        "1",
        "--peer-lifetime",
        "5",
    ];
    let mut sim = Simulator::start(&server, "sim-box", &dir.0, &personas, &extra);
    sim.wait_line("registered", WAIT);

    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("sim-box").await;
    assert_eq!(
        b.expect("personas").await["personas"],
        json!([{"id": "alice", "name": "Alice"}])
    );
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    let offer = b.expect("offer").await["sdp"].as_str().unwrap().to_string();
    assert!(
        offer.starts_with("v=0")
            && offer.contains("webrtc-datachannel")
            && offer.contains("a=fingerprint:"),
        "{offer}"
    );
    // One host candidate: the peer's own socket, on loopback since the server is.
    let cand = b.expect("candidate").await;
    let line = cand["candidate"].as_str().unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((fields[4], fields[7]), ("127.0.0.1", "host"), "{line}");
    let port: u16 = fields[5].parse().unwrap();
    assert!(port != 0, "{line}");
    b.expect("end-of-candidates").await;
    b.send(json!({"type": "answer", "sdp": "v=0\r\na=x-browser\r\n"}))
        .await;
    // A port of ours, so the peer's checks (if any) go nowhere else.
    let decoy_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let decoy = decoy_socket.local_addr().unwrap().port();
    let candidate = format!("candidate:9 1 udp 1 127.0.0.1 {decoy} typ host");
    b.send(json!({"type": "candidate", "candidate": candidate, "sdpMid": "0"}))
        .await;
    b.send(json!({"type": "end-of-candidates"})).await;
    assert_eq!(b.closed().await.code, 1000);

    let out = sim.wait_line(" done", WAIT);
    assert!(
        out.contains("remote answer") && out.contains("candidate:9"),
        "{out}"
    );
    assert!(
        out.contains("webrtc: answer not applied: bad answer sdp"),
        "{out}"
    );
    assert!(
        !out.contains("wonderland"),
        "the simulator printed a credential:\n{out}"
    );

    // A second log-in: its peer replaces the first (--max-peers 1), then ends at its lifetime.
    let mut b = Browser::connect(server.ws.unwrap()).await;
    b.open("sim-box").await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    b.expect("offer").await;
    sim.wait_line(
        "webrtc peer closed: replaced by a newer log-in (1 at most)",
        WAIT,
    );
    sim.wait_line("webrtc peer closed: lifetime over", WAIT);
}
