//! For the engine's integration tests: an echo shard, an unpinned engine on loopback, UDP clients.

use flock_engine::{CpuChoice, EngineConfig, Shard};
use flock_proto::server::Outcome;
use flock_proto::Time;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Routes on the first byte (`byte % cores`, `0xFF` = any core) and replies
/// `[core index, original bytes...]`. Allocates nothing.
pub struct EchoShard {
    pub core: usize,
    pub cores: usize,
}

impl EchoShard {
    pub fn new(core: usize, cores: usize) -> EchoShard {
        EchoShard { core, cores }
    }

    /// The core owning `datagram`, or `None` when any core may answer it.
    pub fn owner(&self, datagram: &[u8]) -> Option<usize> {
        match datagram.first() {
            None | Some(0xFF) => None,
            Some(&b) => Some(b as usize % self.cores),
        }
    }
}

impl Shard for EchoShard {
    type Command = ();

    fn handle(
        &mut self,
        _now: Time,
        _src: SocketAddr,
        datagram: &[u8],
        reply: &mut [u8],
    ) -> Outcome {
        match self.owner(datagram) {
            Some(owner) if owner != self.core => return Outcome::OtherCore(owner),
            _ => {}
        }
        let n = datagram.len().min(reply.len() - 1);
        reply[0] = self.core as u8;
        reply[1..1 + n].copy_from_slice(&datagram[..n]);
        Outcome::Reply(1 + n)
    }

    fn poll_transmit(&mut self, _now: Time, _buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }

    fn poll_timeout(&self) -> Option<Time> {
        None
    }

    fn handle_timeout(&mut self, _now: Time) {}
}

/// An unpinned engine on 127.0.0.1 with an OS-chosen port.
pub fn config(cores: usize) -> EngineConfig {
    EngineConfig {
        cpus: CpuChoice::Count(cores),
        pin: false,
        recv_buffer_bytes: 1 << 20,
        send_buffer_bytes: 1 << 20,
        ..EngineConfig::new("127.0.0.1:0".parse().unwrap())
    }
}

pub fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `msg` to `server` and waits for one reply, retrying a few times (UDP may drop).
pub fn request(sock: &UdpSocket, server: SocketAddr, msg: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        sock.send_to(msg, server).unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            return (buf[..n].to_vec(), from);
        }
    }
    panic!("no reply to {msg:?} from {server}");
}

/// Polls `engine.stats()` until `done` holds (counters are bumped just after the replies leave,
/// so a client can see a reply before the count); panics after 2 s.
pub fn stats_until(
    engine: &flock_engine::EngineHandle,
    done: impl Fn(&[flock_engine::CoreStats]) -> bool,
) -> Vec<flock_engine::CoreStats> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let stats = engine.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never got there: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
