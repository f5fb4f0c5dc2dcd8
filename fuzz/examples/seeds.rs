//! Writes the seed corpora `fuzz/corpus/<target>/` from real messages: RFC 5769 vectors, every
//! flock message as the encoders write it (fixed keys and ids: the output is deterministic),
//! the JSON transcript of docs/PROTOCOL.md §10 and the TOML of docs/CONFIG.md.
//!
//!     cd fuzz && cargo run --example seeds

use flock_proto::identity;
use flock_proto::wire::login::{self as login_wire, Ack, PersonasChunk, Signal, SignalBody};
use flock_proto::wire::registration::{self, ErrorAnswer, Keepalive, KeptAlive, Registered};
use flock_proto::stun::{Class, Encoder, MessageType, Method, TransactionId};
use flock_proto::testing::{keypair, Device};
use flock_proto::token::{Nonce, Token};
use std::fs;
use std::path::{Path, PathBuf};

const TXID: TransactionId = [0xB7, 0xE7, 0xA7, 0x01, 0xBC, 0x34, 0xD6, 0x86, 0xFA, 0x87, 0xDF, 0xAE];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = root.join("../docs");
    let stun = stun_seeds();

    write(root, "stun_parse", &stun);
    write(root, "flock_messages", &stun);
    // The server target reads its input as a list of operations; real messages are as good a
    // start as any (libFuzzer's value profile finds the op codes), plus an op-rich blob.
    let mut server = stun.clone();
    server.push(("ops-mixed".into(), (0u8..=255).cycle().step_by(7).take(2048).collect()));
    write(root, "server_handle", &server);

    let protocol = fs::read_to_string(docs.join("PROTOCOL.md")).expect("docs/PROTOCOL.md");
    let mut json: Vec<(String, Vec<u8>)> = protocol
        .lines()
        .filter_map(|l| l.strip_prefix("→ ").or_else(|| l.strip_prefix("← ")))
        .filter(|l| l.starts_with('{'))
        .enumerate()
        .map(|(i, l)| (format!("protocol-{i:02}"), l.as_bytes().to_vec()))
        .collect();
    json.push(("personas-list".into(), br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#.to_vec()));
    json.push(("personas-empty".into(), b"[]".to_vec()));
    json.push(("candidate-null-mid".into(), br#"{"type":"candidate","candidate":"candidate:1 1 udp 1 192.0.2.1 1 typ host","sdpMid":null}"#.to_vec()));
    write(root, "ws_json", &json);

    let config = fs::read_to_string(docs.join("CONFIG.md")).expect("docs/CONFIG.md");
    let mut toml = Vec::new();
    let mut block = String::new();
    let mut inside = false;
    for line in config.lines() {
        match (inside, line.trim_start().starts_with("```")) {
            (false, true) if line.contains("toml") => inside = true,
            (true, true) => {
                toml.push((format!("config-{}", toml.len()), block.clone().into_bytes()));
                block.clear();
                inside = false;
            }
            (true, false) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    // Each section alone, and the [ws] section's body alone (a GatewayConfig by itself).
    let whole = toml.first().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let mut sections: Vec<String> = Vec::new();
    for line in whole.lines() {
        if line.starts_with('[') || sections.is_empty() {
            sections.push(String::new());
        }
        let last = sections.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    for (i, s) in sections.iter().enumerate() {
        toml.push((format!("section-{i:02}"), s.clone().into_bytes()));
        if s.starts_with("[ws]") || s.starts_with("[[plugins.load]]") {
            let body: String = s.lines().skip(1).map(|l| format!("{l}\n")).collect();
            toml.push((format!("body-{i:02}"), body.into_bytes()));
        }
    }
    write(root, "config_toml", &toml);
}

fn write(root: &Path, target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir: PathBuf = root.join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).unwrap();
    }
    println!("{target}: {} seeds", seeds.len());
}

fn stun_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("rfc5769-request".into(), hex(RFC5769_REQUEST)),
        ("rfc5769-ipv4-response".into(), hex(RFC5769_IPV4)),
        ("rfc5769-ipv6-response".into(), hex(RFC5769_IPV6)),
    ];
    let mut buf = [0u8; 1500];
    let mut push = |name: &str, n: usize, buf: &[u8]| out.push((name.to_string(), buf[..n].to_vec()));

    // Binding request (padded to 48 bytes as appliances send it) and success.
    let mut e = Encoder::new(&mut buf, MessageType::new(Method::BINDING, Class::Request), &TXID).unwrap();
    e.attribute(flock_proto::stun::attr::PADDING, &[0; 16]).unwrap();
    let n = e.fingerprint().unwrap();
    push("binding-request", n, &buf);
    let mut e = Encoder::new(&mut buf, MessageType::new(Method::BINDING, Class::Success), &TXID).unwrap();
    e.xor_mapped_address("192.0.2.1:32853".parse().unwrap()).unwrap();
    let n = e.fingerprint().unwrap();
    push("binding-success", n, &buf);
    let mut e = Encoder::new(&mut buf, MessageType::new(Method::BINDING, Class::Success), &TXID).unwrap();
    e.xor_mapped_address("[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap()).unwrap();
    e.message_integrity_sha256(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzz integrity key")).unwrap();
    let n = e.fingerprint().unwrap();
    push("binding-success-v6-integrity", n, &buf);

    let mut d = Device::new("my-box", 1);
    let name = d.name;
    let token = Token { expiry: 1_700_003_600, mac: [0x5A; 16] };
    let nonce = Nonce { expiry: 1_700_000_600, mac: [0x3C; 12] };
    let n = registration::encode_register(&mut buf, &TXID, &name, &d.key, 1_700_000_000_000, None).unwrap();
    push("register", n, &buf);
    let n = registration::encode_register(&mut buf, &TXID, &name, &d.key, 1_700_000_000_000, Some(nonce)).unwrap();
    push("register-nonce", n, &buf);
    let n = ErrorAnswer { code: registration::code::NONCE_REQUIRED, nonce: Some(nonce) }.encode(&mut buf, flock_proto::wire::method::REGISTER, &TXID).unwrap();
    push("register-401", n, &buf);
    let n = ErrorAnswer { code: registration::code::NAME_TAKEN, nonce: None }.encode(&mut buf, flock_proto::wire::method::REGISTER, &TXID).unwrap();
    push("register-409", n, &buf);
    let n = Registered { mapped: "192.0.2.1:4000".parse().unwrap(), token, keepalive_interval_ms: 30_000 }.encode(&mut buf, &TXID).unwrap();
    push("registered", n, &buf);
    d.token = Some(token);
    let n = Keepalive { name, identity: d.fingerprint(), token }.encode(&mut buf, &TXID).unwrap();
    push("keepalive", n, &buf);
    let n = KeptAlive { mapped: "[2001:db8::1]:5000".parse().unwrap(), token: Some(token) }.encode(&mut buf, &TXID).unwrap();
    push("keptalive", n, &buf);
    let flock = keypair(200);
    let sig = registration::sign_check(&flock, &name, &[0x77; 16], 1_700_000_010_000);
    let n = registration::encode_check(&mut buf, &TXID, &name, &[0x77; 16], 1_700_000_010_000, &sig).unwrap();
    push("check", n, &buf);
    let n = registration::encode_check_answer(&mut buf, &TXID, &name, &d.key, &[0x77; 16]).unwrap();
    push("check-answer", n, &buf);

    let list = br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#;
    let sum: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(list)).into();
    let n = login_wire::encode_personas_request(&mut buf, &TXID, &name, 0, None, 1_700_000_010_000, &flock).unwrap();
    push("personas-request", n, &buf);
    let n = login_wire::encode_personas_request(&mut buf, &TXID, &name, 0, Some(&sum), 1_700_000_010_000, &flock).unwrap();
    push("personas-request-known", n, &buf);
    let chunk = PersonasChunk { name, checksum: sum, total: list.len() as u32, offset: 0, credentials_required: false, data: list };
    let n = chunk.encode(&mut buf, &TXID).unwrap();
    push("personas-chunk", n, &buf);
    let n = PersonasChunk { credentials_required: true, data: &[], ..chunk }.encode(&mut buf, &TXID).unwrap();
    push("personas-credentials-required", n, &buf);
    let session = [0x42; 16];
    let n = login_wire::encode_connect(&mut buf, &TXID, &name, &session, "alice", b"pwd:wonderland", 1_700_000_010_000, &flock).unwrap();
    push("connect", n, &buf);
    let ack = Ack { method: flock_proto::wire::method::CONNECT, name, session, seq: None, error: None };
    let n = ack.encode(&mut buf, &TXID).unwrap();
    push("connect-ack", n, &buf);
    let n = Ack { error: Some(login_wire::code::BAD_CREDENTIALS), ..ack }.encode(&mut buf, &TXID).unwrap();
    push("connect-460", n, &buf);
    let n = Ack { method: flock_proto::wire::method::SIGNAL, seq: Some(3), ..ack }.encode(&mut buf, &TXID).unwrap();
    push("signal-ack", n, &buf);
    let n = Ack { method: flock_proto::wire::method::SIGNAL, seq: Some(3), error: Some(login_wire::code::UNKNOWN_SESSION), ..ack }.encode(&mut buf, &TXID).unwrap();
    push("signal-481", n, &buf);
    // Peer protocol (sealed with the fuzz target's integrity key, so `open` succeeds).
    let sender = flock_proto::wire::peer::Sender::new(1, [5; 32], b"fuzz integrity key\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let name: flock_proto::Name = "my-box".parse().unwrap();
    let n = flock_proto::wire::peer::encode_lookup(&mut buf, &TXID, &name, &sender).unwrap();
    push("peer-lookup", n, &buf);
    let n = flock_proto::wire::peer::encode_lookup_found(&mut buf, &TXID, &name, "192.0.2.7:40000".parse().unwrap(), &[3; 12], 41_000, &sender).unwrap();
    push("peer-lookup-found", n, &buf);
    let n = flock_proto::wire::peer::encode_lookup_error(&mut buf, &TXID, &name, flock_proto::wire::peer::code::NOT_FOUND, &sender).unwrap();
    push("peer-lookup-404", n, &buf);
    let mut inner = [0u8; 1200];
    let k = Ack { method: flock_proto::wire::method::CONNECT, name, session: [9; 16], seq: None, error: None }.encode(&mut inner, &TXID).unwrap();
    let n = flock_proto::wire::peer::encode_relay(&mut buf, &inner[..k], &sender).unwrap();
    push("peer-relay", n, &buf);
    let sdp = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\na=sctp-port:5000\r\n";
    for (i, body) in [
        SignalBody::Sdp { offset: 0, total: sdp.len() as u32, data: sdp },
        SignalBody::Candidate { candidate: "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host", mid: Some("0") },
        SignalBody::Candidate { candidate: "candidate:2 1 udp 2122260223 192.0.2.9 61000 typ host", mid: None },
        SignalBody::EndOfCandidates,
    ]
    .into_iter()
    .enumerate()
    {
        let n = Signal { name, session, seq: i as u32, body }.encode(&mut buf, &TXID).unwrap();
        push(&format!("signal-{i}"), n, &buf);
    }
    let _ = identity::public_key(&flock);
    out
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

// RFC 5769 §2.1–2.3 (as in proto/src/stun/tests.rs).
const RFC5769_REQUEST: &str = "
    000100582112a442b7e7a701bc34d686fa87dfae
    802200105354554e20746573742063 6c69656e74
    002400046e0001ff 80290008932ff9b151263b36
    000600096576746a3a68367659202020
    000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2
    80280004e57a3bcf";
const RFC5769_IPV4: &str = "
    0101003c2112a442b7e7a701bc34d686fa87dfae
    8022000b7465737420766563746f7220
    002000080001a147e112a643
    000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
    80280004c07d4c96";
const RFC5769_IPV6: &str = "
    010100482112a442b7e7a701bc34d686fa87dfae
    8022000b7465737420766563746f7220
    002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9
    00080014a382954e4be67bf11784c97c8292c275bfe3ed41
    80280004c8fb0b4c";
