//! docs/PROTOCOL.md's examples are produced by the code. This test renders them again and
//! compares; run with `FLOCK_BLESS=1` to rewrite the section after changing the wire format.

use flock_proto::identity;
use flock_proto::membership::{Member, Membership};
use flock_proto::server::ServerConfig;
use flock_proto::stun::{self, Class, Encoder, MessageType, Method};
use flock_proto::wire::registration::{
    code, ErrorAnswer, Keepalive, KeptAlive, Registered, TryAlternate,
};
use flock_testkit::hand_driven::*;
use std::fmt::Write;

const MARKER: &str = "## 11. Examples\n";

fn hex_block(bytes: &[u8]) -> String {
    let mut s = String::from("```\n");
    for line in bytes.chunks(16) {
        let groups: Vec<String> = line.chunks(4).map(identity::to_hex).collect();
        writeln!(s, "{}", groups.join(" ")).unwrap();
    }
    s.push_str("```\n");
    s
}

fn render() -> String {
    let mut out = String::new();
    let mut section = |title: &str, note: &str, bytes: &[u8]| {
        write!(
            out,
            "\n### {title} ({} bytes)\n\n{note}\n\n{}",
            bytes.len(),
            hex_block(bytes)
        )
        .unwrap();
    };
    let mut s = server(ServerConfig::default());
    let src = addr("192.0.2.1:32853");
    let mut d = Device::new("my-box", 1);
    let mut buf = [0u8; 1200];
    let mut reply = [0u8; 1200];

    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &[0xb7; 12]).unwrap();
    e.attribute(stun::attr::SOFTWARE, b"flock-appliance")
        .unwrap();
    let n = e.fingerprint().unwrap();
    section(
        "Binding request",
        "SOFTWARE `flock-appliance` pads the request so that the IPv4 answer fits; FINGERPRINT last. Over IPv6 the answer would be 52 bytes: this request gets none there (§4.1).",
        &buf[..n],
    );
    let r = s.handle(T0, src, &buf[..n], &mut reply).reply().unwrap();
    section(
        "Binding success",
        "XOR-MAPPED-ADDRESS 192.0.2.1:32853, FINGERPRINT.",
        &reply[..r],
    );

    let key = identity::public_key(&d.key);
    let txid = [0x01; 12];
    let req = d.register_bytes(T0.0, &txid);
    section(
        "REGISTER request, first attempt",
        &format!(
            "Name `my-box`, public key `{}`, timestamp {} ms, no NONCE, SIGNATURE, FINGERPRINT.",
            identity::to_hex(&key),
            T0.0
        ),
        &req,
    );
    let r = s.handle(T0, src, &req, &mut reply).reply().unwrap();
    let m = stun::Message::parse(&reply[..r]).unwrap();
    let err = ErrorAnswer::parse(&m).unwrap();
    assert_eq!(err.code, code::NONCE_REQUIRED);
    section(
        "REGISTER error 401",
        "ERROR-CODE 401 \"Nonce required\", NONCE bound to 192.0.2.1:32853, FINGERPRINT.",
        &reply[..r],
    );
    d.nonce = err.nonce;

    let txid = [0x02; 12];
    let req = d.register_bytes(T0.0, &txid);
    section(
        "REGISTER request with nonce",
        "As the first attempt, with the NONCE and a signature covering it.",
        &req,
    );
    let r = s.handle(T0, src, &req, &mut reply).reply().unwrap();
    let m = stun::Message::parse(&reply[..r]).unwrap();
    let reg = Registered::parse(&m).unwrap();
    d.token = Some(reg.token);
    section(
        "REGISTER success",
        "XOR-MAPPED-ADDRESS, TOKEN, KEEPALIVE-INTERVAL 30000 ms, FINGERPRINT.",
        &reply[..r],
    );

    let txid = [0x03; 12];
    let ka = Keepalive {
        name: d.name,
        identity: d.fingerprint(),
        token: d.token.unwrap(),
    };
    let n = ka.encode(&mut buf, &txid).unwrap();
    section(
        "KEEPALIVE request",
        "NAME, IDENTITY (SHA-256 of the public key), TOKEN, FINGERPRINT.",
        &buf[..n],
    );
    let r = s.handle(T0, src, &buf[..n], &mut reply).reply().unwrap();
    let m = stun::Message::parse(&reply[..r]).unwrap();
    assert!(KeptAlive::parse(&m).unwrap().token.is_none());
    section(
        "KEEPALIVE success",
        "XOR-MAPPED-ADDRESS, FINGERPRINT (the token is young, so none is sent).",
        &reply[..r],
    );
    let r = s
        .handle(T0, addr("192.0.2.1:32854"), &buf[..n], &mut reply)
        .reply()
        .unwrap();
    section(
        "KEEPALIVE error 441",
        "The same request from another port: the token is bound to the address.",
        &reply[..r],
    );

    let txid = [0x04; 12];
    // Signed later than the REGISTER taken above (the server takes a name's REGISTERs in
    // timestamp order).
    let req = d.register_bytes(T0.0 + 1, &txid);
    // From a new address: needs its own nonce first.
    let new_src = addr("192.0.2.1:40000");
    let r = s.handle(T0, new_src, &req, &mut reply).reply().unwrap();
    d.nonce = ErrorAnswer::parse(&stun::Message::parse(&reply[..r]).unwrap())
        .unwrap()
        .nonce;
    let req = d.register_bytes(T0.0 + 1, &txid);
    assert!(s.handle(T0, new_src, &req, &mut reply).reply().is_none());
    let (dst, check) = drain(&mut s).remove(0);
    assert_eq!(dst, src);
    section(
        "CHECK request",
        &format!("Sent to the old address after a REGISTER from 192.0.2.1:40000: NAME, CHALLENGE, TIMESTAMP (valid until the end of the 60 s window), SIGNATURE by the flock key (public key `{}`), PADDING, FINGERPRINT.", identity::to_hex(&identity::public_key(&keys(b"").flock))),
        &check,
    );
    section(
        "CHECK success",
        "The appliance's answer: NAME, PUBLIC-KEY, SIGNATURE over the challenge, FINGERPRINT.",
        &d.answer_check(&check),
    );
    let _ = flock_proto::wire::method::CHECK;

    // A flock of three: the server that does not own `my-box` points at the one that does.
    let ips = ["192.0.2.10", "192.0.2.11", "192.0.2.12"];
    let owner = d.name.hash().server_index(3);
    let me = (owner + 1) % 3;
    let servers = ips
        .iter()
        .map(|ip| Member {
            udp: addr(&format!("{ip}:3478")),
            ws: addr(&format!("{ip}:443")),
        })
        .collect();
    let flock = Membership { servers, me };
    let mut s = server(ServerConfig {
        flock: flock.flock_config([0; 32]),
        ..ServerConfig::default()
    });
    d.nonce = None;
    let req = d.register_bytes(T0.0, &[0x05; 12]);
    let r = s.handle(T0, src, &req, &mut reply).reply().unwrap();
    assert_eq!(
        TryAlternate::parse(&stun::Message::parse(&reply[..r]).unwrap())
            .unwrap()
            .alternate,
        flock.servers[owner].udp
    );
    section(
        "REGISTER error 300",
        &format!(
            "From server {me} of a flock of three (UDP 192.0.2.10–12:3478, websocket 192.0.2.10–12:443, in that order; `my-box` is server {owner}'s): ERROR-CODE 300 \"Try alternate\", ALTERNATE-SERVER {} (not XORed), FINGERPRINT. The request was the first attempt's with transaction id `05`×12; membership digest (§2, over both addresses of each server) `{}`.",
            flock.servers[owner].udp,
            identity::to_hex(&flock.digest())
        ),
        &reply[..r],
    );
    out
}

#[test]
fn protocol_doc_examples_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let at = doc
        .find(MARKER)
        .expect("docs/PROTOCOL.md has an examples section")
        + MARKER.len();
    let intro = format!("\nGenerated by `proto/tests/protocol_doc.rs` with fixed keys (appliance key seed `01`×32, flock key seed `c8`×32), server secret `server secret`, boot `{}` (§6), time 1700000000000 ms and fixed transaction ids.\n", identity::to_hex(&BOOT));
    let expected = format!("{}{intro}{}", &doc[..at], render());
    if std::env::var_os("FLOCK_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    assert!(doc == expected, "docs/PROTOCOL.md examples are out of date: run FLOCK_BLESS=1 cargo test -p flock-proto --test protocol_doc");
}
