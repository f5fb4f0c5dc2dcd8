//! Log-in guessing across many websockets, with the log-in rate-limit plugin loaded
//! (plugins/examples/login-ratelimit): 40 websockets at once guess passwords for one appliance,
//! each until it is refused. Most guesses are answered `rate-limited` (with `retry_after_ms`)
//! by the flock and never reach the appliance: the appliance's authenticator runs exactly once
//! per guess the plugin let through, and that is at most the buckets' worth. A user at another
//! address still gets in. Over IPv4 (127.0.0.1 and 40 addresses of 127.0.0.0/8) and IPv6 (::1).
//! The figures are printed (`--no-capture`).
use flock_appliance::{Decision, Event};
use flock_testkit::browser::Browser;
use flock_tests::net::Family::{self, V4, V6};
use flock_tests::{wait_until_registered, Flockd, TempDir};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const SOCKETS: usize = 40;
/// The plugin's settings: per client IP (IPv6: per /64) 5 a minute after a burst of 3; per
/// appliance 20 a minute after a burst of 10.
const LIMITS: &str = "per_ip=5/min,burst=3,per_appliance=20/min,appliance_burst=10";
const NAME: &str = "guessed-box";

/// How one websocket's guessing ended.
#[derive(Debug, Default)]
struct Outcome {
    /// Guesses the appliance answered (`rejected`).
    rejected: usize,
    /// Refused by the plugin before reaching the appliance.
    rate_limited: bool,
    retry_after_ms: u64,
    close_code: Option<u16>,
}

/// Opens the appliance and guesses passwords until the flock refuses or closes.
async fn guess(gateway: SocketAddr, source: IpAddr, who: usize) -> Outcome {
    let mut ws = Browser::connect_from(source, gateway).await;
    let mut out = Outcome::default();
    ws.open(NAME).await;
    let v = ws.recv_or_close().await.expect("personas");
    assert_eq!(v["type"], "personas", "{v}");
    for n in 0..10 {
        ws.login("alice", &format!("guess-{who}-{n}")).await;
        match ws.recv_or_close().await {
            Ok(v) if v["type"] == "rejected" => out.rejected += 1,
            Ok(v) if v["type"] == "error" && v["code"] == "rate-limited" => {
                out.rate_limited = true;
                out.retry_after_ms = v["retry_after_ms"].as_u64().unwrap_or(0);
                out.close_code = ws
                    .recv_or_close()
                    .await
                    .expect_err("the close after the error");
                return out;
            }
            Ok(v) if v["type"] == "error" => {
                out.close_code = ws
                    .recv_or_close()
                    .await
                    .expect_err("the close after the error");
                return out;
            }
            Ok(v) => panic!("unexpected answer to a guess: {v}"),
            Err(code) => {
                out.close_code = code;
                return out;
            }
        }
    }
    panic!("ten guesses on one websocket were neither limited nor ended")
}

/// `sources` guess at once (round robin over the websockets); returns the appliance's count.
async fn guessing(fam: Family, sources: &[IpAddr], legit: Option<IpAddr>) {
    let dir = TempDir::new("guessing");
    let lib = flock_plugins::testing::plugin_lib("flock-plugin-login-ratelimit");
    let toml = format!(
        "[plugins]\nbudget = \"500ms\"\n[[plugins.load]]\npath = {:?}\nconfig = {LIMITS:?}\n",
        lib.display().to_string()
    );
    let file = dir.0.join("flockd.toml");
    std::fs::write(&file, toml).unwrap();
    let server: Flockd = fam.flockd(&["--config", file.to_str().unwrap()]);
    let gateway = server.ws.unwrap();

    // The appliance counts every credential that reaches it (one CONNECT each).
    // Its own limit on answers (PERSONAS and CONNECT, 16 at once by default) is raised well
    // above what 40 websockets ask, so that only the plugin limits here.
    let mut cfg = flock_appliance::ApplianceConfig::new(
        NAME.parse().unwrap(),
        server.udp,
        server.flock_public_key,
    );
    cfg.login_answer_burst = 256;
    let mut h = flock_appliance::spawn(cfg, flock_proto::testing::keypair(1), fam.addr(0))
        .expect("spawn appliance");
    wait_until_registered(&mut h, WAIT).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    h.set_personas(Some(br#"[{"id":"alice","name":"Alice"}]"#.to_vec()))
        .unwrap();
    h.set_authenticator(move |r| {
        counter.fetch_add(1, Relaxed);
        if r.credential == b"pwd:wonderland" {
            Decision::Accept
        } else {
            Decision::BadCredentials
        }
    })
    .unwrap();
    let refused_events = Arc::new(AtomicUsize::new(0));
    let refused = refused_events.clone();
    let app = tokio::spawn(async move {
        while let Some(e) = h.next_event().await {
            if matches!(e, Event::LoginRefused { .. }) {
                refused.fetch_add(1, Relaxed);
            }
        }
    });

    let started = Instant::now();
    let tasks: Vec<_> = (0..SOCKETS)
        .map(|i| tokio::spawn(guess(gateway, sources[i % sources.len()], i)))
        .collect();
    let mut outcomes = vec![];
    for t in tasks {
        outcomes.push(t.await.expect("a guessing websocket"));
    }
    let took = started.elapsed();
    let guesses_answered: usize = outcomes.iter().map(|o| o.rejected).sum();
    let limited: Vec<&Outcome> = outcomes.iter().filter(|o| o.rate_limited).collect();
    let appliance_saw = seen.load(Relaxed);
    let sent = guesses_answered + limited.len();
    println!(
        "log-in guessing over {fam:?} from {} source address(es): {SOCKETS} websockets, {sent} guesses in {:.1} s: {guesses_answered} reached the appliance \
         (its authenticator ran {appliance_saw}×), {} answered rate-limited (retry_after_ms {}..={}), closes {:?}",
        sources.len(),
        took.as_secs_f64(),
        limited.len(),
        limited.iter().map(|o| o.retry_after_ms).min().unwrap_or(0),
        limited.iter().map(|o| o.retry_after_ms).max().unwrap_or(0),
        {
            let mut codes: Vec<_> = outcomes.iter().map(|o| o.close_code).collect();
            codes.sort();
            codes.dedup();
            codes
        },
    );

    // Refused guesses never reach the appliance: it answered exactly the guesses let through.
    assert_eq!(appliance_saw, guesses_answered, "{outcomes:?}");
    // Let through: at most the buckets' worth (plus what refills while the test runs).
    let (per_ip_burst, per_ip_rate, app_burst, app_rate) = (3.0, 5.0 / 60.0, 10.0, 20.0 / 60.0);
    let secs = took.as_secs_f64() + 1.0;
    let bound = if sources.len() == 1 {
        per_ip_burst + per_ip_rate * secs
    } else {
        app_burst + app_rate * secs
    };
    assert!(
        guesses_answered as f64 <= bound.floor(),
        "{guesses_answered} guesses reached the appliance, bound {bound:.1}"
    );
    assert!(guesses_answered >= 1, "the first guesses go through");
    // Most websockets were refused by the plugin, each told when to come back, and closed 1013.
    assert!(
        limited.len() >= SOCKETS - guesses_answered,
        "{} of {SOCKETS} rate-limited",
        limited.len()
    );
    for o in &limited {
        assert!(o.retry_after_ms > 0 && o.retry_after_ms <= 60_000, "{o:?}");
        assert_eq!(o.close_code, Some(1013), "{o:?}");
    }

    // The flock's own counters agree: CONNECTs sent = guesses let through (published each second).
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(gateway);
        let connects = sample(&text, "flock_login_connects_sent_total");
        let denied = sample(&text, "flock_plugin_denied_total");
        if connects == guesses_answered as u64 && denied >= limited.len() as u64 {
            println!("  /metrics: flock_login_connects_sent_total {connects}, flock_plugin_denied_total {denied}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connects {connects} denied {denied}, want {guesses_answered} and ≥ {}",
            limited.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The attacker's bucket is its own: a user at another address logs in.
    if let Some(legit) = legit {
        let before = seen.load(Relaxed);
        let mut ws = Browser::connect_from(legit, gateway).await;
        ws.open(NAME).await;
        ws.expect("personas").await;
        ws.login("alice", "wonderland").await;
        ws.expect("accepted").await;
        assert_eq!(seen.load(Relaxed), before + 1);
    }
    assert_eq!(
        refused_events.load(Relaxed),
        guesses_answered,
        "LoginRefused events at the appliance"
    );
    app.abort();
}

fn scrape(gateway: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gateway).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {gateway}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Sum of the samples of `name` (over its labels).
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_is_limited_per_ip_v4() {
    guessing(
        V4,
        &["127.0.0.1".parse().unwrap()],
        Some("127.0.0.2".parse().unwrap()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_is_limited_per_ip_v6() {
    // ::1 is the only IPv6 loopback address: no second user here (the v4 test has one).
    guessing(V6, &["::1".parse().unwrap()], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_many_addresses_is_limited_per_appliance_v4() {
    let sources: Vec<IpAddr> = (0..SOCKETS as u8)
        .map(|i| IpAddr::from([127, 0, 1, 10 + i]))
        .collect();
    guessing(V4, &sources, None).await;
}
