//! The flock state machine as an engine shard, and the hand-off of log-in events to the
//! websocket sessions that wait for them.

use flock_engine::Shard;
use flock_proto::login::{Command, Event, SessionId};
use flock_proto::server::{self, Entropy, Keys, Server, ServerConfig};
use flock_proto::Time;
use flock_ws::{EventSink, ToCore};
use hashbrown::HashMap;
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;
use tokio::sync::mpsc::error::TrySendError;

/// Randomness from the operating system (used when a check or a log-in starts: rare).
pub struct OsEntropy(SystemRandom);

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill(dest).expect("system random generator failed");
    }
}

pub struct FlockShard {
    server: Server<OsEntropy>,
    /// Where each live session's events go. Bounded by the server's session bound: a session
    /// the server refuses or ends is removed here as its last event passes.
    sinks: HashMap<SessionId, EventSink>,
}

impl FlockShard {
    pub fn new(config: ServerConfig, keys: Keys) -> FlockShard {
        FlockShard { server: Server::new(config, keys, OsEntropy(SystemRandom::new())), sinks: HashMap::new() }
    }

    /// Hands the server's log-in events to their websockets. A websocket that is gone or does
    /// not keep up loses its session (the core never waits for a browser).
    fn dispatch(&mut self, now: Time) {
        while let Some((session, event)) = self.server.poll_event() {
            let last = matches!(event, Event::Done | Event::Failed(_));
            let Some(sink) = self.sinks.get(&session) else { continue };
            let delivered = match sink.try_send(event) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => false,
            };
            if last || !delivered {
                self.sinks.remove(&session);
            }
            if !delivered && !last {
                self.server.command(now, session, Command::Close);
            }
        }
    }
}

impl Shard for FlockShard {
    type Command = ToCore;

    fn route(&self, datagram: &[u8], cores: usize) -> Option<usize> {
        server::owner_core(datagram, cores)
    }

    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        let answer = self.server.handle(now, src, datagram, reply);
        if !self.sinks.is_empty() {
            self.dispatch(now);
        }
        answer
    }

    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.server.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.server.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Time) {
        self.server.handle_timeout(now);
        if !self.sinks.is_empty() {
            self.dispatch(now);
        }
    }

    fn handle_command(&mut self, now: Time, msg: ToCore) {
        if let Some(sink) = msg.events {
            self.sinks.insert(msg.session, sink);
        }
        let closing = msg.command == Command::Close;
        self.server.command(now, msg.session, msg.command);
        if closing {
            self.sinks.remove(&msg.session);
        }
        self.dispatch(now);
    }
}
