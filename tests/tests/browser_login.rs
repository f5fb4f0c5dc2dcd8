//! The whole product in a real browser: headless Chromium loads the demo page that flockd
//! serves, logs in to an appliance (a wrong password first), and opens a WebRTC data channel to
//! a real WebRTC appliance (str0m, the SDK's `webrtc` peer driven by the test as an appliance
//! application would) that registered with flockd over UDP; the page's "hello" goes one way and
//! "echo: hello" comes back. flockd only relays the signalling; the data flows directly.
//! `browser_demo.rs` does the same with the `flock-appliance` simulator binary.

use flock_appliance::webrtc::{PeerOptions, WebRtcPeer};
use flock_appliance::{Candidate, Decision, Event};
use flock_testkit::tls::TestCa;
use flock_tests::browser::Browser;
use flock_tests::{appliance, wait_until_registered, Flockd, TempDir};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_and_opens_a_data_channel_to_the_appliance() {
    let server = Flockd::start(&[]);
    let url = format!("http://{}/", server.ws.unwrap());
    log_in_and_open_a_data_channel(&server, &url, Browser::start().await).await;
}

/// The same over https and wss: flockd serves a certificate from a CA made here, which
/// Chromium is told to accept (its key pinned); the page, `/flock.js` and the websocket all
/// go over TLS (an https page may not open a plain ws).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_does_the_same_over_https_and_wss() {
    let ca = TestCa::new();
    let files = TempDir::new("tls-browser");
    let leaf = ca.leaf(1);
    let (cert, key) = leaf.write(&files.0);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let server = Flockd::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = format!("https://localhost:{}/", server.ws.unwrap().port());
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        leaf.spki_sha256_base64
    );
    let browser = Browser::start_with_args(&[pin]).await;
    log_in_and_open_a_data_channel(&server, &url, browser).await;
}

async fn log_in_and_open_a_data_channel(server: &Flockd, url: &str, b: Browser) {
    let mut h = appliance(server, "webrtc-box", 7);
    wait_until_registered(&mut h, WAIT).await;
    h.set_personas(Some(
        br#"[{"id":"alice","name":"Alice"},{"id":"bob","name":"Bob"}]"#.to_vec(),
    ))
    .unwrap();
    h.set_authenticator(|r| {
        if (r.persona, r.credential) == ("alice", b"pwd:wonderland") {
            Decision::Accept
        } else {
            Decision::BadCredentials
        }
    })
    .unwrap();

    // The appliance's application: a WebRTC peer per accepted log-in, fed by the signalling.
    let peer: Arc<Mutex<Option<WebRtcPeer>>> = Arc::default();
    let app_peer = peer.clone();
    let app = tokio::spawn(async move {
        let mut refused = 0;
        while let Some(e) = h.next_event().await {
            match e {
                Event::LoginRefused { .. } => refused += 1,
                Event::LoginAccepted { session, .. } => {
                    let (p, offer) =
                        tokio::task::spawn_blocking(|| WebRtcPeer::start(PeerOptions::default()))
                            .await
                            .unwrap()
                            .expect("webrtc peer");
                    h.send_offer(session, offer).unwrap();
                    for (candidate, mid) in p.local_candidates() {
                        h.add_candidate(session, Candidate { candidate, mid })
                            .unwrap();
                    }
                    h.end_of_candidates(session).unwrap();
                    *app_peer.lock().unwrap() = Some(p);
                }
                Event::RemoteAnswer { sdp, .. } => app_peer
                    .lock()
                    .unwrap()
                    .as_ref()
                    .expect("peer")
                    .accept_answer(&sdp)
                    .unwrap(),
                Event::RemoteCandidate { candidate, .. } => {
                    let p = app_peer.lock().unwrap();
                    p.as_ref()
                        .expect("peer")
                        .add_remote_candidate(&candidate.candidate, candidate.mid.as_deref())
                        .unwrap()
                }
                Event::SessionDone { .. } => return refused,
                _ => {}
            }
        }
        panic!("appliance stopped before the session was done")
    });

    b.goto(url).await;
    b.fill("appliance", "webrtc-box").await;
    b.click("open").await;
    b.wait_text(
        "personas",
        |t| t.contains("Alice") && t.contains("Bob"),
        WAIT,
    )
    .await;
    b.fill("password", "guess").await;
    b.click("login").await;
    b.wait_text("status", |t| t.contains("rejected"), WAIT)
        .await;
    b.fill("password", "wonderland").await;
    b.click("login").await;
    b.wait_text("channel", |t| t == "open", WAIT).await;
    b.wait_text("received", |t| t == "echo: hello", WAIT).await;

    let refused = tokio::time::timeout(WAIT, app)
        .await
        .expect("appliance saw the session end")
        .unwrap();
    assert_eq!(refused, 1, "one wrong password");
    let p = peer.lock().unwrap().take().expect("a peer was made");
    assert!(
        p.received().contains(&"hello".to_string()),
        "{:?}",
        p.state()
    );
    b.close().await;
}
