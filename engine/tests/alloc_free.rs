//! Proof that the steady datagram path does not allocate: a counting global allocator (in its own
//! test binary so it affects no other test) counts the allocations made by the engine's threads
//! while a client sends bursts of datagrams, and records an (unresolved, cheap) backtrace of each
//! so they can be attributed afterwards:
//!
//! - engine: the innermost flock_engine-or-glommio frame is flock_engine (our code, the shard,
//!   or a library we call such as crossbeam). Must be ~0.
//! - readiness wait: glommio allocating for our one-byte `peek_from` (an io_uring op's `Source`,
//!   and its receive buffer when the op is submitted), only when the socket has run dry and the
//!   core is about to park.
//! - glommio executor: glommio's own parking (preemption timers, submission chains, its timer
//!   map).
//!
//! `FLOCK_ALLOC_TRACE=N` prints the first N backtraces of each class.

use flock_engine::{CoreStats, Engine, EngineHandle, Shard};
use flock_proto::server::Outcome;
use flock_proto::Time;
use flock_testkit::engine::{config, stats_until, EchoShard};
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

struct Counting;

static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());
const MAX_TRACES: usize = 20_000;

thread_local! {
    /// Set on the test's own threads (the client): their allocations are not the engine's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
    /// Set while recording a backtrace, whose own allocations are not counted.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn count(&self) {
        if !MEASURING.load(Ordering::Relaxed)
            || EXCLUDED.try_with(|e| e.get()).unwrap_or(true)
            || RECORDING.try_with(|r| r.get()).unwrap_or(true)
        {
            return;
        }
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        RECORDING.with(|r| r.set(true));
        let trace = Backtrace::force_capture();
        if let Ok(mut traces) = TRACES.lock() {
            if traces.len() < MAX_TRACES {
                traces.push(trace);
            }
        }
        RECORDING.with(|r| r.set(false));
    }
}

// SAFETY: defers every operation to the system allocator; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BURST: usize = 100;
const BURSTS: usize = 200;

/// Sends `bursts` bursts of `BURST` datagrams, reading the replies after each burst.
fn drive(client: &UdpSocket, server: SocketAddr, bursts: usize) -> u64 {
    let mut buf = [0u8; 256];
    let mut msg = [0u8; 48];
    let mut got = 0;
    for b in 0..bursts {
        for i in 0..BURST {
            msg[1] = i as u8;
            msg[2] = b as u8;
            client.send_to(&msg, server).unwrap();
        }
        for _ in 0..BURST {
            match client.recv_from(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break, // lost datagrams: the engine's counters tell
            }
        }
    }
    got
}

#[derive(Debug, Default)]
struct Attribution {
    engine: u64,
    readiness_wait: u64,
    glommio_executor: u64,
    unknown: u64,
}

fn attribute(traces: &[Backtrace], print: usize) -> Attribution {
    let mut a = Attribution::default();
    let mut printed = [0usize; 4];
    for t in traces {
        let text = format!("{t}");
        // Innermost frame that is ours or glommio's.
        let owner = text.lines().find_map(|l| {
            let f = l.trim_start();
            let f = f
                .split_once(": ")
                .map_or(f, |(_, name)| name)
                .trim_start_matches('<');
            if f.starts_with("flock_engine::") {
                Some(true)
            } else if f.starts_with("glommio::") {
                Some(false)
            } else {
                None
            }
        });
        let class = match owner {
            Some(true) => 0,
            // The peek's io_uring op: its Source is made inside peek_from, its receive buffer
            // when glommio fills the submission entry at park time.
            Some(false)
                if text.contains("peek_from")
                    || (text.contains("fill_sqe") && text.contains("DmaBuffer::new")) =>
            {
                1
            }
            Some(false) => 2,
            None => 3,
        };
        *[
            &mut a.engine,
            &mut a.readiness_wait,
            &mut a.glommio_executor,
            &mut a.unknown,
        ][class] += 1;
        if printed[class] < print {
            printed[class] += 1;
            eprintln!(
                "--- allocation of class {class} (0 engine, 1 wait, 2 glommio, 3 unknown):\n{text}"
            );
        }
    }
    a
}

fn run(label: &str, engine: EngineHandle) -> f64 {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let server = engine.local_addr();
    drive(&client, server, 20); // warm-up: lazy statics, first io_uring ops
    std::thread::sleep(Duration::from_millis(50));
    let before = CoreStats::total(&engine.stats());

    TRACES.lock().unwrap().reserve(MAX_TRACES);
    ALLOCS.store(0, Ordering::SeqCst);
    MEASURING.store(true, Ordering::SeqCst);
    let got = drive(&client, server, BURSTS);
    MEASURING.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20)); // let an allocation in flight record its trace
    let allocs = ALLOCS.load(Ordering::SeqCst);
    let traces = std::mem::take(&mut *TRACES.lock().unwrap());

    let after = CoreStats::total(&stats_until(&engine, |s| {
        CoreStats::total(s).answered >= before.answered + got
    }));
    engine.shutdown();
    engine.join().unwrap();

    let answered = after.answered - before.answered;
    let wakeups = after.wakeups - before.wakeups;
    let print = std::env::var("FLOCK_ALLOC_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut a = attribute(&traces, print);
    a.unknown += allocs.saturating_sub(traces.len() as u64);
    let per = |n: u64| n as f64 / answered.max(1) as f64;
    eprintln!(
        "{label}: {answered} datagrams answered, {wakeups} wake-ups, {} recvmmsg batches; \
         {allocs} allocations = {:.4}/datagram: engine {} ({:.4}/datagram), readiness wait {} ({:.4}), \
         glommio executor {} ({:.4}), unattributed {}",
        after.batches - before.batches,
        per(allocs),
        a.engine,
        per(a.engine),
        a.readiness_wait,
        per(a.readiness_wait),
        a.glommio_executor,
        per(a.glommio_executor),
        a.unknown,
    );
    assert!(
        answered as usize >= BURST * BURSTS * 9 / 10,
        "too many losses: {answered}"
    );
    // A per-datagram allocation anywhere would show as >= 1.
    assert!(
        per(allocs) < 0.5,
        "{:.4} allocations per datagram in total",
        per(allocs)
    );
    per(a.engine + a.unknown)
}

/// EchoShard with a timer always armed 1 s ahead, as a real shard usually has.
struct TimedEcho {
    echo: EchoShard,
    next: Time,
}

impl Shard for TimedEcho {
    type Command = ();
    fn handle(&mut self, now: Time, src: SocketAddr, d: &[u8], reply: &mut [u8]) -> Outcome {
        if self.next <= now {
            self.next = Time(now.0 + 1000);
        }
        self.echo.handle(now, src, d, reply)
    }
    fn poll_transmit(&mut self, _: Time, _: &mut [u8]) -> Option<(SocketAddr, usize)> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        Some(self.next)
    }
    fn handle_timeout(&mut self, now: Time) {
        self.next = Time(now.0 + 1000);
    }
}

#[test]
fn steady_path_does_not_allocate() {
    EXCLUDED.with(|e| e.set(true));

    let engine = Engine::start(config(1), EchoShard::new).unwrap();
    let plain = run("no timers", engine);

    let engine = Engine::start(config(1), |core, cores| TimedEcho {
        echo: EchoShard::new(core, cores),
        next: Time(0),
    })
    .unwrap();
    let timed = run("timer armed", engine);

    assert!(
        plain < 0.05,
        "engine path: {plain:.4} allocations per datagram"
    );
    assert!(
        timed < 0.05,
        "engine path with a timer: {timed:.4} allocations per datagram"
    );
}
