//! The steady path allocates nothing: a keep-alive (parse, one HMAC, table update, answer) and a
//! STUN Binding answer, counted by a global allocator that tallies every allocation.

use flock_proto::server::ServerConfig;
use flock_proto::stun::{attr, Class, Encoder, MessageType, Method};
use flock_testkit::hand_driven::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn keepalive_and_binding_allocate_nothing() {
    let mut s = server(ServerConfig::default());
    let mut devices: Vec<Device> = (0..64)
        .map(|i| Device::new(&format!("box-{i}"), i as u8 + 1))
        .collect();
    let sources: Vec<std::net::SocketAddr> = (0..64)
        .map(|i| addr(&format!("192.0.2.{}:{}", i % 200 + 1, 1000 + i)))
        .collect();
    let src = |i: usize| sources[i];
    for (i, d) in devices.iter_mut().enumerate() {
        assert!(matches!(
            register(d, &mut s, T0, src(i)),
            Answer::Registered(_)
        ));
    }
    // Requests prepared up front: the client side is not what is measured.
    let keepalives: Vec<Vec<u8>> = devices
        .iter_mut()
        .map(|d| {
            let txid = d.txid();
            d.keepalive_bytes(&txid)
        })
        .collect();
    let mut buf = [0u8; 64];
    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &[1; 12]).unwrap();
    e.attribute(attr::SOFTWARE, b"padding-padding").unwrap();
    let n = e.fingerprint().unwrap();
    let binding = buf[..n].to_vec();

    let mut reply = [0u8; 1500];
    let now = T0 + Duration::from_secs(30);
    // Warm up (first touches may grow nothing, but be fair).
    for (i, k) in keepalives.iter().enumerate() {
        assert!(s.handle(now, src(i), k, &mut reply).reply().is_some());
    }
    let count = |s: &mut Host, reply: &mut [u8], reqs: &[&[u8]]| {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut answered = 0;
        for round in 0..100 {
            let now = now + Duration::from_millis(round);
            for (i, req) in reqs.iter().enumerate() {
                answered += s.handle(now, src(i), req, reply).reply().is_some() as u32;
            }
        }
        (answered, ALLOCATIONS.load(Ordering::Relaxed) - before)
    };
    let ka: Vec<&[u8]> = keepalives.iter().map(Vec::as_slice).collect();
    let bindings: Vec<&[u8]> = vec![binding.as_slice(); ka.len()];
    let (answered, allocations) = count(&mut s, &mut reply, &ka);
    assert_eq!(
        (answered, allocations),
        (6400, 0),
        "keep-alives: (answers, allocations)"
    );
    let (answered, allocations) = count(&mut s, &mut reply, &bindings);
    assert_eq!(
        (answered, allocations),
        (6400, 0),
        "Binding: (answers, allocations)"
    );
}
