//! Browser log-in through the tokio driver: the handle's log-in calls over real loopback
//! sockets, against the real server state machine served over UDP by this test and driven as
//! the gateway would (wall-clock time). Every wait is bounded.

use flock_appliance::{spawn, Candidate, Decision, Event};
use flock_proto::login::{self, Command, Personas};
use flock_proto::server::ServerConfig;
use flock_testkit::sim::{self, keypair, server_with, FLOCK_SEED, SECRET};
use flock_testkit::udp_server::{serve_udp, wall, SharedHost};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn cand(who: &str) -> Candidate {
    Candidate {
        candidate: format!("candidate:{who} 1 udp 2130706431 127.0.0.1 50000 typ host"),
        mid: Some("0".into()),
    }
}

#[tokio::test]
async fn a_browser_logs_in_through_the_handle() {
    let server: SharedHost = Arc::new(Mutex::new(server_with(
        ServerConfig::default(),
        SECRET,
        FLOCK_SEED,
    )));
    let (server_addr, kick) = serve_udp(server.clone()).await;
    let mut h = spawn(
        sim::config("box", server_addr),
        keypair(1),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let list = br#"[{"id":"alice","name":"Alice"}]"#;
    h.set_personas(Some(list.to_vec())).unwrap();
    h.set_authenticator(|r| {
        if r.credential == b"pwd:wonderland" {
            Decision::Accept
        } else {
            Decision::Deny
        }
    })
    .unwrap();
    let offer = "v=0\r\n".to_string() + &"a=x-offer\r\n".repeat(150);

    let gateway = |cmd| {
        server.lock().unwrap().command(wall(), 1, cmd);
        kick.notify_one();
    };
    let mut browser = vec![];
    let mut appliance = vec![];
    let mut opened = false;
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(browser.contains(&login::Event::Done)
        && appliance
            .iter()
            .any(|e| matches!(e, Event::SessionDone { .. })))
    {
        assert!(
            tokio::time::Instant::now() < end,
            "not done in time: {browser:?} / {appliance:?}"
        );
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(10), h.next_event()).await {
            match &e {
                Event::Registered { .. } if !opened => {
                    opened = true;
                    gateway(Command::Open {
                        name: sim::name("box"),
                    });
                }
                Event::LoginAccepted { session, persona } => {
                    assert_eq!(persona, "alice");
                    h.send_offer(*session, offer.clone()).unwrap();
                    h.add_candidate(*session, cand("a1")).unwrap();
                    h.end_of_candidates(*session).unwrap();
                }
                _ => {}
            }
            appliance.push(e);
        }
        let events: Vec<_> = server.lock().unwrap().events();
        for (_, e) in events {
            match &e {
                login::Event::Personas(Personas::List(l)) => {
                    assert_eq!(&l[..], list);
                    gateway(Command::Login {
                        persona: "alice".into(),
                        credential: "pwd:wonderland".into(),
                    });
                }
                login::Event::Offer { sdp } => {
                    assert_eq!(*sdp, offer);
                    gateway(Command::Answer {
                        sdp: "v=0\r\na=x-answer\r\n".into(),
                    });
                    gateway(Command::Candidate(cand("b1")));
                    gateway(Command::EndOfCandidates);
                }
                _ => {}
            }
            browser.push(e);
        }
    }
    use login::Event as B;
    assert_eq!(
        browser[1..],
        [
            B::Accepted,
            B::Offer { sdp: offer },
            B::Candidate(cand("a1")),
            B::EndOfCandidates,
            B::Done
        ]
    );
    let remote = |e: &&Event| {
        matches!(
            e,
            Event::RemoteAnswer { .. }
                | Event::RemoteCandidate { .. }
                | Event::RemoteEndOfCandidates { .. }
        )
    };
    assert_eq!(appliance.iter().filter(remote).count(), 3, "{appliance:?}");
    // A call for a session that is over is refused inside the driver (logged), not an error here.
    let session = match &appliance
        .iter()
        .find(|e| matches!(e, Event::SessionDone { .. }))
    {
        Some(Event::SessionDone { session }) => *session,
        _ => unreachable!(),
    };
    h.end_of_candidates(session).unwrap();
    // The status follows the events (updated once the driver has handed them out).
    let mut counts = (0, 0);
    for _ in 0..100 {
        let s = h.status().stats;
        counts = (s.logins_accepted, s.sessions_done);
        if counts == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counts, (1, 1));
    h.shutdown().await;
}

/// The `flock-appliance` simulator with `--personas`: serves ids and names, checks passwords,
/// sends its WebRTC peer's offer and host candidate, prints what the browser sent (and that its
/// peer refused this fake browser's answer), never a password. (The binary needs `webrtc`.)
#[cfg(feature = "webrtc")]
#[tokio::test]
async fn the_simulator_plays_the_appliance_side() {
    use std::io::BufRead;
    let server: SharedHost = Arc::new(Mutex::new(server_with(
        ServerConfig::default(),
        SECRET,
        FLOCK_SEED,
    )));
    let (server_addr, kick) = serve_udp(server.clone()).await;
    let dir = std::env::temp_dir().join(format!("flock-appliance-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let personas = dir.join("personas.toml");
    let toml = r#"
[[persona]]
id = "alice"
name = "Alice"
password = "wonderland"

[[persona]]
id = "eve"
name = "Eve"
password = "x"
deny = true
"#;
    std::fs::write(&personas, toml).unwrap();
    let flock_key = flock_proto::identity::to_hex(&sim::flock_public_key(FLOCK_SEED));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flock-appliance"))
        .args([
            "--server",
            &server_addr.to_string(),
            "--name",
            "sim",
            "--json",
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--flock-key",
            &flock_key,
            "--key-dir",
            dir.to_str().unwrap(),
            "--personas",
            personas.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    let gateway = |id, cmd| {
        server.lock().unwrap().command(wall(), id, cmd);
        kick.notify_one();
    };
    let mut printed = vec![];
    let mut browser: Vec<(u64, login::Event)> = vec![];
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut opened = false;
    let mut offer_mid = None;
    while !printed.iter().any(|l: &String| l.contains("session_done"))
        || !browser
            .iter()
            .any(|(id, e)| *id == 1 && *e == login::Event::Done)
    {
        assert!(
            tokio::time::Instant::now() < end,
            "not done in time: {printed:#?} / {browser:?}"
        );
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(10), lines.recv()).await {
            if l.contains("\"registered\"") && !opened {
                opened = true;
                gateway(
                    1,
                    Command::Open {
                        name: sim::name("sim"),
                    },
                );
                gateway(
                    2,
                    Command::Open {
                        name: sim::name("sim"),
                    },
                );
            }
            printed.push(l);
        }
        let events: Vec<_> = server.lock().unwrap().events();
        for (id, e) in events {
            match (&e, id) {
                (login::Event::Personas(Personas::List(l)), 1) => {
                    assert_eq!(
                        &l[..],
                        br#"[{"id":"alice","name":"Alice"},{"id":"eve","name":"Eve"}]"#
                    );
                    gateway(
                        1,
                        Command::Login {
                            persona: "alice".into(),
                            credential: "pwd:wonderland".into(),
                        },
                    );
                }
                (login::Event::Personas(_), 2) => gateway(
                    2,
                    Command::Login {
                        persona: "eve".into(),
                        credential: "pwd:x".into(),
                    },
                ),
                (login::Event::Offer { sdp }, 1) => {
                    assert!(
                        sdp.starts_with("v=0\r\n") && sdp.contains("webrtc-datachannel"),
                        "{sdp}"
                    );
                    offer_mid = sdp
                        .lines()
                        .find_map(|l| l.strip_prefix("a=mid:"))
                        .map(str::to_string);
                    gateway(
                        1,
                        Command::Answer {
                            sdp: "v=0\r\na=x-browser\r\n".into(),
                        },
                    );
                    gateway(1, Command::Candidate(cand("b1")));
                    gateway(1, Command::EndOfCandidates);
                }
                _ => {}
            }
            browser.push((id, e));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let of = |id| {
        browser
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
    };
    let one = of(1);
    use login::Event as B;
    assert!(
        matches!(
            one[..],
            [
                B::Personas(_),
                B::Accepted,
                B::Offer { .. },
                B::Candidate(_),
                B::EndOfCandidates,
                B::Done
            ]
        ),
        "{one:?}"
    );
    // The peer's host candidate: loopback (so is the server), in the offer's m-line.
    assert!(offer_mid.is_some());
    assert!(one.iter().all(|e| !matches!(e, B::Candidate(c) if !c.candidate.contains(" 127.0.0.1 ") || !c.candidate.contains(" typ host") || c.mid != offer_mid)), "{one:?}");
    assert_eq!(of(2)[1..], [login::Event::Failed(login::Failure::Denied)]);
    for want in [
        "\"login_accepted\"",
        "\"remote_answer\"",
        "\"remote_candidate\"",
        "\"remote_end_of_candidates\"",
        "\"login_refused\"",
        "\"webrtc_error\"",
    ] {
        assert!(
            printed.iter().any(|l| l.contains(want)),
            "no {want} in {printed:#?}"
        );
    }
    assert!(
        printed
            .iter()
            .all(|l| !l.contains("wonderland") && !l.contains("pwd:")),
        "{printed:#?}"
    );
}
