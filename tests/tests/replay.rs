//! A captured REGISTER cannot take a name, over real sockets against a real flockd: the owner
//! registers from X, moves to Y and goes offline; whoever then holds X's port replays the
//! captured REGISTER of X. Replayed after the registration expired, from the same port and from
//! another one, and after a restart of the server with the same secret: no token, no
//! registration. (The sans-IO cases are in `proto/tests/replay.rs`.)
use flock_proto::testing::{Answer, Device};
use flock_proto::wire::registration::code;
use flock_tests::flock::{metric, scrape};
use flock_tests::{free_udp_port, now_ms, raw_client, register_over, request, Flockd, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The owner's REGISTER from `sock`, nonce round trip done: returns the signed REGISTER taken.
fn register_capturing(d: &mut Device, sock: &UdpSocket, server: SocketAddr) -> Vec<u8> {
    let first = d.txid();
    let ts = d.stamp(now_ms());
    let a = Answer::read(&request(sock, server, &d.register_bytes(ts, &first)).unwrap());
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED));
    d.absorb(&a);
    let txid = d.txid();
    let ts = d.stamp(now_ms());
    let taken = d.register_bytes(ts, &txid);
    let a = Answer::read(&request(sock, server, &taken).unwrap());
    assert!(matches!(a, Answer::Registered(_)), "{a:?}");
    d.absorb(&a);
    taken
}

/// A socket on `port` of 127.0.0.1 (the address the owner left), once it is free.
fn take_port(port: u16) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("port {port} not free: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The registration counter of the server, once its cores have published it (≤ 1 s).
fn registrations(server: &Flockd) -> u64 {
    std::thread::sleep(Duration::from_millis(1200));
    metric(
        &scrape(server.ws.unwrap()),
        "flock_server_registrations_total",
    )
}

fn replayed(server: &Flockd) -> u64 {
    scrape(server.ws.unwrap())
        .lines()
        .filter(|l| {
            l.starts_with("flock_server_registrations_refused_total")
                && l.contains("reason=\"replayed\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

const ARGS: [&str; 4] = ["--entry-lifetime", "2s", "--keepalive-interval", "1s"];

#[test]
fn a_register_replayed_after_the_owner_moved_and_went_offline_takes_nothing() {
    let server = Flockd::start(&ARGS);
    let mut d = Device::new("replay-box", 7);
    let x = raw_client();
    let x_port = x.local_addr().unwrap().port();
    let captured = register_capturing(&mut d, &x, server.udp);

    // The owner moves to Y: X no longer answers its CHECK, and X's registration ends (2 s):
    // the name moves to Y at once and the server answers Y's REGISTER then.
    drop(x);
    let y = raw_client();
    y.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let first = d.txid();
    let ts = d.stamp(now_ms());
    let a = Answer::read(&request(&y, server.udp, &d.register_bytes(ts, &first)).unwrap());
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED), "a nonce for Y");
    d.absorb(&a);
    let txid = d.txid();
    let ts = d.stamp(now_ms());
    let moved = Answer::read(&request(&y, server.udp, &d.register_bytes(ts, &txid)).unwrap());
    assert!(matches!(moved, Answer::Registered(_)), "{moved:?}");
    // Then it goes offline: no keep-alives; its registration at Y expires too.
    drop(y);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        registrations(&server),
        1,
        "X (the move to Y is counted apart)"
    );

    // Whoever holds X's port now replays the REGISTER of X: refused, no token.
    let attacker = take_port(x_port);
    let answer = request(&attacker, server.udp, &captured).expect("an answer");
    assert!(answer.len() <= captured.len());
    let a = Answer::read(&answer);
    assert_eq!(a.code(), Some(code::STALE_NONCE), "{a:?}");
    // Again, as a retransmission would (same bytes, same transaction id): same answer.
    let a = Answer::read(&request(&attacker, server.udp, &captured).unwrap());
    assert_eq!(a.code(), Some(code::STALE_NONCE), "{a:?}");
    // From another port of the same host: the nonce is bound to X's port.
    let other = raw_client();
    let a = Answer::read(&request(&other, server.udp, &captured).unwrap());
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED), "{a:?}");
    assert_eq!(
        registrations(&server),
        1,
        "nothing registered by the replays"
    );
    assert_eq!(replayed(&server), 2);

    // The real owner, signing anew, registers at once (one round trip for the fresh nonce).
    assert!(matches!(
        register_over(&mut d, &attacker, server.udp),
        Answer::Registered(_)
    ));
}

#[test]
fn a_register_replayed_after_a_restart_with_the_same_secret_takes_nothing() {
    let udp = format!("127.0.0.1:{}", free_udp_port());
    let args = ["--udp", udp.as_str(), ARGS[0], ARGS[1], ARGS[2], ARGS[3]];
    let server = Flockd::start_in(TempDir::new("replay-restart"), &args);
    let mut d = Device::new("replay-restart-box", 8);
    let x = raw_client();
    let x_port = x.local_addr().unwrap().port();
    let captured = register_capturing(&mut d, &x, server.udp);
    drop(x);
    // Same data directory (same server secret), new boot; the owner is gone, its registration
    // with it.
    let server = Flockd::start_in(server.into_data_dir(), &args);
    let attacker = take_port(x_port);
    let a = Answer::read(&request(&attacker, server.udp, &captured).expect("an answer"));
    assert_eq!(
        a.code(),
        Some(code::NONCE_REQUIRED),
        "nonces from before the restart are refused: {a:?}"
    );
    let other = raw_client();
    let a = Answer::read(&request(&other, server.udp, &captured).unwrap());
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED));
    assert_eq!(registrations(&server), 0);
}
