//! A flock of three servers in the simulation: the virtual clock and in-memory wire of
//! [`crate::sim::Sim`], with datagrams routed by address between the servers and a fake
//! appliance, and servers that can be cut off. For the peer tests (lookups, relays).

use crate::fake_appliance;
pub use crate::sim::{addr, ms, T0};
use crate::sim::{keys_with, register_device, FLOCK_SEED, SECRET};
use flock_proto::login::{Command, Event, SessionId, SessionNonce};
use flock_proto::server::{FlockConfig, Keys, Server, ServerConfig};
use flock_proto::stun::{Class, Message};
use flock_proto::testing::{Device, Host, XorShift};
use flock_proto::wire::login::SignalBody;
use flock_proto::wire::method;
use flock_proto::{Name, Time};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

pub const HOME: &str = "198.51.100.7:40000";
pub const LIST: &[u8] = br#"[{"id":"alice","name":"Alice"}]"#;
/// The secret the flock's servers share for their peer messages.
pub const PEER_SECRET: [u8; 32] = [2; 32];
pub const DIGEST: [u8; 32] = [1; 32];

pub fn server_addr(i: usize) -> SocketAddr {
    addr(&format!("10.0.0.{}:7000", i + 1))
}

pub fn flock(me: usize, digest: [u8; 32]) -> FlockConfig {
    FlockConfig {
        me,
        servers: (0..3).map(server_addr).collect(),
        digest,
        peer_secret: PEER_SECRET,
    }
}

/// A name that server `owner` of three owns.
pub fn name_owned_by(owner: usize, tag: &str) -> Name {
    (0..)
        .map(|i| format!("{tag}{i}").parse::<Name>().unwrap())
        .find(|n| n.hash().server_index(3) == owner)
        .unwrap()
}

/// Answers log-ins as an appliance would; with `only_known`, drops datagrams from addresses it
/// never sent to (a restrictive NAT).
pub struct Appliance {
    pub addr: SocketAddr,
    pub name: Name,
    pub only_known: bool,
    /// Addresses it sent to: what a restrictive NAT lets in.
    pub known: HashSet<SocketAddr>,
    /// Datagrams the NAT dropped.
    pub dropped: usize,
    /// Everyone it got a datagram from (after the NAT).
    pub heard: Vec<SocketAddr>,
    session: Option<(SessionNonce, SocketAddr)>,
    queue: VecDeque<Vec<u8>>,
    in_flight: bool,
    next_seq: u32,
    pub signals_in: Vec<u32>,
}

impl Appliance {
    pub fn new(name: Name, only_known: bool) -> Appliance {
        Appliance {
            addr: addr(HOME),
            name,
            only_known,
            known: HashSet::new(),
            dropped: 0,
            heard: vec![],
            session: None,
            queue: VecDeque::new(),
            in_flight: false,
            next_seq: 0,
            signals_in: vec![],
        }
    }

    fn signal(&mut self, body: SignalBody<'_>) -> Vec<u8> {
        let (nonce, _) = self.session.unwrap();
        let bytes = fake_appliance::signal(self.name, nonce, self.next_seq, body);
        self.next_seq += 1;
        bytes
    }

    fn next_signal(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        if self.in_flight {
            return None;
        }
        let b = self.queue.pop_front()?;
        self.in_flight = true;
        let to = self.session.unwrap().1;
        self.known.insert(to);
        Some((to, b))
    }

    /// One datagram in; what the appliance sends back.
    pub fn handle(&mut self, src: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        if self.only_known && !self.known.contains(&src) {
            self.dropped += 1;
            return vec![];
        }
        self.heard.push(src);
        let m = Message::parse(bytes).expect("parses");
        let mut out = vec![];
        match (m.method(), m.class()) {
            (x, Class::Request) if x == method::PERSONAS => {
                assert!(fake_appliance::signed_by_flock(bytes));
                out.push((src, fake_appliance::personas_answer(bytes, LIST, false)));
            }
            (x, Class::Request) if x == method::CONNECT => {
                assert!(fake_appliance::signed_by_flock(bytes));
                let (session, ..) = fake_appliance::connect_request(bytes);
                out.push((src, fake_appliance::connect_answer(bytes, None)));
                if self.session.is_none() {
                    self.session = Some((session, src));
                    let sdp = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";
                    let offer = self.signal(SignalBody::Sdp {
                        offset: 0,
                        total: sdp.len() as u32,
                        data: sdp,
                    });
                    let cand = self.signal(SignalBody::Candidate {
                        candidate: "candidate:1 1 udp 1 192.0.2.7 50000 typ host",
                        mid: Some("0"),
                    });
                    let end = self.signal(SignalBody::EndOfCandidates);
                    self.queue.extend([offer, cand, end]);
                    out.extend(self.next_signal());
                }
            }
            (x, Class::Request) if x == method::SIGNAL => {
                let (s, ack) = fake_appliance::ack_signal(bytes);
                assert_eq!(Some(s.session), self.session.map(|s| s.0));
                if !self.signals_in.contains(&s.seq) {
                    self.signals_in.push(s.seq);
                }
                out.push((src, ack));
            }
            (x, Class::Success) if x == method::SIGNAL => {
                self.in_flight = false;
                out.extend(self.next_signal());
            }
            other => panic!("appliance got {other:?}"),
        }
        for (to, _) in &out {
            self.known.insert(*to);
        }
        out
    }
}

/// The three servers, the appliance, the wire and the clock.
pub struct Flock {
    pub now: Time,
    pub servers: Vec<Host>,
    pub appliance: Appliance,
    /// Servers cut off the network (nothing in or out).
    pub down: HashSet<usize>,
    pub queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every datagram put on the wire: (from, to, bytes).
    pub log: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub events: Vec<(usize, SessionId, Event)>,
}

/// The keys every server of the flock has.
pub fn keys() -> Keys {
    keys_with(SECRET, FLOCK_SEED)
}

impl Flock {
    /// Three servers with these flock digests, and `appliance` at [`HOME`], at [`T0`].
    pub fn new(appliance: Appliance, digests: [[u8; 32]; 3]) -> Flock {
        let servers = (0..3)
            .map(|i| {
                Host::new(Server::new(
                    ServerConfig {
                        flock: flock(i, digests[i]),
                        ..ServerConfig::default()
                    },
                    keys(),
                    XorShift(0x9E37_79B9 + i as u64),
                ))
            })
            .collect();
        Flock {
            now: T0,
            servers,
            appliance,
            down: HashSet::new(),
            queue: VecDeque::new(),
            log: vec![],
            events: vec![],
        }
    }

    /// Registers the appliance at server `owner`.
    pub fn register(&mut self, owner: usize) {
        let mut d = Device::new(self.appliance.name.as_str(), 1);
        let src = self.appliance.addr;
        register_device(&mut self.servers[owner], self.now, &mut d, src);
        self.appliance.known.insert(server_addr(owner));
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        (0..3).find(|&i| server_addr(i) == a)
    }

    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.log.push((from, to, bytes.clone()));
        let cut = |a| self.index(a).is_some_and(|i| self.down.contains(&i));
        if !cut(from) && !cut(to) {
            self.queue.push_back((from, to, bytes));
        }
    }

    /// Delivers everything in flight, and what it causes, at the current time.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            for i in 0..3 {
                for (dst, b) in self.servers[i].sent() {
                    self.send(server_addr(i), dst, b);
                }
                for (id, e) in self.servers[i].events() {
                    self.events.push((i, id, e));
                }
            }
            let Some((from, to, bytes)) = self.queue.pop_front() else {
                return;
            };
            if to == self.appliance.addr {
                for (dst, b) in self.appliance.handle(from, &bytes) {
                    let a = self.appliance.addr;
                    self.send(a, dst, b);
                }
            } else if let Some(i) = self.index(to) {
                let mut reply = [0u8; 2048];
                if let Some(n) = self.servers[i]
                    .handle(self.now, from, &bytes, &mut reply)
                    .reply()
                {
                    assert!(n <= bytes.len(), "answer larger than its request");
                    self.send(to, from, reply[..n].to_vec());
                }
            }
        }
        panic!("the network does not settle");
    }

    /// Runs timers up to `until`, settling the network at each.
    pub fn run_until(&mut self, until: Time) {
        self.pump();
        loop {
            let next = self.servers.iter_mut().filter_map(|s| s.timeout()).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for s in &mut self.servers {
                        if s.timeout().is_some_and(|x| x <= self.now) {
                            s.handle_timeout(self.now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    pub fn command(&mut self, server: usize, id: SessionId, cmd: Command) {
        self.servers[server].command(self.now, id, cmd);
        self.pump();
    }

    /// Events of session `id` at `server` so far (taken).
    pub fn take(&mut self, server: usize, id: SessionId) -> Vec<Event> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|(s, i, _)| *s == server && *i == id);
        self.events = rest;
        mine.into_iter().map(|(_, _, e)| e).collect()
    }

    /// Datagrams sent from `from` to `to` so far, with a given STUN method.
    pub fn count(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        method: flock_proto::stun::Method,
    ) -> usize {
        self.log
            .iter()
            .filter(|(f, t, b)| {
                *f == from && *t == to && Message::parse(b).is_ok_and(|m| m.method() == method)
            })
            .count()
    }

    /// A whole log-in at `server` for session `id`: personas, login, signalling both ways, done.
    pub fn full_login(&mut self, server: usize, id: SessionId) {
        let name = self.appliance.name;
        self.command(server, id, Command::Open { name });
        self.run_for(ms(5_000));
        let ev = self.take(server, id);
        assert!(matches!(ev.as_slice(), [Event::Personas(_)]), "{ev:?}");
        self.command(
            server,
            id,
            Command::Login {
                persona: "alice".into(),
                credential: "pwd:x".into(),
            },
        );
        self.run_for(ms(5_000));
        let ev = self.take(server, id);
        assert!(matches!(ev.first(), Some(Event::Accepted)), "{ev:?}");
        assert!(
            ev.iter().any(|e| matches!(e, Event::Offer { .. })),
            "{ev:?}"
        );
        assert!(matches!(ev.last(), Some(Event::EndOfCandidates)), "{ev:?}");
        self.command(
            server,
            id,
            Command::Answer {
                sdp: "v=0\r\n".into(),
            },
        );
        self.command(
            server,
            id,
            Command::Candidate(flock_proto::login::Candidate {
                candidate: "candidate:2 1 udp 1 192.0.2.9 1 typ host".into(),
                mid: None,
            }),
        );
        self.command(server, id, Command::EndOfCandidates);
        self.run_for(ms(5_000));
        assert_eq!(self.take(server, id), vec![Event::Done]);
        assert_eq!(
            self.appliance.signals_in,
            vec![0, 1, 2],
            "the browser's answer, candidate and end arrived"
        );
    }
}
