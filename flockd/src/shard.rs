//! The flock state machine as an engine shard.

use flock_engine::Shard;
use flock_proto::server::{self, Entropy, Keys, Server, ServerConfig};
use flock_proto::Time;
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;

/// Randomness from the operating system (used only when a check starts: rare).
pub struct OsEntropy(SystemRandom);

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill(dest).expect("system random generator failed");
    }
}

pub struct FlockShard(pub Server<OsEntropy>);

impl FlockShard {
    pub fn new(config: ServerConfig, keys: Keys) -> FlockShard {
        FlockShard(Server::new(config, keys, OsEntropy(SystemRandom::new())))
    }
}

impl Shard for FlockShard {
    type Command = ();

    fn route(&self, datagram: &[u8], cores: usize) -> Option<usize> {
        server::owner_core(datagram, cores)
    }

    fn handle(&mut self, now: Time, src: SocketAddr, datagram: &[u8], reply: &mut [u8]) -> Option<usize> {
        self.0.handle(now, src, datagram, reply)
    }

    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.0.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.0.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Time) {
        self.0.handle_timeout(now)
    }
}
