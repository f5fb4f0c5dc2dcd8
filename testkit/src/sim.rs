//! A sans-IO simulation with virtual time, after quinn-proto's `Pair` and str0m's `TestRtc`:
//! the real server state machine and one appliance ([`Node`]: the SDK's `Appliance`, or a
//! hand-written one), the wire between them in memory, and a clock that jumps from timer to
//! timer. Nothing sleeps; every run is deterministic (seeded entropy, seeded loss).
//!
//! The appliance sits behind a "NAT": the server sees it at `app_addr`; the server's
//! datagrams reach it when sent to `app_addr` or to an address in `reachable`. Every datagram
//! is logged ([`Sent`]), delivered or not.

use flock_proto::entropy::Entropy;
use flock_proto::identity::public_key;
use flock_proto::login::{self, SessionId};
use flock_proto::server::{Keys, Server, ServerConfig};
pub use flock_proto::stun::{Class, Message, Method, TransactionId};
use flock_proto::testing::Answer;
pub use flock_proto::testing::{keypair, Device, Host, XorShift};
use flock_proto::token::ProofKeys;
use flock_proto::wire::registration::ErrorAnswer;
pub use flock_proto::{Name, Time};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The simulation's epoch.
pub const T0: Time = Time(1_700_000_000_000);
/// The key seed of the simulated appliance.
pub const APP_SEED: u8 = 1;
pub use crate::fake_appliance::FLOCK_SEED;
/// The secret the simulated server's proofs are keyed with.
pub const SECRET: &[u8] = b"server secret";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn name(s: &str) -> Name {
    s.parse().unwrap()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Milliseconds from `a` to `b`.
pub fn millis(a: Time, b: Time) -> u64 {
    b.0 - a.0
}

/// The public key made from `seed` (e.g. [`FLOCK_SEED`]).
pub fn flock_public_key(seed: u8) -> [u8; 32] {
    public_key(&keypair(seed))
}

/// A server keyed with `secret` and the flock key made from `flock_seed`.
pub fn server_with(config: ServerConfig, secret: &[u8], flock_seed: u8) -> Host {
    server_keyed(config, keys_with(secret, flock_seed))
}

/// Proof keys from `secret` and the flock key made from `flock_seed`.
pub fn keys_with(secret: &[u8], flock_seed: u8) -> Keys {
    Keys {
        proof: ProofKeys::from_secret(secret),
        flock: Arc::new(keypair(flock_seed)),
    }
}

/// A server with `keys`, drawing from seeded entropy.
pub fn server_keyed(config: ServerConfig, keys: Keys) -> Host {
    Host::new(Server::new(config, keys, XorShift(0x9E37_79B9_7F4A_7C15)))
}

/// A default server keyed with [`SECRET`] and [`FLOCK_SEED`].
pub fn server() -> Host {
    server_with(ServerConfig::default(), SECRET, FLOCK_SEED)
}

/// Registers a hand-driven device with `server` from `src` (nonce round trip included).
pub fn register_device(server: &mut Server<XorShift>, now: Time, d: &mut Device, src: SocketAddr) {
    let mut reply = [0u8; 1500];
    for _ in 0..2 {
        let txid = d.txid();
        let req = d.register_bytes(now.0, &txid);
        let n = server
            .handle(now, src, &req, &mut reply)
            .reply()
            .expect("an answer");
        let a = Answer::read(&reply[..n]);
        d.absorb(&a);
        if matches!(a, Answer::Registered(_)) {
            return;
        }
    }
    panic!("device did not register");
}

/// The appliance side of a simulation: a sans-IO machine that takes datagrams and timers and
/// hands out its outputs one at a time, as the SDK's `Appliance::poll_output` does.
pub trait Node {
    type Event: Clone + std::fmt::Debug;
    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8]);
    fn poll_output(&mut self, now: Time, buf: &mut [u8]) -> NodeOutput<Self::Event>;
    fn handle_timeout(&mut self, now: Time);
}

/// One output of a [`Node`]: a datagram in the buffer, an event, or (nothing else left) when
/// its timers next run.
pub enum NodeOutput<E> {
    Transmit { dst: SocketAddr, len: usize },
    Event(E),
    Timeout(Option<Time>),
}

#[cfg(feature = "appliance")]
impl Node for flock_appliance::Appliance {
    type Event = flock_appliance::Event;
    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8]) {
        flock_appliance::Appliance::handle(self, now, src, datagram)
    }
    fn poll_output(&mut self, now: Time, buf: &mut [u8]) -> NodeOutput<Self::Event> {
        use flock_appliance::Output;
        match flock_appliance::Appliance::poll_output(self, now, buf) {
            Output::Transmit { dst, len } => NodeOutput::Transmit { dst, len },
            Output::Event(e) => NodeOutput::Event(e),
            Output::Timeout(t) => NodeOutput::Timeout(t),
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        flock_appliance::Appliance::handle_timeout(self, now)
    }
}

/// The SDK appliance's next datagram, written to `buf`, for tests that move datagrams by hand:
/// the events it gives on the way go to `events`, and once nothing is left its next timer goes
/// to `timer`.
#[cfg(feature = "appliance")]
pub fn app_transmit(
    app: &mut flock_appliance::Appliance,
    now: Time,
    buf: &mut [u8],
    events: &mut impl Extend<flock_appliance::Event>,
    timer: &mut Option<Time>,
) -> Option<(SocketAddr, usize)> {
    use flock_appliance::Output;
    loop {
        match app.poll_output(now, buf) {
            Output::Transmit { dst, len } => return Some((dst, len)),
            Output::Event(e) => events.extend([e]),
            Output::Timeout(t) => {
                *timer = t;
                return None;
            }
        }
    }
}

/// Who sent a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Appliance,
    Server,
    /// Injected by the test.
    Test,
}

/// One datagram on the simulated wire.
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: Time,
    pub from: Origin,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    pub delivered: bool,
}

impl Sent {
    pub fn message(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("a STUN message")
    }
    pub fn method(&self) -> Method {
        self.message().method()
    }
    pub fn class(&self) -> Class {
        self.message().class()
    }
    pub fn txid(&self) -> TransactionId {
        *self.message().transaction_id()
    }
    pub fn is(&self, method: Method, class: Class) -> bool {
        self.method() == method && self.class() == class
    }
    pub fn error_code(&self) -> Option<u16> {
        ErrorAnswer::parse(&self.message()).ok().map(|e| e.code)
    }
}

/// Decides whether the appliance's n-th datagram to the server (from 0), sent at a time, is lost.
pub type DropRule = Box<dyn FnMut(usize, Time, &[u8]) -> bool>;

/// The server, one appliance, the wire and the clock.
pub struct Sim<A: Node> {
    pub now: Time,
    pub server: Host,
    pub server_addr: SocketAddr,
    pub app: A,
    /// The appliance's next timer, as its last `Timeout` said (`pump` leaves it fresh).
    app_timer: Option<Time>,
    /// Where the server sees the appliance (its current NAT mapping).
    pub app_addr: SocketAddr,
    /// Other addresses whose datagrams still reach the appliance (old NAT mappings).
    pub reachable: Vec<SocketAddr>,
    pub drop_rule: DropRule,
    /// Percent of datagrams lost at random, each way (0: none; see [`Sim::lossy`]).
    loss: u64,
    rng: XorShift,
    sent_to_server: usize,
    pub log: Vec<Sent>,
    /// The appliance's events, with when they came.
    pub events: Vec<(Time, A::Event)>,
    /// The server's log-in events, with when they came.
    pub server_events: Vec<(Time, SessionId, login::Event)>,
}

/// Where the simulated server listens.
pub const SERVER_ADDR: &str = "192.0.2.1:3478";
/// Where the simulated server first sees the appliance.
pub const APP_ADDR: &str = "203.0.113.5:40000";

#[cfg(feature = "appliance")]
mod sdk {
    use super::*;
    use flock_appliance::{Appliance, ApplianceConfig, Event};

    /// A default appliance configuration for `name_`, trusting the simulated flock.
    pub fn config(name_: &str, server: SocketAddr) -> ApplianceConfig {
        ApplianceConfig::new(name(name_), server, flock_public_key(FLOCK_SEED))
    }

    impl Sim<Appliance> {
        /// The SDK appliance "box" (key seed 1) and a default server.
        pub fn new() -> Sim<Appliance> {
            Sim::with(server(), |_| {})
        }

        /// A simulation with `server` and a default appliance config adjusted by `tweak`.
        pub fn with(server: Host, tweak: impl FnOnce(&mut ApplianceConfig)) -> Self {
            let mut c = config("box", addr(SERVER_ADDR));
            tweak(&mut c);
            let app = Appliance::new(c, keypair(APP_SEED), XorShift(0x1234_5678_9ABC_DEF1));
            Sim::pair(server, app)
        }

        /// Runs until the appliance is registered; returns when.
        pub fn register(&mut self) -> Time {
            self.run_until_event(secs(5), |e| matches!(e, Event::Registered { .. }))
                .0
        }

        pub fn name(&self) -> Name {
            *self.app.name()
        }
    }

    impl Default for Sim<Appliance> {
        fn default() -> Self {
            Sim::new()
        }
    }
}
#[cfg(feature = "appliance")]
pub use sdk::config;

impl<A: Node> Sim<A> {
    /// `server` at [`SERVER_ADDR`] and `app` seen at [`APP_ADDR`], at [`T0`], losing nothing.
    pub fn pair(server: Host, app: A) -> Sim<A> {
        Sim {
            now: T0,
            server,
            server_addr: addr(SERVER_ADDR),
            app,
            app_timer: None,
            app_addr: addr(APP_ADDR),
            reachable: vec![],
            drop_rule: Box::new(|_, _, _| false),
            loss: 0,
            rng: XorShift(1),
            sent_to_server: 0,
            log: vec![],
            events: vec![],
            server_events: vec![],
        }
    }

    /// Loses `percent` of the datagrams each way, drawn from a generator seeded with `seed`.
    pub fn lossy(mut self, percent: u64, seed: u64) -> Sim<A> {
        self.loss = percent;
        self.rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        self
    }

    fn lost_at_random(&mut self) -> bool {
        if self.loss == 0 {
            return false;
        }
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        u64::from_be_bytes(b) % 100 < self.loss
    }

    /// Loses every datagram the appliance sends to the server while `down` is true.
    pub fn server_down(&mut self, down: bool) {
        self.drop_rule = Box::new(move |_, _, _| down);
    }

    /// Moves everything that can move at `now` until nothing does.
    pub fn pump(&mut self) {
        let mut buf = [0u8; 1500];
        loop {
            let mut moved = false;
            loop {
                match self.app.poll_output(self.now, &mut buf) {
                    NodeOutput::Transmit { dst, len } => {
                        moved = true;
                        let bytes = buf[..len].to_vec();
                        self.send_from_app(dst, bytes);
                    }
                    NodeOutput::Event(e) => self.events.push((self.now, e)),
                    NodeOutput::Timeout(t) => {
                        self.app_timer = t;
                        break;
                    }
                }
            }
            while let Some((dst, n)) = self.server.next_sent(&mut buf) {
                moved = true;
                let bytes = buf[..n].to_vec();
                self.send_from_server(dst, bytes);
            }
            for (id, e) in self.server.events() {
                self.server_events.push((self.now, id, e));
            }
            if !moved {
                return;
            }
        }
    }

    fn send_from_app(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        let to_server = dst == self.server_addr;
        let lost = to_server && {
            let i = self.sent_to_server;
            self.sent_to_server += 1;
            (self.drop_rule)(i, self.now, &bytes) || self.lost_at_random()
        };
        self.log.push(Sent {
            at: self.now,
            from: Origin::Appliance,
            to: dst,
            bytes: bytes.clone(),
            delivered: to_server && !lost,
        });
        if !to_server || lost {
            return;
        }
        let mut reply = [0u8; 1500];
        if let Some(n) = self
            .server
            .handle(self.now, self.app_addr, &bytes, &mut reply)
            .reply()
        {
            assert!(
                n <= bytes.len(),
                "the server answered {n} bytes to a {}-byte request",
                bytes.len()
            );
            let reply = reply[..n].to_vec();
            self.send_from_server(self.app_addr, reply);
        }
    }

    fn send_from_server(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        let delivered =
            (dst == self.app_addr || self.reachable.contains(&dst)) && !self.lost_at_random();
        self.log.push(Sent {
            at: self.now,
            from: Origin::Server,
            to: dst,
            bytes: bytes.clone(),
            delivered,
        });
        if delivered {
            self.app.handle(self.now, self.server_addr, &bytes);
        }
    }

    /// Delivers a datagram from `src` to the appliance now, and moves what follows.
    pub fn inject(&mut self, src: SocketAddr, bytes: &[u8]) {
        self.log.push(Sent {
            at: self.now,
            from: Origin::Test,
            to: self.app_addr,
            bytes: bytes.to_vec(),
            delivered: true,
        });
        self.app.handle(self.now, src, bytes);
        self.pump();
    }

    /// Runs both machines' timers up to `until`.
    pub fn run_until(&mut self, until: Time) {
        self.pump();
        for _ in 0..10_000_000 {
            if !self.step(until) {
                self.now = self.now.max(until);
                self.pump();
                return;
            }
        }
        panic!("timers do not advance");
    }

    /// Jumps to the earlier machine's next timer, if it comes by `until`, and runs it (and
    /// the other's, if due too); then moves what follows. False when no timer comes by then.
    pub fn step(&mut self, until: Time) -> bool {
        let next = [self.app_timer, self.server.timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next.filter(|t| *t <= until) else {
            return false;
        };
        self.now = self.now.max(t);
        if self.app_timer.is_some_and(|t| t <= self.now) {
            self.app.handle_timeout(self.now);
        }
        if self.server.timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.pump();
        true
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until an event matching `want` (after those already seen), at most `limit` long.
    pub fn run_until_event(
        &mut self,
        limit: Duration,
        want: impl Fn(&A::Event) -> bool,
    ) -> (Time, A::Event) {
        let seen = self.events.len();
        let end = self.now + limit;
        while self.now < end {
            let step = (self.now + ms(100)).min(end);
            self.run_until(step);
            if let Some((t, e)) = self.events[seen..].iter().find(|(_, e)| want(e)) {
                return (*t, e.clone());
            }
        }
        panic!("no such event within {limit:?}; events: {:?}", self.events);
    }

    /// The appliance's datagrams to the server (lost ones included).
    pub fn app_requests(&self, method: Method) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| {
                s.from == Origin::Appliance && s.to == self.server_addr && s.method() == method
            })
            .collect()
    }

    /// What the appliance sent anywhere but the server.
    pub fn app_elsewhere(&self) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.from == Origin::Appliance && s.to != self.server_addr)
            .collect()
    }

    pub fn server_sent(&self, method: Method, class: Class) -> Vec<&Sent> {
        self.log
            .iter()
            .filter(|s| s.from == Origin::Server && s.is(method, class))
            .collect()
    }

    /// The appliance's events only, in order.
    pub fn event_list(&self) -> Vec<A::Event> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }
}
