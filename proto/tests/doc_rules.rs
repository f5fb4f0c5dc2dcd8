//! Rules docs/PROTOCOL.md states in prose, checked against the code: message sizes (§4.4,
//! §4.7), the Binding padding per address family (§4.1), which whitespace a name loses (§2).

use flock_proto::server::ServerConfig;
use flock_proto::stun::{self, Class, Encoder, MessageType, Method};
use flock_proto::wire::login::{code as login_code, Ack, Signal, SignalBody};
use flock_proto::wire::registration;
use flock_proto::Name;
use flock_testkit::hand_driven::*;

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    // Compare prose with its line breaks folded.
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn padded(n: usize) -> usize {
    (n + 3) & !3
}

fn name_of(len: usize) -> Name {
    "a".repeat(len).parse().unwrap()
}

#[test]
fn check_and_its_answer_are_144_and_136_bytes_plus_the_padded_name() {
    assert!(doc().contains("(144 vs. 136 bytes plus the name padded to a multiple of 4: 152 and 144 for `my-box`, §11)"));
    let key = keypair(1);
    for len in 1..=255 {
        let name = name_of(len);
        let mut buf = [0u8; 1500];
        let n =
            registration::encode_check(&mut buf, &[1; 12], &name, &[2; 16], 3, &[4; 64]).unwrap();
        assert_eq!(n, 144 + padded(len), "CHECK, name of {len}");
        let a =
            registration::encode_check_answer(&mut buf, &[1; 12], &name, &key, &[2; 16]).unwrap();
        assert_eq!(a, 136 + padded(len), "CHECK answer, name of {len}");
        assert!(a < n);
    }
}

#[test]
fn a_481_is_16_bytes_longer_than_an_end_of_candidates() {
    assert!(doc().contains("the 481 is 16 bytes longer than an end-of-candidates SIGNAL (84 vs. 68 bytes plus the padded name)"));
    for len in [1, 6, 7, 8, 255] {
        let name = name_of(len);
        let mut buf = [0u8; 1500];
        let eoc = Signal {
            name,
            session: [7; 16],
            seq: 3,
            body: SignalBody::EndOfCandidates,
        }
        .encode(&mut buf, &[1; 12])
        .unwrap();
        assert_eq!(eoc, 68 + padded(len));
        let err = Ack {
            method: flock_proto::wire::method::SIGNAL,
            name,
            session: [7; 16],
            seq: Some(3),
            error: Some(login_code::UNKNOWN_SESSION),
        }
        .encode(&mut buf, &[1; 12])
        .unwrap();
        assert_eq!(err, 84 + padded(len));
    }
}

/// A Binding request with a SOFTWARE attribute of `software` bytes and FINGERPRINT.
fn binding(software: usize) -> Vec<u8> {
    let mut buf = [0u8; 200];
    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &[0xb7; 12]).unwrap();
    e.attribute(stun::attr::SOFTWARE, &vec![b'x'; software])
        .unwrap();
    let n = e.fingerprint().unwrap();
    buf[..n].to_vec()
}

#[test]
fn binding_padding_is_per_family() {
    assert!(doc().contains("a SOFTWARE attribute of at least 5 bytes (IPv4) or 17 bytes (IPv6)"));
    assert!(doc().contains("is answered over IPv4 only"));
    let mut s = server(ServerConfig::default());
    let mut reply = [0u8; 200];
    let v4 = addr("192.0.2.1:5000");
    let mapped = addr("[::ffff:192.0.2.1]:5000");
    let v6 = addr("[2001:db8::1]:5000");
    for (src, least) in [(v4, 5), (mapped, 5), (v6, 17)] {
        assert_eq!(
            s.handle(T0, src, &binding(least - 1), &mut reply).reply(),
            None,
            "{src}: {} bytes of SOFTWARE",
            least - 1
        );
        let n = s
            .handle(T0, src, &binding(least), &mut reply)
            .reply()
            .unwrap();
        assert!(n <= binding(least).len());
    }
    // The §11 example: SOFTWARE `flock-appliance` (15 bytes), 48 bytes in all.
    assert_eq!(binding(15).len(), 48);
    assert!(s.handle(T0, v4, &binding(15), &mut reply).reply().is_some());
    assert!(s.handle(T0, v6, &binding(15), &mut reply).reply().is_none());
}

#[test]
fn names_lose_space_tab_lf_ff_cr_but_not_vertical_tab() {
    assert!(doc().contains("(space, tab, line feed, form feed and carriage return: bytes `0x20`, `0x09`, `0x0A`, `0x0C`, `0x0D`; not vertical tab `0x0B`, which makes the name invalid)"));
    let n = Name::normalize(b" \t\n\x0c\rBox\r\n\x0c\t ").unwrap();
    assert_eq!(n.as_bytes(), b"box");
    assert!(Name::normalize(b"\x0bbox").is_err());
    assert!(Name::normalize(b"box\x0b").is_err());
}
