//! Name-hijack attempts over real sockets on loopback. None of them may move a name away from
//! its registered identity: another key asking for the held name, a captured REGISTER replayed
//! from elsewhere, a captured keep-alive token replayed from elsewhere, an impostor racing an
//! address change, and an impostor answering the address-change CHECK (PROTOCOL.md §4.2–§5).
//! Each runs over IPv4 (`_v4`, 127.0.0.1) and IPv6 (`_v6`, ::1).
use flock_appliance::Event;
use flock_proto::stun::{Class, Message};
use flock_proto::testing::{Answer, Device};
use flock_proto::wire::registration::{self, code};
use flock_tests::net::{appliance, Family, Family::V4, Family::V6};
use flock_tests::{now_ms, register_over, request, wait_event, wait_until_registered, Flockd};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// Every datagram arriving on `sock` within `wait` (bounded: at most 64).
fn drain(sock: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut got = vec![];
    let mut buf = [0u8; 2048];
    while got.len() < 64 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    got
}

fn is_check(bytes: &[u8]) -> bool {
    Message::parse(bytes).is_ok_and(|m| {
        m.method() == flock_proto::wire::method::CHECK && m.class() == Class::Request
    })
}

/// A keep-alive of `d` from `sock`, which must succeed with `sock`'s own address.
fn keepalive_ok(d: &mut Device, sock: &UdpSocket, server: SocketAddr) {
    let txid = d.txid();
    let bytes = request(sock, server, &d.keepalive_bytes(&txid)).expect("an answer to KEEPALIVE");
    let a = Answer::read(&bytes);
    let Answer::KeptAlive(k) = &a else {
        panic!("keep-alive refused: {a:?}")
    };
    assert_eq!(k.mapped, sock.local_addr().unwrap());
    d.absorb(&a);
}

/// A keep-alive of `d` from `sock`: the error code it gets.
fn keepalive_code(d: &mut Device, sock: &UdpSocket, server: SocketAddr) -> Option<u16> {
    let txid = d.txid();
    let req = d.keepalive_bytes(&txid);
    sock.send_to(&req, server).unwrap();
    // Skip what else reached this socket (CHECKs queued before the name moved).
    let bytes = drain_until(sock, Duration::from_secs(1), |b| {
        b.get(8..20) == Some(&txid[..])
    })
    .expect("an answer to KEEPALIVE");
    assert!(bytes.len() <= req.len());
    Answer::read(&bytes).code()
}

/// The registered identity signs a REGISTER from `sock`, a new address: after the nonce round
/// trip the server stays silent (it is checking the old address). Returns the txid it will
/// answer once the name moves.
fn register_from_new_address(d: &mut Device, sock: &UdpSocket, server: SocketAddr) -> [u8; 12] {
    let txid = d.txid();
    let bytes = request(sock, server, &d.new_register(now_ms(), &txid))
        .expect("a nonce for the new address");
    let a = Answer::read(&bytes);
    assert_eq!(a.code(), Some(code::NONCE_REQUIRED), "{a:?}");
    d.absorb(&a);
    let txid = d.txid();
    assert!(
        request(sock, server, &d.new_register(now_ms(), &txid)).is_none(),
        "silent while the old address is checked"
    );
    txid
}

/// Waits for the REGISTER success with `txid` on `sock` (the name moved there).
fn wait_registered(d: &mut Device, sock: &UdpSocket, txid: &[u8; 12], wait: Duration) -> Duration {
    let started = Instant::now();
    let Some(bytes) = drain_until(sock, wait, |b| b.get(8..20) == Some(&txid[..])) else {
        panic!("no registration at the new address within {wait:?}");
    };
    let a = Answer::read(&bytes);
    let Answer::Registered(r) = &a else {
        panic!("expected the move, got {a:?}")
    };
    assert_eq!(r.mapped, sock.local_addr().unwrap());
    d.absorb(&a);
    started.elapsed()
}

/// `datagram` with another transaction id and its FINGERPRINT (the last 8 bytes) recomputed:
/// what anyone can do to a captured message without any key.
fn with_txid(datagram: &[u8], txid: [u8; 12]) -> Vec<u8> {
    let mut d = datagram.to_vec();
    d[8..20].copy_from_slice(&txid);
    let n = d.len() - 8;
    let crc = crc32(&d[..n]) ^ flock_proto::stun::FINGERPRINT_XOR;
    d[n + 4..].copy_from_slice(&crc.to_be_bytes());
    assert!(
        Message::parse(&d).is_ok_and(|m| m.has_fingerprint()),
        "rewritten datagram parses"
    );
    d
}

/// CRC-32 (IEEE), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Datagrams on `sock` until one satisfies `stop` (returned last) or `wait` passes.
fn drain_until(sock: &UdpSocket, wait: Duration, stop: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    for _ in 0..256 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if stop(&buf[..n]) {
                sock.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                return Some(buf[..n].to_vec());
            }
        }
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_never_takes_a_held_name_from_a_live_appliance_v4() {
    another_key_never_takes_a_held_name_from_a_live_appliance(V4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_never_takes_a_held_name_from_a_live_appliance_v6() {
    another_key_never_takes_a_held_name_from_a_live_appliance(V6).await;
}

async fn another_key_never_takes_a_held_name_from_a_live_appliance(fam: Family) {
    let server = fam.flockd(&["--keepalive-interval", "300ms", "--entry-lifetime", "10s"]);
    let mut owner = appliance(&server, "held-box", 1);
    let owner_addr = owner.local_addr();
    wait_until_registered(&mut owner, WAIT).await;

    // Five other keys, from five addresses, each asking twice: all 409, no answer larger than
    // its request (checked by register_over).
    for seed in 2..7u8 {
        let sock = fam.raw_client();
        let mut thief = Device::new("HELD-box ", seed); // normalized to the same name
        for _ in 0..2 {
            assert_eq!(
                register_over(&mut thief, &sock, server.udp).code(),
                Some(code::NAME_TAKEN)
            );
        }
    }
    // The owner keeps its name at its address: keep-alives go on, nothing is refused.
    for _ in 0..3 {
        let e = wait_event(&mut owner, WAIT, "keep-alive", |e| {
            assert!(
                !matches!(
                    e,
                    Event::TokenRefused
                        | Event::Refused { .. }
                        | Event::MappedAddressChanged { .. }
                ),
                "owner disturbed: {e:?}"
            );
            matches!(e, Event::KeptAlive { .. })
        })
        .await;
        assert_eq!(e, Event::KeptAlive { mapped: owner_addr });
    }
    owner.shutdown().await;
}

#[test]
fn a_captured_register_replayed_from_elsewhere_moves_nothing_and_checks_nobody_v4() {
    a_captured_register_replayed_from_elsewhere_moves_nothing_and_checks_nobody(V4);
}

#[test]
fn a_captured_register_replayed_from_elsewhere_moves_nothing_and_checks_nobody_v6() {
    a_captured_register_replayed_from_elsewhere_moves_nothing_and_checks_nobody(V6);
}

fn a_captured_register_replayed_from_elsewhere_moves_nothing_and_checks_nobody(fam: Family) {
    let server = fam.flockd(&[
        "--check-window",
        "5s",
        "--entry-lifetime",
        "20s",
        "--keepalive-interval",
        "5s",
    ]);
    let owner_sock = fam.raw_client();
    let mut owner = Device::new("box", 1);
    // Register, capturing the signed REGISTER (nonce bound to the owner's address).
    assert!(matches!(
        register_over(&mut owner, &owner_sock, server.udp),
        Answer::Registered(_)
    ));
    let captured = owner.new_register(now_ms(), &[0xc0; 12]);
    // It is genuine: from the owner's own address it refreshes the registration.
    let a = Answer::read(&request(&owner_sock, server.udp, &captured).expect("refresh"));
    assert!(matches!(a, Answer::Registered(_)), "{a:?}");

    // Replayed from three other addresses, five times each with fresh transaction ids: every
    // answer is a 401 (a nonce for the replayer, which cannot re-sign), never larger.
    for _ in 0..3 {
        let attacker = fam.raw_client();
        for i in 0..5u8 {
            // The signature does not cover the transaction id: a replayer can pick its own.
            let replay = with_txid(&captured, [i; 12]);
            let bytes = request(&attacker, server.udp, &replay).expect("a typed refusal");
            assert!(
                bytes.len() <= replay.len(),
                "{} > {}",
                bytes.len(),
                replay.len()
            );
            assert_eq!(Answer::read(&bytes).code(), Some(code::NONCE_REQUIRED));
        }
    }
    // No CHECK went to the owner: the replay never reached the table.
    let got = drain(&owner_sock, Duration::from_millis(1500));
    assert!(
        got.iter().all(|b| !is_check(b)),
        "the owner was challenged by a replay ({} datagrams)",
        got.len()
    );
    assert!(got.is_empty(), "unexpected datagrams to the owner: {got:?}");
    // And the owner's registration is where it was.
    keepalive_ok(&mut owner, &owner_sock, server.udp);
}

#[test]
fn a_keepalive_token_replayed_from_elsewhere_is_refused_and_moves_nothing_v4() {
    a_keepalive_token_replayed_from_elsewhere_is_refused_and_moves_nothing(V4);
}

#[test]
fn a_keepalive_token_replayed_from_elsewhere_is_refused_and_moves_nothing_v6() {
    a_keepalive_token_replayed_from_elsewhere_is_refused_and_moves_nothing(V6);
}

fn a_keepalive_token_replayed_from_elsewhere_is_refused_and_moves_nothing(fam: Family) {
    let server = fam.flockd(&[]);
    let owner_sock = fam.raw_client();
    let mut owner = Device::new("box", 1);
    assert!(matches!(
        register_over(&mut owner, &owner_sock, server.udp),
        Answer::Registered(_)
    ));
    keepalive_ok(&mut owner, &owner_sock, server.udp);
    let captured = owner.keepalive_bytes(&[0x77; 12]);
    for _ in 0..3 {
        let attacker = fam.raw_client();
        for _ in 0..3 {
            let bytes = request(&attacker, server.udp, &captured).expect("a typed refusal");
            assert!(bytes.len() <= captured.len());
            assert_eq!(
                Answer::read(&bytes).code(),
                Some(code::REREGISTER),
                "the token is bound to the owner's address"
            );
        }
    }
    // A thief's own REGISTER does not help either.
    let thief_sock = fam.raw_client();
    let mut thief = Device::new("box", 2);
    assert_eq!(
        register_over(&mut thief, &thief_sock, server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    assert!(
        drain(&owner_sock, Duration::from_millis(800)).is_empty(),
        "nothing was sent to the owner"
    );
    keepalive_ok(&mut owner, &owner_sock, server.udp);
}

#[test]
fn an_impostor_racing_an_address_change_gets_nothing_and_the_owner_moves_after_the_check_v4() {
    an_impostor_racing_an_address_change_gets_nothing_and_the_owner_moves_after_the_check(V4);
}

#[test]
fn an_impostor_racing_an_address_change_gets_nothing_and_the_owner_moves_after_the_check_v6() {
    an_impostor_racing_an_address_change_gets_nothing_and_the_owner_moves_after_the_check(V6);
}

fn an_impostor_racing_an_address_change_gets_nothing_and_the_owner_moves_after_the_check(
    fam: Family,
) {
    let server = fam.flockd(&[
        "--check-window",
        "2s",
        "--entry-lifetime",
        "20s",
        "--keepalive-interval",
        "5s",
    ]);
    let (old_sock, new_sock, thief_sock) = (fam.raw_client(), fam.raw_client(), fam.raw_client());
    let mut at_old = Device::new("box", 1);
    assert!(matches!(
        register_over(&mut at_old, &old_sock, server.udp),
        Answer::Registered(_)
    ));
    let mut at_new = Device::new("box", 1);
    for _ in 0..50 {
        at_new.txid(); // keep its transaction ids apart from `at_old`'s
    }
    let started = Instant::now();
    let move_txid = register_from_new_address(&mut at_new, &new_sock, server.udp);

    // Meanwhile an impostor with another key registers from a third address, repeatedly.
    let mut thief = Device::new("box", 2);
    for _ in 0..3 {
        assert_eq!(
            register_over(&mut thief, &thief_sock, server.udp).code(),
            Some(code::NAME_TAKEN)
        );
    }
    // The old address is challenged (and stays silent), the new one still hears nothing.
    let checks = drain(&old_sock, Duration::from_millis(700));
    assert!(
        !checks.is_empty() && checks.iter().all(|b| is_check(b)),
        "CHECKs to the old address: {checks:?}"
    );
    let waited = wait_registered(&mut at_new, &new_sock, &move_txid, Duration::from_secs(6));
    let waited_total = started.elapsed();
    assert!(
        waited_total >= Duration::from_millis(1500),
        "moved after {waited_total:?} ({waited:?}), before the 2 s check window"
    );
    // The name is at the owner's new address, the impostor still gets 409, the old token 441.
    keepalive_ok(&mut at_new, &new_sock, server.udp);
    assert_eq!(
        register_over(&mut thief, &thief_sock, server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    assert_eq!(
        keepalive_code(&mut at_old, &old_sock, server.udp),
        Some(code::REREGISTER)
    );
    keepalive_ok(&mut at_new, &new_sock, server.udp);
}

/// Sets up a check: owner registered at `old`, then signs from `new`. Returns the CHECK that
/// reached the old address and the txid of the REGISTER the move will answer.
fn start_check(
    server: &Flockd,
    old: &UdpSocket,
    new: &UdpSocket,
) -> (Device, Device, Vec<u8>, [u8; 12]) {
    let mut at_old = Device::new("box", 1);
    assert!(matches!(
        register_over(&mut at_old, old, server.udp),
        Answer::Registered(_)
    ));
    let mut at_new = Device::new("box", 1);
    for _ in 0..50 {
        at_new.txid();
    }
    let move_txid = register_from_new_address(&mut at_new, new, server.udp);
    let check =
        drain_until(old, Duration::from_secs(2), is_check).expect("a CHECK at the old address");
    let m = Message::parse(&check).unwrap();
    let c = registration::Check::parse(&m).unwrap();
    assert_eq!(c.name.as_bytes(), b"box");
    assert!(
        c.from_flock(&server.flock_public_key),
        "the CHECK is signed by the flock"
    );
    assert!(
        check.len() >= at_old.answer_check(&check).len(),
        "the CHECK is no smaller than its answer"
    );
    (at_old, at_new, check, move_txid)
}

#[test]
fn a_check_answered_by_an_impostor_from_the_old_address_moves_the_name_to_the_owner_only_v4() {
    a_check_answered_by_an_impostor_from_the_old_address_moves_the_name_to_the_owner_only(V4);
}

#[test]
fn a_check_answered_by_an_impostor_from_the_old_address_moves_the_name_to_the_owner_only_v6() {
    a_check_answered_by_an_impostor_from_the_old_address_moves_the_name_to_the_owner_only(V6);
}

fn a_check_answered_by_an_impostor_from_the_old_address_moves_the_name_to_the_owner_only(
    fam: Family,
) {
    // §5: whoever answers is not the registered identity → the name moves to the new address
    // the registered key signed for; never to the impostor.
    let server = fam.flockd(&[
        "--check-window",
        "20s",
        "--entry-lifetime",
        "30s",
        "--keepalive-interval",
        "5s",
    ]);
    let (old_sock, new_sock) = (fam.raw_client(), fam.raw_client());
    let (mut at_old, mut at_new, check, move_txid) = start_check(&server, &old_sock, &new_sock);
    let impostor = Device::new("box", 2);
    old_sock
        .send_to(&impostor.answer_check(&check), server.udp)
        .unwrap();
    let waited = wait_registered(&mut at_new, &new_sock, &move_txid, Duration::from_secs(3));
    assert!(
        waited < Duration::from_secs(3),
        "moved at once, not after the window"
    );
    keepalive_ok(&mut at_new, &new_sock, server.udp);
    // The impostor (at the old address, or anywhere) has nothing: 409 for its key.
    let mut thief = Device::new("box", 2);
    assert_eq!(
        register_over(&mut thief, &fam.raw_client(), server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    assert_eq!(
        keepalive_code(&mut at_old, &old_sock, server.udp),
        Some(code::REREGISTER)
    );
}

#[test]
fn a_check_answered_by_an_impostor_from_elsewhere_moves_the_name_to_the_owner_only_v4() {
    a_check_answered_by_an_impostor_from_elsewhere_moves_the_name_to_the_owner_only(V4);
}

#[test]
fn a_check_answered_by_an_impostor_from_elsewhere_moves_the_name_to_the_owner_only_v6() {
    a_check_answered_by_an_impostor_from_elsewhere_moves_the_name_to_the_owner_only(V6);
}

fn a_check_answered_by_an_impostor_from_elsewhere_moves_the_name_to_the_owner_only(fam: Family) {
    let server = fam.flockd(&[
        "--check-window",
        "20s",
        "--entry-lifetime",
        "30s",
        "--keepalive-interval",
        "5s",
    ]);
    let (old_sock, new_sock, thief_sock) = (fam.raw_client(), fam.raw_client(), fam.raw_client());
    let (_at_old, mut at_new, check, move_txid) = start_check(&server, &old_sock, &new_sock);
    let impostor = Device::new("box", 2);
    // First blind guesses: wrong transaction ids count for nothing, the check goes on.
    let genuine_owner = Device::new("box", 1);
    for i in 0..5u8 {
        // Even the owner's own (correct) answer does not count under a wrong txid.
        let who = if i % 2 == 0 {
            &impostor
        } else {
            &genuine_owner
        };
        thief_sock
            .send_to(&with_txid(&who.answer_check(&check), [i; 12]), server.udp)
            .unwrap();
    }
    let early = drain_until(&new_sock, Duration::from_millis(600), |b| {
        b.get(8..20) == Some(&move_txid[..])
    });
    assert!(early.is_none(), "a wrong-txid answer ended the check");
    assert!(
        drain(&thief_sock, Duration::from_millis(200)).is_empty(),
        "CHECK answers are never answered"
    );
    // Then the impostor answers with the right txid (it saw the CHECK) but its own key.
    thief_sock
        .send_to(&impostor.answer_check(&check), server.udp)
        .unwrap();
    wait_registered(&mut at_new, &new_sock, &move_txid, Duration::from_secs(3));
    keepalive_ok(&mut at_new, &new_sock, server.udp);
    let mut thief = Device::new("box", 2);
    assert_eq!(
        register_over(&mut thief, &thief_sock, server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    assert!(
        drain(&thief_sock, Duration::from_millis(300)).is_empty(),
        "the impostor was never registered"
    );
}
