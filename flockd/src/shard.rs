//! The flock state machine as an engine shard, and the hand-off of log-in events to the
//! websocket sessions that wait for them.

use crate::metrics::{CoreSnapshots, PUBLISH_EVERY};
use crate::plugins::CorePolicy;
use flock_engine::Shard;
use flock_proto::identity::Fingerprint;
use flock_proto::login::{Command, Event, SessionId};
use flock_proto::server::{
    CoreSlot, Entropy, Keys, Outcome, Output, PeerAlarm, Server, ServerConfig,
};
use flock_proto::Name;
use flock_proto::Time;
use flock_ws::{EventSink, ToCore, Undelivered};
use hashbrown::HashMap;
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;
use std::sync::Arc;

/// Randomness from the operating system (used when a check or a log-in starts: rare).
pub struct OsEntropy(SystemRandom);

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill(dest).expect("system random generator failed");
    }
}

/// What other threads ask of a core.
// Names are held inline; commands are few and short-lived.
#[allow(clippy::large_enum_variant)]
pub enum CoreCmd {
    /// From the websocket gateway.
    Login(ToCore),
    /// The plugins' verdict on a `PolicyEvent::Admit` of this core.
    Admission {
        name: Name,
        fingerprint: Fingerprint,
        allow: bool,
    },
}

/// How often core 0 probes the peers' membership lists.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

pub struct FlockShard {
    server: Server<OsEntropy>,
    /// This core among the server's: which names are ours.
    slot: CoreSlot,
    /// The plugins, when any are loaded.
    policy: Option<Arc<CorePolicy>>,
    /// Where each live session's events go. Bounded by the server's session bound: a session
    /// the server refuses or ends is removed here as its last event passes.
    sinks: HashMap<SessionId, EventSink>,
    /// Where this core publishes its server's counters for `/metrics`.
    snapshots: Arc<CoreSnapshots>,
    /// When to publish next (from the timer path only, never per packet).
    next_publish: Time,
    /// Core 0 only: when to probe the peers' membership lists next.
    next_probe: Option<Time>,
    /// The server's next timer, as its last `Output::Timeout` said. Inputs since then only
    /// add timers that are not due yet, and the engine drains the outputs (refreshing this)
    /// after every round of input, before it sets its timer.
    server_timeout: Option<Time>,
}

impl FlockShard {
    pub fn new(
        config: ServerConfig,
        keys: Keys,
        slot: CoreSlot,
        policy: Option<Arc<CorePolicy>>,
        snapshots: Arc<CoreSnapshots>,
    ) -> FlockShard {
        let server = Server::new(config, keys, OsEntropy(SystemRandom::new())).on_core(slot);
        // One core probes the peers at start and every minute (a split flock shows as an
        // error in the logs of both sides even when no log-in crosses it).
        let next_probe = (slot.index == 0).then_some(Time::ZERO);
        FlockShard {
            server,
            slot,
            policy,
            sinks: HashMap::new(),
            snapshots,
            next_publish: Time::ZERO,
            next_probe,
            server_timeout: None,
        }
    }

    /// Copies the server's counters and table sizes where `/metrics` reads them.
    fn publish(&mut self, now: Time) {
        self.next_publish = now + PUBLISH_EVERY;
        self.snapshots.publish(self.slot.index, &self.server);
    }

    /// The one place the server's outputs are acted on; the engine calls it (as
    /// `poll_transmit`) after every round of input until it returns `None`. Datagrams go back to
    /// the engine; events go to their websockets, policy requests and records to the plugins,
    /// alarms to the log.
    fn drain(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        loop {
            match self.server.poll_output(buf) {
                Output::Transmit { dst, len } => return Some((dst, len)),
                Output::Event { session, event } => self.deliver(now, session, event),
                // No plugins, no policy events (the server emits them only for plugins).
                Output::Policy(event) => {
                    if let Some(p) = &self.policy {
                        p.dispatch(self.slot.index, event);
                    }
                }
                Output::Alarm(alarm) => log_alarm(alarm),
                Output::Timeout(at) => {
                    self.server_timeout = at;
                    return None;
                }
            }
        }
    }

    /// Hands a log-in event to its websocket. A websocket that is gone or does not keep up
    /// loses its session (the core never waits for a browser).
    fn deliver(&mut self, now: Time, session: SessionId, event: Event) {
        let last = matches!(event, Event::Done | Event::Failed(_));
        let Some(sink) = self.sinks.get(&session) else {
            return;
        };
        let delivered = match sink.try_send(event) {
            Ok(()) => true,
            Err(Undelivered::Full(_) | Undelivered::Closed(_)) => false,
        };
        if last || !delivered {
            self.sinks.remove(&session);
        }
        if !delivered && !last {
            self.server.command(now, session, Command::Close);
        }
    }
}

/// Logs what a peer told us that an operator must fix (another membership list).
fn log_alarm(alarm: PeerAlarm) {
    match alarm {
        PeerAlarm::MembershipDiffers {
            index,
            addr,
            theirs,
            ours,
        } => tracing::error!(
            peer = index,
            %addr,
            theirs = %hex8(&theirs),
            ours = %hex8(&ours),
            "a server of the flock runs another membership list: the two refuse each other's lookups and relays until the [flock] lists agree"
        ),
    }
}

impl Shard for FlockShard {
    type Command = CoreCmd;

    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8], reply: &mut [u8]) -> Outcome {
        self.server.handle(now, src, datagram, reply)
    }

    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.drain(now, buf)
    }

    fn poll_timeout(&self) -> Option<Time> {
        let ours = self
            .next_probe
            .map_or(self.next_publish, |p| p.min(self.next_publish));
        Some(self.server_timeout.map_or(ours, |t| t.min(ours)))
    }

    fn handle_timeout(&mut self, now: Time) {
        // Early calls are harmless: the server acts only on what is due.
        self.server.handle_timeout(now);
        if now >= self.next_publish {
            self.publish(now);
        }
        if self.next_probe.is_some_and(|p| now >= p) {
            self.next_probe = Some(now + PROBE_EVERY);
            self.server.probe_peers();
        }
    }

    fn handle_command(&mut self, now: Time, cmd: CoreCmd) {
        let msg = match cmd {
            CoreCmd::Login(msg) => msg,
            CoreCmd::Admission {
                name,
                fingerprint,
                allow,
            } => {
                self.server.admission(now, &name, &fingerprint, allow);
                return;
            }
        };
        if let Some(sink) = msg.events {
            self.sinks.insert(msg.session, sink);
        }
        let closing = msg.command == Command::Close;
        self.server.command(now, msg.session, msg.command);
        if closing {
            self.sinks.remove(&msg.session);
        }
    }
}

/// The first 4 bytes of a digest, as the ready line shows it.
fn hex8(digest: &[u8; 32]) -> String {
    flock_proto::identity::to_hex(&digest[..4])
}
