//! Micro-benchmarks of the browser log-in, sans-IO: the gateway's JSON message parser, a
//! persona-cache hit in the server state machine, and a whole log-in on the server side.
//!
//!     cargo bench -p flock-benches --bench login
//!
//! The server-side benches drive a `flock_proto::server::Server` by hand, as
//! `proto/tests/login.rs` does, with a simulated appliance answering. Only the server's calls
//! are timed (`iter_custom` adds up the time spent in them); the simulated appliance's parsing
//! and encoding are left out (a real appliance also verifies the flock's signatures: its cost,
//! not the server's).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flock_proto::login::{Candidate, Command, Event, Personas, SessionId, SessionNonce};
use flock_proto::server::{Keys, Server, ServerConfig};
use flock_proto::testing::{keypair, Answer, Device, Host, XorShift};
use flock_proto::token::ProofKeys;
use flock_proto::wire::login::{self as wire, SignalBody};
use flock_proto::{Name, Time};
use flock_testkit::fake_appliance::{
    ack_signal, connect_answer, connect_request, personas_answer, signal,
};
use flock_ws::fuzzing::{decode_personas, parse};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NOW: Time = Time(1_700_000_000_000);
const HOME: &str = "198.51.100.7:40000";
const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;

/// A browser's SDP answer of about 2 KB (audio + video + data channel, as a browser writes it).
fn answer_sdp() -> String {
    let mut s = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
         a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n",
    );
    for (mid, kind) in [(0, "audio"), (1, "video"), (2, "application")] {
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF 111 63 103\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:sXyZ\r\na=ice-pwd:w2nR9c0l9fTqYbB5m2yQk8Vx\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r\n\
             a=setup:active\r\na=mid:{mid}\r\na=sendrecv\r\na=rtcp-mux\r\n"
        ));
    }
    while s.len() < 2000 {
        s.push_str("a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n");
    }
    s
}

/// Typical browser → gateway frames.
fn frames() -> Vec<(&'static str, String)> {
    let cand =
        "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 \
                generation 0 ufrag sXyZ network-cost 999";
    vec![
        ("open", serde_json::json!({"type": "open", "appliance": "living-room"}).to_string()),
        ("login", serde_json::json!({"type": "login", "persona": "alice", "credential": "pwd:wonderland"}).to_string()),
        ("answer", serde_json::json!({"type": "answer", "sdp": answer_sdp()}).to_string()),
        ("candidate", serde_json::json!({"type": "candidate", "candidate": cand, "sdpMid": "0"}).to_string()),
    ]
}

fn json_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_json");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (kind, text) in frames() {
        assert!(matches!(parse(&text), Ok(r) if r.kind() == kind), "{kind}");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("parse", format!("{kind}_{}B", text.len())),
            &text,
            |b, t| b.iter(|| black_box(parse(black_box(t))).is_ok()),
        );
    }
    // The other direction: the appliance's persona list, decoded by the gateway.
    assert_eq!(decode_personas(LIST).unwrap().len(), 2);
    g.throughput(Throughput::Bytes(LIST.len() as u64));
    g.bench_function(
        BenchmarkId::new("decode_personas", format!("{}B", LIST.len())),
        |b| b.iter(|| black_box(decode_personas(black_box(LIST))).is_ok()),
    );
    g.finish();
}

// --- The server and a simulated appliance ---------------------------------------------------

type S = Host;

fn home() -> SocketAddr {
    HOME.parse().unwrap()
}

fn name() -> Name {
    "box".parse().unwrap()
}

/// A server with the appliance "box" registered at HOME.
fn setup() -> S {
    let keys = Keys {
        proof: ProofKeys::from_secret(b"bench secret"),
        flock: Arc::new(keypair(200)),
    };
    let mut s = Host::new(Server::new(
        ServerConfig::default(),
        keys,
        XorShift(0x9E37_79B9_7F4A_7C15),
    ));
    let mut d = Device::new("box", 1);
    let mut reply = [0u8; 1500];
    for _ in 0..2 {
        let txid = d.txid();
        let req = d.register_bytes(NOW.0, &txid);
        let n = s
            .handle(NOW, home(), &req, &mut reply)
            .reply()
            .expect("an answer to REGISTER");
        let a = Answer::read(&reply[..n]);
        d.absorb(&a);
        if matches!(a, Answer::Registered(_)) {
            return s;
        }
    }
    panic!("box did not register");
}

/// Adds up the time spent in the server's calls.
#[derive(Default)]
struct Clocked(Duration);

impl Clocked {
    #[inline]
    fn t<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.0 += t.elapsed();
        r
    }
}

/// The one datagram the server wants to send now (to HOME).
fn one(s: &mut S, c: &mut Clocked, buf: &mut [u8; 1500]) -> usize {
    let (dst, n) = c.t(|| s.next_sent(buf)).expect("a datagram to send");
    debug_assert_eq!(dst, home());
    n
}

/// Feeds the appliance's datagram; returns the length of the server's direct answer.
fn feed(s: &mut S, c: &mut Clocked, bytes: &[u8], reply: &mut [u8; 1500]) -> Option<usize> {
    c.t(|| s.handle(NOW, home(), bytes, reply).reply())
}

fn event(s: &mut S, c: &mut Clocked) -> Event {
    c.t(|| s.next_event()).expect("an event").1
}

/// Open, answered from the persona cache: one PERSONAS round trip carrying the cached checksum.
fn open_cached(s: &mut S, c: &mut Clocked, id: SessionId) {
    let (mut buf, mut reply) = ([0u8; 1500], [0u8; 1500]);
    c.t(|| s.command(NOW, id, Command::Open { name: name() }));
    let n = one(s, c, &mut buf);
    let answer = personas_answer(&buf[..n], LIST, false);
    debug_assert!(answer.len() < 200, "a checksum-only answer");
    assert!(feed(s, c, &answer, &mut reply).is_none());
    assert!(matches!(event(s, c), Event::Personas(Personas::List(_))));
}

/// The appliance's stream after it accepted: the offer (2 SIGNAL chunks), a candidate, end.
struct ApplianceStream {
    offer: wire::Outbound,
    candidate: Candidate,
}

impl ApplianceStream {
    fn new() -> ApplianceStream {
        let mut offer = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        while offer.len() < 1200 {
            offer.push_str("a=x-filler:0123456789abcdef0123456789abcdef\r\n");
        }
        assert_eq!(wire::pieces(&wire::Outbound::Sdp(offer.clone())), 2);
        let candidate = Candidate {
            candidate: "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host".into(),
            mid: Some("0".into()),
        };
        ApplianceStream {
            offer: wire::Outbound::Sdp(offer),
            candidate,
        }
    }

    /// The appliance's 4 SIGNALs of a session.
    fn signals(&self, nonce: SessionNonce) -> [Vec<u8>; 4] {
        let c = &self.candidate;
        [
            signal(name(), nonce, 0, wire::piece(&self.offer, 0).unwrap()),
            signal(name(), nonce, 1, wire::piece(&self.offer, 1).unwrap()),
            signal(
                name(),
                nonce,
                2,
                SignalBody::Candidate {
                    candidate: &c.candidate,
                    mid: c.mid.as_deref(),
                },
            ),
            signal(name(), nonce, 3, SignalBody::EndOfCandidates),
        ]
    }
}

/// A whole log-in: open (cached personas) → login → accepted → the appliance's offer in 2
/// chunks, a candidate, end-of-candidates → the browser's answer, a candidate,
/// end-of-candidates (each SIGNAL acknowledged) → done.
fn full_login(
    s: &mut S,
    c: &mut Clocked,
    id: SessionId,
    stream: &ApplianceStream,
    browser_answer: &str,
) {
    let (mut buf, mut reply) = ([0u8; 1500], [0u8; 1500]);
    open_cached(s, c, id);
    c.t(|| {
        s.command(
            NOW,
            id,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:bench".into(),
            },
        )
    });
    let n = one(s, c, &mut buf);
    let (nonce, ..) = connect_request(&buf[..n]);
    let accept = connect_answer(&buf[..n], None);
    assert!(feed(s, c, &accept, &mut reply).is_none());
    assert_eq!(event(s, c), Event::Accepted);
    for (i, sig) in stream.signals(nonce).iter().enumerate() {
        assert!(
            feed(s, c, sig, &mut reply).is_some(),
            "SIGNAL {i} acknowledged"
        );
    }
    for _ in 0..3 {
        // Offer, Candidate, EndOfCandidates.
        black_box(event(s, c));
    }
    c.t(|| {
        s.command(
            NOW,
            id,
            Command::Answer {
                sdp: browser_answer.to_owned(),
            },
        );
        s.command(
            NOW,
            id,
            Command::Candidate(Candidate {
                candidate: "candidate:2 1 udp 2130706431 192.0.2.8 50001 typ host".into(),
                mid: Some("0".into()),
            }),
        );
        s.command(NOW, id, Command::EndOfCandidates);
    });
    // Stop-and-wait: the browser's SIGNALs (answer in 3 chunks of 800 B, candidate, end), acked.
    while let Some((_, n)) = c.t(|| s.next_sent(&mut buf)) {
        let (_, a) = ack_signal(&buf[..n]);
        assert!(feed(s, c, &a, &mut reply).is_none());
    }
    assert_eq!(event(s, c), Event::Done);
}

fn server_login(c: &mut Criterion) {
    let mut g = c.benchmark_group("login");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    // Persona-cache hit: the list was fetched once; every Open then costs one signed PERSONAS
    // request and the appliance's checksum-only answer. Close ends the session (not timed).
    let mut s = setup();
    let mut clock = Clocked::default();
    open_cached(&mut s, &mut clock, 0);
    assert_eq!(s.login_occupancy().cached_lists, 1);
    let mut id: SessionId = 1;
    let hits = s.stats().personas_cache_hits;
    g.bench_function("open_cache_hit", |b| {
        b.iter_custom(|iters| {
            let mut c = Clocked::default();
            for _ in 0..iters {
                open_cached(&mut s, &mut c, id);
                s.command(NOW, id, Command::Close);
                id += 1;
            }
            c.0
        })
    });
    assert!(s.stats().personas_cache_hits > hits);
    assert_eq!(
        s.stats().personas_cache_misses,
        1,
        "every timed Open was a cache hit"
    );

    // The whole log-in, server side (the persona list cached, as in steady state).
    let mut s = setup();
    open_cached(&mut s, &mut clock, 0);
    s.command(NOW, 0, Command::Close);
    let stream = ApplianceStream::new();
    let browser_answer = answer_sdp();
    let mut id: SessionId = 1;
    g.bench_function("full_login_sans_io", |b| {
        b.iter_custom(|iters| {
            let mut c = Clocked::default();
            for _ in 0..iters {
                full_login(&mut s, &mut c, id, &stream, &browser_answer);
                id += 1;
            }
            c.0
        })
    });
    let st = s.stats();
    assert_eq!(st.sessions_done, id - 1, "every log-in finished");
    assert_eq!(st.sessions_failed, 0);
    g.finish();
}

criterion_group!(benches, json_decode, server_login);
criterion_main!(benches);
