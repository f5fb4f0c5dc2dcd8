//! The flock caches an appliance's persona list and checks it by checksum before every answer to
//! a browser: a second browser costs one PERSONAS round trip without data; a changed list is
//! fetched again and the browser sees the new one.

use flock_testkit::browser::*;
use flock_tests::{appliance, wait_until_registered, Flockd};
use serde_json::Value;

fn list(prefix: &str, n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"{prefix}{i}","name":"Persona number {i} of a long list"}}"#))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

async fn personas(ws: std::net::SocketAddr) -> Value {
    let mut b = Browser::connect(ws).await;
    b.open("cache-box").await;
    b.expect("personas").await["personas"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_then_invalidation_by_checksum() {
    let server = Flockd::start(&[]);
    let ws = server.ws.unwrap();
    let mut h = appliance(&server, "cache-box", 4);
    wait_until_registered(&mut h, WAIT).await;
    let first = list("a", 30);
    assert!(first.len() > 1200, "the list must take several chunks");
    h.set_personas(Some(first.clone())).unwrap();
    let answered = |h: &flock_appliance::ApplianceHandle| h.status().stats.personas_answered;

    let p = personas(ws).await;
    assert_eq!(p.as_array().unwrap().len(), 30);
    let chunks = answered(&h);
    assert!(chunks >= 2, "fetched in chunks: {chunks}");

    // Cached: one round trip confirms the checksum, no data moves.
    assert_eq!(personas(ws).await, p);
    assert_eq!(answered(&h), chunks + 1);

    // The appliance changed its list: the checksum no longer matches, the new list is fetched.
    let second = list("b", 3);
    h.set_personas(Some(second)).unwrap();
    let q = personas(ws).await;
    assert_eq!(q.as_array().unwrap().len(), 3);
    assert_eq!(q[0]["id"], "b0");
    assert_eq!(answered(&h), chunks + 2);
}
