//! RFC 5769 test vectors and encode → parse property tests.

use super::*;
use core::net::SocketAddr;
use proptest::prelude::*;

/// RFC 5769 §2.1: sample request (short-term credentials, HMAC-SHA1 MESSAGE-INTEGRITY).
#[rustfmt::skip]
const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, // Binding request, length 88
    0x21, 0x12, 0xa4, 0x42, // magic cookie
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, // transaction id
    0x80, 0x22, 0x00, 0x10, // SOFTWARE
    0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x00, 0x24, 0x00, 0x04, // PRIORITY
    0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED
    0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
    0x00, 0x06, 0x00, 0x09, // USERNAME, padded with spaces
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY (HMAC-SHA1)
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
    0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2: sample IPv4 response.
#[rustfmt::skip]
const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, // Binding success, length 60
    0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE "test vector", padded with a space
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS
    0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY (HMAC-SHA1)
    0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74,
    0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3: sample IPv6 response.
#[rustfmt::skip]
const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, // Binding success, length 72
    0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE "test vector"
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS
    0x00, 0x02, 0xa1, 0x47,
    0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY (HMAC-SHA1)
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84,
    0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    0xc8, 0xfb, 0x0b, 0x4c,
];

const RFC5769_TXID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
/// The short-term password of RFC 5769 §2.
const RFC5769_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
/// Attribute type of the HMAC-SHA1 MESSAGE-INTEGRITY, which this codec treats as opaque.
const MESSAGE_INTEGRITY_SHA1: u16 = 0x0008;

/// Checks the vector's HMAC-SHA1 MESSAGE-INTEGRITY, which guards against typos in the bytes
/// above (the same "length field through the integrity attribute" rule as for SHA-256).
fn check_sha1_integrity(msg: &[u8]) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, RFC5769_PASSWORD);
    let mi = msg.len() - 8 - 24;
    let tag = integrity::integrity_sha256(&key, &msg[..mi], (mi + 24 - HEADER_LEN) as u16).unwrap();
    assert_eq!(tag.as_ref(), &msg[mi + 4..mi + 24]);
}

#[test]
fn rfc5769_sample_request() {
    let m = Message::parse(&SAMPLE_REQUEST).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::BINDING, Class::Request)
    );
    assert_eq!(m.transaction_id(), &RFC5769_TXID);
    assert!(m.has_fingerprint(), "FINGERPRINT verified by parse");
    assert_eq!(m.len(), 108);
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"STUN test client"[..]));
    assert_eq!(
        m.get(0x0024),
        Some(&[0x6e, 0x00, 0x01, 0xff][..]),
        "PRIORITY"
    );
    assert_eq!(
        m.get(0x0006),
        Some(&b"evtj:h6vY"[..]),
        "USERNAME without its padding"
    );
    assert_eq!(
        m.get(MESSAGE_INTEGRITY_SHA1).map(<[u8]>::len),
        Some(20),
        "opaque HMAC-SHA1"
    );
    let types: Vec<u16> = m.attributes().map(|a| a.typ).collect();
    assert_eq!(
        types,
        [
            attr::SOFTWARE,
            0x0024,
            0x8029,
            0x0006,
            MESSAGE_INTEGRITY_SHA1,
            attr::FINGERPRINT
        ]
    );
    assert!(!m.has_integrity_sha256());
    assert_eq!(
        m.unknown_comprehension_required(&[0x0024, 0x0006]),
        Some(MESSAGE_INTEGRITY_SHA1)
    );
    assert!(looks_like_stun(&SAMPLE_REQUEST));
    check_sha1_integrity(&SAMPLE_REQUEST);
}

#[test]
fn rfc5769_ipv4_response() {
    let m = Message::parse(&SAMPLE_IPV4_RESPONSE).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::BINDING, Class::Success)
    );
    assert!(m.has_fingerprint());
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"test vector"[..]));
    let expected: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(m.xor_mapped_address(), Some(Ok(expected)));
    check_sha1_integrity(&SAMPLE_IPV4_RESPONSE);
    assert_reencoded(expected, &SAMPLE_IPV4_RESPONSE[36..48]);
}

#[test]
fn rfc5769_ipv6_response() {
    let m = Message::parse(&SAMPLE_IPV6_RESPONSE).unwrap();
    assert!(m.has_fingerprint());
    let expected: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(m.xor_mapped_address(), Some(Ok(expected)));
    check_sha1_integrity(&SAMPLE_IPV6_RESPONSE);
    assert_reencoded(expected, &SAMPLE_IPV6_RESPONSE[36..60]);
}

/// Encoding `addr` with the vectors' transaction id gives the vector's attribute bytes.
fn assert_reencoded(addr: SocketAddr, attribute: &[u8]) {
    let mut buf = [0u8; 64];
    let mut e = Encoder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Success),
        &RFC5769_TXID,
    )
    .unwrap();
    e.xor_mapped_address(addr).unwrap();
    let n = e.finish();
    assert_eq!(&buf[HEADER_LEN..n], attribute);
}

#[test]
fn rfc5769_vectors_reject_every_truncation_and_tamper() {
    for v in [
        &SAMPLE_REQUEST[..],
        &SAMPLE_IPV4_RESPONSE,
        &SAMPLE_IPV6_RESPONSE,
    ] {
        for cut in 0..v.len() {
            assert!(Message::parse(&v[..cut]).is_err());
        }
        let mut t = v.to_vec();
        t[30] ^= 0x01; // inside SOFTWARE
        assert_eq!(
            Message::parse(&t).map(|_| ()),
            Err(ParseError::BadFingerprint)
        );
    }
}

/// Attribute types for the property test: comprehension-required, none the codec treats specially.
fn plain_type() -> impl Strategy<Value = u16> {
    (0x0000u16..0x8000).prop_filter("special", |t| *t != attr::MESSAGE_INTEGRITY_SHA256)
}

proptest! {
    #[test]
    fn encode_parse_round_trip(
        method in 0u16..=Method::MAX,
        class in 0u16..4,
        txid in any::<TransactionId>(),
        attrs in prop::collection::vec((plain_type(), prop::collection::vec(any::<u8>(), 0..=64)), 0..16),
        integrity in any::<bool>(),
        fingerprint in any::<bool>(),
    ) {
        let typ = MessageType::new(Method(method), Class::from_bits(class));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &txid);
        let mut buf = [0u8; 2048];
        let mut e = Encoder::new(&mut buf, typ, &txid).unwrap();
        for (t, v) in &attrs {
            e.attribute(*t, v).unwrap();
        }
        if integrity {
            e.message_integrity_sha256(&key).unwrap();
        }
        let n = if fingerprint { e.fingerprint().unwrap() } else { e.finish() };
        let expected_len = HEADER_LEN
            + attrs.iter().map(|(_, v)| attr::wire_len(v.len())).sum::<usize>()
            + if integrity { 36 } else { 0 }
            + if fingerprint { 8 } else { 0 };
        prop_assert_eq!(n, expected_len);

        let m = Message::parse(&buf[..n]).unwrap();
        prop_assert!(looks_like_stun(&buf[..n]));
        prop_assert_eq!(m.message_type(), typ);
        prop_assert_eq!(m.transaction_id(), &txid);
        prop_assert_eq!(m.len(), n);
        prop_assert_eq!(m.has_fingerprint(), fingerprint);
        let got: Vec<(u16, &[u8])> = m.attributes().map(|a| (a.typ, a.value)).collect();
        let mut want: Vec<(u16, &[u8])> = attrs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        if integrity {
            want.push((attr::MESSAGE_INTEGRITY_SHA256, m.get(attr::MESSAGE_INTEGRITY_SHA256).unwrap()));
            prop_assert_eq!(m.verify_integrity_sha256(&key), Ok(()));
        } else {
            prop_assert_eq!(m.verify_integrity_sha256(&key), Err(IntegrityError::Missing));
        }
        if fingerprint {
            want.push((attr::FINGERPRINT, &buf[n - 4..n]));
        }
        prop_assert_eq!(got, want);
        for (t, _) in &attrs {
            let first = attrs.iter().find(|(u, _)| u == t).map(|(_, w)| w.as_slice());
            prop_assert_eq!(m.get(*t), first);
        }
        let known: Vec<u16> = attrs.iter().map(|(t, _)| *t).chain([attr::MESSAGE_INTEGRITY_SHA256]).collect();
        prop_assert_eq!(m.unknown_comprehension_required(&known), None);
        prop_assert_eq!(m.unknown_comprehension_required(&[]), attrs.first().map(|(t, _)| *t).or(integrity.then_some(attr::MESSAGE_INTEGRITY_SHA256)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = looks_like_stun(&bytes);
        if let Ok(m) = Message::parse(&bytes) {
            let _ = (m.attributes().count(), m.xor_mapped_address(), m.error_code(), m.mapped_address());
        }
    }
}
