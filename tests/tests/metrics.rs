//! `/metrics` on a real flockd: an SDK appliance registers and keeps alive, and the scrape shows
//! the registration, the keep-alives and the packets, per core, with no name or address in it;
//! with a plugin loaded, a log-in shows in the per-hook latency histogram.

use flock_appliance::Event;
use flock_tests::{appliance, wait_event, wait_until_registered, Flockd};
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
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        head.to_string(),
        body.to_string(),
    )
}

/// Sum of the samples of `name` whose labels contain every one of `with` (e.g. `direction="received"`).
fn sum(text: &str, name: &str, with: &[&str]) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_registrations_and_packets_but_no_names() {
    let server = Flockd::start(&[
        "--cores",
        "2",
        "--keepalive-interval",
        "300ms",
        "--entry-lifetime",
        "3s",
    ]);
    let ws = server.ws.unwrap();

    let (status, head, body) = get(ws, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains("# TYPE flock_core_packets_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE flock_ws_accepted_total counter"),
        "{body}"
    );

    let name = "metrics-secret-box";
    let mut a = appliance(&server, name, 7);
    wait_until_registered(&mut a, WAIT).await;
    wait_event(&mut a, WAIT, "keep-alive", |e| {
        matches!(e, Event::KeptAlive { .. })
    })
    .await;

    // Server counters are published by each core at most every second.
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let (status, _, text) = get(ws, "/metrics");
        assert_eq!(status, 200);
        if sum(&text, "flock_server_registrations_total", &[]) >= 1
            && sum(&text, "flock_server_keepalives_total", &[]) >= 1
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "registration and keep-alive never showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        sum(
            &text,
            "flock_core_packets_total",
            &["direction=\"received\""]
        ) >= 2,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "flock_core_packets_total",
            &["direction=\"answered\""]
        ) >= 2,
        "{text}"
    );
    assert!(
        sum(&text, "flock_server_datagrams_total", &[]) >= 2,
        "{text}"
    );
    assert_eq!(
        sum(&text, "flock_server_registrations", &[]),
        1,
        "one name held:\n{text}"
    );
    assert!(
        text.contains("flock_core_drops_total{core=\"0\",reason=\"mesh_full\"} "),
        "{text}"
    );
    assert!(
        text.contains("flock_core_drops_total{core=\"1\",reason=\"mesh_full\"} "),
        "{text}"
    );
    assert!(
        sum(&text, "flock_process_resident_memory_bytes", &[]) > 0,
        "{text}"
    );
    assert!(text.contains("flock_plugin_calls_total 0\n"), "{text}");

    // Never a name or an address, only the fixed label set.
    assert!(
        !text.contains(name) && !text.contains("127.0.0.1"),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            for pair in labels.split_once('}').unwrap().0.split(',') {
                let key = pair.split_once('=').unwrap().0;
                let allowed: &[&str] = if line.starts_with("flock_plugin_hook_seconds_") {
                    &["hook", "le"]
                } else {
                    &["core", "direction", "reason", "outcome"]
                };
                assert!(allowed.contains(&key), "{line}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_hook_latencies_show_as_a_histogram_per_hook() {
    use flock_testkit::browser::*;
    use flock_tests::serving::*;
    let dir = flock_tests::TempDir::new("metrics-hooks");
    let lib = flock_plugins::testing::plugin_lib("flock-plugin-login-ratelimit");
    let toml = format!(
        "[[plugins.load]]\npath = {:?}\nconfig = \"per_ip=60/min,burst=10\"\n",
        lib.display().to_string()
    );
    std::fs::write(dir.0.join("flockd.toml"), toml).unwrap();
    let config = dir.0.join("flockd.toml");
    let server = Flockd::start(&["--config", config.to_str().unwrap()]);
    let ws = server.ws.unwrap();
    let name = "metrics-hooked-box";
    let mut h = appliance(&server, name, 8);
    wait_until_registered(&mut h, WAIT).await;
    let _app = run_appliance(h, LIST, Behaviour::Mute);
    for (password, outcome) in [("wonderland", "accepted"), ("guess", "rejected")] {
        let mut b = Browser::connect(ws).await;
        b.open(name).await;
        b.expect("personas").await;
        b.login("alice", password).await;
        b.expect(outcome).await;
    }

    let (status, _, text) = get(ws, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE flock_plugin_hook_seconds histogram\n"),
        "{text}"
    );
    let hook = |h: &str| format!("hook=\"{h}\"");
    let login = hook("authorize_login");
    // The rate-limit plugin only limits log-ins, but the runner times the whole chain for every
    // hook it is asked: persona lists and the registration's admission too.
    assert_eq!(
        sum(&text, "flock_plugin_hook_seconds_count", &[&login]),
        2,
        "{text}"
    );
    assert_eq!(
        sum(
            &text,
            "flock_plugin_hook_seconds_bucket",
            &[&login, "le=\"+Inf\""]
        ),
        2,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "flock_plugin_hook_seconds_count",
            &[&hook("filter_personas")]
        ) >= 2,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "flock_plugin_hook_seconds_count",
            &[&hook("admit_registration")]
        ) >= 1,
        "{text}"
    );
    // Audit events (registered, log-ins) go to the SDK's default audit hook, which does nothing.
    assert!(
        sum(&text, "flock_plugin_hook_seconds_count", &[&hook("audit")]) >= 1,
        "{text}"
    );
    // Buckets are cumulative and end at the count; the sum is in seconds.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("flock_plugin_hook_seconds_bucket{") && l.contains(&login))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), flock_plugins::LATENCY_BOUNDS.len() + 1);
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.last() == Some(&2),
        "{buckets:?}"
    );
    let sum_line = text
        .lines()
        .find(|l| l.starts_with("flock_plugin_hook_seconds_sum{") && l.contains(&login))
        .unwrap();
    let secs: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 0.0 && secs < 1.0, "{sum_line}");
    assert!(sum(&text, "flock_plugin_calls_total", &[]) >= 5, "{text}");
    assert!(!text.contains(name) && !text.contains("alice"), "{text}");
    println!(
        "{}",
        text.lines()
            .filter(|l| l.starts_with("flock_plugin_hook_seconds") && l.contains(&login))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
