//! A server that does not own a name answers REGISTER and KEEPALIVE with 300 Try-Alternate,
//! pointing at the owner: before any nonce, token or signature work, keeping no state, never
//! larger than the request.

use flock_proto::membership::{Member, Membership};
use flock_proto::server::{FlockConfig, ServerConfig};
use flock_proto::stun::{self, Class, Message};
use flock_proto::token::Token;
use flock_proto::wire::registration::{code, ErrorAnswer, TryAlternate};
use flock_proto::wire::{method, MsgError};
use flock_proto::Name;
use flock_testkit::hand_driven::*;

fn membership(udp: [&str; 3], me: usize) -> Membership {
    let servers = udp
        .iter()
        .enumerate()
        .map(|(i, u)| Member {
            udp: addr(u),
            ws: addr(&format!("192.0.2.{}:8080", i + 1)),
        })
        .collect();
    Membership { servers, me }
}

fn flock_server(m: &Membership) -> Host {
    m.validate().unwrap();
    server(ServerConfig {
        flock: m.flock_config([9; 32]),
        ..ServerConfig::default()
    })
}

/// A device whose name server `owner` of a flock of 3 owns.
fn device_owned_by(owner: usize, seed: u8) -> Device {
    let name = (0..)
        .map(|i| format!("box-{owner}-{i}"))
        .find(|n| n.parse::<Name>().unwrap().hash().server_index(3) == owner)
        .unwrap();
    Device::new(&name, seed)
}

const UDP: [&str; 3] = ["192.0.2.1:3478", "192.0.2.2:3478", "192.0.2.3:3479"];

fn read_300(bytes: &[u8], method: stun::Method) -> TryAlternate {
    let m = Message::parse(bytes).unwrap();
    assert_eq!((m.method(), m.class()), (method, Class::Error));
    assert_eq!(
        ErrorAnswer::parse(&m).unwrap(),
        ErrorAnswer {
            code: code::TRY_ALTERNATE,
            nonce: None
        }
    );
    TryAlternate::parse(&m).unwrap()
}

/// Sends `req` and returns the raw answer, checking it is no larger.
fn raw(s: &mut Host, src: &str, req: &[u8]) -> Vec<u8> {
    let mut reply = [0u8; 1500];
    let n = s
        .handle(T0, addr(src), req, &mut reply)
        .reply()
        .expect("an answer");
    assert!(
        n <= req.len(),
        "{n}-byte answer to a {}-byte request",
        req.len()
    );
    reply[..n].to_vec()
}

#[test]
fn register_for_another_servers_name_is_sent_to_the_owner() {
    let m = membership(UDP, 0);
    let mut s = flock_server(&m);
    for owner in [1, 2] {
        let mut d = device_owned_by(owner, 1);
        let txid = d.txid();
        let req = d.register_bytes(T0.0, &txid);
        let answer = raw(&mut s, "198.51.100.7:5000", &req);
        assert_eq!(Message::parse(&answer).unwrap().transaction_id(), &txid);
        assert_eq!(
            read_300(&answer, method::REGISTER).alternate,
            m.servers[owner].udp
        );
        assert_eq!(
            answer.len(),
            64,
            "IPv4: header, ERROR-CODE 300, ALTERNATE-SERVER, FINGERPRINT"
        );
    }
    let st = s.stats();
    assert_eq!(
        (st.redirected, st.nonces_issued, st.registered),
        (2, 0, 0),
        "no nonce issued: redirected first"
    );
    assert_eq!(s.occupancy(), (0, 0), "no state kept");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn redirect_comes_before_the_signature_and_the_token() {
    let m = membership(UDP, 1);
    let mut s = flock_server(&m);
    let mut d = device_owned_by(2, 1);
    // A REGISTER with a nonce from nowhere and a wrong signature: the signature is never checked.
    d.nonce = Some(flock_proto::token::Nonce::from_bytes(&[7; 16]).unwrap());
    let txid = d.txid();
    let mut req = d.register_bytes(T0.0, &txid);
    let sig_at = req.len() - 8 - 64;
    req[sig_at] ^= 1;
    let req = fix_fingerprint(req);
    assert_eq!(
        read_300(&raw(&mut s, "198.51.100.7:5000", &req), method::REGISTER).alternate,
        m.servers[2].udp
    );
    // A KEEPALIVE with a forged token: 300, not 441.
    d.token = Token::from_bytes(&[0xAB; 20]);
    let txid = d.txid();
    let ka = d.keepalive_bytes(&txid);
    let answer = raw(&mut s, "198.51.100.7:5000", &ka);
    assert_eq!(
        read_300(&answer, method::KEEPALIVE).alternate,
        m.servers[2].udp
    );
    let st = s.stats();
    assert_eq!(
        (
            st.redirected,
            st.bad_signature,
            st.tokens_refused,
            st.nonces_issued
        ),
        (2, 0, 0, 0)
    );
}

#[test]
fn the_owner_serves_its_own_names_as_before() {
    let m = membership(UDP, 2);
    let mut s = flock_server(&m);
    let mut d = device_owned_by(2, 3);
    let a = register(&mut d, &mut s, T0, addr("198.51.100.7:5000"));
    assert!(matches!(a, Answer::Registered(_)), "{a:?}");
    assert!(matches!(
        keepalive(&mut d, &mut s, T0, addr("198.51.100.7:5000")),
        Answer::KeptAlive(_)
    ));
    assert_eq!(s.stats().redirected, 0);
    assert_eq!(s.stats().nonces_issued, 1);
}

#[test]
fn a_flock_of_one_never_redirects() {
    for flock in [
        FlockConfig::default(),
        Membership {
            servers: vec![Member {
                udp: addr(UDP[0]),
                ws: addr("192.0.2.1:8080"),
            }],
            me: 0,
        }
        .flock_config([0; 32]),
    ] {
        let mut s = server(ServerConfig {
            flock,
            ..ServerConfig::default()
        });
        for owner in 0..3 {
            let mut d = device_owned_by(owner, 4);
            assert!(matches!(
                register(&mut d, &mut s, T0, addr("198.51.100.7:5000")),
                Answer::Registered(_)
            ));
        }
        assert_eq!(s.stats().redirected, 0);
    }
}

#[test]
fn an_ipv6_owner_still_fits_in_the_smallest_keepalive() {
    let m = membership(
        [
            "[2001:db8::1]:3478",
            "[2001:db8::2]:3478",
            "[2001:db8::3]:65535",
        ],
        0,
    );
    let mut s = flock_server(&m);
    // The shortest KEEPALIVE: a one-letter name owned elsewhere.
    let name = ('a'..='z')
        .map(String::from)
        .find(|n| n.parse::<Name>().unwrap().hash().server_index(3) != 0)
        .unwrap();
    let mut d = Device::new(&name, 5);
    let owner = d.name.hash().server_index(3);
    d.token = Token::from_bytes(&[1; 20]);
    let txid = d.txid();
    let ka = d.keepalive_bytes(&txid);
    assert_eq!(ka.len(), 96);
    let answer = raw(&mut s, "[2001:db8::99]:4000", &ka);
    assert_eq!(answer.len(), 76);
    assert_eq!(
        read_300(&answer, method::KEEPALIVE).alternate,
        m.servers[owner].udp
    );
    assert_eq!(s.stats().amplification_suppressed, 0);
}

#[test]
fn malformed_requests_get_nothing_even_when_not_ours() {
    let m = membership(UDP, 0);
    let mut s = flock_server(&m);
    let d = device_owned_by(1, 6);
    // A KEEPALIVE without TOKEN: not a flock request, no answer.
    let mut buf = [0u8; 256];
    let typ = stun::MessageType {
        method: method::KEEPALIVE,
        class: Class::Request,
    };
    let mut e = stun::Encoder::new(&mut buf, typ, &[3; 12]).unwrap();
    e.attribute(flock_proto::wire::attr::NAME, d.name.as_bytes())
        .unwrap();
    e.attribute(flock_proto::wire::attr::IDENTITY, &d.fingerprint().0)
        .unwrap();
    let n = e.fingerprint().unwrap();
    assert!(s
        .handle(T0, addr("198.51.100.7:5000"), &buf[..n], &mut [0u8; 1500])
        .reply()
        .is_none());
    assert_eq!((s.stats().redirected, s.stats().malformed), (0, 1));
}

#[test]
fn alternate_server_is_encoded_like_mapped_address() {
    let txid = [0x11; 12];
    let mut buf = [0u8; 128];
    let n = TryAlternate {
        alternate: addr("192.0.2.2:3478"),
    }
    .encode(&mut buf, method::REGISTER, &txid)
    .unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    // Not XORed: family 1, port 0x0d96, the address as is.
    assert_eq!(
        m.get(stun::attr::ALTERNATE_SERVER).unwrap(),
        &[0, 1, 0x0d, 0x96, 192, 0, 2, 2]
    );
    assert_eq!(m.error_code().unwrap().unwrap().code, 300);
    // An IPv4-mapped owner is written as IPv4.
    let n = TryAlternate {
        alternate: addr("[::ffff:192.0.2.2]:3478"),
    }
    .encode(&mut buf, method::KEEPALIVE, &txid)
    .unwrap();
    assert_eq!(
        TryAlternate::parse(&Message::parse(&buf[..n]).unwrap())
            .unwrap()
            .alternate,
        addr("192.0.2.2:3478")
    );
    // Other errors are not a redirect; a 300 without the address is incomplete.
    let n = ErrorAnswer {
        code: code::NAME_TAKEN,
        nonce: None,
    }
    .encode(&mut buf, method::REGISTER, &txid)
    .unwrap();
    assert_eq!(
        TryAlternate::parse(&Message::parse(&buf[..n]).unwrap()),
        Err(MsgError::WrongType)
    );
    let n = ErrorAnswer {
        code: code::TRY_ALTERNATE,
        nonce: None,
    }
    .encode(&mut buf, method::REGISTER, &txid)
    .unwrap();
    assert_eq!(
        TryAlternate::parse(&Message::parse(&buf[..n]).unwrap()),
        Err(MsgError::Missing(stun::attr::ALTERNATE_SERVER))
    );
}

/// Recomputes FINGERPRINT after editing a message.
fn fix_fingerprint(mut m: Vec<u8>) -> Vec<u8> {
    let at = m.len() - 4;
    let crc = crc32fast::hash(&m[..at - 4]) ^ stun::FINGERPRINT_XOR;
    m[at..].copy_from_slice(&crc.to_be_bytes());
    m
}
