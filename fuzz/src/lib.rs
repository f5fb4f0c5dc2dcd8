//! Bodies of the fuzz targets (`fuzz_targets/*.rs` are one-line wrappers), kept in a library so
//! that `cargo test` here can replay the seed corpus without libFuzzer.
//!
//! Every target: never panics on any input, and checks the invariants stated on it.

use arbitrary::Unstructured;
use flock_proto::identity::Fingerprint;
use flock_proto::wire::login::{self as login_wire, Ack, AssemblyError, Connect, PersonasChunk, PersonasRequest, SdpAssembly, Signal, SignalBody};
use flock_proto::login::{Candidate, Command};
use flock_proto::wire::registration::{self, Check, CheckAnswer, ErrorAnswer, Keepalive, KeptAlive, Register, Registered};
use flock_proto::server::{Keys, Output, Server, ServerConfig};
use flock_proto::stun::{self, attr, Class, Encoder, Message, MessageType, Method, TransactionId};
use flock_proto::testing::{keypair, owner_core, request_name, Answer, Device, XorShift};
use flock_proto::token::ProofKeys;
use flock_proto::{Name, Time};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const MAX_DATAGRAM: usize = 1500;

fn hmac_key() -> &'static ring::hmac::Key {
    static KEY: OnceLock<ring::hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzz integrity key"))
}

/// `Message::parse` on arbitrary bytes, every accessor, and a re-encode of what parsed.
pub fn stun_parse(data: &[u8]) {
    let looks = stun::looks_like_stun(data);
    let Ok(m) = Message::parse(data) else { return };
    assert!(looks, "parsed but looks_like_stun is false");
    assert_eq!(m.len(), data.len());
    assert_eq!(m.as_bytes(), data);
    assert_eq!(m.message_type(), MessageType::new(m.method(), m.class()));
    assert_eq!(MessageType::from_u16(m.message_type().to_u16()), Ok(m.message_type()));
    let _ = format!("{m:?}");
    let attrs: Vec<_> = m.attributes().collect();
    for a in &attrs {
        assert!(m.get(a.typ).is_some());
    }
    let _ = m.unknown_comprehension_required(&[]);
    let _ = m.unknown_comprehension_required(&[attr::XOR_MAPPED_ADDRESS, attr::ERROR_CODE]);
    let _ = m.has_integrity_sha256();
    let verified = m.verify_integrity_sha256(hmac_key());
    if !m.has_integrity_sha256() {
        assert!(verified.is_err());
    }
    let _ = m.mapped_address();
    let _ = request_name(&m);
    let _ = login_wire::is_login(&m);
    let _ = owner_core(data, 7);

    // Re-encode: same type, id and attributes (padding zeroed, FINGERPRINT recomputed,
    // MESSAGE-INTEGRITY-SHA256 recomputed with the fuzz key) must parse back the same.
    let mut buf = vec![0u8; data.len() + 64];
    let mut e = Encoder::new(&mut buf, m.message_type(), m.transaction_id()).expect("a parsed type re-encodes");
    let mut kept = Vec::new();
    let mut integrity = false;
    for a in &attrs {
        match a.typ {
            attr::FINGERPRINT => {}
            attr::MESSAGE_INTEGRITY_SHA256 => {
                integrity = true;
                break;
            }
            t => {
                e.attribute(t, a.value).expect("re-encode attribute");
                kept.push(*a);
            }
        }
    }
    if integrity {
        e.message_integrity_sha256(hmac_key()).expect("re-encode integrity");
    }
    let n = if m.has_fingerprint() { e.fingerprint().expect("re-encode fingerprint") } else { e.finish() };
    let again = Message::parse(&buf[..n]).expect("re-encoded message parses");
    assert_eq!(again.message_type(), m.message_type());
    assert_eq!(again.transaction_id(), m.transaction_id());
    assert_eq!(again.has_fingerprint(), m.has_fingerprint());
    assert_eq!(again.has_integrity_sha256(), m.has_integrity_sha256());
    if integrity {
        assert_eq!(again.verify_integrity_sha256(hmac_key()), Ok(()));
    }
    let got: Vec<_> = again.attributes().filter(|a| !matches!(a.typ, attr::FINGERPRINT | attr::MESSAGE_INTEGRITY_SHA256)).collect();
    assert_eq!(got, kept);

    // Decoded addresses and error codes encode back to the same value.
    if let Some(Ok(addr)) = m.xor_mapped_address() {
        let mut b = [0u8; 64];
        let mut e = Encoder::new(&mut b, m.message_type(), m.transaction_id()).unwrap();
        e.xor_mapped_address(addr).unwrap();
        let n = e.finish();
        let back = Message::parse(&b[..n]).unwrap().xor_mapped_address().unwrap().unwrap();
        assert_eq!(back, flock_proto::token::canonical(addr));
    }
    if let Some(Ok(ec)) = m.error_code() {
        let mut b = vec![0u8; 1024];
        let mut e = Encoder::new(&mut b, m.message_type(), m.transaction_id()).unwrap();
        // The decoder takes up to 763 bytes; the encoder also bounds characters (128).
        if e.error_code(ec.code, ec.reason).is_ok() {
            let n = e.finish();
            let back = Message::parse(&b[..n]).unwrap().error_code().unwrap().unwrap();
            assert_eq!(back, ec);
        }
    }
}

/// Every typed view of `flock_proto::wire::registration` and `flock_proto::wire::login`; what parses
/// re-encodes (where the view can) to a message that parses to the same view.
pub fn flock_messages(data: &[u8]) {
    let _ = owner_core(data, 1);
    let _ = owner_core(data, 3);
    let _ = owner_core(data, 64);
    // The tail of the input also feeds an SDP reassembly.
    sdp_assembly(data);
    let Ok(m) = Message::parse(data) else { return };
    peer_views(&m);
    let txid = *m.transaction_id();
    let flock_pk = flock_proto::identity::public_key(flock_key());
    let mut buf = vec![0u8; 4096];

    if let Some(name) = request_name(&m) {
        assert!(!name.as_bytes().is_empty());
        assert_eq!(owner_core(data, 5), Some(name.hash().core_index(5)));
    }
    if let Ok(r) = Register::parse(&m) {
        let _ = (r.fingerprint(), r.signature_ok());
    }
    if let Ok(r) = Registered::parse(&m) {
        let n = r.encode(&mut buf, &txid).expect("encode Registered");
        let back = Registered::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!(back, Registered { mapped: flock_proto::token::canonical(r.mapped), ..r });
    }
    if let Ok(k) = Keepalive::parse(&m) {
        let n = k.encode(&mut buf, &txid).expect("encode Keepalive");
        let back = Keepalive::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!((back.name.as_bytes(), back.identity, back.token), (k.name.as_bytes(), k.identity, k.token));
    }
    if let Ok(k) = KeptAlive::parse(&m) {
        let n = k.encode(&mut buf, &txid).expect("encode KeptAlive");
        let back = KeptAlive::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!(back, KeptAlive { mapped: flock_proto::token::canonical(k.mapped), ..k });
    }
    if let Ok(c) = Check::parse(&m) {
        let _ = (c.from_flock(&flock_pk), c.fresh(0, 0), c.fresh(u64::MAX, u64::MAX));
    }
    if let Ok(c) = CheckAnswer::parse(&m) {
        let _ = c.proves(&[], &[0; 16]);
        let _ = c.proves(&Fingerprint::of(c.public_key).prefix(), &[7; 16]);
    }
    if let Ok(e) = ErrorAnswer::parse(&m) {
        // Codes outside 300..=699 cannot be parsed; any parsed one re-encodes.
        let n = e.encode(&mut buf, m.method(), &txid).expect("encode ErrorAnswer");
        let back = ErrorAnswer::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!(back, e);
    }
    if let Ok(p) = PersonasRequest::parse(&m) {
        let _ = (p.from_flock(&flock_pk), p.fresh(0, 0), p.fresh(u64::MAX, u64::MAX));
    }
    if let Ok(p) = PersonasChunk::parse(&m) {
        let _ = PersonasChunk::room(data.len(), &p.name);
        if let Ok(n) = p.encode(&mut buf, &txid) {
            let back = PersonasChunk::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
            assert_eq!(back, p);
        }
    }
    if let Ok(c) = Connect::parse(&m) {
        assert!(c.persona.len() <= login_wire::MAX_PERSONA_LEN && c.credential.len() <= login_wire::MAX_CREDENTIAL_LEN);
        let _ = (c.from_flock(&flock_pk), c.fresh(0, 0), c.fresh(u64::MAX, u64::MAX));
    }
    if let Ok(a) = Ack::parse(&m) {
        // Any 300..=699 code parses; all of them encode (with the reason of `code::reason`).
        let n = a.encode(&mut buf, &txid).expect("encode Ack");
        let back = Ack::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
        assert_eq!(back, a);
    }
    if let Ok(s) = Signal::parse(&m) {
        if let SignalBody::Candidate { candidate, mid } = s.body {
            assert!(candidate.len() <= login_wire::MAX_CANDIDATE_LEN && mid.is_none_or(|m| m.len() <= login_wire::MAX_MID_LEN));
        }
        if let Ok(n) = s.encode(&mut buf, &txid) {
            let back = Signal::parse(&Message::parse(&buf[..n]).unwrap()).unwrap();
            assert_eq!(back, s);
        }
        if let SignalBody::Sdp { offset, total, data } = s.body {
            let _ = SdpAssembly::default().add(offset, total, data, 1 << 16);
        }
    }
}

/// The peer protocol's views: opening (integrity under the fuzz key), LOOKUP and RELAY; what
/// parses re-encodes (sealed with the fuzz key) to the same view.
fn peer_views(m: &Message<'_>) {
    use flock_proto::wire::peer::{self, LookupAnswer, LookupRequest, Relay, Sender};
    let opened = peer::open(m, hmac_key());
    if opened.is_ok() {
        assert!(peer::is_peer(m) && m.has_fingerprint());
    }
    let sender = Sender::new(1, [5; 32], b"fuzz integrity key\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let txid = *m.transaction_id();
    let mut buf = vec![0u8; 4096];
    let reopen = |b: &[u8]| {
        let again = Message::parse(b).expect("peer message parses");
        assert_eq!(peer::open(&again, &sender.key), Ok(peer::Envelope { from: 1, digest: [5; 32] }));
        b.to_vec()
    };
    if let Ok(r) = LookupRequest::parse(m) {
        let n = peer::encode_lookup(&mut buf, &txid, &r.name, &sender).expect("encode LOOKUP");
        let bytes = reopen(&buf[..n]);
        assert_eq!(LookupRequest::parse(&Message::parse(&bytes).unwrap()), Ok(r));
        // Routing needs a FINGERPRINT (so does `peer::open`): without one the view still
        // parses, but the server never acts on it.
        if m.has_fingerprint() {
            assert_eq!(request_name(m), Some(r.name));
        }
    }
    if let Ok(a) = LookupAnswer::parse(m) {
        let n = match a {
            LookupAnswer::Found { name, addr, identity, lifetime_ms } => peer::encode_lookup_found(&mut buf, &txid, &name, addr, &identity, lifetime_ms, &sender),
            LookupAnswer::Refused { name, code } => peer::encode_lookup_error(&mut buf, &txid, &name, code, &sender),
        };
        if let Ok(n) = n {
            let bytes = reopen(&buf[..n]);
            let back = LookupAnswer::parse(&Message::parse(&bytes).unwrap()).unwrap();
            match (back, a) {
                (LookupAnswer::Found { addr: x, .. }, LookupAnswer::Found { addr: y, .. }) => assert_eq!(x, flock_proto::token::canonical(y)),
                (b, a) => assert_eq!(b, a),
            }
        }
    }
    if let Ok(r) = Relay::parse(m) {
        if m.has_fingerprint() {
            assert_eq!(request_name(m), Some(r.name));
        }
        let n = peer::encode_relay(&mut buf, r.inner.as_bytes(), &sender).expect("encode RELAY");
        let bytes = reopen(&buf[..n]);
        let again = Message::parse(&bytes).unwrap();
        assert_eq!(Relay::parse(&again).unwrap().inner.as_bytes(), r.inner.as_bytes());
    }
}

/// Chunks cut from the input fed in order to one assembly; a completed SDP is the bytes fed.
fn sdp_assembly(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut a = SdpAssembly::default();
    let mut fed: Vec<u8> = Vec::new();
    for _ in 0..8 {
        let (Ok(offset), Ok(total), Ok(len)) = (u.int_in_range(0u32..=64), u.int_in_range(0u32..=96), u.int_in_range(0usize..=48)) else {
            return;
        };
        let Ok(chunk) = u.bytes(len) else { return };
        match a.add(offset, total, chunk, 80) {
            Ok(Some(sdp)) => {
                fed.extend_from_slice(chunk);
                assert_eq!(sdp.as_bytes(), &fed[..]);
                assert_eq!(sdp.len(), total as usize);
                fed.clear();
            }
            Ok(None) => fed.extend_from_slice(chunk),
            // A complete value that is not UTF-8 is dropped: the assembly starts over.
            Err(AssemblyError::NotUtf8) => {
                fed.extend_from_slice(chunk);
                assert!(std::str::from_utf8(&fed).is_err());
                fed.clear();
            }
            // Refused chunks change nothing.
            Err(AssemblyError::OutOfOrder | AssemblyError::TooLarge) => {}
        }
    }
}

fn flock_key() -> &'static ring::signature::Ed25519KeyPair {
    static KEY: OnceLock<Arc<ring::signature::Ed25519KeyPair>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(keypair(200)))
}

fn keys() -> Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys { proof: ProofKeys::from_secret(b"fuzz server secret"), flock: Arc::new(keypair(200)) }).clone()
}

fn devices() -> &'static [(&'static str, u8)] {
    &[("alpha", 1), ("beta.home", 2), ("gamma-3", 3), ("alpha", 4)]
}

const SOURCES: [&str; 6] = ["192.0.2.1:4000", "192.0.2.1:4001", "198.51.100.7:9", "[2001:db8::1]:5000", "[::ffff:192.0.2.1]:4000", "203.0.113.9:65535"];

/// Flock methods and attributes the structured messages are drawn from.
const METHODS: [Method; 7] = [
    Method::BINDING,
    flock_proto::wire::method::REGISTER,
    flock_proto::wire::method::KEEPALIVE,
    flock_proto::wire::method::CHECK,
    flock_proto::wire::method::PERSONAS,
    flock_proto::wire::method::CONNECT,
    flock_proto::wire::method::SIGNAL,
];
const ATTRS: [u16; 24] = [
    flock_proto::wire::attr::NAME,
    flock_proto::wire::attr::PUBLIC_KEY,
    flock_proto::wire::attr::TIMESTAMP,
    flock_proto::wire::attr::SIGNATURE,
    flock_proto::wire::attr::NONCE,
    flock_proto::wire::attr::TOKEN,
    flock_proto::wire::attr::IDENTITY,
    flock_proto::wire::attr::KEEPALIVE_INTERVAL,
    flock_proto::wire::attr::CHALLENGE,
    flock_proto::wire::attr::SESSION,
    flock_proto::wire::attr::OFFSET,
    flock_proto::wire::attr::TOTAL,
    flock_proto::wire::attr::DATA,
    flock_proto::wire::attr::CHECKSUM,
    flock_proto::wire::attr::FLAGS,
    flock_proto::wire::attr::PERSONA,
    flock_proto::wire::attr::CREDENTIAL,
    flock_proto::wire::attr::SEQ,
    flock_proto::wire::attr::SIGNAL_KIND,
    flock_proto::wire::attr::MID,
    attr::XOR_MAPPED_ADDRESS,
    attr::ERROR_CODE,
    attr::MAPPED_ADDRESS,
    0x0022, // SOFTWARE-like, comprehension-optional range is 0x8000+: this one is required
];

/// A STUN message with flock attributes, well framed and fingerprinted: gets past the framing
/// checks into the typed parsers.
fn structured(u: &mut Unstructured<'_>, names: &[Name], txid: Option<TransactionId>) -> arbitrary::Result<Vec<u8>> {
    let method = *u.choose(&METHODS)?;
    let class = Class::from_bits(u.int_in_range(0..=3)?);
    let txid = match txid {
        Some(t) => t,
        None => u.arbitrary()?,
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut e = Encoder::new(&mut buf, MessageType::new(method, class), &txid).unwrap();
    let count = u.int_in_range(0..=10)?;
    for _ in 0..count {
        let typ = *u.choose(&ATTRS)?;
        let value: Vec<u8> = match (typ, u.int_in_range(0..=3)?) {
            (flock_proto::wire::attr::NAME, 0..=2) if !names.is_empty() => u.choose(names)?.as_bytes().to_vec(),
            (flock_proto::wire::attr::SIGNAL_KIND | flock_proto::wire::attr::SEQ | flock_proto::wire::attr::OFFSET | flock_proto::wire::attr::TOTAL | flock_proto::wire::attr::FLAGS, 0..=2) => {
                u.int_in_range(0u32..=4)?.to_be_bytes().to_vec()
            }
            (flock_proto::wire::attr::TIMESTAMP, 0..=2) => u.arbitrary::<u64>()?.to_be_bytes().to_vec(),
            (attr::ERROR_CODE, 0..=2) => {
                let code = u.int_in_range(300u16..=699)?;
                let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
                v.extend_from_slice(take(u, 8)?);
                v
            }
            _ => {
                let len = u.int_in_range(0..=80)?;
                u.bytes(len)?.to_vec()
            }
        };
        if e.attribute(typ, &value).is_err() {
            break;
        }
    }
    let n = if u.ratio(7, 8)? { e.fingerprint().unwrap_or(0) } else { e.finish() };
    Ok(buf[..n].to_vec())
}

/// Up to `max` bytes of the input.
fn take<'a>(u: &mut Unstructured<'a>, max: usize) -> arbitrary::Result<&'a [u8]> {
    let n = u.int_in_range(0..=max)?;
    u.bytes(n.min(u.len()))
}

struct Harness {
    server: Server<XorShift>,
    answer_small_binding: bool,
    now: Time,
    devices: Vec<(Device, SocketAddr)>,
    /// The last datagram the server sent on its own, and where.
    last_out: Option<(SocketAddr, Vec<u8>)>,
    /// The session nonce of the last CONNECT seen going out.
    last_session: Option<[u8; 16]>,
}

impl Harness {
    fn handle(&mut self, src: SocketAddr, datagram: &[u8]) -> Option<Answer> {
        let mut reply = [0u8; MAX_DATAGRAM];
        let n = self.server.handle(self.now, src, datagram, &mut reply).reply()?;
        let m = Message::parse(&reply[..n]).expect("an answer is a valid STUN message");
        // The one opt-in exception: `answer_small_binding` lets a Binding answer (20 + 24 + 8
        // bytes at most) outgrow its request.
        let binding_opt_in = self.answer_small_binding && m.method() == Method::BINDING && m.class() == Class::Success;
        let bound = if binding_opt_in { datagram.len().max(52) } else { datagram.len() };
        assert!(n <= bound, "answer of {n} bytes to a {}-byte request", datagram.len());
        assert_eq!(m.transaction_id()[..], datagram[8..20], "an answer keeps the transaction id");
        Some(match (m.method(), m.class()) {
            (_, Class::Error) => Answer::Error(ErrorAnswer::parse(&m).expect("an error answer reads")),
            (x, Class::Success) if x == flock_proto::wire::method::REGISTER => Answer::Registered(Registered::parse(&m).expect("a REGISTER answer reads")),
            (x, Class::Success) if x == flock_proto::wire::method::KEEPALIVE => Answer::KeptAlive(KeptAlive::parse(&m).expect("a KEEPALIVE answer reads")),
            _ => Answer::Silent,
        })
    }

    /// Takes every output of the server; returns when its timers next run.
    fn drain(&mut self) -> Option<Time> {
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            match self.server.poll_output(&mut buf) {
                Output::Transmit { dst, len } => {
                    let m = Message::parse(&buf[..len]).expect("a sent datagram is a valid STUN message");
                    if let Ok(c) = Connect::parse(&m) {
                        self.last_session = Some(c.session);
                    }
                    self.last_out = Some((dst, buf[..len].to_vec()));
                }
                Output::Event { .. } | Output::Policy(_) | Output::Alarm(_) => {}
                Output::Timeout(next) => return next,
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        let mut steps = 0;
        while let Some(t) = self.drain() {
            if t > until || steps > 256 {
                break;
            }
            self.now = self.now.max(t);
            self.server.handle_timeout(self.now);
            steps += 1;
        }
        self.now = until;
        self.server.handle_timeout(self.now);
        self.drain();
    }

    /// The appliance's answer to the last datagram the server sent it (PERSONAS, CONNECT, SIGNAL, CHECK).
    fn answer_last(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        let Some((dst, out)) = self.last_out.clone() else { return Ok(()) };
        let Ok(m) = Message::parse(&out) else { return Ok(()) };
        let txid = *m.transaction_id();
        let src = if u.ratio(7, 8)? { dst } else { SOURCES[u.choose_index(SOURCES.len())?].parse().unwrap() };
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = if let Ok(p) = PersonasRequest::parse(&m) {
            let list: &[u8] = match u.int_in_range(0..=2)? {
                0 => br#"[{"id":"alice","name":"Alice"},{"id":"bob","name":"Bob"}]"#,
                1 => b"[]",
                _ => take(u, 64)?,
            };
            let checksum: [u8; 32] = if u.ratio(7, 8)? { Sha256::digest(list).into() } else { u.arbitrary()? };
            let chunk = PersonasChunk {
                name: p.name,
                checksum,
                total: list.len() as u32,
                offset: p.offset,
                credentials_required: u.ratio(1, 4)?,
                data: list.get(p.offset as usize..).unwrap_or(&[]),
            };
            chunk.encode(&mut buf, &txid).ok()
        } else if let Ok(c) = Connect::parse(&m) {
            let error = if u.ratio(2, 3)? { None } else { Some(*u.choose(&[login_wire::code::BAD_CREDENTIALS, login_wire::code::DENIED, login_wire::code::BUSY, 400])?) };
            Ack { method: flock_proto::wire::method::CONNECT, name: c.name, session: c.session, seq: None, error }.encode(&mut buf, &txid).ok()
        } else if let Ok(s) = Signal::parse(&m) {
            let error = if u.ratio(7, 8)? { None } else { Some(login_wire::code::UNKNOWN_SESSION) };
            Ack { method: flock_proto::wire::method::SIGNAL, name: s.name, session: s.session, seq: Some(s.seq), error }.encode(&mut buf, &txid).ok()
        } else if m.method() == flock_proto::wire::method::CHECK {
            let d = &self.devices[u.choose_index(self.devices.len())?].0;
            match Check::parse(&m) {
                Ok(c) => registration::encode_check_answer(&mut buf, &txid, &c.name, &d.key, &c.challenge).ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        if let Some(n) = n {
            let d = buf[..n].to_vec();
            self.handle(src, &d);
        }
        Ok(())
    }

    /// A SIGNAL from an appliance for the last CONNECT's session.
    fn signal_in(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        let (d, src) = &self.devices[u.choose_index(self.devices.len())?];
        let session = match self.last_session {
            Some(s) if u.ratio(7, 8)? => s,
            _ => u.arbitrary()?,
        };
        let bytes;
        let body = match u.int_in_range(0..=2)? {
            0 => {
                let total = u.int_in_range(0u32..=2000)?;
                bytes = take(u, 200)?.to_vec();
                SignalBody::Sdp { offset: u.int_in_range(0..=total)?, total, data: &bytes }
            }
            1 => SignalBody::Candidate { candidate: "candidate:1 1 udp 1 192.0.2.1 4000 typ host", mid: u.ratio(1, 2)?.then_some("0") },
            _ => SignalBody::EndOfCandidates,
        };
        let sig = Signal { name: d.name, session, seq: u.int_in_range(0..=6)?, body };
        let mut buf = [0u8; MAX_DATAGRAM];
        let txid: TransactionId = u.arbitrary()?;
        if let Ok(n) = sig.encode(&mut buf, &txid) {
            let src = *src;
            let dgram = buf[..n].to_vec();
            self.handle(src, &dgram);
        }
        Ok(())
    }

    fn command(&mut self, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
        let session = u.int_in_range(0u64..=3)?;
        let text = |u: &mut Unstructured<'_>| -> arbitrary::Result<String> {
            Ok(match u.int_in_range(0..=3)? {
                0 => "alice".into(),
                1 => "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n".into(),
                2 => "x".repeat(u.int_in_range(0..=40_000)?),
                _ => u.arbitrary()?,
            })
        };
        let cmd = match u.int_in_range(0..=5)? {
            0 => {
                let name = if u.ratio(3, 4)? { self.devices[u.choose_index(self.devices.len())?].0.name } else { Name::normalize(take(u, 12)?).unwrap_or(self.devices[0].0.name) };
                Command::Open { name }
            }
            1 => Command::Login { persona: text(u)?, credential: text(u)? },
            2 => Command::Answer { sdp: text(u)? },
            3 => Command::Candidate(Candidate { candidate: text(u)?, mid: if u.arbitrary()? { Some(text(u)?) } else { None } }),
            4 => Command::EndOfCandidates,
            _ => Command::Close,
        };
        self.server.command(self.now, session, cmd);
        self.drain();
        Ok(())
    }
}

/// A `Server` fed arbitrary datagrams from arbitrary sources, real and mutated flock messages,
/// log-in commands and time steps: nothing panics, every immediate answer is a valid STUN
/// message no larger than its request, and every datagram sent on its own is valid STUN.
pub fn server_handle(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = run_server(&mut u);
}

fn run_server(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut config = ServerConfig {
        max_registrations: u.int_in_range(1..=8)?,
        max_pending_checks: u.int_in_range(1..=4)?,
        checks_per_ip_burst: u.int_in_range(0..=3)?,
        answer_small_binding: u.arbitrary()?,
        rate_table_slots: u.int_in_range(1..=64)?,
        ..ServerConfig::default()
    };
    config.login.max_sessions = u.int_in_range(1..=4)?;
    config.login.max_candidates = u.int_in_range(1..=4)?;
    config.login.persona_cache_bytes = u.int_in_range(0..=4096)?;
    config.policy.admission = u.arbitrary()?;
    config.policy.audit = u.arbitrary()?;
    config.policy.max_admissions = u.int_in_range(1..=4)?;
    config.policy.max_events = u.int_in_range(0..=8)?;
    let seed = u.arbitrary::<u64>()? | 1;
    let mut h = Harness {
        answer_small_binding: config.answer_small_binding,
        server: Server::new(config, keys(), XorShift(seed)),
        now: Time(1_700_000_000_000),
        devices: devices().iter().map(|&(n, s)| (Device::new(n, s), SOURCES[s as usize % SOURCES.len()].parse().unwrap())).collect(),
        last_out: None,
        last_session: None,
    };
    let names: Vec<Name> = h.devices.iter().map(|(d, _)| d.name).collect();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0u8..=10)? {
            // Raw bytes from anywhere.
            0 => {
                let src: SocketAddr = SOURCES[u.choose_index(SOURCES.len())?].parse().unwrap();
                let len = u.int_in_range(0..=MAX_DATAGRAM)?;
                let d = u.bytes(len.min(u.len()))?.to_vec();
                h.handle(src, &d);
            }
            // Well-framed flock message with arbitrary attributes.
            1 | 2 => {
                let src: SocketAddr = SOURCES[u.choose_index(SOURCES.len())?].parse().unwrap();
                let d = structured(u, &names, None)?;
                h.handle(src, &d);
            }
            // A device registers (nonce round trip through `absorb`), maybe from a new address.
            3 => {
                let i = u.choose_index(h.devices.len())?;
                if u.ratio(1, 4)? {
                    h.devices[i].1 = SOURCES[u.choose_index(SOURCES.len())?].parse().unwrap();
                }
                let skew = u.int_in_range(0u64..=1_000_000)?;
                let ts = if u.arbitrary()? { h.now.0 + skew } else { h.now.0.saturating_sub(skew) };
                let txid = h.devices[i].0.txid();
                let mut d = h.devices[i].0.register_bytes(ts, &txid);
                if u.ratio(1, 8)? && !d.is_empty() {
                    let at = u.choose_index(d.len())?;
                    d[at] ^= u.int_in_range(1u8..=255)?;
                }
                let src = h.devices[i].1;
                if let Some(a) = h.handle(src, &d) {
                    h.devices[i].0.absorb(&a);
                }
            }
            // Keep-alive of a registered device.
            4 => {
                let i = u.choose_index(h.devices.len())?;
                if h.devices[i].0.token.is_some() {
                    let txid = h.devices[i].0.txid();
                    let d = h.devices[i].0.keepalive_bytes(&txid);
                    let src = h.devices[i].1;
                    if let Some(a) = h.handle(src, &d) {
                        h.devices[i].0.absorb(&a);
                    }
                }
            }
            5 => h.advance(u.int_in_range(0u64..=120_000)?),
            6 => h.command(u)?,
            7 => h.answer_last(u)?,
            8 => h.signal_in(u)?,
            9 => {
                let i = u.choose_index(h.devices.len())?;
                let (name, fp) = (h.devices[i].0.name, h.devices[i].0.fingerprint());
                h.server.admission(h.now, &name, &fp, u.arbitrary()?);
                h.drain();
            }
            _ => {
                // A reply to the last datagram sent, with its transaction id but arbitrary content.
                if let Some((dst, out)) = h.last_out.clone() {
                    let txid: TransactionId = out.get(8..20).and_then(|t| t.try_into().ok()).unwrap_or_default();
                    let d = structured(u, &names, Some(txid))?;
                    h.handle(dst, &d);
                }
            }
        }
        for (d, _) in &h.devices {
            let _ = h.server.lookup(h.now, &d.name);
        }
    }
    let _ = (h.server.stats(), h.server.occupancy(), h.server.login_occupancy(), h.server.admission_occupancy(), h.server.table_bytes());
    Ok(())
}

/// The gateway's parsers of browser messages and of the appliance's persona list.
pub fn ws_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = flock_ws::fuzzing::parse(text) {
            let _ = r.kind();
        }
    }
    if let Ok(list) = flock_ws::fuzzing::decode_personas(data) {
        assert!(list.len() <= 256);
        assert!(list.iter().all(|p| p.id.len() <= 255 && p.name.len() <= 255));
    }
}

/// What the gateway reads before a websocket: PROXY headers, request heads, forwarding headers
/// and the redirect listener's answer (their promises are checked in flock-ws).
pub fn ws_preface(data: &[u8]) {
    flock_ws::fuzzing::connection_preface(data);
}

/// TOML for the config sections that have a library type: the gateway's `[ws]` section and a
/// `[[plugins.load]]` entry. flockd's own `Config` lives in the binary crate (its unit tests cover it).
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = toml::from_str::<flock_ws::GatewayConfig>(text);
    let _ = toml::from_str::<flock_plugins::PluginSpec>(text);
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Sections {
        ws: Option<flock_ws::GatewayConfig>,
        plugins: Option<PluginsSection>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct PluginsSection {
        load: Vec<flock_plugins::PluginSpec>,
    }
    let _ = toml::from_str::<Sections>(text);
}
