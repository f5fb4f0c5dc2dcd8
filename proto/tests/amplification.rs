//! No answer is larger than the request that caused it; STUN Binding answers the reflexive address.

use flock_proto::server::ServerConfig;
use flock_proto::stun::{Class, Encoder, Message, MessageType, Method};
use flock_testkit::hand_driven::*;

fn binding(padding: usize, fingerprint: bool) -> Vec<u8> {
    let mut buf = [0u8; 1200];
    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &[7; 12]).unwrap();
    if padding > 0 {
        e.attribute(flock_proto::stun::attr::SOFTWARE, &vec![b'x'; padding])
            .unwrap();
    }
    let n = if fingerprint {
        e.fingerprint().unwrap()
    } else {
        e.finish()
    };
    buf[..n].to_vec()
}

fn answer(s: &mut Host, src: &str, req: &[u8]) -> Option<Vec<u8>> {
    let mut reply = [0u8; 1500];
    s.handle(T0, addr(src), req, &mut reply)
        .reply()
        .map(|n| reply[..n].to_vec())
}

#[test]
fn binding_answers_xor_mapped_address() {
    let mut s = server(ServerConfig::default());
    for src in [
        "192.0.2.1:3478",
        "[2001:db8::5]:40000",
        "[::ffff:192.0.2.9]:1",
    ] {
        let req = binding(32, true);
        let out = answer(&mut s, src, &req).expect("padded request is answered");
        assert!(out.len() <= req.len());
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.transaction_id(), &[7; 12]);
        assert!(m.has_fingerprint(), "FINGERPRINT mirrored");
        assert_eq!(
            m.xor_mapped_address().unwrap().unwrap(),
            flock_proto::token::canonical(addr(src))
        );
    }
}

#[test]
fn small_binding_requests_are_not_answered_unless_allowed() {
    let mut s = server(ServerConfig::default());
    let bare = binding(0, false);
    assert_eq!(bare.len(), 20);
    assert!(answer(&mut s, "192.0.2.1:1", &bare).is_none());
    assert_eq!(s.stats().amplification_suppressed, 1);
    let mut open = server(ServerConfig {
        answer_small_binding: true,
        ..ServerConfig::default()
    });
    let v4 = answer(&mut open, "192.0.2.1:1", &bare).unwrap();
    let v6 = answer(&mut open, "[2001:db8::1]:1", &bare).unwrap();
    assert_eq!(
        (v4.len(), v6.len()),
        (32, 44),
        "documented worst-case ratios 1.6 and 2.2"
    );
    let m = Message::parse(&v4).unwrap();
    assert!(!m.has_fingerprint());
}

#[test]
fn every_flock_answer_is_at_most_the_request_size() {
    // `exchange` asserts answer ≤ request for every datagram; drive every path through it.
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("a", 1);
    let src = addr("192.0.2.1:1");
    register(&mut d, &mut s, T0, src); // nonce error + success
    keepalive(&mut d, &mut s, T0, src); // success
    keepalive(&mut d, &mut s, T0, addr("[2001:db8::1]:1")); // token error
    let mut thief = Device::new("a", 2);
    register(&mut thief, &mut s, T0, addr("[2001:db8::2]:2")); // name taken, over IPv6
}
