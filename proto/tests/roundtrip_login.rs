//! Encode → parse round trips of the log-in wire messages (PERSONAS, CONNECT, SIGNAL and their
//! answers) and of the registration messages (REGISTER, KEEPALIVE, CHECK and answers), with
//! random names, ids and bytes within the protocol's limits. The STUN framing itself has its
//! own round-trip property in `src/stun/tests.rs`.

use flock_proto::identity::{self, Fingerprint};
use flock_proto::stun::{Message, TransactionId};
use flock_proto::testing::{keypair, request_name};
use flock_proto::token::{Nonce, Token};
use flock_proto::wire::login::{
    self as login_wire, Ack, Connect, PersonasChunk, PersonasRequest, Signal, SignalBody,
};
use flock_proto::wire::registration::{
    self, Check, CheckAnswer, ErrorAnswer, Keepalive, KeptAlive, Register, Registered,
};
use flock_proto::Name;
use proptest::prelude::*;
use std::net::SocketAddr;

fn name() -> impl Strategy<Value = Name> {
    "[a-z0-9._-]{1,255}".prop_map(|s| Name::normalize(s.as_bytes()).unwrap())
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        // IPv4-mapped IPv6 addresses are written as IPv4: keep to other IPv6 here.
        (any::<[u8; 16]>(), any::<u16>())
            .prop_filter("not v4-mapped", |(ip, _)| std::net::Ipv6Addr::from(*ip)
                .to_ipv4_mapped()
                .is_none())
            .prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

fn token() -> impl Strategy<Value = Token> {
    (any::<u32>(), any::<[u8; 16]>()).prop_map(|(expiry, mac)| Token { expiry, mac })
}

fn nonce() -> impl Strategy<Value = Nonce> {
    (any::<u32>(), any::<[u8; 12]>()).prop_map(|(expiry, mac)| Nonce { expiry, mac })
}

/// Any STUN error code the encoder takes.
fn error_code() -> impl Strategy<Value = u16> {
    300u16..=699
}

/// UTF-8 text of at most `max` bytes.
fn text(max: usize) -> impl Strategy<Value = String> {
    ".{0,64}".prop_map(move |s: String| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    })
}

fn buf() -> Vec<u8> {
    vec![0u8; 4096]
}

fn parse(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).expect("what we encode parses")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn personas_chunk(
        name in name(),
        checksum in any::<[u8; 32]>(),
        total in any::<u32>(),
        offset in any::<u32>(),
        credentials_required in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..=login_wire::SDP_CHUNK),
        txid in any::<TransactionId>(),
    ) {
        let chunk = PersonasChunk { name, checksum, total, offset, credentials_required, data: &data };
        let mut b = buf();
        let n = chunk.encode(&mut b, &txid).unwrap();
        let m = parse(&b[..n]);
        prop_assert_eq!(m.transaction_id(), &txid);
        prop_assert_eq!(PersonasChunk::parse(&m).unwrap(), chunk);
        // Log-in answers go to the core that owns the name, as the requests do.
        prop_assert_eq!(request_name(&m).map(|n| n.hash().0), Some(name.hash().0));
        prop_assert!(Connect::parse(&m).is_err() && Signal::parse(&m).is_err() && Ack::parse(&m).is_err());
    }

    #[test]
    fn personas_chunk_fits_its_room(name in name(), request_len in 0usize..=login_wire::MAX_DATAGRAM, total in any::<u32>()) {
        let room = PersonasChunk::room(request_len, &name);
        let data = vec![0xAB; room];
        let chunk = PersonasChunk { name, checksum: [1; 32], total, offset: 0, credentials_required: true, data: &data };
        let mut b = buf();
        let n = chunk.encode(&mut b, &[0; 12]).unwrap();
        if room > 0 {
            prop_assert!(n <= request_len, "{n} > {request_len}");
        }
    }

    #[test]
    fn personas_request(
        name in name(),
        offset in any::<u32>(),
        known in any::<Option<[u8; 32]>>(),
        until in any::<u64>(),
        txid in any::<TransactionId>(),
    ) {
        let flock = keypair(200);
        let mut b = buf();
        let n = login_wire::encode_personas_request(&mut b, &txid, &name, offset, known.as_ref(), until, &flock).unwrap();
        prop_assert_eq!(n, login_wire::PERSONAS_REQUEST_LEN);
        let m = parse(&b[..n]);
        let p = PersonasRequest::parse(&m).unwrap();
        prop_assert_eq!((p.name.as_bytes(), p.offset, p.known, p.valid_until_ms), (name.as_bytes(), offset, known, until));
        prop_assert!(p.from_flock(&identity::public_key(&flock)));
        prop_assert!(!p.from_flock(&identity::public_key(&keypair(201))));
        prop_assert_eq!(request_name(&m).map(|n| n.hash().0), Some(name.hash().0));
    }

    #[test]
    fn connect(
        name in name(),
        session in any::<[u8; 16]>(),
        persona in text(login_wire::MAX_PERSONA_LEN),
        credential in prop::collection::vec(any::<u8>(), 0..=login_wire::MAX_CREDENTIAL_LEN),
        until in any::<u64>(),
        txid in any::<TransactionId>(),
    ) {
        let flock = keypair(200);
        let mut b = buf();
        let n = login_wire::encode_connect(&mut b, &txid, &name, &session, &persona, &credential, until, &flock).unwrap();
        let m = parse(&b[..n]);
        let c = Connect::parse(&m).unwrap();
        prop_assert_eq!(c.name.as_bytes(), name.as_bytes());
        prop_assert_eq!((c.session, c.persona, c.credential, c.valid_until_ms), (session, persona.as_str(), &credential[..], until));
        prop_assert!(c.from_flock(&identity::public_key(&flock)));
        prop_assert!(c.fresh(until, 0) && (until == u64::MAX || !c.fresh(until + 1, 0)));
    }

    #[test]
    fn connect_refuses_over_limits(extra in 1usize..64) {
        let flock = keypair(200);
        let name = Name::normalize(b"box").unwrap();
        let mut b = buf();
        let long = "p".repeat(login_wire::MAX_PERSONA_LEN + extra);
        prop_assert_eq!(login_wire::encode_connect(&mut b, &[0; 12], &name, &[0; 16], &long, b"", 0, &flock), Err(login_wire::ConnectError::PersonaTooLong));
        let cred = vec![0; login_wire::MAX_CREDENTIAL_LEN + extra];
        prop_assert_eq!(login_wire::encode_connect(&mut b, &[0; 12], &name, &[0; 16], "a", &cred, 0, &flock), Err(login_wire::ConnectError::CredentialTooLong));
    }

    #[test]
    fn ack(
        signal in any::<bool>(),
        name in name(),
        session in any::<[u8; 16]>(),
        seq in any::<u32>(),
        error in prop::option::of(error_code()),
        txid in any::<TransactionId>(),
    ) {
        let method = if signal { flock_proto::wire::method::SIGNAL } else { flock_proto::wire::method::CONNECT };
        let ack = Ack { method, name, session, seq: signal.then_some(seq), error };
        let mut b = buf();
        let n = ack.encode(&mut b, &txid).unwrap();
        let m = parse(&b[..n]);
        prop_assert_eq!(Ack::parse(&m).unwrap(), ack);
        if error.is_some() {
            prop_assert_eq!(ErrorAnswer::parse(&m).unwrap().code, error.unwrap());
        }
    }

    #[test]
    fn signal(
        name in name(),
        session in any::<[u8; 16]>(),
        seq in any::<u32>(),
        kind in 0u8..3,
        offset in any::<u32>(),
        total in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..=login_wire::SDP_CHUNK),
        candidate in text(login_wire::MAX_CANDIDATE_LEN),
        mid in prop::option::of(text(login_wire::MAX_MID_LEN)),
        txid in any::<TransactionId>(),
    ) {
        let body = match kind {
            0 => SignalBody::Sdp { offset, total, data: &data },
            1 => SignalBody::Candidate { candidate: &candidate, mid: mid.as_deref() },
            _ => SignalBody::EndOfCandidates,
        };
        let sig = Signal { name, session, seq, body };
        let mut b = buf();
        let n = sig.encode(&mut b, &txid).unwrap();
        prop_assert!(n <= login_wire::MAX_DATAGRAM || kind == 1, "a SIGNAL of {n} bytes");
        let m = parse(&b[..n]);
        prop_assert_eq!(Signal::parse(&m).unwrap(), sig);
        prop_assert!(login_wire::is_login(&m));
    }

    #[test]
    fn sdp_pieces_reassemble(sdp in ".{0,3000}") {
        let item = login_wire::Outbound::Sdp(sdp.clone());
        let mut a = login_wire::SdpAssembly::default();
        let mut out = None;
        let mut b = buf();
        for k in 0..login_wire::pieces(&item) {
            let body = login_wire::piece(&item, k).unwrap();
            // Through the wire and back.
            let n = Signal { name: Name::normalize(b"box").unwrap(), session: [0; 16], seq: k as u32, body }.encode(&mut b, &[0; 12]).unwrap();
            let m = parse(&b[..n]);
            let SignalBody::Sdp { offset, total, data } = Signal::parse(&m).unwrap().body else { panic!("not an SDP piece") };
            prop_assert!(out.is_none());
            out = a.add(offset, total, data, 1 << 16).unwrap();
        }
        prop_assert!(login_wire::piece(&item, login_wire::pieces(&item)).is_none());
        prop_assert_eq!(out, Some(sdp));
    }

    #[test]
    fn register(name in name(), seed in 1u8..=255, ts in any::<u64>(), nonce in prop::option::of(nonce()), txid in any::<TransactionId>()) {
        let key = keypair(seed);
        let mut b = buf();
        let n = registration::encode_register(&mut b, &txid, &name, &key, ts, nonce).unwrap();
        let m = parse(&b[..n]);
        let r = Register::parse(&m).unwrap();
        prop_assert_eq!((r.name.as_bytes(), r.public_key, r.timestamp_ms, r.nonce), (name.as_bytes(), &identity::public_key(&key), ts, nonce));
        prop_assert!(r.signature_ok());
        prop_assert_eq!(r.fingerprint(), Fingerprint::of(&identity::public_key(&key)));
    }

    #[test]
    fn registered(mapped in addr(), token in token(), interval in any::<u32>(), txid in any::<TransactionId>()) {
        let r = Registered { mapped, token, keepalive_interval_ms: interval };
        let mut b = buf();
        let n = r.encode(&mut b, &txid).unwrap();
        prop_assert_eq!(Registered::parse(&parse(&b[..n])).unwrap(), r);
    }

    #[test]
    fn keepalive_and_answer(name in name(), fp in any::<[u8; 32]>(), token in token(), mapped in addr(), fresh in prop::option::of(token()), txid in any::<TransactionId>()) {
        let k = Keepalive { name, identity: Fingerprint(fp), token };
        let mut b = buf();
        let n = k.encode(&mut b, &txid).unwrap();
        let back = Keepalive::parse(&parse(&b[..n])).unwrap();
        prop_assert_eq!((back.name.as_bytes(), back.identity, back.token), (name.as_bytes(), Fingerprint(fp), token));

        let a = KeptAlive { mapped, token: fresh };
        let n = a.encode(&mut b, &txid).unwrap();
        prop_assert_eq!(KeptAlive::parse(&parse(&b[..n])).unwrap(), a);
    }

    #[test]
    fn check_and_answer(name in name(), challenge in any::<[u8; 16]>(), until in any::<u64>(), seed in 1u8..=255, txid in any::<TransactionId>()) {
        let flock = keypair(200);
        let sig = registration::sign_check(&flock, &name, &challenge, until);
        let mut b = buf();
        let n = registration::encode_check(&mut b, &txid, &name, &challenge, until, &sig).unwrap();
        let m = parse(&b[..n]);
        let c = Check::parse(&m).unwrap();
        prop_assert_eq!((c.name.as_bytes(), c.challenge, c.valid_until_ms), (name.as_bytes(), challenge, until));
        prop_assert!(c.from_flock(&identity::public_key(&flock)));

        let key = keypair(seed);
        let n = registration::encode_check_answer(&mut b, &txid, &name, &key, &challenge).unwrap();
        let a = CheckAnswer::parse(&parse(&b[..n])).unwrap();
        prop_assert_eq!(a.name.as_bytes(), name.as_bytes());
        prop_assert!(a.proves(&Fingerprint::of(&identity::public_key(&key)).prefix(), &challenge));
        let mut other = challenge;
        other[0] ^= 1;
        prop_assert!(!a.proves(&Fingerprint::of(&identity::public_key(&key)).prefix(), &other));
    }

    #[test]
    fn error_answer(code in error_code(), nonce in prop::option::of(nonce()), txid in any::<TransactionId>(), which in 0usize..3) {
        let method = [flock_proto::wire::method::REGISTER, flock_proto::wire::method::KEEPALIVE, flock_proto::wire::method::CHECK][which];
        let e = ErrorAnswer { code, nonce };
        let mut b = buf();
        let n = e.encode(&mut b, method, &txid).unwrap();
        let m = parse(&b[..n]);
        prop_assert_eq!(m.method(), method);
        prop_assert_eq!(ErrorAnswer::parse(&m).unwrap(), e);
    }
}
