//! Bytes per registered appliance in one shard's table, measured: fills a server through its
//! keep-alive path (tokens issued directly, so no signatures) and counts the heap it holds.
//!
//!     cargo run --release -p flock-proto --features testing --example table_memory -- 1000000
use flock_proto::identity::Fingerprint;
use flock_proto::server::{Server, ServerConfig};
use flock_proto::testing::{keypair, Host, XorShift};
use flock_proto::token::ProofKeys;
use flock_proto::wire::registration::Keepalive;
use flock_proto::{Name, Time};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded to the system allocator.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let secret = b"table memory";
    let proof = ProofKeys::from_secret(secret);
    let keys = flock_proto::server::Keys {
        proof: proof.clone(),
        flock: Arc::new(keypair(1)),
    };
    let config = ServerConfig {
        max_registrations: n,
        ..ServerConfig::default()
    };
    let now = Time(1_700_000_000_000);
    let fp = Fingerprint([7; 32]);
    let mut server = Host::new(Server::new(config, keys, XorShift(1)));
    let before = LIVE.load(Ordering::Relaxed);
    let (mut buf, mut reply) = ([0u8; 512], [0u8; 512]);
    for i in 0..n {
        let name: Name = format!("appliance-{i}").parse().unwrap();
        let addr = SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + i as u32).into(), 40000);
        let token = proof.issue_token(&name, &fp, addr, 1_700_003_600);
        let len = Keepalive {
            name,
            identity: fp,
            token,
        }
        .encode(&mut buf, &[0; 12])
        .unwrap();
        server
            .handle(now, addr, &buf[..len], &mut reply)
            .reply()
            .expect("kept alive");
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let (entries, _) = server.occupancy();
    assert_eq!(entries, n);
    println!(
        "{n} registrations: {held} bytes on the heap, {:.1} bytes per registration (entry {} bytes)",
        held as f64 / n as f64,
        std::mem::size_of::<flock_proto::server::Entry>()
    );
    // The sweep that removes them once they expired: the longest single timer call is the
    // longest the shard stops answering for it.
    let mut t = now + std::time::Duration::from_secs(61);
    let (mut longest, mut total) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    while server.occupancy().0 > 0 {
        t = server.timeout().expect("sweep timer").max(t);
        let started = std::time::Instant::now();
        server.handle_timeout(t);
        let took = started.elapsed();
        longest = longest.max(took);
        total += took;
    }
    println!("expiry sweep of {n}: longest timer call {longest:?}, total {total:?}");
}
