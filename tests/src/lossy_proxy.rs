//! A lossy UDP proxy on loopback for tests: clients send to [`LossyProxy::addr`] as if it were
//! the server; each client gets its own upstream socket, so the server sees one address per
//! client and its datagrams to that address come back through the proxy. Both directions lose,
//! duplicate and delay (hence reorder) datagrams with the configured odds, drawn from a seeded
//! RNG so a run is repeatable for a given seed and arrival order. Queues and the client table
//! are bounded; the proxy runs on its own thread and stops when dropped. It speaks the
//! server's family: in front of a server on ::1 it listens on ::1 (and talks to it from ::1).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to every datagram, each direction independently.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Probability (0..=1) that a datagram is dropped.
    pub loss: f64,
    /// Probability that a delivered datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by a random delay in `0..=max_delay`
    /// (letting later ones overtake it).
    pub reorder: f64,
    pub max_delay: Duration,
    /// Seed of the RNG.
    pub seed: u64,
    /// Datagrams waiting for their delivery time; past it new ones are dropped.
    pub queue: usize,
    /// Distinct clients; past it new clients are ignored.
    pub max_clients: usize,
}

impl Impairment {
    /// `loss` with 5 % duplication and 20 % of datagrams delayed up to 80 ms.
    pub fn lossy(loss: f64, seed: u64) -> Impairment {
        Impairment {
            loss,
            duplicate: 0.05,
            reorder: 0.2,
            max_delay: Duration::from_millis(80),
            seed,
            queue: 4096,
            max_clients: 256,
        }
    }
}

/// What went through, for reports.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub delayed: AtomicU64,
    pub delivered: AtomicU64,
    pub overflowed: AtomicU64,
}

impl ProxyStats {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "received {} dropped {} duplicated {} delayed {} delivered {} overflowed {}",
            g(&self.received),
            g(&self.dropped),
            g(&self.duplicated),
            g(&self.delayed),
            g(&self.delivered),
            g(&self.overflowed)
        )
    }
}

/// A running proxy; stops (and joins its thread) on drop.
pub struct LossyProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<ProxyStats>,
}

impl LossyProxy {
    /// Starts a proxy on the loopback address of `upstream`'s family (127.0.0.1 or ::1) in
    /// front of `upstream` (which must be on loopback).
    pub fn start(upstream: SocketAddr, imp: Impairment) -> LossyProxy {
        assert!(upstream.ip().is_loopback(), "loopback only");
        assert!(
            (0.0..=1.0).contains(&imp.loss)
                && (0.0..=1.0).contains(&imp.duplicate)
                && (0.0..=1.0).contains(&imp.reorder)
        );
        let local = SocketAddr::new(upstream.ip(), 0);
        let front = UdpSocket::bind(local).expect("bind proxy");
        front.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProxyStats::default());
        let mut worker = Worker {
            front,
            upstream,
            local,
            imp,
            rng: Rng::new(imp.seed),
            clients: Vec::new(),
            by_addr: HashMap::new(),
            queue: Vec::new(),
            seq: 0,
            stats: stats.clone(),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lossy-proxy".into())
            .spawn(move || worker.run(&flag))
            .expect("spawn proxy thread");
        LossyProxy {
            addr,
            stop,
            thread: Some(thread),
            stats,
        }
    }

    /// Where clients send (in place of the server's address).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// xorshift64*: small, seeded, good enough for coin flips.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Route {
    /// Out of the client's upstream socket to the server.
    Up(usize),
    /// Out of the front socket to this client.
    Down(SocketAddr),
}

struct Queued {
    at: Instant,
    seq: u64,
    route: Route,
    bytes: Vec<u8>,
}

struct Worker {
    front: UdpSocket,
    upstream: SocketAddr,
    /// Where the per-client sockets bind (the upstream's loopback, any port).
    local: SocketAddr,
    imp: Impairment,
    rng: Rng,
    /// Per client: its address and its socket towards the server.
    clients: Vec<(SocketAddr, UdpSocket)>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: Vec<Queued>,
    seq: u64,
    stats: Arc<ProxyStats>,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let mut busy = false;
            // Bounded batches per socket per round, so one busy socket cannot starve the rest.
            for _ in 0..64 {
                match self.front.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        busy = true;
                        if let Some(i) = self.client(from) {
                            self.impair(Route::Up(i), &buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break, // e.g. ICMP port unreachable reported on loopback
                }
            }
            for i in 0..self.clients.len() {
                for _ in 0..64 {
                    match self.clients[i].1.recv_from(&mut buf) {
                        Ok((n, from)) if from == self.upstream => {
                            busy = true;
                            let to = self.clients[i].0;
                            self.impair(Route::Down(to), &buf[..n]);
                        }
                        Ok(_) => busy = true, // not from the server: ignore
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
            busy |= self.deliver_due();
            if !busy {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }

    fn client(&mut self, from: SocketAddr) -> Option<usize> {
        if let Some(&i) = self.by_addr.get(&from) {
            return Some(i);
        }
        if self.clients.len() >= self.imp.max_clients {
            return None;
        }
        let s = UdpSocket::bind(self.local).ok()?;
        s.set_nonblocking(true).ok()?;
        self.clients.push((from, s));
        self.by_addr.insert(from, self.clients.len() - 1);
        Some(self.clients.len() - 1)
    }

    fn impair(&mut self, route: Route, bytes: &[u8]) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if self.rng.unit() < self.imp.loss {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if self.rng.unit() < self.imp.duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let now = Instant::now();
        for _ in 0..copies {
            let delay = if self.rng.unit() < self.imp.reorder {
                self.stats.delayed.fetch_add(1, Ordering::Relaxed);
                self.imp.max_delay.mul_f64(self.rng.unit())
            } else {
                Duration::ZERO
            };
            if self.queue.len() >= self.imp.queue {
                self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.seq += 1;
            self.queue.push(Queued {
                at: now + delay,
                seq: self.seq,
                route,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// Sends what is due, in (due time, arrival) order; true if anything went out.
    fn deliver_due(&mut self) -> bool {
        let now = Instant::now();
        if !self.queue.iter().any(|q| q.at <= now) {
            return false;
        }
        let (mut due, rest): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| q.at <= now);
        self.queue = rest;
        due.sort_by_key(|q| (q.at, q.seq));
        for q in due {
            let sent = match q.route {
                Route::Up(i) => self.clients[i].1.send_to(&q.bytes, self.upstream),
                Route::Down(to) => self.front.send_to(&q.bytes, to),
            };
            if sent.is_ok() {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }
}
