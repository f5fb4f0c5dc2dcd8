//! Commands from another thread reach the right core's shard, wake it while it is parked, and a
//! full inbox hands them back instead of blocking.

use flock_engine::{Engine, Shard};
use flock_proto::server::Outcome;
use flock_proto::Time;
use flock_testkit::engine::{client, config};
use std::net::SocketAddr;
use std::time::Duration;

/// On a command `(dest, text)`, transmits "core<i>:<text>" to `dest`.
struct Say {
    core: usize,
    queued: Vec<(SocketAddr, String)>,
}

impl Shard for Say {
    type Command = (SocketAddr, String);
    fn handle(&mut self, _: Time, _: SocketAddr, _: &[u8], _: &mut [u8]) -> Outcome {
        Outcome::Done
    }
    fn poll_transmit(&mut self, _: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let (dest, text) = self.queued.pop()?;
        let s = format!("core{}:{text}", self.core);
        buf[..s.len()].copy_from_slice(s.as_bytes());
        Some((dest, s.len()))
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn handle_timeout(&mut self, _: Time) {}
    fn handle_command(&mut self, _: Time, command: Self::Command) {
        self.queued.push(command);
    }
}

#[test]
fn commands_wake_the_owning_core_and_its_transmits_leave() {
    let engine = Engine::start(config(2), |core, _| Say {
        core,
        queued: Vec::new(),
    })
    .unwrap();
    assert!(
        engine.commander::<u32>().is_none(),
        "wrong command type must not downcast"
    );
    let commander = engine.commander::<(SocketAddr, String)>().unwrap();
    assert_eq!(commander.cores(), 2);
    let c = client();
    let me = c.local_addr().unwrap();
    let mut buf = [0u8; 64];
    // Let both cores park first: the command must wake them, not a busy loop.
    std::thread::sleep(Duration::from_millis(50));
    for core in [1, 0, 1] {
        let sender = commander.clone();
        std::thread::spawn(move || sender.send(core, (me, format!("hello{core}"))).unwrap())
            .join()
            .unwrap();
        let (n, from) = c.recv_from(&mut buf).expect("transmit after a command");
        assert_eq!(from, engine.local_addr());
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("core{core}:hello{core}")
        );
    }
    assert!(
        commander.send(7, (me, "nowhere".into())).is_err(),
        "no core 7"
    );
    engine.shutdown();
    assert!(
        commander.send(0, (me, "late".into())).is_err(),
        "stopped engine refuses commands"
    );
    engine.join().unwrap();
}

/// Blocks its core for a while on the first command, so the inbox fills behind it.
struct Slow {
    first: bool,
}

impl Shard for Slow {
    type Command = u32;
    fn handle(&mut self, _: Time, _: SocketAddr, _: &[u8], _: &mut [u8]) -> Outcome {
        Outcome::Done
    }
    fn poll_transmit(&mut self, _: Time, _: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn handle_timeout(&mut self, _: Time) {}
    fn handle_command(&mut self, _: Time, _: u32) {
        if std::mem::take(&mut self.first) {
            std::thread::sleep(Duration::from_millis(400));
        }
    }
}

#[test]
fn a_full_command_inbox_hands_the_command_back() {
    let mut cfg = config(1);
    cfg.command_capacity = 2;
    let engine = Engine::start(cfg, |_, _| Slow { first: true }).unwrap();
    let commander = engine.commander::<u32>().unwrap();
    commander.send(0, 1).unwrap();
    // The core takes command 1 and blocks in it; two more fit, the fourth comes back.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(commander.send(0, 2), Ok(()));
    assert_eq!(commander.send(0, 3), Ok(()));
    assert_eq!(commander.send(0, 4), Err(4));
    // Once the core drains, there is room again.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while commander.send(0, 5).is_err() {
        assert!(std::time::Instant::now() < deadline, "inbox never drained");
        std::thread::sleep(Duration::from_millis(20));
    }
    engine.shutdown();
    engine.join().unwrap();
}
