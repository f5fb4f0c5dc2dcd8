//! Relay fallback: the appliance's NAT drops datagrams from addresses it never sent to, so the
//! serving server relays the log-in through the owner; the owner relays only to the registered
//! address; the relay table is bounded and drains.

use flock_proto::server::PeerConfig;
use flock_proto::testing::keypair;
use flock_proto::wire::login::{self as login_wire};
use flock_proto::wire::method as lm;
use flock_proto::wire::method as pm;
use flock_proto::wire::peer::{self, Sender};
use flock_testkit::flock_sim::*;

#[test]
fn relay_fallback_completes_the_log_in_end_to_end() {
    let mut n = Flock::new(Appliance::new(name_owned_by(1, "box"), true), [DIGEST; 3]);
    n.register(1);
    n.full_login(0, 1);
    let (s0, s1, home) = (server_addr(0), server_addr(1), addr(HOME));
    assert_eq!(
        n.count(s0, home, lm::PERSONAS),
        2,
        "two direct tries, dropped by the NAT"
    );
    assert_eq!(n.appliance.dropped, 2);
    assert_eq!(n.servers[0].stats().relay_fallbacks, 1);
    assert!(
        n.appliance.heard.iter().all(|a| *a == s1),
        "the appliance only ever heard its owner"
    );
    // Every request (PERSONAS, CONNECT, the browser's SIGNALs) went through the owner; the
    // appliance's answers and SIGNALs came back the same way.
    assert!(n.count(s0, s1, pm::RELAY) >= 5);
    assert!(n.count(s1, s0, pm::RELAY) >= 5);
    assert_eq!(
        n.count(s0, home, lm::CONNECT) + n.count(s0, home, lm::SIGNAL),
        0
    );
    assert_eq!(n.count(home, s0, lm::SIGNAL), 0);
    let st = n.servers[1].stats();
    assert!(
        st.relayed_to_appliance >= 5 && st.relayed_to_peer >= 4,
        "{st:?}"
    );
    assert!(
        n.servers[0].stats().relayed_from_appliance >= 3,
        "the appliance's SIGNALs, acknowledged through the owner"
    );
    // Owner side: everything it sent for the relay went to the registered address or to server 0.
    assert!(n
        .log
        .iter()
        .filter(|(f, _, _)| *f == s1)
        .all(|(_, t, _)| *t == home || *t == s0));
    n.run_for(ms(200_000));
    for s in &n.servers {
        assert_eq!(s.peer_occupancy(), (0, 0, 0), "tables drain");
        assert_eq!(s.login_occupancy().sessions, 0);
    }
}

/// A signed PERSONAS request for `name`, as a serving server would send it.
fn personas(name: &flock_proto::Name, txid: u8) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let k = login_wire::encode_personas_request(
        &mut buf,
        &[txid; 12],
        name,
        0,
        None,
        T0.0 + 10_000,
        &keypair(200),
    )
    .unwrap();
    buf[..k].to_vec()
}

fn relay(inner: &[u8], from: usize) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let k = peer::encode_relay(&mut buf, inner, &Sender::new(from, DIGEST, &PEER_SECRET)).unwrap();
    buf[..k].to_vec()
}

#[test]
fn the_owner_relays_only_to_the_registered_address() {
    let mut n = Flock::new(Appliance::new(name_owned_by(1, "box"), false), [DIGEST; 3]);
    n.register(1);
    let name = n.appliance.name;
    let s1 = &mut n.servers[1];
    let mut reply = [0u8; 2048];
    // From a peer, verified: forwarded to the registered address, nowhere else.
    assert_eq!(
        s1.handle(
            T0,
            server_addr(0),
            &relay(&personas(&name, 1), 0),
            &mut reply
        )
        .reply(),
        None
    );
    let mut sent = s1.sent();
    assert_eq!(sent.len(), 1, "forwarded once");
    let (dst, inner) = sent.remove(0);
    assert_eq!(dst, addr(HOME));
    assert_eq!(inner, personas(&name, 1), "the inner datagram as it was");
    // A name with no live registration: refused, nothing sent.
    let other = name_owned_by(1, "ghost");
    s1.handle(
        T0,
        server_addr(0),
        &relay(&personas(&other, 2), 0),
        &mut reply,
    )
    .reply();
    assert!(s1.sent().is_empty());
    assert_eq!(s1.stats().relay_refused, 1);
    // From a stranger (valid integrity, wrong source): dropped.
    s1.handle(
        T0,
        addr("203.0.113.9:7000"),
        &relay(&personas(&name, 3), 0),
        &mut reply,
    )
    .reply();
    assert!(s1.sent().is_empty());
    // Not a log-in datagram inside (a REGISTER): never forwarded.
    let mut d = flock_proto::testing::Device::new(name.as_str(), 1);
    let txid = d.txid();
    s1.handle(
        T0,
        server_addr(0),
        &relay(&d.register_bytes(T0.0, &txid), 0),
        &mut reply,
    )
    .reply();
    assert!(s1.sent().is_empty());
    // An appliance answer for a transaction nobody relayed is not sent to any peer.
    assert_eq!(s1.stats().relayed_to_peer, 0);
}

#[test]
fn the_relay_table_is_bounded_and_drains() {
    let mut n = Flock::new(Appliance::new(name_owned_by(1, "box"), false), [DIGEST; 3]);
    n.register(1);
    n.servers[1].set_peer_config(PeerConfig {
        max_relays: 4,
        ..PeerConfig::default()
    });
    let name = n.appliance.name;
    let s1 = &mut n.servers[1];
    let mut reply = [0u8; 2048];
    for t in 0..10u8 {
        s1.handle(
            T0,
            server_addr(0),
            &relay(&personas(&name, t), 0),
            &mut reply,
        )
        .reply();
    }
    assert_eq!(s1.sent().len(), 4);
    assert_eq!(s1.stats().relay_table_full, 6);
    assert_eq!(s1.peer_occupancy().1, 4);
    n.run_for(ms(30_000));
    assert_eq!(n.servers[1].peer_occupancy(), (0, 0, 0));
}
