//! The peer codec: encode/parse of LOOKUP and RELAY, integrity, the envelope, routing.

use flock_proto::stun::{Class, Message};
use flock_proto::testing::{owner_core, request_name};
use flock_proto::wire::login::Ack;
use flock_proto::wire::method as lm;
use flock_proto::wire::peer::{
    self, code, encode_lookup, encode_lookup_error, encode_lookup_found, encode_relay,
    LookupAnswer, LookupRequest, PeerError, Relay, Sender,
};
use flock_proto::Name;

fn sender(me: usize, digest: u8) -> Sender {
    Sender::new(me, [digest; 32], &[7; 32])
}

fn name() -> Name {
    "My-Box".parse().unwrap()
}

#[test]
fn lookup_round_trip_and_size_rule() {
    let s = sender(2, 9);
    let mut req = [0u8; 1500];
    let n = encode_lookup(&mut req, &[1; 12], &name(), &s).unwrap();
    let m = Message::parse(&req[..n]).unwrap();
    assert_eq!(
        peer::open(&m, &s.key),
        Ok(peer::Envelope {
            from: 2,
            digest: [9; 32]
        })
    );
    assert_eq!(LookupRequest::parse(&m).unwrap().name, name());
    assert_eq!(request_name(&m), Some(name()));
    assert_eq!(owner_core(&req[..n], 5), Some(name().hash().core_index(5)));

    let mut buf = [0u8; 1500];
    for addr in ["192.0.2.7:40000", "[2001:db8::7]:40000"] {
        let a = encode_lookup_found(
            &mut buf,
            &[1; 12],
            &name(),
            addr.parse().unwrap(),
            &[3; 12],
            41_000,
            &s,
        )
        .unwrap();
        assert!(a <= n, "answer {a} > request {n}");
        let m = Message::parse(&buf[..a]).unwrap();
        peer::open(&m, &s.key).unwrap();
        assert_eq!(
            LookupAnswer::parse(&m).unwrap(),
            LookupAnswer::Found {
                name: name(),
                addr: addr.parse().unwrap(),
                identity: [3; 12],
                lifetime_ms: 41_000
            }
        );
    }
    for c in [code::NOT_FOUND, code::NOT_OWNER, code::MEMBERSHIP_DIFFERS] {
        let a = encode_lookup_error(&mut buf, &[1; 12], &name(), c, &s).unwrap();
        assert!(a <= n);
        let m = Message::parse(&buf[..a]).unwrap();
        peer::open(&m, &s.key).unwrap();
        assert_eq!(
            LookupAnswer::parse(&m).unwrap(),
            LookupAnswer::Refused {
                name: name(),
                code: c
            }
        );
        assert_eq!(m.class(), Class::Error);
    }
}

#[test]
fn relay_round_trip_routes_by_inner_name() {
    let s = sender(0, 1);
    let mut inner = [0u8; 200];
    let ack = Ack {
        method: lm::SIGNAL,
        name: name(),
        session: [5; 16],
        seq: Some(3),
        error: None,
    };
    let k = ack.encode(&mut inner, &[4; 12]).unwrap();
    let mut buf = [0u8; 1500];
    let n = encode_relay(&mut buf, &inner[..k], &s).unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(
        m.transaction_id(),
        &[4; 12],
        "the inner transaction id is reused"
    );
    assert_eq!(peer::open(&m, &s.key).unwrap().from, 0);
    let r = Relay::parse(&m).unwrap();
    assert_eq!(r.name, name());
    assert_eq!(r.inner.as_bytes(), &inner[..k]);
    assert_eq!(Ack::parse(&r.inner).unwrap(), ack);
    assert_eq!(owner_core(&buf[..n], 7), Some(name().hash().core_index(7)));
    // The largest inner datagram still fits the 1500-byte mesh payload.
    let big = vec![0u8; peer::MAX_INNER];
    let mut buf = [0u8; 2000];
    let mut e = flock_proto::stun::Encoder::new(
        &mut buf,
        flock_proto::stun::MessageType::new(lm::SIGNAL, Class::Success),
        &[1; 12],
    )
    .unwrap();
    e.attribute(flock_proto::wire::attr::NAME, &[b'a'; 255])
        .unwrap();
    e.attribute(0x7F0D, &big[..peer::MAX_INNER - 20 - 260 - 4 - 8])
        .unwrap();
    let k = e.fingerprint().unwrap();
    assert_eq!(k, peer::MAX_INNER);
    let inner = buf[..k].to_vec();
    let mut out = [0u8; 2000];
    let n = encode_relay(&mut out, &inner, &s).unwrap();
    assert!(n <= 1500, "{n}");
    assert!(encode_relay(&mut out, &[0; peer::MAX_INNER + 4], &s).is_err());
}

#[test]
fn relay_refuses_what_is_not_a_login_datagram() {
    let s = sender(0, 1);
    let mut d = flock_proto::testing::Device::new("box", 1);
    let txid = d.txid();
    let keepalive_like = d.register_bytes(1, &txid);
    let mut buf = [0u8; 1500];
    let n = encode_relay(&mut buf, &keepalive_like, &s).unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    peer::open(&m, &s.key).unwrap();
    assert!(Relay::parse(&m).is_err());
    assert_eq!(
        request_name(&m),
        None,
        "not routed by the inner name either"
    );
}

#[test]
fn bad_integrity_is_refused_and_tampering_detected() {
    let s = sender(1, 1);
    let mut buf = [0u8; 1500];
    let n = encode_lookup(&mut buf, &[1; 12], &name(), &s).unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(
        peer::open(&m, &sender(1, 1).key),
        Ok(peer::Envelope {
            from: 1,
            digest: [1; 32]
        })
    );
    let other = Sender::new(1, [1; 32], &[8; 32]);
    assert_eq!(peer::open(&m, &other.key), Err(PeerError::Integrity));
    // A bit flipped in NAME, then FINGERPRINT fixed up: integrity still catches it.
    let mut t = buf[..n].to_vec();
    t[20 + 8 + 36 + 4] ^= 0x20;
    let crc = crc32fast::hash(&t[..n - 8]) ^ 0x5354_554E;
    t[n - 4..].copy_from_slice(&crc.to_be_bytes());
    let m = Message::parse(&t).unwrap();
    assert_eq!(peer::open(&m, &s.key), Err(PeerError::Integrity));
}

#[test]
fn digest_and_sender_are_carried() {
    let a = sender(0, 1);
    let b = sender(0, 2); // same secret, other membership
    let mut buf = [0u8; 1500];
    let n = encode_lookup(&mut buf, &[1; 12], &name(), &b).unwrap();
    let env = peer::open(&Message::parse(&buf[..n]).unwrap(), &a.key).unwrap();
    assert_ne!(env.digest, a.digest, "the receiver sees the difference");
}

#[test]
fn non_peer_messages_are_not_opened() {
    let mut d = flock_proto::testing::Device::new("box", 1);
    let txid = d.txid();
    let reg = d.register_bytes(1, &txid);
    let m = Message::parse(&reg).unwrap();
    assert!(!peer::is_peer(&m));
    assert_eq!(peer::open(&m, &sender(0, 0).key), Err(PeerError::NotPeer));
}

/// Hex as docs/PROTOCOL.md shows it: 4-byte groups, 16 bytes a line.
fn dump(b: &[u8]) -> String {
    b.chunks(16)
        .map(|l| {
            l.chunks(4)
                .map(|g| g.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The peer examples of docs/PROTOCOL.md ("Peer protocol"), made by the code: peer secret
/// `07`×32, digest `d1`×32, sender index 0 (LOOKUP, RELAY) or 1 (answer), name `my-box`.
fn peer_examples() -> Vec<(&'static str, String)> {
    let name: Name = "my-box".parse().unwrap();
    let asker = Sender::new(0, [0xd1; 32], &[7; 32]);
    let owner = Sender::new(1, [0xd1; 32], &[7; 32]);
    let txid = [0xc5; 12];
    let mut buf = [0u8; 1500];
    let mut out = vec![];
    let n = encode_lookup(&mut buf, &txid, &name, &asker).unwrap();
    out.push(("LOOKUP request", dump(&buf[..n])));
    let n = encode_lookup_found(
        &mut buf,
        &txid,
        &name,
        "192.0.2.1:32853".parse().unwrap(),
        &[0x34; 12],
        41_000,
        &owner,
    )
    .unwrap();
    out.push(("LOOKUP success", dump(&buf[..n])));
    let n = encode_lookup_error(&mut buf, &txid, &name, code::NOT_FOUND, &owner).unwrap();
    out.push(("LOOKUP error 404", dump(&buf[..n])));
    let mut inner = [0u8; 200];
    let k = Ack {
        method: lm::CONNECT,
        name,
        session: [0x5e; 16],
        seq: None,
        error: None,
    }
    .encode(&mut inner, &[0xa1; 12])
    .unwrap();
    let n = encode_relay(&mut buf, &inner[..k], &owner).unwrap();
    out.push(("RELAY", dump(&buf[..n])));
    out
}

#[test]
fn protocol_doc_shows_the_peer_examples() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    if std::env::var_os("PRINT_PEER_EXAMPLES").is_some() {
        for (what, hex) in peer_examples() {
            println!(
                "### {what} ({} bytes)\n\n```\n{hex}\n```\n",
                hex.split_whitespace().map(|g| g.len() / 2).sum::<usize>()
            );
        }
    }
    for (what, hex) in peer_examples() {
        assert!(
            doc.contains(&hex),
            "docs/PROTOCOL.md lacks the {what} example:\n{hex}"
        );
    }
}
