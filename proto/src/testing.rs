//! Test helpers shared by this crate's tests and the end-to-end suite (feature `testing`):
//! deterministic entropy, a hand-driven appliance that builds requests and reads answers, and a
//! [`Host`] that sorts a server's outputs by kind.
//! Not for production use.

pub use crate::server::routing::{owner_core, request_name};

use crate::entropy::Entropy;
use crate::identity::{self, Fingerprint};
use crate::login::{Event, SessionId};
use crate::server::{Output, PeerAlarm, PolicyEvent, Server};
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::token::{Nonce, Token};
use crate::wire::method;
use crate::wire::registration::{self, ErrorAnswer, Keepalive, KeptAlive, Registered};
use crate::Name;
use ring::signature::Ed25519KeyPair;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

/// Deterministic xorshift entropy.
pub struct XorShift(pub u64);

impl Entropy for XorShift {
    fn fill(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// An Ed25519 key pair from a repeated seed byte.
pub fn keypair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("32-byte seed")
}

/// A server's answer, read.
#[derive(Debug)]
pub enum Answer {
    Silent,
    Registered(Registered),
    KeptAlive(KeptAlive),
    Error(ErrorAnswer),
}

impl Answer {
    pub fn code(&self) -> Option<u16> {
        match self {
            Answer::Error(e) => Some(e.code),
            _ => None,
        }
    }

    pub fn is_silent(&self) -> bool {
        matches!(self, Answer::Silent)
    }

    /// Reads a REGISTER or KEEPALIVE answer; panics on anything else.
    pub fn read(bytes: &[u8]) -> Answer {
        let m = Message::parse(bytes).expect("answer parses");
        match (m.method(), m.class()) {
            (_, Class::Error) => Answer::Error(ErrorAnswer::parse(&m).expect("error answer")),
            (x, Class::Success) if x == method::REGISTER => {
                Answer::Registered(Registered::parse(&m).expect("registered"))
            }
            (x, Class::Success) if x == method::KEEPALIVE => {
                Answer::KeptAlive(KeptAlive::parse(&m).expect("kept alive"))
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// A hand-driven appliance: builds requests, remembers its nonce and token.
pub struct Device {
    pub name: Name,
    pub key: Ed25519KeyPair,
    pub nonce: Option<Nonce>,
    pub token: Option<Token>,
    /// The last REGISTER timestamp [`Device::stamp`] handed out.
    pub last_timestamp: u64,
    next_txid: u64,
}

impl Device {
    pub fn new(name: &str, seed: u8) -> Device {
        Device {
            name: name.parse().expect("valid name"),
            key: keypair(seed),
            nonce: None,
            token: None,
            last_timestamp: 0,
            next_txid: seed as u64 * 1_000_000,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&identity::public_key(&self.key))
    }

    /// A fresh transaction id.
    pub fn txid(&mut self) -> TransactionId {
        self.next_txid += 1;
        let mut t = [0; 12];
        t[4..].copy_from_slice(&self.next_txid.to_be_bytes());
        t
    }

    /// A timestamp for a new REGISTER at `now_ms`: later than every one handed out before, as
    /// an appliance signs them (the server takes a name's REGISTERs in timestamp order only).
    pub fn stamp(&mut self, now_ms: u64) -> u64 {
        self.last_timestamp = now_ms.max(self.last_timestamp + 1);
        self.last_timestamp
    }

    /// A REGISTER signed anew at `now_ms`: [`Device::stamp`], then [`Device::register_bytes`].
    pub fn new_register(&mut self, now_ms: u64, txid: &TransactionId) -> Vec<u8> {
        let ts = self.stamp(now_ms);
        self.register_bytes(ts, txid)
    }

    pub fn register_bytes(&self, timestamp_ms: u64, txid: &TransactionId) -> Vec<u8> {
        let mut buf = [0u8; 1200];
        let n = registration::encode_register(
            &mut buf,
            txid,
            &self.name,
            &self.key,
            timestamp_ms,
            self.nonce,
        )
        .expect("encode");
        buf[..n].to_vec()
    }

    pub fn keepalive_bytes(&self, txid: &TransactionId) -> Vec<u8> {
        let mut buf = [0u8; 1200];
        let ka = Keepalive {
            name: self.name,
            identity: self.fingerprint(),
            token: self.token.expect("registered"),
        };
        let n = ka.encode(&mut buf, txid).expect("encode");
        buf[..n].to_vec()
    }

    /// Takes in an answer: remembers a nonce or token it carries.
    pub fn absorb(&mut self, answer: &Answer) {
        match answer {
            Answer::Error(e) if e.nonce.is_some() => self.nonce = e.nonce,
            Answer::Registered(r) => self.token = Some(r.token),
            Answer::KeptAlive(KeptAlive { token: Some(t), .. }) => self.token = Some(*t),
            _ => {}
        }
    }

    /// Answers a CHECK datagram as the holder of this device's key.
    pub fn answer_check(&self, check: &[u8]) -> Vec<u8> {
        let m = Message::parse(check).expect("check parses");
        let c = registration::Check::parse(&m).expect("a CHECK");
        let mut buf = [0u8; 1200];
        let n = registration::encode_check_answer(
            &mut buf,
            m.transaction_id(),
            &c.name,
            &self.key,
            &c.challenge,
        )
        .expect("encode");
        buf[..n].to_vec()
    }
}

/// A server as its host drives it, with what `poll_output` yields sorted into one queue per
/// kind: a test reads the datagrams, the log-in events, the policy events and the alarms each
/// when it wants, and the others wait.
pub struct Host {
    pub server: Server<XorShift>,
    sent: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<(SessionId, Event)>,
    policy: VecDeque<PolicyEvent>,
    alarms: VecDeque<PeerAlarm>,
    timeout: Option<Time>,
}

impl Host {
    pub fn new(server: Server<XorShift>) -> Host {
        Host {
            server,
            sent: VecDeque::new(),
            events: VecDeque::new(),
            policy: VecDeque::new(),
            alarms: VecDeque::new(),
            timeout: None,
        }
    }

    /// Polls the server until it yields a datagram (written to `buf`) or has nothing left;
    /// keeps the other outputs.
    fn poll(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        loop {
            match self.server.poll_output(buf) {
                Output::Transmit { dst, len } => return Some((dst, len)),
                Output::Event { session, event } => self.events.push_back((session, event)),
                Output::Policy(e) => self.policy.push_back(e),
                Output::Alarm(a) => self.alarms.push_back(a),
                Output::Timeout(t) => {
                    self.timeout = t;
                    return None;
                }
            }
        }
    }

    /// Takes every output the server has now.
    fn collect(&mut self) {
        let mut buf = [0u8; 2048];
        while let Some((dst, len)) = self.poll(&mut buf) {
            self.sent.push_back((dst, buf[..len].to_vec()));
        }
    }

    /// The next datagram the server sends on its own, written to `buf`.
    pub fn next_sent(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        match self.sent.pop_front() {
            Some((dst, b)) => {
                buf[..b.len()].copy_from_slice(&b);
                Some((dst, b.len()))
            }
            None => self.poll(buf),
        }
    }

    /// Datagrams the server sent on its own, oldest first.
    pub fn sent(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.collect();
        self.sent.drain(..).collect()
    }

    pub fn events(&mut self) -> Vec<(SessionId, Event)> {
        self.collect();
        self.events.drain(..).collect()
    }

    pub fn next_event(&mut self) -> Option<(SessionId, Event)> {
        self.collect();
        self.events.pop_front()
    }

    pub fn policy(&mut self) -> Vec<PolicyEvent> {
        self.collect();
        self.policy.drain(..).collect()
    }

    pub fn next_alarm(&mut self) -> Option<PeerAlarm> {
        self.collect();
        self.alarms.pop_front()
    }

    /// When the server's timers must next run.
    pub fn timeout(&mut self) -> Option<Time> {
        self.collect();
        self.timeout
    }
}

impl Deref for Host {
    type Target = Server<XorShift>;
    fn deref(&self) -> &Server<XorShift> {
        &self.server
    }
}

impl DerefMut for Host {
    fn deref_mut(&mut self) -> &mut Server<XorShift> {
        &mut self.server
    }
}
