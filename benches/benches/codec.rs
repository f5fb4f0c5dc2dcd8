//! Micro-benchmarks of the wire codec and the per-packet primitives: STUN parse/encode,
//! FINGERPRINT, name normalization and routing, token MACs, and (for scale) one Ed25519 verify.
//!
//!     cargo bench -p flock-benches --bench codec
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flock_proto::identity::Fingerprint;
use flock_proto::stun::{attr, Class, Encoder, Message, MessageType, Method, FINGERPRINT_XOR};
use flock_proto::testing::owner_core;
use flock_proto::testing::{keypair, Answer, Device, XorShift};
use flock_proto::token::{ProofKeys, Token};
use flock_proto::wire::registration::{Keepalive, Register};
use flock_proto::{Name, Time};
use std::hint::black_box;
use std::net::SocketAddr;

const NOW: Time = Time(1_700_000_000_000);
/// 8-byte name: KEEPALIVE is 100 bytes, REGISTER with a nonce 176.
const NAME: &str = "box-0001";

fn src() -> SocketAddr {
    "192.0.2.7:40000".parse().unwrap()
}

/// A Binding request padded with SOFTWARE so the answer is not larger (48 bytes).
fn binding_request() -> Vec<u8> {
    let mut buf = [0u8; 64];
    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &[1; 12]).unwrap();
    e.attribute(attr::SOFTWARE, b"flock-bench/0.1").unwrap();
    let n = e.fingerprint().unwrap();
    buf[..n].to_vec()
}

struct Fixture {
    proof: ProofKeys,
    name: Name,
    fp: Fingerprint,
    token: Token,
    keepalive: Vec<u8>,
    register: Vec<u8>,
    binding: Vec<u8>,
}

fn fixture() -> Fixture {
    let proof = ProofKeys::from_secret(b"bench secret");
    let mut device = Device::new(NAME, 3);
    let name = device.name;
    let fp = device.fingerprint();
    let token = proof.issue_token(&name, &fp, src(), (NOW.as_secs() + 3600) as u32);
    device.token = Some(token);
    device.nonce = Some(proof.issue_nonce(src(), (NOW.as_secs() + 600) as u32));
    let txid = device.txid();
    let keepalive = device.keepalive_bytes(&txid);
    let txid = device.txid();
    let register = device.register_bytes(NOW.0, &txid);
    Fixture {
        proof,
        name,
        fp,
        token,
        keepalive,
        register,
        binding: binding_request(),
    }
}

fn stun(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("stun");
    for (label, bytes) in [
        ("binding", &f.binding),
        ("keepalive", &f.keepalive),
        ("register", &f.register),
    ] {
        assert!(Message::parse(bytes).is_ok(), "{label} parses");
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("parse/{label}-{}B", bytes.len()), |b| {
            b.iter(|| Message::parse(black_box(bytes)).is_ok())
        });
    }

    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Success,
    };
    let txid = [9u8; 12];
    let mapped = src();
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode/binding-success", |b| {
        b.iter(|| {
            let mut buf = [0u8; 64];
            let mut e = Encoder::new(&mut buf, typ, black_box(&txid)).unwrap();
            e.xor_mapped_address(black_box(mapped)).unwrap();
            let n = e.fingerprint().unwrap();
            black_box(buf);
            n
        })
    });

    let body = [0x5au8; 100];
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("fingerprint/100B", |b| {
        b.iter(|| crc32fast::hash(black_box(&body)) ^ FINGERPRINT_XOR)
    });
    g.finish();
}

fn name(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("name");
    g.throughput(Throughput::Elements(1));
    let raw = b"Appliance-12345";
    g.bench_function("normalize+hash", |b| {
        b.iter(|| Name::normalize(black_box(raw)).unwrap().hash())
    });
    assert!(owner_core(&f.keepalive, 2).is_some());
    g.bench_function("owner_core/keepalive", |b| {
        b.iter(|| owner_core(black_box(&f.keepalive), black_box(2)))
    });
    g.finish();
}

fn token(c: &mut Criterion) {
    let f = fixture();
    let addr = src();
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    assert!(f
        .proof
        .verify_token(&f.name, &f.fp, addr, &f.token, NOW.as_secs())
        .is_ok());
    g.bench_function("verify", |b| {
        b.iter(|| {
            f.proof.verify_token(
                black_box(&f.name),
                black_box(&f.fp),
                black_box(addr),
                black_box(&f.token),
                NOW.as_secs(),
            )
        })
    });
    let expiry = (NOW.as_secs() + 3600) as u32;
    g.bench_function("issue", |b| {
        b.iter(|| {
            f.proof.issue_token(
                black_box(&f.name),
                black_box(&f.fp),
                black_box(addr),
                black_box(expiry),
            )
        })
    });
    g.finish();
}

fn signature(c: &mut Criterion) {
    let f = fixture();
    let m = Message::parse(&f.register).unwrap();
    let req = Register::parse(&m).unwrap();
    assert!(req.signature_ok());
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify/register", |b| {
        b.iter(|| black_box(&req).signature_ok())
    });
    g.finish();
}

/// The fixture's requests are what a server accepts (guards against benchmarking error paths).
fn sanity() {
    use flock_proto::server::{Keys, Server, ServerConfig};
    let f = fixture();
    let keys = Keys {
        proof: f.proof.clone(),
        flock: std::sync::Arc::new(keypair(200)),
    };
    let mut s = Server::new(ServerConfig::default(), keys, XorShift(1));
    let mut reply = [0u8; 1500];
    let n = s
        .handle(NOW, src(), &f.register, &mut reply)
        .reply()
        .expect("answer");
    assert!(matches!(Answer::read(&reply[..n]), Answer::Registered(_)));
    let n = s
        .handle(NOW, src(), &f.keepalive, &mut reply)
        .reply()
        .expect("answer");
    assert!(matches!(Answer::read(&reply[..n]), Answer::KeptAlive(_)));
    let m = Message::parse(&f.keepalive).unwrap();
    assert_eq!(Keepalive::parse(&m).unwrap().token, f.token);
    assert_eq!(m.method(), flock_proto::wire::method::KEEPALIVE);
    assert!(Register::parse(&Message::parse(&f.register).unwrap())
        .unwrap()
        .nonce
        .is_some());
}

fn all(c: &mut Criterion) {
    sanity();
    stun(c);
    name(c);
    token(c);
    signature(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
