//! Amplification over the wire: from raw sockets that never proved anything, send N datagrams
//! of every kind an unverified source can send, count every byte that comes back, and check
//! that no kind gets more bytes back than it sent (and no single answer is larger than its
//! request). The table is printed on stdout (`--nocapture`).
use flock_proto::stun::{attr, Class, Encoder, MessageType, Method, TransactionId};
use flock_proto::testing::{keypair, Answer, Device};
use flock_proto::token::{Nonce, Token};
use flock_proto::wire::login::{self as login_wire, Ack, PersonasChunk, Signal, SignalBody};
use flock_proto::wire::registration::{self, code, Keepalive};
use flock_proto::wire::{attr as fattr, method};
use flock_proto::Name;
use flock_tests::{now_ms, raw_client, register_over, request, Flockd, TempDir};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Datagrams of each kind.
const N: usize = 20;
/// How long to listen for answers after the last datagram of a kind.
const LISTEN: Duration = Duration::from_millis(300);

struct Row {
    kind: &'static str,
    sent: usize,
    sent_bytes: usize,
    answers: usize,
    received_bytes: usize,
}

/// Sends every datagram of `kind` from a fresh socket, collects what comes back.
fn measure(server: SocketAddr, kind: &'static str, datagrams: &[Vec<u8>]) -> Row {
    let sock = client(server.is_ipv6());
    measure_from(&sock, server, kind, datagrams)
}

fn measure_from(
    sock: &UdpSocket,
    server: SocketAddr,
    kind: &'static str,
    datagrams: &[Vec<u8>],
) -> Row {
    let mut by_txid: HashMap<Vec<u8>, usize> = HashMap::new();
    for d in datagrams {
        if d.len() >= 20 {
            let e = by_txid.entry(d[8..20].to_vec()).or_insert(usize::MAX);
            *e = (*e).min(d.len());
        }
        sock.send_to(d, server).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = Instant::now() + LISTEN;
    let mut buf = [0u8; 2048];
    let (mut answers, mut received_bytes) = (0, 0);
    while answers < 10 * datagrams.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        answers += 1;
        received_bytes += n;
        // Every answer names the transaction it answers and is no larger than that request.
        let req_len = buf.get(8..20).and_then(|t| by_txid.get(t)).copied();
        let req_len = req_len
            .unwrap_or_else(|| panic!("{kind}: an answer matching no request: {:02x?}", &buf[..n]));
        assert!(
            n <= req_len,
            "{kind}: answer of {n} bytes to a request of {req_len}"
        );
    }
    Row {
        kind,
        sent: datagrams.len(),
        sent_bytes: datagrams.iter().map(Vec::len).sum(),
        answers,
        received_bytes,
    }
}

fn txid(kind: u8, i: usize) -> TransactionId {
    let mut t = [0xa5; 12];
    t[0] = kind;
    t[8..].copy_from_slice(&(i as u32).to_be_bytes());
    t
}

fn binding(t: TransactionId, software: usize, fingerprint: bool) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(
        &mut buf,
        MessageType {
            method: Method::BINDING,
            class: Class::Request,
        },
        &t,
    )
    .unwrap();
    if software > 0 {
        e.attribute(attr::SOFTWARE, &vec![b's'; software]).unwrap();
    }
    let n = if fingerprint {
        e.fingerprint().unwrap()
    } else {
        e.finish()
    };
    buf[..n].to_vec()
}

/// A REGISTER with any nonce and a signature that does not verify.
fn register_bad_signature(d: &Device, t: TransactionId, nonce: Option<Nonce>) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut e = Encoder::new(
        &mut buf,
        MessageType {
            method: method::REGISTER,
            class: Class::Request,
        },
        &t,
    )
    .unwrap();
    e.attribute(fattr::NAME, d.name.as_bytes()).unwrap();
    e.attribute(
        fattr::PUBLIC_KEY,
        &flock_proto::identity::public_key(&d.key),
    )
    .unwrap();
    e.attribute(fattr::TIMESTAMP, &now_ms().to_be_bytes())
        .unwrap();
    if let Some(n) = nonce {
        e.attribute(fattr::NONCE, &n.to_bytes()).unwrap();
    }
    e.attribute(fattr::SIGNATURE, &[0x5a; 64]).unwrap();
    let n = e.fingerprint().unwrap();
    buf[..n].to_vec()
}

/// A nonce the server issued to `sock` (one REGISTER without a nonce).
fn nonce_for(sock: &UdpSocket, server: SocketAddr, d: &Device) -> Nonce {
    let bytes = request(sock, server, &d.register_bytes(now_ms(), &[0xee; 12])).expect("a 401");
    let Answer::Error(e) = Answer::read(&bytes) else {
        panic!("expected a 401")
    };
    assert_eq!(e.code, code::NONCE_REQUIRED);
    e.nonce.expect("a nonce")
}

fn encode(f: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = f(&mut buf);
    buf.truncate(n);
    buf
}

/// A raw UDP client of the server's family (loopback), with a receive timeout.
fn client(v6: bool) -> UdpSocket {
    if !v6 {
        return raw_client();
    }
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

#[test]
fn no_unverified_request_gets_more_bytes_back_than_it_sent() {
    amplification(false);
}

/// IPv6 answers are larger (XOR-MAPPED-ADDRESS carries 16 address bytes): the same rule holds.
#[test]
fn no_unverified_request_gets_more_bytes_back_than_it_sent_over_ipv6() {
    amplification(true);
}

fn amplification(v6: bool) {
    let dir = TempDir::new("amplification");
    let cfg = dir.0.join("flockd.toml");
    std::fs::write(&cfg, "[timers]\nnonce_lifetime = \"2s\"\n").unwrap();
    let bind = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
    let server = Flockd::start(&["--config", cfg.to_str().unwrap(), "--udp", bind]);
    let udp = server.udp;
    assert_eq!(udp.is_ipv6(), v6);

    // A live registration, so that requests naming it go deep into the server.
    let owner_sock = client(v6);
    let mut owner = Device::new("amp-box", 1);
    assert!(matches!(
        register_over(&mut owner, &owner_sock, udp),
        Answer::Registered(_)
    ));
    let name: Name = "amp-box".parse().unwrap();
    let thief = Device::new("amp-box", 2);
    let stranger_key = keypair(9);
    let session = [0x3c; 16];

    // A nonce that will be stale by the end (nonce_lifetime = 2 s).
    let stale_sock = client(v6);
    let stale_nonce = nonce_for(&stale_sock, udp, &thief);
    let stale_from = Instant::now();

    let mut rows = vec![
        measure(
            udp,
            "Binding, 20 B, no FINGERPRINT",
            &(0..N)
                .map(|i| binding(txid(1, i), 0, false))
                .collect::<Vec<_>>(),
        ),
        measure(
            udp,
            "Binding, 28 B, FINGERPRINT",
            &(0..N)
                .map(|i| binding(txid(2, i), 0, true))
                .collect::<Vec<_>>(),
        ),
        // Padded so that the answer fits: 16 bytes of SOFTWARE for IPv4, 28 for IPv6 (larger
        // XOR-MAPPED-ADDRESS); the IPv4 padding over IPv6 is the unanswered row below.
        measure(
            udp,
            "Binding, SOFTWARE, no FINGERPRINT",
            &(0..N)
                .map(|i| binding(txid(3, i), if v6 { 28 } else { 16 }, false))
                .collect::<Vec<_>>(),
        ),
        measure(
            udp,
            "Binding, SOFTWARE, FINGERPRINT",
            &(0..N)
                .map(|i| binding(txid(4, i), if v6 { 28 } else { 16 }, true))
                .collect::<Vec<_>>(),
        ),
        measure(
            udp,
            "Binding, SOFTWARE 16 B, FINGERPRINT (v4 size)",
            &(0..N)
                .map(|i| binding(txid(40, i), 16, true))
                .collect::<Vec<_>>(),
        ),
        measure(
            udp,
            "REGISTER without nonce (401)",
            &(0..N)
                .map(|i| thief.register_bytes(now_ms(), &txid(5, i)))
                .collect::<Vec<_>>(),
        ),
    ];
    let mut forged = Device::new("amp-box", 2);
    forged.nonce = Some(Nonce {
        expiry: u32::MAX,
        mac: [7; 12],
    });
    rows.push(measure(
        udp,
        "REGISTER, forged nonce (401)",
        &(0..N)
            .map(|i| forged.register_bytes(now_ms(), &txid(6, i)))
            .collect::<Vec<_>>(),
    ));
    // Another address's genuine nonce is as good as a forged one.
    forged.nonce = Some(owner.nonce.unwrap());
    rows.push(measure(
        udp,
        "REGISTER, another address's nonce (401)",
        &(0..N)
            .map(|i| forged.register_bytes(now_ms(), &txid(7, i)))
            .collect::<Vec<_>>(),
    ));
    {
        let sock = client(v6);
        let nonce = nonce_for(&sock, udp, &thief);
        let bad: Vec<_> = (0..N)
            .map(|i| register_bad_signature(&thief, txid(8, i), Some(nonce)))
            .collect();
        rows.push(measure_from(
            &sock,
            udp,
            "REGISTER, bad signature (403)",
            &bad,
        ));
    }
    {
        let sock = client(v6);
        let mut d = Device::new("amp-box", 2);
        d.nonce = Some(nonce_for(&sock, udp, &d));
        let skewed: Vec<_> = (0..N)
            .map(|i| d.register_bytes(1_000_000_000_000, &txid(9, i)))
            .collect();
        rows.push(measure_from(
            &sock,
            udp,
            "REGISTER, clock skew (440)",
            &skewed,
        ));
    }
    {
        let sock = client(v6);
        let mut d = Device::new("amp-box", 2);
        d.nonce = Some(nonce_for(&sock, udp, &d));
        let taken: Vec<_> = (0..N)
            .map(|i| d.register_bytes(now_ms(), &txid(10, i)))
            .collect();
        rows.push(measure_from(
            &sock,
            udp,
            "REGISTER, held name, other key (409)",
            &taken,
        ));
    }
    {
        let good = owner.token.unwrap();
        let forged: Vec<_> = (0..N)
            .map(|i| {
                let ka = Keepalive {
                    name,
                    identity: owner.fingerprint(),
                    token: Token {
                        mac: [i as u8; 16],
                        ..good
                    },
                };
                encode(|b| ka.encode(b, &txid(11, i)).unwrap())
            })
            .collect();
        rows.push(measure(udp, "KEEPALIVE, forged token (441)", &forged));
        // The owner's genuine keep-alive, replayed from elsewhere.
        let replayed: Vec<_> = (0..N)
            .map(|i| owner.keepalive_bytes(&txid(12, i)))
            .collect();
        rows.push(measure(
            udp,
            "KEEPALIVE, owner's token elsewhere (441)",
            &replayed,
        ));
    }
    {
        let check_answers: Vec<_> = (0..N)
            .map(|i| {
                encode(|b| {
                    registration::encode_check_answer(
                        b,
                        &txid(13, i),
                        &name,
                        &owner.key,
                        &[i as u8; 16],
                    )
                    .unwrap()
                })
            })
            .collect();
        rows.push(measure(
            udp,
            "CHECK success, out of the blue",
            &check_answers,
        ));
        let errors: Vec<_> = (0..N)
            .map(|i| {
                encode(|b| {
                    let mut e = Encoder::new(
                        b,
                        MessageType {
                            method: method::CHECK,
                            class: Class::Error,
                        },
                        &txid(14, i),
                    )
                    .unwrap();
                    e.error_code(400, "not me").unwrap();
                    e.attribute(fattr::NAME, name.as_bytes()).unwrap();
                    e.fingerprint().unwrap()
                })
            })
            .collect();
        rows.push(measure(udp, "CHECK error, out of the blue", &errors));
        let sig = registration::sign_check(&stranger_key, &name, &[1; 16], now_ms() + 60_000);
        let checks: Vec<_> = (0..N)
            .map(|i| {
                encode(|b| {
                    registration::encode_check(
                        b,
                        &txid(15, i),
                        &name,
                        &[1; 16],
                        now_ms() + 60_000,
                        &sig,
                    )
                    .unwrap()
                })
            })
            .collect();
        rows.push(measure(udp, "CHECK request to the server", &checks));
    }
    {
        let until = now_ms() + 10_000;
        let personas: Vec<_> = (0..N)
            .map(|i| {
                encode(|b| {
                    login_wire::encode_personas_request(
                        b,
                        &txid(16, i),
                        &name,
                        0,
                        None,
                        until,
                        &stranger_key,
                    )
                    .unwrap()
                })
            })
            .collect();
        rows.push(measure(udp, "PERSONAS request", &personas));
        let list = br#"[{"id":"alice","name":"Alice"}]"#;
        let chunks: Vec<_> = (0..N)
            .map(|i| {
                let c = PersonasChunk {
                    name,
                    checksum: [2; 32],
                    total: list.len() as u32,
                    offset: 0,
                    credentials_required: false,
                    data: list,
                };
                encode(|b| c.encode(b, &txid(17, i)).unwrap())
            })
            .collect();
        rows.push(measure(udp, "PERSONAS answer, out of the blue", &chunks));
        let connects: Vec<_> = (0..N)
            .map(|i| {
                encode(|b| {
                    login_wire::encode_connect(
                        b,
                        &txid(18, i),
                        &name,
                        &session,
                        "alice",
                        b"pwd:x",
                        until,
                        &stranger_key,
                    )
                    .unwrap()
                })
            })
            .collect();
        rows.push(measure(udp, "CONNECT request", &connects));
        for (kind, tag, error) in [
            ("CONNECT success, out of the blue", 19u8, None),
            (
                "CONNECT error 460, out of the blue",
                20,
                Some(login_wire::code::BAD_CREDENTIALS),
            ),
        ] {
            let acks: Vec<_> = (0..N)
                .map(|i| {
                    let a = Ack {
                        method: flock_proto::wire::method::CONNECT,
                        name,
                        session,
                        seq: None,
                        error,
                    };
                    encode(|b| a.encode(b, &txid(tag, i)).unwrap())
                })
                .collect();
            rows.push(measure(udp, kind, &acks));
        }
        let sdp = "v=0\r\n".repeat(40);
        let bodies: [(&'static str, u8, SignalBody<'_>); 3] = [
            (
                "SIGNAL request, SDP chunk",
                21,
                SignalBody::Sdp {
                    offset: 0,
                    total: sdp.len() as u32,
                    data: sdp.as_bytes(),
                },
            ),
            (
                "SIGNAL request, candidate",
                22,
                SignalBody::Candidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                    mid: Some("0"),
                },
            ),
            (
                "SIGNAL request, end-of-candidates",
                23,
                SignalBody::EndOfCandidates,
            ),
        ];
        for (kind, tag, body) in bodies {
            let signals: Vec<_> = (0..N)
                .map(|i| {
                    let s = Signal {
                        name,
                        session,
                        seq: i as u32,
                        body,
                    };
                    encode(|b| s.encode(b, &txid(tag, i)).unwrap())
                })
                .collect();
            rows.push(measure(udp, kind, &signals));
        }
        let acks: Vec<_> = (0..N)
            .map(|i| {
                let a = Ack {
                    method: flock_proto::wire::method::SIGNAL,
                    name,
                    session,
                    seq: Some(i as u32),
                    error: None,
                };
                encode(|b| a.encode(b, &txid(24, i)).unwrap())
            })
            .collect();
        rows.push(measure(udp, "SIGNAL answer, out of the blue", &acks));
    }
    {
        let valid = thief.register_bytes(now_ms(), &txid(25, 0));
        let truncated: Vec<_> = (0..valid.len())
            .step_by(4)
            .map(|n| valid[..n].to_vec())
            .collect();
        rows.push(measure(udp, "truncated REGISTERs", &truncated));
        let mut x = 0x1234_5678u32;
        let mut garbage: Vec<Vec<u8>> = [1usize, 19, 20, 21, 64, 300, 1400]
            .iter()
            .map(|&len| {
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        garbage.push(vec![0xff; 1200]);
        garbage.push(b"GET / HTTP/1.1\r\n\r\n".to_vec());
        // A STUN header with a valid cookie and unknown methods, and one with a bad length.
        for m in [0x002u16, 0x3ff, 0xf0f] {
            garbage.push(encode(|b| {
                Encoder::new(
                    b,
                    MessageType {
                        method: Method(m),
                        class: Class::Request,
                    },
                    &txid(26, m as usize),
                )
                .unwrap()
                .fingerprint()
                .unwrap()
            }));
        }
        let mut bad_len = binding(txid(27, 0), 16, true);
        bad_len[3] = bad_len[3].wrapping_add(4);
        garbage.push(bad_len);
        rows.push(measure(udp, "garbage", &garbage));
    }
    {
        // Stale nonce: wait out its 2 s lifetime (bounded).
        let left = Duration::from_millis(3100).saturating_sub(stale_from.elapsed());
        std::thread::sleep(left);
        let mut d = Device::new("amp-box", 2);
        d.nonce = Some(stale_nonce);
        let stale: Vec<_> = (0..N)
            .map(|i| d.register_bytes(now_ms(), &txid(28, i)))
            .collect();
        let first = request(&stale_sock, udp, &stale[0]).expect("an answer");
        assert_eq!(Answer::read(&first).code(), Some(code::STALE_NONCE));
        rows.push(measure_from(
            &stale_sock,
            udp,
            "REGISTER, stale nonce (438)",
            &stale[1..],
        ));
    }

    println!(
        "\n{:<42} {:>5} {:>10} {:>8} {:>10} {:>6}",
        "type", "sent", "sent B", "answers", "recv B", "ratio"
    );
    for r in &rows {
        println!(
            "{:<42} {:>5} {:>10} {:>8} {:>10} {:>6.3}",
            r.kind,
            r.sent,
            r.sent_bytes,
            r.answers,
            r.received_bytes,
            r.received_bytes as f64 / r.sent_bytes as f64
        );
    }
    let (sent, recv): (usize, usize) = rows.iter().fold((0, 0), |(s, r), row| {
        (s + row.sent_bytes, r + row.received_bytes)
    });
    println!(
        "{:<42} {:>5} {:>10} {:>8} {:>10} {:>6.3}\n",
        "all",
        rows.iter().map(|r| r.sent).sum::<usize>(),
        sent,
        rows.iter().map(|r| r.answers).sum::<usize>(),
        recv,
        recv as f64 / sent as f64
    );

    for r in &rows {
        assert!(
            r.received_bytes <= r.sent_bytes,
            "{}: {} bytes out for {} in",
            r.kind,
            r.received_bytes,
            r.sent_bytes
        );
    }
    // The typed refusals really were answered (the measurement sees the wire), and the rest not.
    let answered = |k: &str| rows.iter().find(|r| r.kind == k).unwrap().answers;
    for k in [
        "REGISTER without nonce (401)",
        "REGISTER, bad signature (403)",
        "REGISTER, clock skew (440)",
        "KEEPALIVE, forged token (441)",
        "Binding, SOFTWARE, FINGERPRINT",
    ] {
        assert_eq!(answered(k), N, "{k}");
    }
    for k in [
        "Binding, 20 B, no FINGERPRINT",
        "Binding, 28 B, FINGERPRINT",
        "CHECK success, out of the blue",
        "truncated REGISTERs",
        "garbage",
    ] {
        assert_eq!(answered(k), 0, "{k}");
    }
    // Over IPv6 the answer to an IPv4-sized Binding would be larger than the request: silence.
    assert_eq!(
        answered("Binding, SOFTWARE 16 B, FINGERPRINT (v4 size)"),
        if v6 { 0 } else { N }
    );
    // Nothing reached the owner, and its registration is intact.
    owner_sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        owner_sock.recv_from(&mut buf).is_err(),
        "the owner was sent something"
    );
    owner_sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let t = owner.txid();
    let a = Answer::read(&request(&owner_sock, udp, &owner.keepalive_bytes(&t)).unwrap());
    assert!(matches!(a, Answer::KeptAlive(_)), "{a:?}");
}
