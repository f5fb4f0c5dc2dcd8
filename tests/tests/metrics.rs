//! `/metrics` on a real flockd: an SDK appliance registers and keeps alive, and the scrape shows
//! the registration, the keep-alives and the packets, per core, with no name or address in it.
use flock_appliance::Event;
use flock_tests::{appliance, wait_event, Flockd};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// One GET over plain TCP: (status, head, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a complete answer");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), head.to_string(), body.to_string())
}

/// Sum of the samples of `name` whose labels contain every one of `with` (e.g. `direction="received"`).
fn sum(text: &str, name: &str, with: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(['{', ' '])))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_registrations_and_packets_but_no_names() {
    let server = Flockd::start(&["--cores", "2", "--keepalive-interval", "300ms", "--entry-lifetime", "3s"]);
    let ws = server.ws.unwrap();

    let (status, head, body) = get(ws, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE flock_core_packets_total counter"), "{body}");
    assert!(body.contains("# TYPE flock_ws_accepted_total counter"), "{body}");

    let name = "metrics-secret-box";
    let mut a = appliance(&server, name, 7);
    wait_event(&mut a, WAIT, "registration", |e| matches!(e, Event::Registered { .. })).await;
    wait_event(&mut a, WAIT, "keep-alive", |e| matches!(e, Event::KeptAlive { .. })).await;

    // Server counters are published by each core at most every second.
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let (status, _, text) = get(ws, "/metrics");
        assert_eq!(status, 200);
        if sum(&text, "flock_server_registrations_total", &[]) >= 1 && sum(&text, "flock_server_keepalives_total", &[]) >= 1 {
            break text;
        }
        assert!(Instant::now() < deadline, "registration and keep-alive never showed:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sum(&text, "flock_core_packets_total", &["direction=\"received\""]) >= 2, "{text}");
    assert!(sum(&text, "flock_core_packets_total", &["direction=\"answered\""]) >= 2, "{text}");
    assert!(sum(&text, "flock_server_datagrams_total", &[]) >= 2, "{text}");
    assert_eq!(sum(&text, "flock_server_registrations", &[]), 1, "one name held:\n{text}");
    assert!(text.contains("flock_core_drops_total{core=\"0\",reason=\"mesh_full\"} "), "{text}");
    assert!(text.contains("flock_core_drops_total{core=\"1\",reason=\"mesh_full\"} "), "{text}");
    assert!(sum(&text, "flock_process_resident_memory_bytes", &[]) > 0, "{text}");
    assert!(text.contains("flock_plugin_calls_total 0\n"), "{text}");

    // Never a name or an address, only the fixed label set.
    assert!(!text.contains(name) && !text.contains("127.0.0.1"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            for pair in labels.split_once('}').unwrap().0.split(',') {
                let key = pair.split_once('=').unwrap().0;
                assert!(["core", "direction", "reason", "outcome"].contains(&key), "{line}");
            }
        }
    }
    a.shutdown().await;
}

#[test]
fn metrics_can_be_turned_off() {
    let dir = flock_tests::TempDir::new("metrics-off");
    std::fs::write(dir.0.join("flockd.toml"), "[ws]\nmetrics_allow = []\n").unwrap();
    let config = dir.0.join("flockd.toml");
    let server = Flockd::start(&["--config", config.to_str().unwrap()]);
    assert_eq!(get(server.ws.unwrap(), "/metrics").0, 404);
    assert_eq!(get(server.ws.unwrap(), "/healthz").0, 200);
}
