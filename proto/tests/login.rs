//! Browser log-in through the server state machine, in simulated time: personas (and their
//! cache), CONNECT with retransmission and attempts, SIGNAL both ways, bounds and timers.

use flock_proto::login::{Candidate, Command, Event, Failure, Personas, SessionId, SessionNonce};
use flock_proto::server::{LoginConfig, ServerConfig};
use flock_proto::stun::{Message, TransactionId};
use flock_proto::wire::login::{
    self as wire, code, Ack, PersonasChunk, PersonasRefused, PersonasRequest, Signal, SignalBody,
};
use flock_proto::wire::method;
use flock_proto::{Name, Time};
use flock_testkit::fake_appliance::{
    self, ack_signal, checksum, connect_answer, connect_request, signed_by_flock,
};
use flock_testkit::hand_driven::*;
use std::net::SocketAddr;
use std::time::Duration;

const HOME: &str = "198.51.100.7:40000";
const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;

type S = Host;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A server with one registered appliance at HOME.
fn setup(login: LoginConfig) -> (S, Device) {
    let mut s = server(ServerConfig {
        login,
        ..ServerConfig::default()
    });
    let mut d = Device::new("box", 1);
    assert!(matches!(
        register(&mut d, &mut s, T0, addr(HOME)),
        Answer::Registered(_)
    ));
    (s, d)
}

/// What the server sends on its own, checking the size rule.
fn sent(s: &mut S) -> Vec<(SocketAddr, Vec<u8>)> {
    let out = drain(s);
    for (_, b) in &out {
        assert!(b.len() <= wire::MAX_DATAGRAM, "{}-byte datagram", b.len());
    }
    out
}

/// The one datagram the server sends now, to HOME.
fn one(s: &mut S) -> Vec<u8> {
    let mut out = sent(s);
    assert_eq!(out.len(), 1, "expected one datagram");
    let (dst, b) = out.remove(0);
    assert_eq!(dst, addr(HOME));
    b
}

fn events(s: &mut S) -> Vec<(SessionId, Event)> {
    s.events()
}

fn only(s: &mut S, id: SessionId) -> Vec<Event> {
    events(s)
        .into_iter()
        .map(|(i, e)| {
            assert_eq!(i, id);
            e
        })
        .collect()
}

/// Feeds a datagram; returns the direct answer (never larger than the request).
fn feed(s: &mut S, now: Time, src: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut reply = [0u8; 1500];
    let n = s.handle(now, addr(src), bytes, &mut reply).reply()?;
    assert!(
        n <= bytes.len(),
        "answer of {n} bytes to a {}-byte request",
        bytes.len()
    );
    Some(reply[..n].to_vec())
}

fn txid_of(b: &[u8]) -> TransactionId {
    *Message::parse(b).unwrap().transaction_id()
}

/// The appliance's answer to a PERSONAS request (signed by the flock), serving `list`.
fn personas_answer(req: &[u8], list: &[u8], credentials_required: bool) -> Vec<u8> {
    assert!(signed_by_flock(req), "signed with the flock key");
    fake_appliance::personas_answer(req, list, credentials_required)
}

fn parse_personas(req: &[u8]) -> (u32, Option<[u8; 32]>) {
    let r = PersonasRequest::parse(&Message::parse(req).unwrap()).unwrap();
    (r.offset, r.known)
}

/// Reads a CONNECT signed by the flock: (nonce, persona, credential).
fn parse_connect(req: &[u8]) -> (SessionNonce, String, Vec<u8>) {
    assert!(signed_by_flock(req), "signed with the flock key");
    connect_request(req)
}

fn name() -> Name {
    "box".parse().unwrap()
}

/// A SIGNAL from the appliance.
fn signal(nonce: SessionNonce, seq: u32, body: SignalBody<'_>) -> Vec<u8> {
    fake_appliance::signal(name(), nonce, seq, body)
}

fn cand(s: &str) -> Candidate {
    Candidate {
        candidate: format!("candidate:{s} 1 udp 2130706431 192.0.2.7 50000 typ host"),
        mid: Some("0".into()),
    }
}

fn cand_body(c: &Candidate) -> SignalBody<'_> {
    SignalBody::Candidate {
        candidate: &c.candidate,
        mid: c.mid.as_deref(),
    }
}

/// Reads a SIGNAL from the server and acknowledges it: (seq, the SIGNAL, ack bytes).
fn read_signal(b: &[u8]) -> (u32, Signal<'_>, Vec<u8>) {
    let (sig, ack) = ack_signal(b);
    (sig.seq, sig, ack)
}

fn ack_of(answer: &[u8]) -> Ack {
    Ack::parse(&Message::parse(answer).unwrap()).unwrap()
}

/// Open → personas delivered (one chunk).
fn open(s: &mut S, now: Time, id: SessionId) {
    s.command(now, id, Command::Open { name: name() });
    let req = one(s);
    assert!(feed(s, now, HOME, &personas_answer(&req, LIST, false)).is_none());
    assert!(matches!(
        &only(s, id)[..],
        [Event::Personas(Personas::List(_))]
    ));
}

/// Open, log in, accepted: returns the session nonce.
fn accepted(s: &mut S, now: Time, id: SessionId) -> SessionNonce {
    open(s, now, id);
    s.command(
        now,
        id,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:right".into(),
        },
    );
    let req = one(s);
    let (nonce, ..) = parse_connect(&req);
    feed(s, now, HOME, &connect_answer(&req, None));
    assert_eq!(only(s, id), [Event::Accepted]);
    nonce
}

#[test]
fn full_flow_to_done() {
    let (mut s, _d) = setup(LoginConfig::default());
    let now = T0;
    s.command(now, 7, Command::Open { name: name() });
    let req = one(&mut s);
    assert_eq!(parse_personas(&req), (0, None));
    feed(&mut s, now, HOME, &personas_answer(&req, LIST, false));
    let [(7, Event::Personas(Personas::List(list)))] = &events(&mut s)[..] else {
        panic!()
    };
    assert_eq!(&list[..], LIST);

    s.command(
        now,
        7,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:wonderland".into(),
        },
    );
    let req = one(&mut s);
    let (nonce, persona, credential) = parse_connect(&req);
    assert_eq!(
        (persona.as_str(), &credential[..]),
        ("alice", &b"pwd:wonderland"[..])
    );
    assert!(feed(&mut s, now, HOME, &connect_answer(&req, None)).is_none());
    assert_eq!(only(&mut s, 7), [Event::Accepted]);

    // The appliance's stream: offer in two chunks, a candidate, end-of-candidates.
    let offer = "v=0\r\n".repeat(300);
    let c1 = cand("1");
    let item = wire::Outbound::Sdp(offer.clone());
    for seq in 0..2 {
        let b = signal(nonce, seq, wire::piece(&item, seq as usize).unwrap());
        let ack = ack_of(&feed(&mut s, now, HOME, &b).expect("acked"));
        assert_eq!((ack.seq, ack.error, ack.session), (Some(seq), None, nonce));
    }
    assert_eq!(only(&mut s, 7), [Event::Offer { sdp: offer.clone() }]);
    feed(&mut s, now, HOME, &signal(nonce, 2, cand_body(&c1))).expect("acked");
    assert_eq!(only(&mut s, 7), [Event::Candidate(c1.clone())]);
    feed(
        &mut s,
        now,
        HOME,
        &signal(nonce, 3, SignalBody::EndOfCandidates),
    )
    .expect("acked");
    assert_eq!(only(&mut s, 7), [Event::EndOfCandidates]);

    // The browser's stream: answer (two chunks), a candidate, end-of-candidates; stop-and-wait.
    let answer = "a=x\r\n".repeat(200);
    s.command(
        now,
        7,
        Command::Answer {
            sdp: answer.clone(),
        },
    );
    let c2 = cand("2");
    s.command(now, 7, Command::Candidate(c2.clone()));
    s.command(now, 7, Command::EndOfCandidates);
    let mut got = vec![];
    for expect in 0..4 {
        let b = one(&mut s);
        assert!(sent(&mut s).is_empty(), "one SIGNAL in flight");
        let (seq, sig, ack) = read_signal(&b);
        assert_eq!((seq, sig.session), (expect, nonce));
        got.push(format!("{:?}", sig.body));
        assert!(feed(&mut s, now, HOME, &ack).is_none());
        if expect < 3 {
            assert!(events(&mut s).is_empty());
        }
    }
    assert!(got[0].starts_with("Sdp { offset: 0") && got[1].starts_with("Sdp { offset: 800"));
    assert!(
        got[2].contains("candidate:2") && got[3] == "EndOfCandidates",
        "{got:?}"
    );
    assert_eq!(only(&mut s, 7), [Event::Done]);
    let occ = s.login_occupancy();
    assert_eq!((occ.sessions, occ.outstanding, occ.nonces), (0, 0, 0));
    let st = s.stats();
    assert_eq!(
        (st.sessions_opened, st.sessions_done, st.sessions_failed),
        (1, 1, 0)
    );
    assert_eq!(
        (
            st.signals_in,
            st.signals_out,
            st.connects_sent,
            st.retransmits
        ),
        (4, 4, 1, 0)
    );
    // The session is gone: its nonce now gets 481 (when that is not larger than the SIGNAL).
    let late = signal(nonce, 4, cand_body(&c1));
    assert_eq!(
        ack_of(&feed(&mut s, now, HOME, &late).unwrap()).error,
        Some(code::UNKNOWN_SESSION)
    );
    // But the appliance's last SIGNAL, retransmitted because our ack was lost, is acknowledged
    // again for a while (only from the appliance), so both ends see the session finish.
    let last = signal(nonce, 3, SignalBody::EndOfCandidates);
    let ack = ack_of(&feed(&mut s, now + ms(2000), HOME, &last).expect("re-acked after Done"));
    assert_eq!((ack.seq, ack.error), (Some(3), None));
    assert!(feed(&mut s, now, "192.0.2.99:4000", &last).is_none_or(|a| ack_of(&a).error.is_some()));
    assert!(events(&mut s).is_empty(), "nothing delivered twice");
    assert_eq!(s.login_occupancy().finished, 1);
    let later = now + LoginConfig::default().give_up_after + ms(1);
    assert!(
        feed(&mut s, later, HOME, &last).is_none_or(|a| ack_of(&a).error.is_some()),
        "forgotten after give_up_after"
    );
}

#[test]
fn personas_in_chunks_then_cache_hit_then_invalidation() {
    let (mut s, _d) = setup(LoginConfig::default());
    let big: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    s.command(T0, 1, Command::Open { name: name() });
    let mut offsets = vec![];
    let list = loop {
        let req = one(&mut s);
        let (offset, known) = parse_personas(&req);
        assert_eq!(known, None);
        offsets.push(offset);
        feed(&mut s, T0, HOME, &personas_answer(&req, &big, false));
        if let Some((1, Event::Personas(Personas::List(l)))) = s.next_event() {
            break l;
        }
    };
    assert_eq!(&list[..], &big[..]);
    assert!(
        offsets.len() >= 3 && offsets[0] == 0 && offsets.windows(2).all(|w| w[1] > w[0]),
        "{offsets:?}"
    );
    assert_eq!(
        (
            s.stats().personas_cache_misses,
            s.stats().personas_cache_hits
        ),
        (1, 0)
    );
    assert_eq!(s.login_occupancy().cached_lists, 1);

    // Second Open: one round trip carrying the cached checksum, answered without data.
    s.command(T0, 2, Command::Open { name: name() });
    let req = one(&mut s);
    assert_eq!(parse_personas(&req), (0, Some(checksum(&big))));
    let answer = personas_answer(&req, &big, false);
    assert!(answer.len() < 200, "no data in a confirmation");
    feed(&mut s, T0, HOME, &answer);
    let [Event::Personas(Personas::List(l))] = &only(&mut s, 2)[..] else {
        panic!()
    };
    assert_eq!(&l[..], &big[..]);
    assert!(sent(&mut s).is_empty());
    assert_eq!(
        (
            s.stats().personas_cache_misses,
            s.stats().personas_cache_hits
        ),
        (1, 1)
    );

    // The appliance changed its list: the old checksum is refused, the new list fetched.
    s.command(T0, 3, Command::Open { name: name() });
    let req = one(&mut s);
    assert_eq!(parse_personas(&req).1, Some(checksum(&big)));
    feed(&mut s, T0, HOME, &personas_answer(&req, LIST, false));
    let [Event::Personas(Personas::List(l))] = &only(&mut s, 3)[..] else {
        panic!()
    };
    assert_eq!(&l[..], LIST);
    assert_eq!(
        (
            s.stats().personas_cache_misses,
            s.stats().personas_cache_hits
        ),
        (2, 1)
    );
    s.command(T0, 4, Command::Open { name: name() });
    assert_eq!(
        parse_personas(&one(&mut s)).1,
        Some(checksum(LIST)),
        "the cache holds the new list"
    );
}

#[test]
fn oversize_list_is_not_cached_and_bad_lists_fail() {
    let login = LoginConfig {
        persona_cache_bytes: 1000,
        ..LoginConfig::default()
    };
    let (mut s, _d) = setup(login);
    let big = vec![b'x'; 2000];
    s.command(T0, 1, Command::Open { name: name() });
    while s.next_event().is_none() {
        let req = one(&mut s);
        feed(&mut s, T0, HOME, &personas_answer(&req, &big, false));
    }
    assert_eq!(s.login_occupancy().cached_lists, 0);
    s.command(T0, 2, Command::Open { name: name() });
    assert_eq!(parse_personas(&one(&mut s)).1, None);

    // Over max_personas_bytes.
    let (mut s, _d) = setup(LoginConfig {
        max_personas_bytes: 50,
        ..LoginConfig::default()
    });
    s.command(T0, 1, Command::Open { name: name() });
    let req = one(&mut s);
    feed(&mut s, T0, HOME, &personas_answer(&req, LIST, false));
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Malformed)]);

    // Checksum does not match the bytes.
    let (mut s, _d) = setup(LoginConfig::default());
    s.command(T0, 1, Command::Open { name: name() });
    let req = one(&mut s);
    let m = Message::parse(&req).unwrap();
    let r = PersonasRequest::parse(&m).unwrap();
    let chunk = PersonasChunk {
        name: r.name,
        checksum: [9; 32],
        total: LIST.len() as u32,
        offset: 0,
        credentials_required: false,
        data: LIST,
    };
    let mut buf = [0u8; 1500];
    let n = chunk.encode(&mut buf, m.transaction_id()).unwrap();
    feed(&mut s, T0, HOME, &buf[..n]);
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Malformed)]);
    assert_eq!(s.login_occupancy().sessions, 0);
}

#[test]
fn credentials_required_then_login() {
    let (mut s, _d) = setup(LoginConfig::default());
    s.command(T0, 1, Command::Open { name: name() });
    let req = one(&mut s);
    feed(&mut s, T0, HOME, &personas_answer(&req, LIST, true));
    assert_eq!(
        only(&mut s, 1),
        [Event::Personas(Personas::CredentialsRequired)]
    );
    s.command(
        T0,
        1,
        Command::Login {
            persona: "root".into(),
            credential: "pwd:x".into(),
        },
    );
    let req = one(&mut s);
    assert_eq!(parse_connect(&req).1, "root");
}

#[test]
fn unknown_appliance_and_session_bound() {
    let (mut s, _d) = setup(LoginConfig {
        max_sessions: 2,
        ..LoginConfig::default()
    });
    s.command(
        T0,
        1,
        Command::Open {
            name: "nobody".parse().unwrap(),
        },
    );
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::UnknownAppliance)]);
    assert!(sent(&mut s).is_empty());
    // An expired registration is unknown too.
    let late = T0 + Duration::from_secs(61);
    s.command(late, 2, Command::Open { name: name() });
    assert_eq!(only(&mut s, 2), [Event::Failed(Failure::UnknownAppliance)]);

    for id in [3, 4] {
        s.command(T0, id, Command::Open { name: name() });
    }
    s.command(T0, 5, Command::Open { name: name() });
    assert_eq!(only(&mut s, 5), [Event::Failed(Failure::Busy)]);
    assert_eq!(sent(&mut s).len(), 2);
    s.command(T0, 3, Command::Close);
    assert!(events(&mut s).is_empty(), "Close is silent");
    s.command(T0, 5, Command::Open { name: name() });
    assert!(events(&mut s).is_empty());
    assert_eq!(s.login_occupancy().sessions, 2);
}

#[test]
fn wrong_then_right_password_and_attempt_limit() {
    let (mut s, _d) = setup(LoginConfig::default());
    open(&mut s, T0, 1);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:wrong".into(),
        },
    );
    let req = one(&mut s);
    let (n1, ..) = parse_connect(&req);
    feed(
        &mut s,
        T0,
        HOME,
        &connect_answer(&req, Some(code::BAD_CREDENTIALS)),
    );
    assert_eq!(only(&mut s, 1), [Event::Rejected { attempts_left: 2 }]);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:right".into(),
        },
    );
    let req = one(&mut s);
    let (n2, _, cred) = parse_connect(&req);
    assert_ne!(n1, n2, "a fresh nonce per attempt");
    assert_eq!(cred, b"pwd:right");
    feed(&mut s, T0, HOME, &connect_answer(&req, None));
    assert_eq!(only(&mut s, 1), [Event::Accepted]);

    open(&mut s, T0, 2);
    for left in [2, 1, 0] {
        s.command(
            T0,
            2,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:guess".into(),
            },
        );
        let req = one(&mut s);
        feed(
            &mut s,
            T0,
            HOME,
            &connect_answer(&req, Some(code::BAD_CREDENTIALS)),
        );
        let expect = if left > 0 {
            Event::Rejected {
                attempts_left: left,
            }
        } else {
            Event::Failed(Failure::BadCredentials)
        };
        assert_eq!(only(&mut s, 2), [expect]);
    }
    // A further Login on the ended session is not answered.
    s.command(
        T0,
        2,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:guess".into(),
        },
    );
    assert!(events(&mut s).is_empty() && sent(&mut s).is_empty());
}

#[test]
fn denied_and_busy() {
    let (mut s, _d) = setup(LoginConfig::default());
    for (id, err, fail) in [
        (1, code::DENIED, Failure::Denied),
        (2, code::BUSY, Failure::ApplianceBusy),
    ] {
        open(&mut s, T0, id);
        s.command(
            T0,
            id,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:x".into(),
            },
        );
        let req = one(&mut s);
        feed(&mut s, T0, HOME, &connect_answer(&req, Some(err)));
        assert_eq!(only(&mut s, id), [Event::Failed(fail)]);
    }
    assert_eq!(s.login_occupancy().nonces, 0);
}

#[test]
fn silent_appliance_is_unreachable_after_give_up() {
    let (mut s, _d) = setup(LoginConfig::default());
    s.command(T0, 1, Command::Open { name: name() });
    let first = one(&mut s);
    let sent = advance(&mut s, T0 + Duration::from_secs(11));
    let times: Vec<u64> = sent.iter().map(|(t, _, _)| t.0 - T0.0).collect();
    assert_eq!(times, [500, 1500, 3500, 7500]);
    assert!(
        sent.iter()
            .all(|(_, dst, b)| *dst == addr(HOME) && *b == first),
        "same request each time"
    );
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Unreachable)]);
    assert_eq!(s.stats().retransmits, 4);
    assert_eq!(s.login_occupancy().sessions, 0);
}

#[test]
fn retransmitted_connect_reuses_nonce_and_txid_then_unreachable() {
    let (mut s, _d) = setup(LoginConfig::default());
    open(&mut s, T0, 1);
    let t1 = T0 + Duration::from_secs(5);
    s.command(
        t1,
        1,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:x".into(),
        },
    );
    let first = one(&mut s);
    let sent = advance(&mut s, t1 + Duration::from_secs(10));
    let times: Vec<u64> = sent.iter().map(|(t, _, _)| t.0 - t1.0).collect();
    assert_eq!(times, [500, 1500, 3500, 7500]);
    for (_, _, b) in &sent {
        assert_eq!(txid_of(b), txid_of(&first));
        assert_eq!(parse_connect(b).0, parse_connect(&first).0);
    }
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Unreachable)]);
}

#[test]
fn late_answer_to_a_retransmission_still_counts() {
    let (mut s, _d) = setup(LoginConfig::default());
    open(&mut s, T0, 1);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:x".into(),
        },
    );
    let first = one(&mut s);
    let again = advance(&mut s, T0 + ms(1600));
    assert_eq!(again.len(), 2);
    feed(
        &mut s,
        T0 + ms(1700),
        HOME,
        &connect_answer(&again[1].2, None),
    );
    assert_eq!(only(&mut s, 1), [Event::Accepted]);
    // A duplicate answer (to the first copy) changes nothing.
    feed(&mut s, T0 + ms(1800), HOME, &connect_answer(&first, None));
    assert!(events(&mut s).is_empty());
    assert!(
        advance(&mut s, T0 + ms(9000)).is_empty(),
        "no more CONNECTs"
    );
}

#[test]
fn silence_after_accepted_times_out() {
    let (mut s, _d) = setup(LoginConfig::default());
    let t1 = T0 + Duration::from_secs(1);
    accepted(&mut s, t1, 1);
    assert!(advance(&mut s, t1 + ms(9999)).is_empty());
    assert!(events(&mut s).is_empty());
    advance(&mut s, t1 + Duration::from_secs(10));
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Timeout)]);
}

#[test]
fn unacknowledged_signal_times_out() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    feed(
        &mut s,
        T0,
        HOME,
        &signal(
            nonce,
            0,
            SignalBody::Sdp {
                offset: 0,
                total: 3,
                data: b"v=0",
            },
        ),
    );
    assert_eq!(only(&mut s, 1), [Event::Offer { sdp: "v=0".into() }]);
    let t1 = T0 + Duration::from_secs(30);
    s.command(t1, 1, Command::Answer { sdp: "v=0".into() });
    let first = one(&mut s);
    let again = advance(&mut s, t1 + Duration::from_secs(10));
    let times: Vec<u64> = again.iter().map(|(t, _, _)| t.0 - t1.0).collect();
    assert_eq!(times, [500, 1500, 3500, 7500]);
    assert!(again.iter().all(|(_, _, b)| *b == first));
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Timeout)]);
}

#[test]
fn duplicate_signal_is_acked_again_but_delivered_once() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    let offer = signal(
        nonce,
        0,
        SignalBody::Sdp {
            offset: 0,
            total: 3,
            data: b"v=0",
        },
    );
    let a1 = feed(&mut s, T0, HOME, &offer).unwrap();
    let a2 = feed(&mut s, T0 + ms(500), HOME, &offer).unwrap();
    assert_eq!(a1, a2);
    assert_eq!(ack_of(&a2).seq, Some(0));
    assert_eq!(only(&mut s, 1), [Event::Offer { sdp: "v=0".into() }]);
    // Ahead of the stream: ignored, not acknowledged.
    let c = cand("9");
    assert!(feed(&mut s, T0, HOME, &signal(nonce, 5, cand_body(&c))).is_none());
    assert!(events(&mut s).is_empty());
    assert_eq!(s.stats().signals_duplicate, 1);
}

#[test]
fn candidates_before_the_offer_are_held_and_late_ones_relayed() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    let offer = "v=0\r\n".repeat(200);
    let item = wire::Outbound::Sdp(offer.clone());
    let (c1, c2, c3) = (cand("1"), cand("2"), cand("3"));
    let stream = [
        signal(nonce, 0, wire::piece(&item, 0).unwrap()),
        signal(nonce, 1, cand_body(&c1)),
        signal(nonce, 2, cand_body(&c2)),
        signal(nonce, 3, wire::piece(&item, 1).unwrap()),
    ];
    for b in &stream[..3] {
        feed(&mut s, T0, HOME, b).unwrap();
    }
    assert!(
        events(&mut s).is_empty(),
        "nothing before the offer is whole"
    );
    feed(&mut s, T0, HOME, &stream[3]).unwrap();
    assert_eq!(
        only(&mut s, 1),
        [
            Event::Offer { sdp: offer },
            Event::Candidate(c1),
            Event::Candidate(c2)
        ]
    );

    // The browser answers; a candidate trickles in much later from the appliance.
    s.command(T0, 1, Command::Answer { sdp: "v=0".into() });
    let (_, _, ack) = read_signal(&one(&mut s));
    feed(&mut s, T0, HOME, &ack);
    let later = T0 + Duration::from_secs(40);
    feed(&mut s, later, HOME, &signal(nonce, 4, cand_body(&c3))).unwrap();
    assert_eq!(only(&mut s, 1), [Event::Candidate(c3)]);
    feed(
        &mut s,
        later,
        HOME,
        &signal(nonce, 5, SignalBody::EndOfCandidates),
    )
    .unwrap();
    assert_eq!(only(&mut s, 1), [Event::EndOfCandidates]);
}

#[test]
fn end_of_candidates_before_the_offer_comes_after_it() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    let item = wire::Outbound::Sdp("x".repeat(900));
    feed(
        &mut s,
        T0,
        HOME,
        &signal(nonce, 0, wire::piece(&item, 0).unwrap()),
    )
    .unwrap();
    feed(
        &mut s,
        T0,
        HOME,
        &signal(nonce, 1, SignalBody::EndOfCandidates),
    )
    .unwrap();
    assert!(events(&mut s).is_empty());
    feed(
        &mut s,
        T0,
        HOME,
        &signal(nonce, 2, wire::piece(&item, 1).unwrap()),
    )
    .unwrap();
    let evs = only(&mut s, 1);
    assert!(
        matches!(&evs[..], [Event::Offer { .. }, Event::EndOfCandidates]),
        "{evs:?}"
    );
}

#[test]
fn browser_candidates_before_the_answer_wait_for_it() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    feed(
        &mut s,
        T0,
        HOME,
        &signal(
            nonce,
            0,
            SignalBody::Sdp {
                offset: 0,
                total: 3,
                data: b"v=0",
            },
        ),
    );
    events(&mut s);
    s.command(T0, 1, Command::Candidate(cand("1")));
    s.command(T0, 1, Command::EndOfCandidates);
    assert!(sent(&mut s).is_empty(), "held until the answer");
    s.command(T0, 1, Command::Answer { sdp: "v=1".into() });
    let mut kinds = vec![];
    for _ in 0..3 {
        let b = one(&mut s);
        let (_, sig, ack) = read_signal(&b);
        kinds.push(match sig.body {
            SignalBody::Sdp { .. } => "sdp",
            SignalBody::Candidate { .. } => "cand",
            SignalBody::EndOfCandidates => "end",
        });
        feed(&mut s, T0, HOME, &ack);
    }
    assert_eq!(kinds, ["sdp", "cand", "end"]);
    assert!(
        events(&mut s).is_empty(),
        "the appliance has not finished yet"
    );
    feed(
        &mut s,
        T0,
        HOME,
        &signal(nonce, 1, SignalBody::EndOfCandidates),
    )
    .unwrap();
    assert_eq!(only(&mut s, 1), [Event::EndOfCandidates, Event::Done]);
}

#[test]
fn signals_from_elsewhere_or_for_unknown_sessions() {
    let (mut s, _d) = setup(LoginConfig::default());
    let nonce = accepted(&mut s, T0, 1);
    let c = cand("1");
    let offer = signal(
        nonce,
        0,
        SignalBody::Sdp {
            offset: 0,
            total: 3,
            data: b"v=0",
        },
    );
    assert!(
        feed(&mut s, T0, "203.0.113.9:5000", &offer).is_none(),
        "wrong address: silence"
    );
    assert!(
        feed(&mut s, T0, "198.51.100.7:40001", &offer).is_none(),
        "wrong port: silence"
    );
    assert!(events(&mut s).is_empty());
    // The same address seen as IPv4-mapped IPv6 is the appliance.
    assert!(feed(&mut s, T0, "[::ffff:198.51.100.7]:40000", &offer).is_some());
    assert_eq!(only(&mut s, 1).len(), 1);

    let stranger = signal([0x55; 16], 0, cand_body(&c));
    let a = feed(&mut s, T0, "203.0.113.9:5000", &stranger).expect("481 fits");
    let ack = ack_of(&a);
    assert_eq!(
        (ack.error, ack.session, ack.seq),
        (Some(code::UNKNOWN_SESSION), [0x55; 16], Some(0))
    );
    // Too small for an error answer: nothing.
    let tiny = signal([0x55; 16], 0, SignalBody::EndOfCandidates);
    assert!(feed(&mut s, T0, "203.0.113.9:5000", &tiny).is_none());
    assert!(events(&mut s).is_empty());
    // Acks from elsewhere do not count either.
    s.command(T0, 1, Command::Answer { sdp: "v=0".into() });
    let (_, _, ack) = read_signal(&one(&mut s));
    feed(&mut s, T0, "203.0.113.9:5000", &ack);
    assert_eq!(
        advance(&mut s, T0 + ms(500)).len(),
        1,
        "still retransmitted"
    );
}

#[test]
fn out_of_order_commands_are_malformed() {
    let (mut s, _d) = setup(LoginConfig::default());
    // Login before the personas came.
    s.command(T0, 1, Command::Open { name: name() });
    sent(&mut s);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "a".into(),
            credential: "b".into(),
        },
    );
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Malformed)]);
    // Twice Open.
    s.command(T0, 2, Command::Open { name: name() });
    s.command(T0, 2, Command::Open { name: name() });
    assert_eq!(only(&mut s, 2), [Event::Failed(Failure::Malformed)]);
    // Answer before the offer.
    accepted(&mut s, T0, 3);
    s.command(T0, 3, Command::Answer { sdp: "v=0".into() });
    assert_eq!(only(&mut s, 3), [Event::Failed(Failure::Malformed)]);
    // Answer twice; candidate after end-of-candidates.
    for (id, cmds) in [
        (
            4,
            vec![
                Command::Answer { sdp: "v=0".into() },
                Command::Answer { sdp: "v=0".into() },
            ],
        ),
        (
            5,
            vec![Command::EndOfCandidates, Command::Candidate(cand("1"))],
        ),
    ] {
        let nonce = accepted(&mut s, T0, id);
        feed(
            &mut s,
            T0,
            HOME,
            &signal(
                nonce,
                0,
                SignalBody::Sdp {
                    offset: 0,
                    total: 3,
                    data: b"v=0",
                },
            ),
        );
        events(&mut s);
        for c in cmds {
            s.command(T0, id, c);
        }
        assert_eq!(only(&mut s, id), [Event::Failed(Failure::Malformed)]);
    }
    let occ = s.login_occupancy();
    assert_eq!((occ.sessions, occ.outstanding, occ.nonces), (0, 0, 0));
}

#[test]
fn bounds_on_signalling() {
    let login = LoginConfig {
        max_candidates: 2,
        max_sdp_bytes: 1000,
        ..LoginConfig::default()
    };
    let (mut s, _d) = setup(login);
    // Too many candidates from the appliance.
    let nonce = accepted(&mut s, T0, 1);
    for seq in 0..3 {
        feed(&mut s, T0, HOME, &signal(nonce, seq, cand_body(&cand("1"))));
    }
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Malformed)]);
    // An offer over max_sdp_bytes.
    let nonce = accepted(&mut s, T0, 2);
    feed(
        &mut s,
        T0,
        HOME,
        &signal(
            nonce,
            0,
            SignalBody::Sdp {
                offset: 0,
                total: 5000,
                data: b"v=0",
            },
        ),
    );
    assert_eq!(only(&mut s, 2), [Event::Failed(Failure::Malformed)]);
    // Too many candidates or too large an answer from the browser.
    for (id, cmds) in [
        (
            3,
            vec![
                Command::Candidate(cand("1")),
                Command::Candidate(cand("2")),
                Command::Candidate(cand("3")),
            ],
        ),
        (
            4,
            vec![Command::Answer {
                sdp: "x".repeat(1001),
            }],
        ),
    ] {
        let nonce = accepted(&mut s, T0, id);
        feed(
            &mut s,
            T0,
            HOME,
            &signal(
                nonce,
                0,
                SignalBody::Sdp {
                    offset: 0,
                    total: 3,
                    data: b"v=0",
                },
            ),
        );
        events(&mut s);
        for c in cmds {
            s.command(T0, id, c);
        }
        assert_eq!(
            only(&mut s, id).last(),
            Some(&Event::Failed(Failure::Malformed))
        );
    }
}

#[test]
fn session_lifetime_ends_an_idle_session() {
    let (mut s, _d) = setup(LoginConfig::default());
    open(&mut s, T0, 1);
    advance(&mut s, T0 + Duration::from_secs(119));
    assert!(events(&mut s).is_empty(), "waiting for the user to log in");
    advance(&mut s, T0 + Duration::from_secs(120));
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::Timeout)]);
}

#[test]
fn connect_ack_lost_but_signals_arrive() {
    let (mut s, _d) = setup(LoginConfig::default());
    open(&mut s, T0, 1);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "alice".into(),
            credential: "pwd:x".into(),
        },
    );
    let (nonce, ..) = parse_connect(&one(&mut s));
    feed(
        &mut s,
        T0,
        HOME,
        &signal(
            nonce,
            0,
            SignalBody::Sdp {
                offset: 0,
                total: 3,
                data: b"v=0",
            },
        ),
    )
    .expect("acked");
    assert_eq!(
        only(&mut s, 1),
        [Event::Accepted, Event::Offer { sdp: "v=0".into() }]
    );
    assert!(
        advance(&mut s, T0 + Duration::from_secs(5)).is_empty(),
        "the CONNECT is no longer sent"
    );
}

#[test]
fn largest_requests_fit_in_a_datagram() {
    let long = "a".repeat(255);
    let (mut s, _d) = setup(LoginConfig::default());
    let mut d = Device::new(&long, 3);
    assert!(matches!(
        register(&mut d, &mut s, T0, addr(HOME)),
        Answer::Registered(_)
    ));
    let n: Name = long.parse().unwrap();
    s.command(T0, 1, Command::Open { name: n });
    let req = one(&mut s);
    feed(&mut s, T0, HOME, &personas_answer(&req, LIST, false));
    events(&mut s);
    s.command(
        T0,
        1,
        Command::Login {
            persona: "p".repeat(255),
            credential: "c".repeat(512),
        },
    );
    let req = one(&mut s);
    assert!(req.len() <= wire::MAX_DATAGRAM);
    // Over the wire limits: refused, not sent.
    open(&mut s, T0, 2);
    s.command(
        T0,
        2,
        Command::Login {
            persona: "p".repeat(256),
            credential: "c".into(),
        },
    );
    assert_eq!(only(&mut s, 2), [Event::Failed(Failure::Malformed)]);
}

#[test]
fn random_traffic_never_panics_and_tables_stay_bounded() {
    let (mut s, mut d) = setup(LoginConfig {
        max_sessions: 8,
        ..LoginConfig::default()
    });
    let mut rng = XorShift(42);
    let mut r = move |n: u64| {
        let mut b = [0u8; 8];
        flock_proto::entropy::Entropy::fill(&mut rng, &mut b);
        u64::from_le_bytes(b) % n
    };
    let mut nonces: Vec<(SessionNonce, u32)> = vec![];
    let mut now = T0;
    for round in 0..3000u64 {
        if round % 100 == 0 {
            keepalive(&mut d, &mut s, now, addr(HOME));
        }
        let id = r(12);
        let cmd = match r(9) {
            0 => Command::Open { name: name() },
            1 | 2 => Command::Login {
                persona: "a".into(),
                credential: "b".into(),
            },
            3 => Command::Answer { sdp: "v".into() },
            4 => Command::Candidate(cand("1")),
            5 => Command::EndOfCandidates,
            6 => Command::Close,
            7 => Command::Open {
                name: "nobody".parse().unwrap(),
            },
            _ => Command::Open { name: name() },
        };
        s.command(now, id, cmd);
        for (_, b) in sent(&mut s) {
            // Feed back a mangled copy, then (usually) a proper answer.
            let mut m = b.clone();
            let i = r(m.len() as u64) as usize;
            m[i] ^= 1 + r(255) as u8;
            feed(&mut s, now, HOME, &m);
            let msg = Message::parse(&b).unwrap();
            if r(5) == 0 {
                continue;
            }
            if msg.method() == method::PERSONAS {
                feed(&mut s, now, HOME, &personas_answer(&b, LIST, r(4) == 0));
            } else if msg.method() == method::CONNECT {
                let (nonce, ..) = parse_connect(&b);
                nonces.push((nonce, 0));
                let err = [None, Some(code::BAD_CREDENTIALS), Some(code::DENIED)][r(3) as usize];
                feed(&mut s, now, HOME, &connect_answer(&b, err));
            } else {
                feed(&mut s, now, HOME, &read_signal(&b).2);
            }
        }
        // The appliance side of some session: in order mostly, sometimes a duplicate or a gap.
        if !nonces.is_empty() {
            let k = r(nonces.len() as u64) as usize;
            let (nonce, seq) = nonces[k];
            let seq = [seq, seq.saturating_sub(1), seq + 1, seq][r(4) as usize];
            let c = cand("7");
            let body = match r(4) {
                0 => SignalBody::Sdp {
                    offset: 0,
                    total: 3,
                    data: b"v=0",
                },
                1 => SignalBody::EndOfCandidates,
                _ => cand_body(&c),
            };
            let src = if r(10) == 0 { "203.0.113.9:5000" } else { HOME };
            if feed(&mut s, now, src, &signal(nonce, seq, body))
                .is_some_and(|a| ack_of(&a).error.is_none())
            {
                nonces[k].1 = nonces[k].1.max(seq + 1);
            }
            if nonces.len() > 32 {
                nonces.remove(0);
            }
        }
        events(&mut s);
        now = now + ms(r(400));
        advance(&mut s, now);
        let occ = s.login_occupancy();
        assert!(
            occ.sessions <= 8 && occ.outstanding <= occ.sessions && occ.nonces <= occ.sessions,
            "{occ:?}"
        );
        assert!(occ.timers <= 2 * 8 + 64 + 1, "{occ:?}");
    }
    let st = s.stats().clone();
    assert!(
        st.logins_accepted > 0 && st.logins_rejected > 0 && st.personas_cache_hits > 0,
        "{st:?}"
    );
    assert!(
        st.signals_in > 0 && st.signals_duplicate > 0 && st.retransmits > 0,
        "{st:?}"
    );
    advance(&mut s, now + Duration::from_secs(200));
    events(&mut s);
    let occ = s.login_occupancy();
    assert_eq!(
        (occ.sessions, occ.outstanding, occ.nonces, occ.events),
        (0, 0, 0, 0)
    );
}

#[test]
fn an_appliance_busy_with_personas_fails_the_log_in_at_once() {
    let (mut s, _d) = setup(LoginConfig::default());
    s.command(T0, 1, Command::Open { name: name() });
    let req = one(&mut s);
    let m = Message::parse(&req).unwrap();
    let mut buf = [0u8; 1500];
    let n = PersonasRefused {
        name: name(),
        code: code::BUSY,
    }
    .encode(&mut buf, m.transaction_id())
    .unwrap();
    assert!(n < req.len());
    assert!(feed(&mut s, T0 + ms(5), HOME, &buf[..n]).is_none());
    assert_eq!(only(&mut s, 1), [Event::Failed(Failure::ApplianceBusy)]);
    assert!(
        sent(&mut s).is_empty(),
        "no retransmission: the session is over"
    );
    // From another address it counts for nothing.
    s.command(T0, 2, Command::Open { name: name() });
    let req = one(&mut s);
    let m = Message::parse(&req).unwrap();
    let n = PersonasRefused {
        name: name(),
        code: code::BUSY,
    }
    .encode(&mut buf, m.transaction_id())
    .unwrap();
    feed(&mut s, T0, "192.0.2.99:1", &buf[..n]);
    assert!(events(&mut s).is_empty());
}
