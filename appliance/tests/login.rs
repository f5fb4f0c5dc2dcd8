//! Browser log-in on the appliance, sans-IO: the `Appliance` driven by hand-made flock messages
//! (PERSONAS, CONNECT, SIGNAL, acks) signed with the flock key, on simulated time.

use flock_appliance::{
    Appliance, ApplianceConfig, Candidate, Decision, Event, Output, SessionFailure, SessionNonce,
    SignalError,
};
use flock_proto::wire::login::{self as wire, code, Ack, PersonasChunk, Signal, SignalBody};
use flock_proto::wire::method;
use flock_testkit::sim::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The flock server that serves the browser (not the one the appliance registers with).
fn flock() -> SocketAddr {
    addr("192.0.2.9:3478")
}

const NONCE: SessionNonce = [0x5A; 16];
/// Requests in these tests stay valid for a minute after the simulation starts.
const VALID_UNTIL: u64 = T0.0 + 60_000;

struct Lab {
    now: Time,
    app: Appliance,
    /// Everything the appliance sent that is log-in traffic, with when.
    sent: Vec<(Time, SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    /// The appliance's next timer, as its last `Output::Timeout` said (`flush` leaves it fresh).
    timer: Option<Time>,
    calls: Arc<AtomicUsize>,
    txids: u64,
}

impl Lab {
    fn new() -> Lab {
        Lab::with("box", |_| {})
    }

    /// An appliance named `name_` whose authenticator accepts `pwd:secret` for "alice", denies
    /// "mallory" and counts its calls.
    fn with(name_: &str, tweak: impl FnOnce(&mut ApplianceConfig)) -> Lab {
        let mut c = config(name_, addr("192.0.2.1:3478"));
        tweak(&mut c);
        let mut app = Appliance::new(c, keypair(APP_SEED), XorShift(0x1234_5678_9ABC_DEF1));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        app.set_authenticator(move |r| {
            counter.fetch_add(1, Ordering::SeqCst);
            match (r.persona, r.credential) {
                ("mallory", _) => Decision::Deny,
                ("alice", b"pwd:secret") => Decision::Accept,
                _ => Decision::BadCredentials,
            }
        });
        let mut lab = Lab {
            now: T0,
            app,
            sent: vec![],
            events: vec![],
            timer: None,
            calls,
            txids: 0,
        };
        lab.flush();
        lab
    }

    fn name(&self) -> Name {
        *self.app.name()
    }

    fn txid(&mut self) -> TransactionId {
        self.txids += 1;
        let mut t = [0; 12];
        t[4..].copy_from_slice(&self.txids.to_be_bytes());
        t
    }

    fn flush(&mut self) {
        let mut buf = [0u8; 1500];
        loop {
            let (dst, n) = match self.app.poll_output(self.now, &mut buf) {
                Output::Transmit { dst, len } => (dst, len),
                Output::Event(e) => {
                    self.events.push(e);
                    continue;
                }
                Output::Timeout(t) => {
                    self.timer = t;
                    return;
                }
            };
            let bytes = buf[..n].to_vec();
            if wire::is_login(&Message::parse(&bytes).unwrap()) {
                self.sent.push((self.now, dst, bytes));
            }
        }
    }

    /// Delivers a datagram; returns the log-in datagrams it caused.
    fn deliver(&mut self, src: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let before = self.sent.len();
        self.app.handle(self.now, src, bytes);
        self.flush();
        self.sent[before..]
            .iter()
            .map(|(_, d, b)| (*d, b.clone()))
            .collect()
    }

    /// Runs the appliance's timers for `d`.
    fn advance(&mut self, d: std::time::Duration) {
        let end = self.now + d;
        while let Some(t) = self.timer.filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.app.handle_timeout(self.now);
            self.flush();
        }
        self.now = end;
        self.flush();
    }

    fn personas(&mut self, offset: u32, known: Option<&[u8; 32]>, seed: u8) -> Vec<u8> {
        let txid = self.txid();
        let mut buf = [0u8; 1500];
        let n = wire::encode_personas_request(
            &mut buf,
            &txid,
            &self.name(),
            offset,
            known,
            VALID_UNTIL,
            &keypair(seed),
        )
        .unwrap();
        buf[..n].to_vec()
    }

    fn connect_as(
        &mut self,
        nonce: SessionNonce,
        persona: &str,
        credential: &[u8],
        seed: u8,
    ) -> Vec<u8> {
        self.connect_until(nonce, persona, credential, seed, VALID_UNTIL)
    }

    /// A CONNECT valid until `valid_until` (ms).
    fn connect_until(
        &mut self,
        nonce: SessionNonce,
        persona: &str,
        credential: &[u8],
        seed: u8,
        valid_until: u64,
    ) -> Vec<u8> {
        let txid = self.txid();
        let mut buf = [0u8; 1500];
        let n = wire::encode_connect(
            &mut buf,
            &txid,
            &self.name(),
            &nonce,
            persona,
            credential,
            valid_until,
            &keypair(seed),
        )
        .unwrap();
        buf[..n].to_vec()
    }

    /// Logs "alice" in under `nonce`; returns the CONNECT's answer.
    fn login(&mut self, nonce: SessionNonce) -> Ack {
        let c = self.connect_as(nonce, "alice", b"pwd:secret", FLOCK_SEED);
        let out = self.deliver(flock(), &c);
        assert_eq!(out.len(), 1);
        ack(&out[0].1)
    }

    fn signal(&mut self, nonce: SessionNonce, seq: u32, body: SignalBody<'_>) -> Vec<u8> {
        let txid = self.txid();
        flock_testkit::fake_appliance::signal_with(&txid, self.name(), nonce, seq, body)
    }

    /// The appliance's SIGNALs so far (requests only), with when they went out.
    fn signals(&self) -> Vec<(Time, SocketAddr, Vec<u8>)> {
        self.sent
            .iter()
            .filter(|(_, _, b)| is_signal_request(b))
            .cloned()
            .collect()
    }

    /// Acknowledges the appliance's SIGNAL `bytes` as the flock would.
    fn ack_signal(&mut self, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let m = Message::parse(bytes).unwrap();
        let s = Signal::parse(&m).unwrap();
        let a = Ack {
            method: method::SIGNAL,
            name: s.name,
            session: s.session,
            seq: Some(s.seq),
            error: None,
        };
        let mut buf = [0u8; 1500];
        let n = a.encode(&mut buf, m.transaction_id()).unwrap();
        self.deliver(flock(), &buf[..n])
    }

    /// Acknowledges the SIGNAL in flight (the latest sent: stop-and-wait), and the next, until
    /// none is left; returns them in order.
    fn ack_all(&mut self) -> Vec<String> {
        let mut seen: Vec<String> = vec![];
        while let Some((_, _, bytes)) = self.signals().last().cloned() {
            let d = describe(&bytes);
            if seen.last() == Some(&d) {
                break;
            }
            self.ack_signal(&bytes);
            seen.push(d);
        }
        seen
    }
}

fn is_signal_request(b: &[u8]) -> bool {
    let m = Message::parse(b).unwrap();
    m.method() == method::SIGNAL && m.class() == Class::Request
}

fn ack(bytes: &[u8]) -> Ack {
    Ack::parse(&Message::parse(bytes).unwrap()).unwrap()
}

/// "seq kind" of a SIGNAL, e.g. "0 sdp@0", "2 candidate", "4 end".
fn describe(bytes: &[u8]) -> String {
    let m = Message::parse(bytes).unwrap();
    let s = Signal::parse(&m).unwrap();
    let kind = match s.body {
        SignalBody::Sdp { offset, .. } => format!("sdp@{offset}"),
        SignalBody::Candidate { .. } => "candidate".into(),
        SignalBody::EndOfCandidates => "end".into(),
    };
    format!("{} {kind}", s.seq)
}

fn candidate(i: u16) -> Candidate {
    Candidate {
        candidate: format!(
            "candidate:{i} 1 udp 2130706431 192.0.2.50 {} typ host",
            50000 + i
        ),
        mid: Some("0".into()),
    }
}

fn offer() -> String {
    "a=x-filler\r\n".repeat(140) // 1680 bytes: three SDP chunks
}

fn personas_json() -> Vec<u8> {
    let items: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"id":"user{i}","name":"User number {i}"}}"#))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .try_into()
        .unwrap()
}

#[test]
fn personas_come_in_chunks_no_larger_than_the_request() {
    for name_ in ["box", &"b".repeat(255)] {
        let mut lab = Lab::with(name_, |_| {});
        let list = personas_json();
        assert!(list.len() > 2000);
        lab.app.set_personas(Some(list.clone()));
        let mut got = vec![];
        let mut chunks = 0;
        loop {
            let req = lab.personas(got.len() as u32, None, FLOCK_SEED);
            let out = lab.deliver(flock(), &req);
            assert_eq!(out.len(), 1);
            let (dst, answer) = &out[0];
            assert_eq!(*dst, flock(), "answered to the request's source");
            assert!(
                answer.len() <= req.len(),
                "answer {} > request {}",
                answer.len(),
                req.len()
            );
            let m = Message::parse(answer).unwrap();
            assert_eq!(
                m.transaction_id(),
                Message::parse(&req).unwrap().transaction_id()
            );
            let c = PersonasChunk::parse(&m).unwrap();
            assert_eq!(
                (c.offset as usize, c.total as usize, c.credentials_required),
                (got.len(), list.len(), false)
            );
            assert_eq!(c.checksum, sha256(&list));
            assert!(!c.data.is_empty());
            got.extend_from_slice(c.data);
            chunks += 1;
            if got.len() >= c.total as usize {
                break;
            }
        }
        assert_eq!(got, list);
        assert!(chunks >= 3, "{chunks} chunks for {} bytes", list.len());
        // The flock's cache is current: one round trip, no data.
        let req = lab.personas(0, Some(&sha256(&list)), FLOCK_SEED);
        let out = lab.deliver(flock(), &req);
        let c = PersonasChunk::parse(&Message::parse(&out[0].1).unwrap()).unwrap();
        assert_eq!(
            (c.checksum, c.total as usize, c.data),
            (sha256(&list), list.len(), &[][..])
        );
        // A stale cache gets data.
        let req = lab.personas(0, Some(&[7; 32]), FLOCK_SEED);
        let out = lab.deliver(flock(), &req);
        assert!(!PersonasChunk::parse(&Message::parse(&out[0].1).unwrap())
            .unwrap()
            .data
            .is_empty());
        assert_eq!(lab.app.stats().personas_answered, chunks + 2);
    }
}

#[test]
fn credentials_required_is_a_flag_without_data() {
    let mut lab = Lab::new();
    for personas in [None, Some(b"[]".to_vec())] {
        lab.app.set_personas(personas.clone());
        let req = lab.personas(0, None, FLOCK_SEED);
        let out = lab.deliver(flock(), &req);
        let c = PersonasChunk::parse(&Message::parse(&out[0].1).unwrap()).unwrap();
        assert_eq!(c.credentials_required, personas.is_none());
        assert_eq!(c.checksum, sha256(personas.as_deref().unwrap_or_default()));
        assert_eq!(c.data, personas.as_deref().unwrap_or_default());
    }
    // Past the end: no data, no panic.
    let req = lab.personas(500, None, FLOCK_SEED);
    let out = lab.deliver(flock(), &req);
    let c = PersonasChunk::parse(&Message::parse(&out[0].1).unwrap()).unwrap();
    assert_eq!((c.offset, c.total, c.data), (500, 2, &[][..]));
}

#[test]
fn forged_stale_or_misaddressed_requests_are_ignored() {
    let mut lab = Lab::new();
    lab.app.set_personas(Some(personas_json()));
    let forged = lab.personas(0, None, FLOCK_SEED + 1);
    assert!(lab.deliver(flock(), &forged).is_empty());
    let forged = lab.connect_as(NONCE, "alice", b"pwd:secret", FLOCK_SEED + 1);
    assert!(lab.deliver(flock(), &forged).is_empty());
    // A tampered CONNECT (credential changed after signing) fails its fingerprint or signature.
    let mut tampered = lab.connect_as(NONCE, "alice", b"pwd:secreT", FLOCK_SEED);
    let at = tampered
        .windows(10)
        .position(|w| w == b"pwd:secreT")
        .unwrap();
    tampered[at + 9] = b't';
    assert!(lab.deliver(flock(), &tampered).is_empty());
    // For another name.
    let mut other = Lab::with("other", |_| {});
    let req = other.personas(0, None, FLOCK_SEED);
    let con = other.connect_as(NONCE, "alice", b"pwd:secret", FLOCK_SEED);
    assert!(lab.deliver(flock(), &req).is_empty() && lab.deliver(flock(), &con).is_empty());
    // Replayed eleven minutes after they expired (beyond the 10 min clock allowance).
    let req = lab.personas(0, None, FLOCK_SEED);
    let con = lab.connect_as(NONCE, "alice", b"pwd:secret", FLOCK_SEED);
    lab.now = Time(VALID_UNTIL + 11 * 60_000);
    assert!(lab.deliver(flock(), &req).is_empty() && lab.deliver(flock(), &con).is_empty());
    assert_eq!(lab.app.stats().login_ignored, 6);
    assert_eq!(
        lab.calls.load(Ordering::SeqCst),
        0,
        "the authenticator never saw them"
    );
    assert!(lab.events.is_empty() && lab.app.connections() == 0);
    // Within the allowance they count.
    lab.now = Time(VALID_UNTIL + 9 * 60_000);
    assert_eq!(lab.deliver(flock(), &req).len(), 1);
}

#[test]
fn personas_answers_are_rate_limited() {
    let mut lab = Lab::new();
    lab.app.set_personas(Some(personas_json()));
    let req = lab.personas(0, None, FLOCK_SEED);
    // (chunks, 508s) answered for `n` requests from spoofed sources.
    let burst = |lab: &mut Lab, n: u8| {
        let mut counts = (0, 0);
        for i in 0..n {
            for (_, b) in lab.deliver(addr(&format!("198.51.100.{i}:9")), &req) {
                let m = Message::parse(&b).unwrap();
                if PersonasChunk::parse(&m).is_ok() {
                    counts.0 += 1;
                } else {
                    let r = wire::PersonasRefused::parse(&m).unwrap();
                    assert_eq!(r.code, code::BUSY);
                    assert!(b.len() < req.len());
                    counts.1 += 1;
                }
            }
        }
        counts
    };
    assert_eq!(burst(&mut lab, 50), (8, 32), "a burst of 8, then 508s (32)");
    assert_eq!(lab.app.stats().login_busy, 32);
    assert_eq!(lab.app.stats().login_dropped, 10, "past both: nothing");
    lab.advance(ms(1_000));
    assert_eq!(
        burst(&mut lab, 10),
        (1, 4),
        "one a second after the burst (508s: four)"
    );
}

#[test]
fn a_burst_of_log_ins_past_the_answer_rate_fails_fast_with_busy() {
    let mut lab = Lab::with("box", |c| c.max_connections = 1000);
    lab.app.set_personas(Some(personas_json()));
    // Log-ins as the flock runs them: PERSONAS, then CONNECT; 8 answers make 4 log-ins.
    let mut outcomes = vec![];
    for i in 0..6u8 {
        let req = lab.personas(0, None, FLOCK_SEED);
        let out = lab.deliver(flock(), &req);
        assert_eq!(out.len(), 1, "every request answered at once");
        let m = Message::parse(&out[0].1).unwrap();
        if PersonasChunk::parse(&m).is_err() {
            outcomes.push(format!(
                "personas {}",
                wire::PersonasRefused::parse(&m).unwrap().code
            ));
            continue;
        }
        let a = lab.login([i; 16]);
        outcomes.push(format!("connect {:?}", a.error));
    }
    assert_eq!(
        outcomes,
        [
            "connect None",
            "connect None",
            "connect None",
            "connect None",
            "personas 508",
            "personas 508"
        ]
    );
    // A CONNECT over the rate: 508 at once, remembered (its retransmission gets it again),
    // the authenticator never asked.
    assert_eq!(lab.login([0x77; 16]).error, Some(code::BUSY));
    assert_eq!(lab.login([0x77; 16]).error, Some(code::BUSY));
    assert_eq!(lab.calls.load(Ordering::SeqCst), 4);
    // One a second after the burst.
    lab.advance(ms(1_000));
    assert_eq!(lab.login([0x78; 16]).error, None);
}

#[test]
fn a_retransmitted_connect_makes_one_connection_and_one_call() {
    let mut lab = Lab::new();
    let c = lab.connect_as(NONCE, "alice", b"pwd:secret", FLOCK_SEED);
    for src in [flock(), flock(), addr("192.0.2.10:3478")] {
        let out = lab.deliver(src, &c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, src);
        assert!(out[0].1.len() < c.len());
        let a = ack(&out[0].1);
        assert_eq!(
            (a.method, a.session, a.seq, a.error),
            (method::CONNECT, NONCE, None, None)
        );
        assert_eq!(
            Message::parse(&out[0].1).unwrap().transaction_id(),
            Message::parse(&c).unwrap().transaction_id()
        );
    }
    assert_eq!(lab.calls.load(Ordering::SeqCst), 1);
    assert_eq!(lab.app.connections(), 1);
    assert_eq!(
        lab.events,
        [Event::LoginAccepted {
            session: NONCE,
            persona: "alice".into()
        }]
    );
    assert_eq!(lab.app.stats().logins_accepted, 1);
}

#[test]
fn bad_credentials_and_deny_are_error_acks_remembered_per_nonce() {
    let mut lab = Lab::new();
    for (nonce, persona, cred, want) in [
        ([1; 16], "alice", &b"pwd:wrong"[..], code::BAD_CREDENTIALS),
        ([2; 16], "bob", b"pwd:secret", code::BAD_CREDENTIALS),
        ([3; 16], "mallory", b"pwd:x", code::DENIED),
    ] {
        let c = lab.connect_as(nonce, persona, cred, FLOCK_SEED);
        for _ in 0..2 {
            let out = lab.deliver(flock(), &c);
            assert!(out[0].1.len() <= c.len());
            assert_eq!(ack(&out[0].1).error, Some(want));
        }
        assert_eq!(
            lab.events.last(),
            Some(&Event::LoginRefused {
                session: nonce,
                persona: persona.into(),
                code: want
            })
        );
    }
    assert_eq!(lab.calls.load(Ordering::SeqCst), 3, "once per nonce");
    assert_eq!(lab.app.connections(), 0);
    // A new attempt (new nonce) with the right password is asked again and accepted.
    assert_eq!(lab.login([4; 16]).error, None);
}

#[test]
fn by_default_every_log_in_is_denied() {
    let mut c = config("box", addr("192.0.2.1:3478"));
    c.max_connections = 1;
    let mut app = Appliance::new(c, keypair(APP_SEED), XorShift(7));
    let mut buf = [0u8; 1500];
    let n = wire::encode_connect(
        &mut buf,
        &[1; 12],
        &name("box"),
        &NONCE,
        "alice",
        b"pwd:secret",
        VALID_UNTIL,
        &keypair(FLOCK_SEED),
    )
    .unwrap();
    app.handle(T0, flock(), &buf[..n]);
    let mut out = [0u8; 1500];
    let n = loop {
        match app.poll_output(T0, &mut out) {
            Output::Transmit { dst, len } if dst == flock() => break len,
            Output::Timeout(_) => panic!("nothing sent to the flock"),
            _ => {}
        }
    };
    assert_eq!(ack(&out[..n]).error, Some(code::DENIED));
}

#[test]
fn past_max_connections_a_connect_is_busy_without_asking() {
    let mut lab = Lab::with("box", |c| c.max_connections = 2);
    assert_eq!(lab.login([1; 16]).error, None);
    assert_eq!(lab.login([2; 16]).error, None);
    assert_eq!(lab.login([3; 16]).error, Some(code::BUSY));
    assert_eq!(
        lab.login([3; 16]).error,
        Some(code::BUSY),
        "the same answer again"
    );
    assert_eq!(lab.calls.load(Ordering::SeqCst), 2);
    assert_eq!(lab.app.connections(), 2);
}

/// A CONNECT for "alice" under the nonce numbered `i`, with `credential`.
fn numbered(lab: &mut Lab, i: u32, credential: &[u8]) -> Ack {
    let mut nonce = [0; 16];
    nonce[..4].copy_from_slice(&i.to_be_bytes());
    let c = lab.connect_as(nonce, "alice", credential, FLOCK_SEED);
    let out = lab.deliver(flock(), &c);
    lab.advance(ms(1_000)); // within the answer rate
    ack(&out[0].1)
}

#[test]
fn the_login_memory_is_bounded_and_never_forgets_into_a_second_connection() {
    let mut lab = Lab::with("box", |c| {
        c.max_connections = 1000;
        c.login_memory = 4;
    });
    // Four log-ins, each CONNECT valid a second longer than the one before.
    let connect = |lab: &mut Lab, i: u8| {
        let until = VALID_UNTIL + u64::from(i) * 1000;
        let c = lab.connect_until([i; 16], "alice", b"pwd:secret", FLOCK_SEED, until);
        let out = lab.deliver(flock(), &c);
        lab.advance(ms(1_000));
        (c, ack(&out[0].1).error)
    };
    let first = connect(&mut lab, 1);
    assert_eq!(first.1, None);
    for i in 2..=4 {
        assert_eq!(connect(&mut lab, i).1, None);
    }
    // The fifth makes room by forgetting the first (it expires first)...
    assert_eq!(connect(&mut lab, 5).1, None);
    assert_eq!(lab.calls.load(Ordering::SeqCst), 5);
    // ...whose replay is then refused, never decided again; the others are remembered.
    let out = lab.deliver(flock(), &first.0);
    assert_eq!(ack(&out[0].1).error, Some(code::BUSY));
    assert_eq!(lab.calls.load(Ordering::SeqCst), 5, "no second decision");
    assert_eq!(lab.app.connections(), 5, "no second connection");
    // Later log-ins are decided as usual: the bound never locks the appliance.
    for i in 6..20 {
        assert_eq!(connect(&mut lab, i).1, None);
    }
    assert_eq!(lab.calls.load(Ordering::SeqCst), 19);
}

#[test]
fn hundreds_of_log_ins_do_not_make_the_appliance_busy() {
    // 300 log-ins within five minutes (the answer rate allows them): all decided, none
    // refused for want of memory, and the next one too.
    let mut lab = Lab::with("box", |c| c.max_connections = 1000);
    for i in 0..300 {
        assert_eq!(
            numbered(&mut lab, i, b"pwd:secret").error,
            None,
            "log-in {i}"
        );
    }
    assert_eq!(lab.login([0xEE; 16]).error, None);
    // A replay of any of them is answered from memory, not obeyed.
    assert_eq!(numbered(&mut lab, 3, b"pwd:secret").error, None);
    assert_eq!(lab.calls.load(Ordering::SeqCst), 301);
}

#[test]
fn refusals_make_room_for_new_decisions() {
    let mut lab = Lab::new();
    for i in 0..300 {
        assert_eq!(
            numbered(&mut lab, i, b"pwd:wrong").error,
            Some(code::BAD_CREDENTIALS)
        );
    }
    assert_eq!(
        lab.login([0xEE; 16]).error,
        None,
        "a flood of wrong passwords does not lock the appliance"
    );
    // Recent refusals are still remembered.
    assert_eq!(
        numbered(&mut lab, 299, b"pwd:wrong").error,
        Some(code::BAD_CREDENTIALS)
    );
    assert_eq!(lab.calls.load(Ordering::SeqCst), 301);
}

#[test]
fn signalling_out_is_stop_and_wait_in_order() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    let sdp = offer();
    lab.app.send_offer(lab.now, &NONCE, sdp.clone()).unwrap();
    lab.app
        .add_candidate(lab.now, &NONCE, candidate(1))
        .unwrap();
    lab.app
        .add_candidate(lab.now, &NONCE, candidate(2))
        .unwrap();
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    // One outstanding SIGNAL at a time, sent to the CONNECT's source.
    let s = lab.signals();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, flock());
    assert_eq!(describe(&s[0].2), "0 sdp@0");
    // Unacknowledged: retransmitted (same SIGNAL, same transaction) after 0.5 s, 1 s, 2 s.
    lab.advance(ms(3_600));
    let s = lab.signals();
    assert_eq!(
        s.iter().map(|(t, _, _)| t.0 - T0.0).collect::<Vec<_>>(),
        [0, 500, 1_500, 3_500]
    );
    assert!(s.iter().all(|(_, _, b)| *b == s[0].2));
    let bodies = lab.ack_all();
    assert_eq!(
        bodies,
        [
            "0 sdp@0",
            "1 sdp@800",
            "2 sdp@1600",
            "3 candidate",
            "4 candidate",
            "5 end"
        ]
    );
    // Reassembled as the flock would.
    let mut asm = wire::SdpAssembly::default();
    let mut whole = None;
    for (_, _, b) in lab.signals() {
        if let SignalBody::Sdp {
            offset,
            total,
            data,
        } = Signal::parse(&Message::parse(&b).unwrap()).unwrap().body
        {
            if let Ok(Some(v)) = asm.add(offset, total, data, 64 * 1024) {
                whole = Some(v);
            }
        }
    }
    assert_eq!(whole, Some(sdp));
    assert!(lab
        .signals()
        .iter()
        .all(|(_, _, b)| b.len() <= wire::MAX_DATAGRAM));
    // Nothing more in flight, nothing more sent.
    let n = lab.signals().len();
    lab.advance(secs(10));
    assert_eq!(lab.signals().len(), n);
}

#[test]
fn end_of_candidates_waits_for_every_candidate_to_be_acked() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.app
        .add_candidate(lab.now, &NONCE, candidate(1))
        .unwrap();
    lab.app
        .add_candidate(lab.now, &NONCE, candidate(2))
        .unwrap();
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    // Ack the offer and the first candidate only.
    for _ in 0..2 {
        let last = lab.signals().last().unwrap().2.clone();
        lab.ack_signal(&last);
    }
    assert_eq!(describe(&lab.signals().last().unwrap().2), "2 candidate");
    // The second candidate's acks keep getting lost: end-of-candidates never goes out.
    lab.advance(secs(10));
    let described: Vec<String> = lab.signals().iter().map(|(_, _, b)| describe(b)).collect();
    assert!(described.iter().all(|d| d != "3 end"), "{described:?}");
    assert!(described.iter().filter(|d| *d == "2 candidate").count() > 3);
    // A late ack for an earlier SIGNAL changes nothing.
    let first = lab.signals()[0].2.clone();
    lab.ack_signal(&first);
    assert!(lab.signals().iter().all(|(_, _, b)| describe(b) != "3 end"));
    // Once it is acknowledged, end-of-candidates follows at once.
    let last = lab.signals().last().unwrap().2.clone();
    lab.ack_signal(&last);
    assert_eq!(describe(&lab.signals().last().unwrap().2), "3 end");
}

#[test]
fn signalling_calls_are_checked() {
    let mut lab = Lab::new();
    let now = lab.now;
    assert_eq!(
        lab.app.send_offer(now, &NONCE, "v=0".into()),
        Err(SignalError::UnknownSession)
    );
    lab.login(NONCE);
    assert_eq!(
        lab.app.add_candidate(now, &NONCE, candidate(1)),
        Err(SignalError::OutOfOrder),
        "no offer yet"
    );
    assert_eq!(
        lab.app.end_of_candidates(now, &NONCE),
        Err(SignalError::OutOfOrder)
    );
    assert_eq!(
        lab.app.send_offer(now, &NONCE, "x".repeat(32 * 1024 + 1)),
        Err(SignalError::TooLong)
    );
    lab.app.send_offer(now, &NONCE, "v=0\r\n".into()).unwrap();
    assert_eq!(
        lab.app.send_offer(now, &NONCE, "v=0\r\n".into()),
        Err(SignalError::OutOfOrder)
    );
    let long = Candidate {
        candidate: "c".repeat(wire::MAX_CANDIDATE_LEN + 1),
        mid: None,
    };
    assert_eq!(
        lab.app.add_candidate(now, &NONCE, long),
        Err(SignalError::TooLong)
    );
    lab.app.end_of_candidates(now, &NONCE).unwrap();
    assert_eq!(
        lab.app.add_candidate(now, &NONCE, candidate(1)),
        Err(SignalError::OutOfOrder)
    );
}

/// Accepts a log-in and sends the appliance's whole stream, acknowledged.
fn accepted_and_sent(lab: &mut Lab) {
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.app
        .add_candidate(lab.now, &NONCE, candidate(1))
        .unwrap();
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    assert_eq!(lab.ack_all(), ["0 sdp@0", "1 candidate", "2 end"]);
}

#[test]
fn signalling_in_with_duplicates_gaps_and_strangers() {
    let mut lab = Lab::new();
    accepted_and_sent(&mut lab);
    let events = lab.events.len();
    let answer = "v=0\r\n".to_string() + &"a=answer-filler\r\n".repeat(60); // two chunks
    let chunk = |i: usize| {
        let end = ((i + 1) * wire::SDP_CHUNK).min(answer.len());
        SignalBody::Sdp {
            offset: (i * wire::SDP_CHUNK) as u32,
            total: answer.len() as u32,
            data: &answer.as_bytes()[i * wire::SDP_CHUNK..end],
        }
    };
    let s0 = lab.signal(NONCE, 0, chunk(0));
    let s1 = lab.signal(NONCE, 1, chunk(1));
    let c = candidate(9);
    let s2 = lab.signal(
        NONCE,
        2,
        SignalBody::Candidate {
            candidate: &c.candidate,
            mid: c.mid.as_deref(),
        },
    );
    let s3 = lab.signal(NONCE, 3, SignalBody::EndOfCandidates);
    // Out of order: seq 1 before 0 is ignored (no ack, no event).
    assert!(lab.deliver(flock(), &s1).is_empty());
    // In order: acked to the flock, smaller than the SIGNAL.
    for s in [&s0, &s0, &s1] {
        let out = lab.deliver(flock(), s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, flock());
        assert!(out[0].1.len() < s.len());
        let a = ack(&out[0].1);
        let seq = Signal::parse(&Message::parse(s).unwrap()).unwrap().seq;
        assert_eq!(
            (a.method, a.session, a.seq, a.error),
            (method::SIGNAL, NONCE, Some(seq), None)
        );
    }
    assert_eq!(
        lab.events[events..],
        [Event::RemoteAnswer {
            session: NONCE,
            sdp: answer.clone()
        }],
        "one event despite the duplicate"
    );
    // From another address, or with another nonce: 481, no event.
    let other_nonce = lab.signal(
        [9; 16],
        2,
        SignalBody::Candidate {
            candidate: &c.candidate,
            mid: None,
        },
    );
    for (src, bytes) in [
        (addr("192.0.2.66:3478"), s2.clone()),
        (flock(), other_nonce),
    ] {
        let out = lab.deliver(src, &bytes);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, src);
        assert!(out[0].1.len() <= bytes.len());
        assert_eq!(ack(&out[0].1).error, Some(code::UNKNOWN_SESSION));
    }
    assert_eq!(lab.events.len(), events + 1);
    lab.deliver(flock(), &s2);
    lab.deliver(flock(), &s2);
    assert_eq!(
        lab.events[events + 1..],
        [Event::RemoteCandidate {
            session: NONCE,
            candidate: c.clone()
        }]
    );
    // The flock's end-of-candidates after ours was acknowledged: done, forgotten.
    assert_eq!(lab.app.connections(), 1);
    let out = lab.deliver(flock(), &s3);
    assert_eq!(ack(&out[0].1).error, None);
    assert_eq!(
        lab.events[events + 2..],
        [
            Event::RemoteEndOfCandidates { session: NONCE },
            Event::SessionDone { session: NONCE }
        ]
    );
    assert_eq!(lab.app.connections(), 0);
    assert_eq!(
        lab.app.send_offer(lab.now, &NONCE, "v=0".into()),
        Err(SignalError::UnknownSession)
    );
    // Its ack was lost: the retransmission is acknowledged again for a while.
    lab.advance(secs(5));
    let out = lab.deliver(flock(), &s3);
    assert_eq!(ack(&out[0].1).error, None);
    assert_eq!(lab.events.len(), events + 4);
    // Later: no such session. A 481 would be larger than this short SIGNAL: nothing is sent.
    lab.advance(secs(60));
    assert!(lab.deliver(flock(), &s3).is_empty());
    let out = lab.deliver(flock(), &s2);
    assert_eq!(ack(&out[0].1).error, Some(code::UNKNOWN_SESSION));
}

#[test]
fn done_when_the_remote_end_comes_first() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    let end = lab.signal(NONCE, 0, SignalBody::EndOfCandidates);
    lab.deliver(flock(), &end);
    assert_eq!(
        lab.events.last(),
        Some(&Event::RemoteEndOfCandidates { session: NONCE })
    );
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    let sent = lab.ack_all();
    assert_eq!(sent, ["0 sdp@0", "1 end"]);
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionDone { session: NONCE })
    );
    assert_eq!(lab.app.connections(), 0);
}

#[test]
fn a_replayed_connect_after_the_session_gets_the_same_answer_and_nothing_else() {
    let mut lab = Lab::new();
    accepted_and_sent(&mut lab);
    let end = lab.signal(NONCE, 0, SignalBody::EndOfCandidates);
    lab.deliver(flock(), &end);
    assert_eq!(lab.app.connections(), 0);
    let c = lab.connect_as(NONCE, "alice", b"pwd:secret", FLOCK_SEED);
    let out = lab.deliver(addr("198.51.100.7:9"), &c);
    assert_eq!(ack(&out[0].1).error, None);
    assert_eq!(lab.app.connections(), 0);
    assert_eq!(lab.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        lab.events
            .iter()
            .filter(|e| matches!(e, Event::LoginAccepted { .. }))
            .count(),
        1
    );
}

#[test]
fn unacknowledged_signals_give_up() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.flush();
    lab.advance(secs(20));
    let times: Vec<u64> = lab.signals().iter().map(|(t, _, _)| t.0 - T0.0).collect();
    // `rto_initial` 0.5 s doubling up to `rto_max` (8 s); given up 15 s after the first send.
    assert_eq!(times, [0, 500, 1_500, 3_500, 7_500]);
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: NONCE,
            reason: SessionFailure::GaveUp
        })
    );
    assert_eq!(lab.app.connections(), 0);
    assert_eq!(lab.app.stats().sessions_failed, 1);
    let s = lab.signal(
        NONCE,
        0,
        SignalBody::Candidate {
            candidate: &candidate(1).candidate,
            mid: None,
        },
    );
    assert_eq!(
        ack(&lab.deliver(flock(), &s)[0].1).error,
        Some(code::UNKNOWN_SESSION)
    );
}

#[test]
fn signal_retransmission_follows_the_configured_rto() {
    let mut lab = Lab::with("box", |c| {
        c.rto_initial = ms(200);
        c.rto_max = secs(1);
        c.signal_give_up_after = secs(5);
    });
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.flush();
    lab.advance(secs(6));
    let times: Vec<u64> = lab.signals().iter().map(|(t, _, _)| t.0 - T0.0).collect();
    assert_eq!(times, [0, 200, 600, 1_400, 2_400, 3_400, 4_400]);
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: NONCE,
            reason: SessionFailure::GaveUp
        })
    );
}

#[test]
fn give_up_time_is_configurable_and_counts_per_signal() {
    let mut lab = Lab::with("box", |c| c.signal_give_up_after = secs(3));
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.flush();
    lab.advance(secs(2));
    let first = lab.signals()[0].2.clone();
    lab.ack_signal(&first); // progress: the clock restarts for the next SIGNAL
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    lab.advance(ms(2_900));
    assert_eq!(lab.app.connections(), 1);
    lab.advance(ms(200));
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: NONCE,
            reason: SessionFailure::GaveUp
        })
    );
}

#[test]
fn an_error_ack_or_a_silent_session_fails_it() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.flush();
    let s = lab.signals()[0].2.clone();
    let m = Message::parse(&s).unwrap();
    let a = Ack {
        method: method::SIGNAL,
        name: lab.name(),
        session: NONCE,
        seq: Some(0),
        error: Some(code::UNKNOWN_SESSION),
    };
    let mut buf = [0u8; 1500];
    let n = a.encode(&mut buf, m.transaction_id()).unwrap();
    // From elsewhere it is not the flock's word.
    lab.deliver(addr("198.51.100.7:9"), &buf[..n]);
    assert_eq!(lab.app.connections(), 1);
    lab.deliver(flock(), &buf[..n]);
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: NONCE,
            reason: SessionFailure::Closed
        })
    );
    // Accepted, then nothing at all happens: the session expires.
    lab.login([2; 16]);
    lab.advance(secs(119));
    assert_eq!(lab.app.connections(), 1);
    lab.advance(secs(2));
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: [2; 16],
            reason: SessionFailure::Expired
        })
    );
}

#[test]
fn a_malformed_remote_sdp_fails_the_session() {
    let mut lab = Lab::new();
    lab.login(NONCE);
    let s = lab.signal(
        NONCE,
        0,
        SignalBody::Sdp {
            offset: 0,
            total: 40_000,
            data: b"v=0\r\n",
        },
    );
    let out = lab.deliver(flock(), &s);
    assert_eq!(ack(&out[0].1).error, Some(code::UNKNOWN_SESSION));
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionFailed {
            session: NONCE,
            reason: SessionFailure::Malformed
        })
    );
    assert_eq!(lab.app.connections(), 0);
}

#[test]
fn login_runs_beside_registration() {
    // The appliance's own registration traffic goes on while a session signals.
    let mut sim = Sim::new();
    sim.register();
    let mut buf = [0u8; 1500];
    let n = wire::encode_connect(
        &mut buf,
        &[1; 12],
        &sim.name(),
        &NONCE,
        "alice",
        b"pwd:x",
        sim.now.0 + 30_000,
        &keypair(FLOCK_SEED),
    )
    .unwrap();
    sim.inject(flock(), &buf[..n]);
    let answers: Vec<_> = sim
        .app_elsewhere()
        .into_iter()
        .filter(|s| s.method() == method::CONNECT)
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        ack(&answers[0].bytes).error,
        Some(code::DENIED),
        "the default authenticator"
    );
    sim.run_for(secs(70));
    assert!(sim.app.state().is_registered());
}

#[test]
fn unknown_session_answers_are_rate_limited_apart_from_personas() {
    let mut lab = Lab::new();
    lab.app.set_personas(Some(personas_json()));
    let c = candidate(1);
    let junk = lab.signal(
        [9; 16],
        0,
        SignalBody::Candidate {
            candidate: &c.candidate,
            mid: None,
        },
    );
    let answered: usize = (0..40u8)
        .map(|i| lab.deliver(addr(&format!("198.51.100.{i}:9")), &junk).len())
        .sum();
    assert_eq!(answered, 8);
    // Made-up SIGNALs (anyone can send them) do not use up the flock's PERSONAS answers.
    let req = lab.personas(0, None, FLOCK_SEED);
    assert_eq!(lab.deliver(flock(), &req).len(), 1);
}

#[test]
fn an_unacknowledged_last_end_of_candidates_after_the_remote_one_is_done() {
    // The flock forgets the session once both ends are through and stays silent to our
    // retransmissions (a 481 would be larger than them): the ack of our end was lost.
    let mut lab = Lab::new();
    lab.login(NONCE);
    lab.app
        .send_offer(lab.now, &NONCE, "v=0\r\n".into())
        .unwrap();
    lab.app.end_of_candidates(lab.now, &NONCE).unwrap();
    lab.flush();
    let offer = lab.signals()[0].2.clone();
    lab.ack_signal(&offer);
    let end = lab.signal(NONCE, 0, SignalBody::EndOfCandidates);
    lab.deliver(flock(), &end);
    lab.advance(secs(14));
    assert_eq!(
        lab.app.connections(),
        1,
        "retransmitting until the give-up time"
    );
    lab.advance(secs(2));
    assert_eq!(
        lab.events.last(),
        Some(&Event::SessionDone { session: NONCE })
    );
    assert_eq!(lab.app.stats().sessions_failed, 0);
}
