//! A whole browser log-in between the real server state machine (as the gateway drives it) and
//! a real `Appliance`, exchanging datagrams in memory on simulated time, with and without loss:
//! personas → credentials → CONNECT → offer, candidates and end-of-candidates both ways → done.

use flock_appliance::{Appliance, Candidate, Decision, Event};
use flock_proto::login::{self, Command, Personas, SessionId};
use flock_testkit::sim::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SESSION: SessionId = 7;
const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;

fn offer() -> String {
    "v=0\r\n".to_string() + &"a=x-appliance-offer\r\n".repeat(80) // about 1.7 KB: three chunks
}

fn answer() -> String {
    "v=0\r\n".to_string() + &"a=x-browser-answer\r\n".repeat(50)
}

fn cand(who: &str, i: u16) -> Candidate {
    Candidate {
        candidate: format!(
            "candidate:{who}{i} 1 udp 2130706431 192.0.2.{i} {} typ host",
            50000 + i
        ),
        mid: Some("0".into()),
    }
}

/// The simulated server and appliance on a lossy wire, the browser and the appliance's
/// application playing their parts, and what each side's user saw.
struct Pair {
    sim: Sim<Appliance>,
    /// How many of the appliance's and the server's events in `sim` were acted on.
    app_events_seen: usize,
    server_events_seen: usize,
    /// What the gateway (browser side) got from the server for SESSION.
    browser: Vec<login::Event>,
    /// What the appliance's application got (log-in events only).
    appliance: Vec<Event>,
    auth_calls: Arc<AtomicUsize>,
    /// Passwords the browser tries, in order (the next after each rejection).
    passwords: Vec<&'static str>,
}

impl Pair {
    fn new(loss: u64, seed: u64) -> Pair {
        let mut app = Appliance::new(
            config("box", addr(SERVER_ADDR)),
            keypair(APP_SEED),
            XorShift(0x1234_5678 ^ seed),
        );
        app.set_personas(Some(LIST.to_vec()));
        let auth_calls = Arc::new(AtomicUsize::new(0));
        let calls = auth_calls.clone();
        app.set_authenticator(move |r| {
            calls.fetch_add(1, Ordering::SeqCst);
            if r.persona == "alice" && r.credential == b"pwd:wonderland" {
                Decision::Accept
            } else {
                Decision::BadCredentials
            }
        });
        Pair {
            sim: Sim::pair(server(), app).lossy(loss, seed),
            app_events_seen: 0,
            server_events_seen: 0,
            browser: vec![],
            appliance: vec![],
            auth_calls,
            passwords: vec!["wonderland"],
        }
    }

    /// Moves datagrams and reacts to events until nothing moves at `now`.
    fn pump(&mut self) {
        loop {
            self.sim.pump();
            if !self.react() {
                return;
            }
        }
    }

    /// Plays the browser and the appliance's application; true if either did something.
    fn react(&mut self) -> bool {
        let mut acted = false;
        while let Some((_, id, e)) = self.sim.server_events.get(self.server_events_seen).cloned() {
            self.server_events_seen += 1;
            assert_eq!(id, SESSION);
            acted = true;
            let tried = self
                .browser
                .iter()
                .filter(|e| matches!(e, login::Event::Personas(_) | login::Event::Rejected { .. }))
                .count();
            let login = || Command::Login {
                persona: "alice".into(),
                credential: format!("pwd:{}", self.passwords[tried]),
            };
            let commands = match &e {
                login::Event::Personas(Personas::List(list)) => {
                    assert_eq!(&list[..], LIST);
                    vec![login()]
                }
                login::Event::Rejected { .. } => vec![login()],
                login::Event::Offer { sdp } => {
                    assert_eq!(*sdp, offer());
                    vec![
                        Command::Answer { sdp: answer() },
                        Command::Candidate(cand("b", 1)),
                        Command::Candidate(cand("b", 2)),
                        Command::EndOfCandidates,
                    ]
                }
                _ => vec![],
            };
            self.browser.push(e);
            for c in commands {
                self.sim.server.command(self.sim.now, SESSION, c);
            }
        }
        while let Some((_, e)) = self.sim.events.get(self.app_events_seen).cloned() {
            self.app_events_seen += 1;
            if let Event::LoginAccepted { session, .. } = &e {
                acted = true;
                let (now, s, app) = (self.sim.now, *session, &mut self.sim.app);
                app.send_offer(now, &s, offer()).unwrap();
                app.add_candidate(now, &s, cand("a", 1)).unwrap();
                app.add_candidate(now, &s, cand("a", 2)).unwrap();
                app.end_of_candidates(now, &s).unwrap();
            }
            if !matches!(e, Event::Registered { .. } | Event::KeptAlive { .. }) {
                self.appliance.push(e);
            }
        }
        acted
    }

    fn finished(&self) -> bool {
        let browser = self
            .browser
            .iter()
            .any(|e| matches!(e, login::Event::Done | login::Event::Failed(_)));
        let app = self
            .appliance
            .iter()
            .any(|e| matches!(e, Event::SessionDone { .. } | Event::SessionFailed { .. }));
        browser && app
    }

    /// Runs both machines' timers until `done` holds or `limit` has passed.
    fn run(&mut self, limit: std::time::Duration, done: impl Fn(&Pair) -> bool) {
        let end = self.sim.now + limit;
        self.pump();
        while !done(self) && self.sim.step(end) {
            self.pump();
        }
        assert!(
            self.sim.app_elsewhere().is_empty(),
            "the appliance only talks to its server here"
        );
        assert!(
            self.sim
                .log
                .iter()
                .all(|s| s.from != Origin::Server || s.to == self.sim.app_addr),
            "the server only talks to the appliance here"
        );
    }

    /// Registers, then logs in through the server as the gateway would, to the end.
    fn log_in(&mut self) {
        self.run(secs(60), |p| p.sim.app.state().is_registered());
        assert!(self.sim.app.state().is_registered());
        let now = self.sim.now;
        self.sim
            .server
            .command(now, SESSION, Command::Open { name: name("box") });
        self.run(secs(120), Pair::finished);
    }

    fn check_done(&self) {
        use login::Event as B;
        let offer_at = self
            .browser
            .iter()
            .position(|e| matches!(e, B::Offer { .. }))
            .expect("an offer");
        let rejected = self.passwords.len() as u8 - 1;
        assert_eq!(self.browser[0], B::Personas(Personas::List(LIST.into())));
        let attempts: Vec<_> = (0..rejected)
            .map(|i| B::Rejected {
                attempts_left: 2 - i,
            })
            .chain([B::Accepted])
            .collect();
        assert_eq!(self.browser[1..offer_at], attempts);
        assert_eq!(
            self.browser[offer_at + 1..],
            [
                B::Candidate(cand("a", 1)),
                B::Candidate(cand("a", 2)),
                B::EndOfCandidates,
                B::Done
            ],
            "the appliance's candidates, in order, then done"
        );
        let (refused, app): (Vec<_>, Vec<_>) = self
            .appliance
            .iter()
            .cloned()
            .partition(|e| matches!(e, Event::LoginRefused { code: 460, .. }));
        assert_eq!(refused.len(), rejected as usize);
        let session = match &app[0] {
            Event::LoginAccepted { session, persona } if persona == "alice" => *session,
            other => panic!("expected the log-in first, got {other:?}"),
        };
        assert_eq!(
            app[1..],
            [
                Event::RemoteAnswer {
                    session,
                    sdp: answer()
                },
                Event::RemoteCandidate {
                    session,
                    candidate: cand("b", 1)
                },
                Event::RemoteCandidate {
                    session,
                    candidate: cand("b", 2)
                },
                Event::RemoteEndOfCandidates { session },
                Event::SessionDone { session },
            ]
        );
        assert_eq!(
            self.auth_calls.load(Ordering::SeqCst),
            self.passwords.len(),
            "one decision per attempt however often CONNECT came"
        );
        assert_eq!(self.sim.app.connections(), 0);
    }
}

#[test]
fn a_log_in_runs_to_done() {
    let mut p = Pair::new(0, 1);
    p.log_in();
    p.check_done();
    assert_eq!(p.sim.app.stats().signals_retransmitted, 0);
    // Logging in again starts over; the persona list now comes from the server's cache.
    let personas = p.sim.app.stats().personas_answered;
    p.browser.clear();
    p.appliance.clear();
    p.auth_calls.store(0, Ordering::SeqCst);
    let now = p.sim.now;
    p.sim
        .server
        .command(now, SESSION, Command::Open { name: name("box") });
    p.run(secs(120), Pair::finished);
    p.check_done();
    assert_eq!(
        p.sim.app.stats().personas_answered,
        personas + 1,
        "one round trip: the cached checksum is current"
    );
}

#[test]
fn a_wrong_password_then_the_right_one() {
    let mut p = Pair::new(0, 1);
    p.passwords = vec!["alice", "Wonderland", "wonderland"];
    p.log_in();
    p.check_done();
}

#[test]
fn a_log_in_survives_loss() {
    for seed in 1..=50 {
        let mut p = Pair::new(10, seed);
        p.passwords = if seed % 2 == 0 {
            vec!["wonderland"]
        } else {
            vec!["x", "wonderland"]
        };
        p.log_in();
        assert!(
            p.finished(),
            "seed {seed}: not over after two minutes: {:?} / {:?}",
            p.browser,
            p.appliance
        );
        p.check_done();
    }
}
