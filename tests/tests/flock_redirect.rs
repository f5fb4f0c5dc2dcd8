//! A flock of three flockd processes (127.0.0.1–3): appliances configured with any server end
//! up registered at the owner of their name, through 300 Try-Alternate.
use flock_appliance::ApplianceConfig;
use flock_proto::stun::{Class, Message};
use flock_proto::testing::{keypair, Answer, Device};
use flock_proto::wire::method;
use flock_proto::wire::registration::{code, TryAlternate};
use flock_tests::flock::{metric, scrape, Flock};
use flock_tests::{field, now_ms, raw_client, register_over, request};
use std::time::{Duration, Instant};

const APPLIANCES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appliances_configured_with_any_server_register_at_the_owner() {
    let flock = Flock::start(3, &["--keepalive-interval", "1s", "--entry-lifetime", "5s"]);
    let udp = flock.udp();
    // Every server runs the same list: same digest, its own index.
    let ready: Vec<String> = flock
        .servers
        .iter()
        .map(|s| {
            s.log_lines
                .iter()
                .find(|l| l.contains("flockd ready"))
                .unwrap()
                .clone()
        })
        .collect();
    for (i, line) in ready.iter().enumerate() {
        assert_eq!(
            (field(line, "flock_index"), field(line, "flock_servers")),
            (i.to_string().as_str(), "3"),
            "{line}"
        );
        assert_eq!(
            field(line, "flock_digest"),
            field(&ready[0], "flock_digest")
        );
        assert_eq!(field(line, "flock_digest").len(), 8);
    }
    assert_eq!(
        flock.servers[1].flock_public_key, flock.servers[0].flock_public_key,
        "one flock key"
    );

    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut apps = vec![];
    let mut expected = [0u64; 3];
    let mut misdirected = 0u64;
    for i in 0..APPLIANCES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let configured = (rng % 3) as usize;
        let name = format!("flock-box-{i}");
        let owner = flock.owner(&name);
        expected[owner] += 1;
        misdirected += u64::from(configured != owner);
        let cfg = ApplianceConfig::new(
            name.parse().unwrap(),
            udp[configured],
            flock.servers[0].flock_public_key,
        );
        let a = flock_appliance::spawn(
            cfg,
            keypair((i % 251) as u8 + 1),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        apps.push((a, owner));
    }
    assert!(
        expected.iter().all(|&n| n > 50) && misdirected > 150,
        "{expected:?} {misdirected}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while apps.iter().any(|(a, _)| !a.status().state.is_registered()) {
        assert!(Instant::now() < deadline, "not all registered within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (a, owner) in &apps {
        let st = a.status();
        assert_eq!(
            st.server,
            udp[*owner],
            "{} registered at its owner",
            a.name()
        );
        assert!(st.stats.redirects <= 1, "{st:?}");
    }
    // The servers agree: each holds exactly the names it owns (figures lag by up to 1 s), and
    // keep-alives keep going to the owner (no new redirects once everybody is registered).
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let texts: Vec<String> = flock
            .servers
            .iter()
            .map(|s| scrape(s.ws.unwrap()))
            .collect();
        let held: Vec<u64> = texts
            .iter()
            .map(|t| metric(t, "flock_server_registrations"))
            .collect();
        let keepalives: Vec<u64> = texts
            .iter()
            .map(|t| metric(t, "flock_server_keepalives_total"))
            .collect();
        if (held == expected && keepalives.iter().zip(&expected).all(|(k, e)| k >= e))
            || Instant::now() > deadline
        {
            let redirected: u64 = texts
                .iter()
                .map(|t| metric(t, "flock_server_redirected_total"))
                .sum();
            assert!(
                redirected >= misdirected,
                "{redirected} redirects for {misdirected} misdirected appliances"
            );
            break held;
        }
    };
    assert_eq!(held, expected, "registrations per server");
    tokio::time::sleep(Duration::from_millis(1200)).await; // let the last redirects be published
    let before: u64 = flock
        .servers
        .iter()
        .map(|s| metric(&scrape(s.ws.unwrap()), "flock_server_redirected_total"))
        .sum();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after: u64 = flock
        .servers
        .iter()
        .map(|s| metric(&scrape(s.ws.unwrap()), "flock_server_redirected_total"))
        .sum();
    assert_eq!(before, after, "keep-alives go straight to the owner");
    for (a, _) in apps {
        assert!(a.status().state.is_registered());
        a.shutdown().await;
    }
}

#[test]
fn a_wrong_server_answers_300_with_the_owner_over_udp() {
    let flock = Flock::start(3, &[]);
    let udp = flock.udp();
    let sock = raw_client();
    let name = (0..)
        .map(|i| format!("raw-box-{i}"))
        .find(|n| flock.owner(n) == 2)
        .unwrap();
    let mut d = Device::new(&name, 7);
    for wrong in [0, 1] {
        let txid = d.txid();
        let req = d.register_bytes(now_ms(), &txid);
        let answer = request(&sock, udp[wrong], &req).expect("an answer from the wrong server");
        assert!(
            answer.len() <= req.len(),
            "answer {} > request {}",
            answer.len(),
            req.len()
        );
        let m = Message::parse(&answer).unwrap();
        assert_eq!(
            (m.method(), m.class(), m.transaction_id()),
            (method::REGISTER, Class::Error, &txid)
        );
        assert_eq!(m.error_code().unwrap().unwrap().code, code::TRY_ALTERNATE);
        assert_eq!(TryAlternate::parse(&m).unwrap().alternate, udp[2]);
    }
    // The owner registers it; a keep-alive sent to another server is pointed back too.
    assert!(matches!(
        register_over(&mut d, &sock, udp[2]),
        Answer::Registered(_)
    ));
    let txid = d.txid();
    let ka = d.keepalive_bytes(&txid);
    let answer = request(&sock, udp[0], &ka).expect("an answer to the keep-alive");
    assert!(answer.len() <= ka.len());
    assert_eq!(
        TryAlternate::parse(&Message::parse(&answer).unwrap())
            .unwrap()
            .alternate,
        udp[2]
    );
    assert!(matches!(
        Answer::read(&request(&sock, udp[2], &ka).unwrap()),
        Answer::KeptAlive(_)
    ));
}
