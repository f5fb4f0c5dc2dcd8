//! The engine end to end over real sockets on 127.0.0.1.

use flock_engine::{CoreStats, CpuChoice, Engine, EngineConfig, Shard};
use flock_proto::server::Outcome;
use flock_proto::Time;
use flock_testkit::engine::{client, config, request, stats_until, EchoShard};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[test]
fn single_core_echo() {
    let engine = Engine::start(config(1), EchoShard::new).unwrap();
    assert_eq!(engine.cores(), 1);
    let server = engine.local_addr();
    assert_ne!(server.port(), 0);
    let c = client();
    let (reply, from) = request(&c, server, &[5, 1, 2, 3]);
    assert_eq!(reply, vec![0, 5, 1, 2, 3]);
    assert_eq!(from, server);
    let (reply, _) = request(&c, server, &[0xFF]);
    assert_eq!(reply, vec![0, 0xFF]);
    let stats = stats_until(&engine, |s| s[0].answered >= 2);
    assert_eq!(stats.len(), 1);
    assert!(stats[0].received >= 2, "{stats:?}");
    assert_eq!(stats[0].kernel_drops, Some(0));
    engine.join_after_shutdown();
}

#[test]
fn two_cores_answer_from_the_owner_and_the_server_address() {
    let engine = Engine::start(config(2), EchoShard::new).unwrap();
    let server = engine.local_addr();
    // Many client ports, so the kernel's reuseport hash lands datagrams on both sockets.
    let clients: Vec<UdpSocket> = (0..32).map(|_| client()).collect();
    for (i, c) in clients.iter().enumerate() {
        for first in [0u8, 1, 2, 3] {
            let msg = [first, i as u8, 7];
            let (reply, from) = request(c, server, &msg);
            assert_eq!(from, server, "reply must come from the server address");
            assert_eq!(reply[0], first % 2, "owner core answers");
            assert_eq!(&reply[1..], &msg);
        }
        let (reply, from) = request(c, server, &[0xFF, i as u8]);
        assert_eq!(from, server);
        assert!(reply[0] < 2);
    }
    let stats = stats_until(&engine, |s| CoreStats::total(s).answered >= 32 * 5);
    let total = CoreStats::total(&stats);
    assert!(
        total.forwarded_out > 0,
        "no datagram crossed cores: {stats:?}"
    );
    assert_eq!(total.forwarded_out, total.forwarded_in, "{stats:?}");
    assert!(
        stats.iter().all(|s| s.received > 0),
        "both sockets should receive: {stats:?}"
    );
    assert_eq!(
        total.dropped_mesh_full + total.dropped_truncated + total.send_errors,
        0
    );
    engine.join_after_shutdown();
}

#[test]
fn dual_stack_socket_serves_ipv4_clients() {
    let cfg = EngineConfig {
        addr: "[::]:0".parse().unwrap(),
        ..config(2)
    };
    let engine = match Engine::start(cfg, |core, cores| AddrShard { core, cores }) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => return, // no IPv6 here
        Err(e) => panic!("{e}"),
    };
    let server: SocketAddr = ([127, 0, 0, 1], engine.local_addr().port()).into();
    for _ in 0..8 {
        let c = client();
        for first in [0u8, 1] {
            let (reply, from) = request(&c, server, &[first]);
            assert_eq!(from, server);
            // The shard sees the client as plain IPv4, not ::ffff:127.0.0.1.
            assert_eq!(
                String::from_utf8(reply).unwrap(),
                c.local_addr().unwrap().to_string()
            );
        }
    }
    engine.join_after_shutdown();
}

/// Replies with the source address it was given, as text; routes like EchoShard.
struct AddrShard {
    core: usize,
    cores: usize,
}

impl Shard for AddrShard {
    type Command = ();
    fn handle(&mut self, _: Time, src: SocketAddr, d: &[u8], reply: &mut [u8]) -> Outcome {
        match d.first().map(|&b| b as usize % self.cores) {
            Some(owner) if owner != self.core => return Outcome::OtherCore(owner),
            _ => {}
        }
        let s = src.to_string();
        reply[..s.len()].copy_from_slice(s.as_bytes());
        Outcome::Reply(s.len())
    }
    fn poll_transmit(&mut self, _: Time, _: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn handle_timeout(&mut self, _: Time) {}
}

/// On "sub", remembers the client and schedules a tick 30 ms later; at the tick it transmits
/// "tick:<now>" to the client three times, 30 ms apart.
struct TickShard {
    /// Core 0 owns every datagram.
    core: usize,
    subscriber: Option<SocketAddr>,
    next: Option<Time>,
    due: bool,
    left: u32,
}

impl Shard for TickShard {
    type Command = ();
    fn handle(&mut self, now: Time, src: SocketAddr, d: &[u8], _: &mut [u8]) -> Outcome {
        if self.core != 0 {
            return Outcome::OtherCore(0);
        }
        if d == b"sub" {
            self.subscriber = Some(src);
            self.next = Some(Time(now.0 + 30));
            self.left = 3;
        }
        Outcome::Done
    }
    fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if !std::mem::take(&mut self.due) {
            return None;
        }
        let s = format!("tick:{}", now.0);
        buf[..s.len()].copy_from_slice(s.as_bytes());
        Some((self.subscriber?, s.len()))
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.next
    }
    fn handle_timeout(&mut self, now: Time) {
        if self.next.is_some_and(|t| t <= now) {
            self.due = true;
            self.left -= 1;
            self.next = (self.left > 0).then_some(Time(now.0 + 30));
        }
    }
}

#[test]
fn timers_deliver_transmits() {
    let engine = Engine::start(config(2), |core, _| TickShard {
        core,
        subscriber: None,
        next: None,
        due: false,
        left: 0,
    })
    .unwrap();
    let c = client();
    let start = Instant::now();
    c.send_to(b"sub", engine.local_addr()).unwrap();
    let mut buf = [0u8; 64];
    let mut ticks = Vec::new();
    while ticks.len() < 3 {
        let (n, from) = c.recv_from(&mut buf).expect("tick");
        assert_eq!(from, engine.local_addr());
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        ticks.push(text.strip_prefix("tick:").unwrap().parse::<u64>().unwrap());
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(85),
        "ticks came too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "ticks came late: {elapsed:?}"
    );
    // `now` is milliseconds since the Unix epoch (after 2020) and moves forward.
    assert!(ticks[0] > 1_577_836_800_000);
    assert!(ticks.windows(2).all(|w| w[1] >= w[0] + 29), "{ticks:?}");
    stats_until(&engine, |s| CoreStats::total(s).transmitted == 3);
    engine.join_after_shutdown();
}

#[test]
fn shutdown_stops_every_core_quickly() {
    let engine = Engine::start(config(2), EchoShard::new).unwrap();
    let stopper = engine.shutdown_handle();
    std::thread::sleep(Duration::from_millis(50)); // let the cores park
    let start = Instant::now();
    std::thread::spawn(move || stopper.shutdown())
        .join()
        .unwrap();
    engine.join().unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(500), "shutdown took {took:?}");
}

#[test]
fn truncated_datagrams_are_dropped_and_counted() {
    let engine = Engine::start(config(1), EchoShard::new).unwrap();
    let c = client();
    c.send_to(&[1u8; 3000], engine.local_addr()).unwrap();
    let (reply, _) = request(&c, engine.local_addr(), &[1, 2]);
    assert_eq!(reply, vec![0, 1, 2], "the long datagram got no reply");
    stats_until(&engine, |s| {
        s[0].dropped_truncated == 1 && s[0].answered >= 1
    });
    engine.join_after_shutdown();
}

#[test]
fn unavailable_address_is_an_error_naming_it() {
    let cfg = EngineConfig {
        addr: "192.0.2.1:3478".parse().unwrap(),
        ..config(2)
    };
    let err = Engine::start(cfg, EchoShard::new)
        .err()
        .expect("bind must fail");
    assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
    assert!(err.to_string().contains("192.0.2.1:3478"), "{err}");
}

#[test]
fn port_held_without_reuseport_is_an_error() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = EngineConfig {
        addr: holder.local_addr().unwrap(),
        ..config(1)
    };
    let err = Engine::start(cfg, EchoShard::new)
        .err()
        .expect("bind must fail");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(
        err.to_string()
            .contains(&holder.local_addr().unwrap().to_string()),
        "{err}"
    );
}

#[test]
fn shard_factory_panic_is_an_error() {
    let err = Engine::start(config(2), |core, cores| {
        if core == 1 {
            panic!("shard 1 cannot start");
        }
        EchoShard::new(core, cores)
    })
    .err()
    .expect("start must fail");
    eprintln!("start error: {err}");
    assert!(err.to_string().contains("core 1"), "{err}");
}

#[test]
fn bad_cpu_list_is_an_error() {
    let cfg = EngineConfig {
        cpus: CpuChoice::List(vec![]),
        ..config(1)
    };
    assert_eq!(
        Engine::start(cfg, EchoShard::new).err().unwrap().kind(),
        io::ErrorKind::InvalidInput
    );
}

trait JoinAfterShutdown {
    fn join_after_shutdown(self);
}

impl JoinAfterShutdown for flock_engine::EngineHandle {
    fn join_after_shutdown(self) {
        self.shutdown();
        self.join().unwrap();
    }
}

/// Echoes, but panics on a datagram starting with 0xEE.
struct Fragile(EchoShard);

impl Shard for Fragile {
    type Command = ();
    fn handle(&mut self, now: Time, src: SocketAddr, d: &[u8], reply: &mut [u8]) -> Outcome {
        // Only the owner looks at the datagram.
        match self.0.owner(d) {
            Some(owner) if owner != self.0.core => return Outcome::OtherCore(owner),
            _ => {}
        }
        assert!(d.first() != Some(&0xEE), "fragile shard got 0xEE");
        self.0.handle(now, src, d, reply)
    }
    fn poll_transmit(&mut self, _: Time, _: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn handle_timeout(&mut self, _: Time) {}
}

#[test]
fn a_panicking_shard_stops_the_engine_with_an_error() {
    let engine = Engine::start(config(2), |core, cores| {
        Fragile(EchoShard::new(core, cores))
    })
    .unwrap();
    let c = client();
    assert_eq!(request(&c, engine.local_addr(), &[1, 9]).0, vec![1, 1, 9]);
    // 0xEE % 2 == 0: core 0 panics, whichever socket read it; core 1 must stop too.
    c.send_to(&[0xEE], engine.local_addr()).unwrap();
    let start = Instant::now();
    let err = engine.join().expect_err("a core panicked");
    eprintln!("join error: {err}");
    assert!(err.to_string().contains("core 0"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn nonexistent_cpu_is_an_error() {
    let cfg = EngineConfig {
        cpus: CpuChoice::List(vec![4095]),
        pin: true,
        ..config(1)
    };
    let err = Engine::start(cfg, EchoShard::new)
        .err()
        .expect("start must fail");
    eprintln!("start error: {err}");
    assert!(err.to_string().contains("core 0"), "{err}");
}

#[test]
fn full_inboxes_drop_and_count_without_stalling() {
    let cfg = EngineConfig {
        mesh_capacity: 1,
        ..config(2)
    };
    let engine = Engine::start(cfg, EchoShard::new).unwrap();
    let server = engine.local_addr();
    let clients: Vec<UdpSocket> = (0..16).map(|_| client()).collect();
    // Every datagram belongs to core 1; those the kernel hands to core 0 squeeze through a
    // one-slot inbox.
    for _ in 0..100 {
        for c in &clients {
            c.send_to(&[1, 2, 3], server).unwrap();
        }
    }
    // Every datagram sent is accounted for: read (or dropped by the kernel), then answered or
    // dropped at a full inbox.
    let stats = stats_until(&engine, |s| {
        let t = CoreStats::total(s);
        t.received + t.kernel_drops.unwrap_or(0) == 1600
            && t.forwarded_out == t.forwarded_in
            && t.received == t.answered + t.dropped_mesh_full + t.send_errors
    });
    assert_eq!(stats[0].answered, 0, "core 1 owns everything: {stats:?}");
    // Still serving (fresh clients: the old ones still hold replies to the flood).
    for _ in 0..16 {
        assert_eq!(request(&client(), server, &[3, 4]).0, vec![1, 3, 4]);
    }
    engine.join_after_shutdown();
}

#[test]
fn handles_can_move_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<flock_engine::EngineHandle>();
    send_sync::<flock_engine::ShutdownHandle>();
}

/// Claims every datagram belongs to `to`, whoever reads it.
struct Misroutes {
    to: usize,
}

impl Shard for Misroutes {
    type Command = ();
    fn handle(&mut self, _: Time, _: SocketAddr, _: &[u8], _: &mut [u8]) -> Outcome {
        Outcome::OtherCore(self.to)
    }
    fn poll_transmit(&mut self, _: Time, _: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn handle_timeout(&mut self, _: Time) {}
}

#[test]
fn a_shard_naming_no_valid_owner_gets_its_datagrams_dropped_not_bounced() {
    // Core 1 for every datagram: those core 0 reads cross once, then core 1 (like the ones it
    // reads itself) names itself as another core's owner, which is no hand-over: dropped, never
    // bounced back. Core 7 does not exist: dropped where read.
    for (to, forwarded) in [(1usize, true), (7, false)] {
        let engine = Engine::start(config(2), move |_, _| Misroutes { to }).unwrap();
        let c = client();
        for i in 0..40u8 {
            // Many flows, so both cores read some.
            let c = if i % 2 == 0 { &c } else { &client() };
            c.send_to(&[i], engine.local_addr()).unwrap();
        }
        let stats = stats_until(&engine, |s| {
            let t = CoreStats::total(s);
            t.received == 40 && t.dropped_misrouted + t.answered == 40
        });
        let t = CoreStats::total(&stats);
        assert_eq!(t.answered, 0, "to {to}");
        assert_eq!(t.dropped_misrouted, 40, "to {to}: {stats:?}");
        if !forwarded {
            assert_eq!(t.forwarded_out, 0);
        }
        engine.shutdown();
        engine.join().unwrap();
    }
}
