//! The peer protocol over the wire, from outside the flock: LOOKUPs and RELAYs from a stranger
//! — with a made-up key, or even with the right key (a captured or leaked message) but from
//! an address that is not the sending peer's — draw no answer at all (no reflection, no
//! relaying to anyone), and the owner keeps answering its real peers.

use flock_proto::testing::Device;
use flock_proto::wire::peer::{self, Sender};
use flock_testkit::browser::*;
use flock_tests::flock::{metric, scrape, Flock};
use flock_tests::{raw_client, register_over};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Sends `bytes` to `to` and returns whatever comes back within `wait`.
fn answers(sock: &UdpSocket, to: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> usize {
    sock.send_to(bytes, to).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_nothing_from_the_peer_protocol() {
    let flock = Flock::start(2, &[]);
    let udp = flock.udp();
    let name = flock.name_owned_by(1, "peer-abuse");
    // A live registration at the owner: a LOOKUP would find it, a RELAY would reach it.
    let app = raw_client();
    let mut d = Device::new(&name, 5);
    register_over(&mut d, &app, udp[1]);

    let right = peer::Sender::new(
        0,
        [0; 32],
        &flock_proto::membership::peer_secret(&std::fs::read(&flock.key_file).unwrap()),
    );
    let wrong = Sender::new(0, [0; 32], &[7; 32]);
    let stranger = raw_client();
    let n: flock_proto::Name = name.parse().unwrap();
    let mut buf = [0u8; 1500];
    let mut sent = 0;
    for (s, what) in [
        (&wrong, "a made-up key"),
        (&right, "the right key from a stranger's address"),
    ] {
        let len = peer::encode_lookup(&mut buf, &[3; 12], &n, s).unwrap();
        assert_eq!(
            answers(&stranger, udp[1], &buf[..len], Duration::from_millis(300)),
            0,
            "LOOKUP with {what}"
        );
        // Were it accepted, a RELAY would send its inner datagram to the appliance.
        let inner = d.register_bytes(flock_tests::now_ms(), &[4; 12]);
        let len = peer::encode_relay(&mut buf, &inner, s).unwrap();
        assert_eq!(
            answers(&stranger, udp[1], &buf[..len], Duration::from_millis(300)),
            0,
            "RELAY with {what}"
        );
        sent += 2;
    }
    app.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        app.recv_from(&mut buf).is_err(),
        "nothing was relayed to the appliance"
    );

    // Counted, by reason.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(flock.servers[1].ws.unwrap());
        let dropped = metric(&text, "flock_peer_dropped_total");
        if dropped >= sent {
            assert!(
                text.contains("reason=\"bad_integrity\"} 2")
                    && text.contains("reason=\"unknown_source\"} 2"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted: {dropped}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The real peer still gets its answers: a browser at server 0 asking for a name server 1
    // owns and nobody registered hears `unknown-appliance` (LOOKUP answered not-found), not
    // `owner-down`.
    let mut b = Browser::connect(flock.servers[0].ws.unwrap()).await;
    b.open(&flock.name_owned_by(1, "nobody-here")).await;
    b.expect_error("unknown-appliance").await;
}
