//! The appliance's protocol state machine, sans-IO.
//!
//! [`Appliance`] owns no socket, reads no clock and starts no thread: the caller feeds it
//! datagrams ([`Appliance::handle`]) and time ([`Appliance::handle_timeout`]), and drains one
//! [`Output`] at a time ([`Appliance::poll_output`]): what it wants to send, what happened, and
//! when its timers next run.
//! Randomness (transaction ids, keep-alive jitter) comes from the [`Entropy`] it was built with.
//!
//! Life cycle:
//!
//! ```text
//!  Starting ──► Registering ──success──► Registered ──interval──► KeepingAlive
//!                 ▲    │  ▲  401/438: re-sign with the nonce          │  │
//!                 │    │  └───────────────────────────────            │  │ success
//!                 │    │                                               │  └──► Registered
//!                 │    └─ refused / timed out ──► Paused ◄─ refused / timed out
//!                 └──────────── pause over ────────┘          441 ──► Registering
//! ```
//!
//! A flock splits names over its servers; the appliance may be configured with any of them. A
//! server that does not own the name answers 300 Try-Alternate with the owner's address: the
//! appliance registers there and keeps using it (keep-alives go there). It follows a 300 only
//! from the server it sent to, only to a unicast address, and at most [`MAX_REDIRECTS`] times
//! in a row; past that (a loop, a misconfigured flock) it pauses like after a refusal. Every
//! pause ends at the configured server again, so a flock whose list changed is followed anew.
//!
//! Every request is a STUN transaction: sent, then retransmitted after `rto_initial`, doubling up
//! to `rto_max`, until answered or `give_up_after` has passed ([`Event::GaveUp`], then a pause).
//! A CHECK from the flock (signed by the pinned flock key, for our name) is answered at once, to
//! its source, whatever the state.
//!
//! Browser log-in (PERSONAS, CONNECT, SIGNAL) runs beside registration, whatever its state: see
//! [`crate::login`] and [`Appliance::set_personas`], [`Appliance::set_authenticator`],
//! [`Appliance::send_offer`].
//!
//! Here: the [`Appliance`] and its public calls; `config` its configuration and bounds, `events`
//! what it reports, `register` registration, keep-alives, redirects and CHECKs.

mod config;
mod events;
mod register;

use crate::login::{
    self, Authenticator, Candidate, Decision, Login, LoginRequest, SessionNonce, SignalError,
};
pub use config::*;
pub use events::*;
use flock_proto::entropy::Entropy;
use flock_proto::identity::{self, Fingerprint, PUBLIC_KEY_LEN};
use flock_proto::stun::{Class, Message};
use flock_proto::token::{canonical, Nonce, Token};
use flock_proto::wire::login::{self as login_wire, Outbound};
use flock_proto::wire::method;
use flock_proto::wire::registration::{self, Keepalive};
use flock_proto::{Name, Time};
use register::*;
use ring::signature::Ed25519KeyPair;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// An appliance: registers its name with a flock server and keeps it registered.
pub struct Appliance {
    config: ApplianceConfig,
    key: Ed25519KeyPair,
    fingerprint: Fingerprint,
    /// Our name's core hint, the first 4 bytes of every transaction id we start.
    core_hint: [u8; 4],
    /// The server registered with: the configured one, or the owner it sent us to.
    server: SocketAddr,
    /// 300s followed since the last registration or pause.
    redirects: u32,
    /// Where we sent datagrams (most recent last), for `only_known_peers`.
    known_peers: VecDeque<SocketAddr>,
    entropy: Box<dyn Entropy + Send>,
    phase: Phase,
    nonce: Option<Nonce>,
    token: Option<Token>,
    /// The last REGISTER timestamp signed: each new one is later (a server takes a name's
    /// REGISTERs in timestamp order only, so a retransmission or replay is never taken twice).
    last_signed: Time,
    mapped: Option<SocketAddr>,
    keepalive_interval: Duration,
    /// Consecutive refusals and give-ups (sets the pause).
    failures: u32,
    answers: VecDeque<PendingAnswer>,
    check_answers: Bucket,
    login: Login,
    events: Events,
    stats: Stats,
}

impl fmt::Debug for Appliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Appliance")
            .field("name", &self.config.name)
            .field("fingerprint", &self.fingerprint)
            .field("state", &self.state())
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

impl Appliance {
    /// An appliance that will register `config.name` with `key` once time is passed in.
    pub fn new(
        config: ApplianceConfig,
        key: Ed25519KeyPair,
        entropy: impl Entropy + Send + 'static,
    ) -> Appliance {
        let fingerprint = Fingerprint::of(&identity::public_key(&key));
        let login = Login::new(
            &config.name,
            (config.login_answer_burst, config.login_answer_refill),
            config.login_memory,
            config.rto_initial,
            config.rto_max,
        );
        Appliance {
            keepalive_interval: config.keepalive_interval,
            server: config.server,
            redirects: 0,
            known_peers: VecDeque::new(),
            core_hint: config.name.hash().core_hint(),
            config,
            key,
            fingerprint,
            entropy: Box::new(entropy),
            phase: Phase::Starting,
            nonce: None,
            token: None,
            last_signed: Time::ZERO,
            mapped: None,
            failures: 0,
            answers: VecDeque::new(),
            check_answers: Bucket::new(CHECK_ANSWER_BURST, CHECK_ANSWER_REFILL),
            login,
            events: Events::default(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ApplianceConfig {
        &self.config
    }

    pub fn name(&self) -> &Name {
        &self.config.name
    }

    /// SHA-256 of our public key: our identity on the flock.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        identity::public_key(&self.key)
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Starting => State::Starting,
            Phase::Registering(_) => State::Registering,
            Phase::Registered { .. } => State::Registered,
            Phase::KeepingAlive(_) => State::KeepingAlive,
            Phase::Paused { .. } => State::Paused,
        }
    }

    /// The server in use: the configured one, or the owner of our name it redirected us to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The address the server last saw us at.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The keep-alive interval in use (the server's, once registered).
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes in a datagram received from `src`.
    pub fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if self.config.only_known_peers && !self.known_peers.contains(&canonical(src)) {
            self.stats.unknown_peer_dropped += 1;
            return;
        }
        let Ok(m) = Message::parse(datagram) else {
            self.stats.ignored += 1;
            return;
        };
        if m.method() == method::CHECK && m.class() == Class::Request {
            self.on_check(now, src, &m);
            return;
        }
        if login_wire::is_login(&m) {
            let cx = login::Cx {
                config: &self.config,
                entropy: &mut *self.entropy,
                stats: &mut self.stats,
                events: &mut self.events,
            };
            if !self.login.handle(now, src, &m, datagram.len(), cx) {
                self.stats.ignored += 1;
            }
            return;
        }
        if canonical(src) != canonical(self.server) {
            self.stats.ignored += 1;
            return;
        }
        let handled = match (m.method(), m.class()) {
            (method::REGISTER, Class::Success | Class::Error) => self.on_register_answer(now, &m),
            (method::KEEPALIVE, Class::Success | Class::Error) => self.on_keepalive_answer(now, &m),
            _ => false,
        };
        if !handled {
            self.stats.ignored += 1;
        }
    }

    /// What the appliance wants done next: a datagram to send (written into `buf`; use
    /// [`MAX_DATAGRAM`] bytes), then the events, then, once nothing else is left, when
    /// `handle_timeout` must run. Call until [`Output::Timeout`] after every input.
    pub fn poll_output(&mut self, now: Time, buf: &mut [u8]) -> Output {
        if let Some((dst, len)) = self.transmit(now, buf) {
            return Output::Transmit { dst, len };
        }
        if let Some(event) = self.events.0.pop_front() {
            return Output::Event(event);
        }
        Output::Timeout(self.next_timeout())
    }

    /// The next datagram to send, written into `buf`: its destination and length.
    fn transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let sent = self.next_transmit(now, buf)?;
        self.sent_to(sent.0);
        Some(sent)
    }

    fn sent_to(&mut self, dst: SocketAddr) {
        let dst = canonical(dst);
        if self.known_peers.back() == Some(&dst) {
            return;
        }
        self.known_peers.retain(|p| *p != dst);
        if self.known_peers.len() >= MAX_KNOWN_PEERS {
            self.known_peers.pop_front();
        }
        self.known_peers.push_back(dst);
    }

    fn next_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if matches!(self.phase, Phase::Starting) {
            self.start_registering(now);
        }
        while let Some(a) = self.answers.pop_front() {
            if let Ok(n) = registration::encode_check_answer(
                buf,
                &a.txid,
                &self.config.name,
                &self.key,
                &a.challenge,
            ) {
                self.stats.transmitted += 1;
                return Some((a.dst, n));
            }
        }
        if let Some(sent) = self
            .login
            .poll_transmit(&self.config.name, buf, &mut self.stats)
        {
            self.stats.transmitted += 1;
            return Some(sent);
        }
        let encoded = match &mut self.phase {
            Phase::Registering(a) if a.tx.send_now => {
                a.tx.send_now = false;
                let retransmission = a.tx.is_retransmission;
                a.tx.is_retransmission = true;
                registration::encode_register(
                    buf,
                    &a.tx.txid,
                    &self.config.name,
                    &self.key,
                    a.timestamp.0,
                    self.nonce,
                )
                .ok()
                .map(|n| (n, retransmission))
            }
            Phase::KeepingAlive(tx) if tx.send_now => {
                tx.send_now = false;
                let retransmission = tx.is_retransmission;
                tx.is_retransmission = true;
                let token = self.token?;
                Keepalive {
                    name: self.config.name,
                    identity: self.fingerprint,
                    token,
                }
                .encode(buf, &tx.txid)
                .ok()
                .map(|n| (n, retransmission))
            }
            _ => None,
        };
        let (n, retransmission) = encoded?;
        self.stats.transmitted += 1;
        if retransmission {
            self.stats.retransmitted += 1;
        }
        Some((self.server, n))
    }

    /// When `handle_timeout` must next run (`None`: only a datagram can wake the appliance).
    fn next_timeout(&self) -> Option<Time> {
        let login = self.login.poll_timeout(self.config.signal_give_up_after);
        let registration = match &self.phase {
            Phase::Starting => Some(Time::ZERO),
            Phase::Registering(a) => Some(a.tx.next_send.min(self.deadline(&a.tx))),
            Phase::KeepingAlive(tx) => Some(tx.next_send.min(self.deadline(tx))),
            Phase::Registered { next_keepalive } => Some(*next_keepalive),
            Phase::Paused { until } => Some(*until),
        };
        [registration, login].into_iter().flatten().min()
    }

    /// Runs the timers due at `now`: retransmissions, give-ups, keep-alives, end of a pause,
    /// log-in sessions.
    pub fn handle_timeout(&mut self, now: Time) {
        self.login.handle_timeout(
            now,
            self.config.signal_give_up_after,
            &mut self.stats,
            &mut self.events,
        );
        match &self.phase {
            Phase::Starting => self.start_registering(now),
            Phase::Registering(a) => {
                if now >= self.deadline(&a.tx) {
                    self.give_up(now);
                } else if now >= a.tx.next_send {
                    let resign = now.saturating_since(a.timestamp) >= self.config.resign_after;
                    let max = self.config.rto_max;
                    if resign {
                        self.new_register_content(now);
                    }
                    if let Phase::Registering(a) = &mut self.phase {
                        a.tx.retransmit(now, max);
                    }
                }
            }
            Phase::KeepingAlive(tx) => {
                if now >= self.deadline(tx) {
                    self.give_up(now);
                } else if now >= tx.next_send {
                    let max = self.config.rto_max;
                    if let Phase::KeepingAlive(tx) = &mut self.phase {
                        tx.retransmit(now, max);
                    }
                }
            }
            Phase::Registered { next_keepalive } => {
                if now >= *next_keepalive {
                    self.start_keepalive(now);
                }
            }
            Phase::Paused { until } => {
                if now >= *until {
                    self.start_registering(now);
                }
            }
        }
    }

    /// The persona list served to the flock: JSON bytes, `[{"id":"alice","name":"Alice"}]`
    /// (served as they are; the flock checks them), or `None` when the user name and credential
    /// must be entered separately (the default). The flock's cache is checked by SHA-256.
    pub fn set_personas(&mut self, personas: Option<Vec<u8>>) {
        self.login.set_personas(personas);
    }

    /// Who decides log-ins (by default everything is denied). Called once per log-in attempt,
    /// however often the flock retransmits it.
    pub fn set_authenticator(
        &mut self,
        auth: impl FnMut(&LoginRequest<'_>) -> Decision + Send + 'static,
    ) {
        let auth: Authenticator = Box::new(auth);
        self.login.set_authenticator(auth);
    }

    /// Queues the SDP offer of an accepted session (first, once).
    pub fn send_offer(
        &mut self,
        now: Time,
        session: &SessionNonce,
        sdp: String,
    ) -> Result<(), SignalError> {
        self.login
            .push(now, session, Outbound::Sdp(sdp), &mut *self.entropy)
    }

    /// Queues one of our ICE candidates (after the offer, before end-of-candidates).
    pub fn add_candidate(
        &mut self,
        now: Time,
        session: &SessionNonce,
        candidate: Candidate,
    ) -> Result<(), SignalError> {
        self.login.push(
            now,
            session,
            Outbound::Candidate(candidate),
            &mut *self.entropy,
        )
    }

    /// Queues end-of-candidates: sent once every earlier item was acknowledged.
    pub fn end_of_candidates(
        &mut self,
        now: Time,
        session: &SessionNonce,
    ) -> Result<(), SignalError> {
        self.login
            .push(now, session, Outbound::EndOfCandidates, &mut *self.entropy)
    }

    /// Accepted log-ins still signalling.
    pub fn connections(&self) -> usize {
        self.login.connections()
    }

    /// Tells the appliance its local address (or network) changed: a running request is sent
    /// again at once, a registered appliance sends a keep-alive now (the server refuses the
    /// token from a new address, which leads to a new registration), a pause ends.
    pub fn network_changed(&mut self, now: Time) {
        let (initial, max) = (self.config.rto_initial, self.config.rto_max);
        match &mut self.phase {
            Phase::Starting => {}
            Phase::Registering(a) => a.tx.restart(now, initial, max),
            Phase::KeepingAlive(tx) => tx.restart(now, initial, max),
            Phase::Registered { .. } => self.start_keepalive(now),
            Phase::Paused { .. } => self.start_registering(now),
        }
    }
}
