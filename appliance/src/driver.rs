//! Runs an [`Appliance`] over a tokio UDP socket.
//!
//! [`spawn`] binds the socket and starts one task that owns the machine: it feeds received
//! datagrams and timer expiries in, sends what comes out, and forwards events to the
//! [`ApplianceHandle`] through a bounded channel (events are dropped, and counted, if nobody
//! reads them: the appliance never stalls on its application). The clock is the wall clock at
//! start plus tokio's monotonic time since, so REGISTER timestamps are Unix milliseconds and
//! timers never jump.
//!
//! Log-in calls on the handle ([`ApplianceHandle::set_personas`], [`ApplianceHandle::send_offer`],
//! ...) are commands to that task: they return at once, and a call the machine refuses (e.g. a
//! candidate for a session that already failed) is logged, since the events say why.

use crate::login::{Candidate, Decision, LoginRequest, SessionNonce};
use crate::machine::{
    session_short, Appliance, ApplianceConfig, Event, Output, State, Stats, MAX_DATAGRAM,
};
use flock_proto::entropy::Entropy;
use flock_proto::identity::Fingerprint;
use flock_proto::{Name, Time};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::Ed25519KeyPair;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Events buffered for an [`ApplianceHandle`] that is not reading them.
pub const EVENT_CAPACITY: usize = 256;

/// Entropy from the operating system (ring's `SystemRandom`).
#[derive(Clone, Debug)]
pub struct SystemEntropy(SystemRandom);

impl Default for SystemEntropy {
    fn default() -> Self {
        SystemEntropy::new()
    }
}

impl SystemEntropy {
    pub fn new() -> SystemEntropy {
        SystemEntropy(SystemRandom::new())
    }
}

impl Entropy for SystemEntropy {
    /// Panics if the operating system's random source fails (there is no safe fallback for
    /// transaction ids).
    fn fill(&mut self, dest: &mut [u8]) {
        self.0
            .fill(dest)
            .expect("the system random number generator failed");
    }
}

/// A snapshot of a running appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// The server in use (the owner of the name once a 300 redirected us).
    pub server: SocketAddr,
    pub mapped: Option<SocketAddr>,
    pub stats: Stats,
    /// Events not delivered because the channel was full.
    pub events_dropped: u64,
}

enum Command {
    Rebind {
        socket: std::net::UdpSocket,
        keep_old: bool,
    },
    Personas(Option<Vec<u8>>),
    Authenticator(crate::login::Authenticator),
    Offer(SessionNonce, String),
    Candidate(SessionNonce, Candidate),
    EndOfCandidates(SessionNonce),
    Shutdown,
}

/// Control of an appliance running on the tokio runtime. Dropping it stops the appliance.
#[derive(Debug)]
pub struct ApplianceHandle {
    name: Name,
    fingerprint: Fingerprint,
    local_addr: SocketAddr,
    events: mpsc::Receiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<Status>>,
    task: Option<JoinHandle<()>>,
}

/// Starts an appliance on a UDP socket bound to `bind` (port 0 for any free port). Must be
/// called from within a tokio runtime (an error otherwise).
pub fn spawn(
    config: ApplianceConfig,
    key: Ed25519KeyPair,
    bind: SocketAddr,
) -> io::Result<ApplianceHandle> {
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let std_socket = bind_std(bind)?;
    let local_addr = std_socket.local_addr()?;
    let socket = {
        let _enter = runtime.enter();
        UdpSocket::from_std(std_socket)?
    };
    let machine = Appliance::new(config, key, SystemEntropy::new());
    let status = Arc::new(Mutex::new(Status {
        state: machine.state(),
        server: machine.server(),
        mapped: None,
        stats: Stats::default(),
        events_dropped: 0,
    }));
    let (event_tx, events) = mpsc::channel(EVENT_CAPACITY);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let name = *machine.name();
    let fingerprint = machine.fingerprint();
    let task = runtime.spawn(run(machine, socket, command_rx, event_tx, status.clone()));
    Ok(ApplianceHandle {
        name,
        fingerprint,
        local_addr,
        events,
        commands,
        status,
        task: Some(task),
    })
}

fn bind_std(bind: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl ApplianceHandle {
    pub fn name(&self) -> &Name {
        &self.name
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The address of the socket the appliance sends from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The appliance's events (`recv().await` them).
    pub fn events(&mut self) -> &mut mpsc::Receiver<Event> {
        &mut self.events
    }

    /// The next event; `None` once the appliance has stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// State, mapped address and counters, as of the last datagram or timer.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Moves the appliance to a new socket bound to `bind` (port 0: a new free port); the old
    /// one is closed. The appliance keeps its state and tells the server at once (so a test can
    /// simulate a NAT that changed the appliance's public address). Returns the new address.
    pub fn rebind(&mut self, bind: SocketAddr) -> io::Result<SocketAddr> {
        self.switch(bind, false)
    }

    /// Like [`rebind`](Self::rebind), but the old socket stays open for receiving (everything
    /// is still sent from the new one) until the next rebind: a NAT whose old mapping still lets
    /// the server's CHECK in.
    pub fn rebind_keeping_old(&mut self, bind: SocketAddr) -> io::Result<SocketAddr> {
        self.switch(bind, true)
    }

    fn switch(&mut self, bind: SocketAddr, keep_old: bool) -> io::Result<SocketAddr> {
        let socket = bind_std(bind)?;
        let addr = socket.local_addr()?;
        self.command(Command::Rebind { socket, keep_old })?;
        self.local_addr = addr;
        Ok(addr)
    }

    /// The persona list served to the flock (see [`Appliance::set_personas`]).
    pub fn set_personas(&self, personas: Option<Vec<u8>>) -> io::Result<()> {
        self.command(Command::Personas(personas))
    }

    /// Who decides log-ins (see [`Appliance::set_authenticator`]); runs on the appliance's task.
    pub fn set_authenticator(
        &self,
        auth: impl FnMut(&LoginRequest<'_>) -> Decision + Send + 'static,
    ) -> io::Result<()> {
        self.command(Command::Authenticator(Box::new(auth)))
    }

    /// Queues the SDP offer of an accepted session ([`Event::LoginAccepted`]).
    pub fn send_offer(&self, session: SessionNonce, sdp: String) -> io::Result<()> {
        self.command(Command::Offer(session, sdp))
    }

    /// Queues one of our ICE candidates, after the offer.
    pub fn add_candidate(&self, session: SessionNonce, candidate: Candidate) -> io::Result<()> {
        self.command(Command::Candidate(session, candidate))
    }

    /// Queues end-of-candidates (sent once every earlier item was acknowledged).
    pub fn end_of_candidates(&self, session: SessionNonce) -> io::Result<()> {
        self.command(Command::EndOfCandidates(session))
    }

    fn command(&self, c: Command) -> io::Result<()> {
        self.commands
            .send(c)
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the appliance has stopped"))
    }

    /// Stops the appliance and waits for its task to end (its sockets are closed then).
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Unix milliseconds: the wall clock at start plus monotonic time since.
struct Clock {
    wall0: u64,
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        let wall0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            wall0,
            start: Instant::now(),
        }
    }

    fn now(&self) -> Time {
        Time(self.wall0 + self.start.elapsed().as_millis() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_millis(t.0.saturating_sub(self.wall0))
    }
}

/// An IPv4 destination as a dual-stack IPv6 socket must write it.
fn v4_mapped(dst: SocketAddr) -> SocketAddr {
    match dst {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

async fn recv_on(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut machine: Appliance,
    mut socket: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    status: Arc<Mutex<Status>>,
) {
    let clock = Clock::new();
    let name = *machine.name();
    let mut old: Option<UdpSocket> = None;
    let mut out = [0u8; MAX_DATAGRAM];
    let mut buf = vec![0u8; 65536];
    let mut old_buf = vec![0u8; 65536];
    let mut events_dropped = 0u64;
    let mut v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    loop {
        let now = clock.now();
        // Every datagram first, then the events (`poll_output` gives them in that order).
        let next_timer = loop {
            match machine.poll_output(now, &mut out) {
                Output::Transmit { dst, len } => {
                    let dst = if v6 { v4_mapped(dst) } else { dst };
                    if let Err(e) = socket.send_to(&out[..len], dst).await {
                        tracing::debug!(%name, %dst, "send failed: {e}");
                    }
                }
                Output::Event(event) => {
                    tracing::debug!(%name, "{event}");
                    if let Err(e) = events.try_send(event) {
                        events_dropped += 1;
                        tracing::warn!(%name, "event dropped (nobody is reading them): {}", e.into_inner());
                    }
                }
                Output::Timeout(at) => break at,
            }
        };
        {
            let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.state = machine.state();
            s.server = machine.server();
            s.mapped = machine.mapped();
            s.stats.clone_from(machine.stats());
            s.events_dropped = events_dropped;
        }
        let deadline = next_timer.map(|t| clock.instant(t));
        // Biased, the application's commands first: a persona list or authenticator set
        // before a request arrives must apply to it even when both are ready at once.
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Command::Rebind { socket: new, keep_old }) => match UdpSocket::from_std(new) {
                    Ok(new) => {
                        v6 = new.local_addr().is_ok_and(|a| a.is_ipv6());
                        let previous = std::mem::replace(&mut socket, new);
                        old = keep_old.then_some(previous);
                        machine.network_changed(clock.now());
                    }
                    Err(e) => tracing::warn!(%name, "rebind failed: {e}"),
                },
                Some(Command::Personas(p)) => machine.set_personas(p),
                Some(Command::Authenticator(auth)) => machine.set_authenticator(auth),
                Some(Command::Offer(session, sdp)) => {
                    let r = machine.send_offer(clock.now(), &session, sdp);
                    refused(&name, &session, "offer", r);
                }
                Some(Command::Candidate(session, c)) => {
                    let r = machine.add_candidate(clock.now(), &session, c);
                    refused(&name, &session, "candidate", r);
                }
                Some(Command::EndOfCandidates(session)) => {
                    let r = machine.end_of_candidates(clock.now(), &session);
                    refused(&name, &session, "end of candidates", r);
                }
                Some(Command::Shutdown) | None => break,
            },
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, src)) => machine.handle(clock.now(), src, &buf[..n]),
                // E.g. an ICMP port unreachable for an earlier send: retransmissions deal with it.
                Err(e) => tracing::debug!(%name, "receive failed: {e}"),
            },
            r = recv_on(old.as_ref(), &mut old_buf) => match r {
                Ok((n, src)) => machine.handle(clock.now(), src, &old_buf[..n]),
                Err(e) => tracing::debug!(%name, "receive on the old socket failed: {e}"),
            },
            () = sleep_until(deadline) => machine.handle_timeout(clock.now()),
        }
    }
}

fn refused(
    name: &Name,
    session: &SessionNonce,
    what: &str,
    r: Result<(), crate::login::SignalError>,
) {
    if let Err(e) = r {
        tracing::warn!(%name, "session {}: {what} not sent: {e}", session_short(session));
    }
}
