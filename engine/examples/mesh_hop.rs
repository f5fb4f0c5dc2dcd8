//! The cost of the cross-core hop: a 2-core engine whose shard echoes every datagram, with the
//! owner core chosen by `ROUTE`:
//!
//! - `local`: every datagram is answered by the core that read it;
//! - `forward`: every datagram belongs to the *other* core, so each one crosses the mesh
//!   (copied into a `Forwarded`, pushed on the owner's inbox, the owner woken, popped, answered
//!   from the owner's socket). The engine steers each datagram by the first 4 bytes of its
//!   transaction id (`EngineConfig::steering`, which flock-bench varies) and the owner is the
//!   core after that one;
//! - `half`: the owner is the last transaction-id byte mod 2, so about half cross, as
//!   keep-alives do on a 2-core flockd (the kernel's reuseport hash and the name hash are
//!   unrelated).
//!
//! It serves for `SECONDS`, then prints the engine's counters and the CPU time of each core's
//! thread (`/proc/self/task/*/schedstat`, nanoseconds on CPU), and the CPU per answered datagram.
//! The load comes from outside: `flock-bench echo --target ADDR` (see `benches/mesh-hop.sh`).
//!
//!     cargo run --release -p flock-engine --example mesh_hop -- ROUTE SECONDS [ADDR] [CPUS]
//!
//! `ADDR` defaults to 127.0.0.1:0 (the ready line on stderr tells the port), `CPUS` to `0,1`
//! (pinned); `CPUS` = `unpinned` runs 2 unpinned cores.
use flock_engine::{CoreStats, CpuChoice, Engine, EngineConfig, Shard, Steering};
use flock_proto::server::Outcome;
use flock_proto::Time;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Local,
    Forward,
    Half,
}

/// Echoes every datagram; owns what `route` says.
struct Echo {
    core: usize,
    cores: usize,
    route: Route,
}

/// Steers a STUN header by the first 4 bytes of its transaction id, as flockd does.
const STEERING: Steering = Steering {
    min_len: 20,
    match_offset: 4,
    match_value: 0x2112_A442,
    hint_offset: 8,
};

impl Shard for Echo {
    type Command = ();

    #[inline]
    fn handle(&mut self, _now: Time, _src: SocketAddr, d: &[u8], reply: &mut [u8]) -> Outcome {
        let owner = match self.route {
            Route::Local => None,
            // The core the kernel steered it to (see `STEERING`), plus one.
            Route::Forward => d
                .get(8..12)
                .map(|h| (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize + 1) % self.cores),
            // A STUN header is 20 bytes: the last byte of the transaction id.
            Route::Half => d.get(19).map(|&b| b as usize % self.cores),
        };
        match owner {
            Some(o) if o != self.core => Outcome::OtherCore(o),
            _ => {
                reply[..d.len()].copy_from_slice(d);
                Outcome::Reply(d.len())
            }
        }
    }

    fn poll_transmit(&mut self, _now: Time, _buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }

    fn poll_timeout(&self) -> Option<Time> {
        None
    }

    fn handle_timeout(&mut self, _now: Time) {}
}

/// Nanoseconds on CPU of this process's threads named `flock-core*`, summed by core index.
fn core_cpu_ns() -> Vec<(usize, u64)> {
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        // glommio names them `flock-core{index}-{executor id}` (plus a helper thread each).
        let Some(index) = comm
            .trim()
            .strip_prefix("flock-core")
            .and_then(|i| i.split('-').next()?.parse().ok())
        else {
            continue;
        };
        let ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        match out.iter_mut().find(|(i, _)| *i == index) {
            Some((_, total)) => *total += ns,
            None => out.push((index, ns)),
        }
    }
    out.sort_unstable();
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: mesh_hop local|forward|half SECONDS [ADDR] [CPUS|unpinned]";
    let route = match args.first().map(String::as_str) {
        Some("local") => Route::Local,
        Some("forward") => Route::Forward,
        Some("half") => Route::Half,
        _ => panic!("{usage}"),
    };
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let addr: SocketAddr = args
        .get(2)
        .map_or("127.0.0.1:0", String::as_str)
        .parse()
        .expect("ADDR");
    let mut config = EngineConfig::new(addr);
    config.recv_buffer_bytes = 8 << 20;
    config.send_buffer_bytes = 4 << 20;
    match args.get(3).map(String::as_str).unwrap_or("0,1") {
        "unpinned" => {
            config.cpus = CpuChoice::Count(2);
            config.pin = false;
        }
        list => {
            config.cpus =
                CpuChoice::List(list.split(',').map(|c| c.parse().expect("CPUS")).collect())
        }
    }
    config.steering = Some(STEERING);
    let engine = Engine::start(config, move |core, cores| Echo { core, cores, route })
        .expect("engine starts");
    eprintln!(
        "mesh_hop: {route:?} on {} ({} cores)",
        engine.local_addr(),
        engine.cores()
    );
    let started = Instant::now();
    let cpu0 = core_cpu_ns();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let cpu1 = core_cpu_ns();
    let stats = engine.stats();
    let secs = started.elapsed().as_secs_f64();
    engine.shutdown();
    engine.join().expect("engine stops");

    let cpu: Vec<u64> = cpu1
        .iter()
        .map(|(i, b)| b - cpu0.iter().find(|(j, _)| j == i).map_or(0, |a| a.1))
        .collect();
    for s in &stats {
        println!(
            "core {}: received {} answered {} forwarded out {} in {} mesh-full drops {} batches {} wakeups {} cpu {:.3} s",
            s.core,
            s.received,
            s.answered,
            s.forwarded_out,
            s.forwarded_in,
            s.dropped_mesh_full,
            s.batches,
            s.wakeups,
            cpu.get(s.core).copied().unwrap_or(0) as f64 / 1e9
        );
    }
    let t = CoreStats::total(&stats);
    let cpu_ns: u64 = cpu.iter().sum();
    let per = if t.answered == 0 {
        0.0
    } else {
        cpu_ns as f64 / t.answered as f64
    };
    let share = if t.received == 0 {
        0.0
    } else {
        100.0 * t.forwarded_out as f64 / t.received as f64
    };
    println!(
        "{route:?}: {} answered in {secs:.1} s ({:.0}/s), {share:.1} % forwarded, {} mesh-full drops; core CPU {:.3} s = {per:.0} ns per answered datagram",
        t.answered,
        t.answered as f64 / secs,
        t.dropped_mesh_full,
        cpu_ns as f64 / 1e9
    );
    println!(
        "{{\"route\":\"{route:?}\",\"answered\":{},\"received\":{},\"forwarded\":{},\"mesh_full\":{},\"wakeups\":{},\"batches\":{},\"cpu_ns\":{cpu_ns},\"cpu_ns_per_datagram\":{per:.0}}}",
        t.answered, t.received, t.forwarded_out, t.dropped_mesh_full, t.wakeups, t.batches
    );
}
