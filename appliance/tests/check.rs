//! CHECK requests reaching the appliance directly: only the pinned flock's, for our name, are
//! answered; responses that match none of our transactions are ignored.

use flock_appliance::{Appliance, Event, State};
use flock_proto::stun::Encoder;
use flock_proto::stun::MessageType;
use flock_proto::wire::method;
use flock_proto::wire::registration::{self, CheckAnswer, KeptAlive};
use flock_testkit::sim::*;

const TXID: TransactionId = [7; 12];
const CHALLENGE: [u8; 16] = [42; 16];
/// CHECKs in these tests stay valid for a minute after the simulation starts.
const VALID_UNTIL: u64 = T0.0 + 60_000;

fn check(flock_seed: u8, name_: &str) -> Vec<u8> {
    let n = name(name_);
    let sig = registration::sign_check(&keypair(flock_seed), &n, &CHALLENGE, VALID_UNTIL);
    let mut buf = [0u8; 1500];
    let len =
        registration::encode_check(&mut buf, &TXID, &n, &CHALLENGE, VALID_UNTIL, &sig).unwrap();
    buf[..len].to_vec()
}

fn registered() -> Sim<Appliance> {
    let mut sim = Sim::new();
    sim.register();
    sim
}

#[test]
fn a_valid_check_is_answered_to_its_source_with_its_transaction_id() {
    let mut sim = registered();
    let from = addr("192.0.2.77:3478"); // another server of the flock
    sim.inject(from, &check(FLOCK_SEED, "box"));
    let answers = sim.app_elsewhere();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].to, from);
    assert_eq!(answers[0].txid(), TXID);
    let a = CheckAnswer::parse(&answers[0].message()).unwrap();
    assert_eq!(a.name, name("box"));
    assert!(a.proves(&sim.app.fingerprint().prefix(), &CHALLENGE));
    assert_eq!(
        sim.event_list().last(),
        Some(&Event::CheckAnswered { from })
    );
    // Answered whatever the state, and again for a retransmitted CHECK.
    sim.inject(from, &check(FLOCK_SEED, "BOX"));
    assert_eq!(sim.app_elsewhere().len(), 2);
    assert_eq!(
        sim.app.state(),
        State::Registered,
        "a CHECK changes nothing else"
    );
}

#[test]
fn a_check_before_registering_is_answered_too() {
    let mut sim = Sim::new();
    let from = sim.server_addr;
    sim.inject(from, &check(FLOCK_SEED, "box"));
    assert_eq!(sim.app_requests(method::CHECK).len(), 1);
}

#[test]
fn a_check_for_another_name_is_ignored() {
    let mut sim = registered();
    sim.inject(sim.server_addr, &check(FLOCK_SEED, "other"));
    assert!(sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.app.stats().checks_ignored, 1);
    assert_eq!(sim.event_list().len(), 1);
}

#[test]
fn a_check_from_an_unpinned_flock_key_is_ignored() {
    let mut sim = registered();
    sim.inject(sim.server_addr, &check(FLOCK_SEED + 1, "box"));
    assert!(sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.app.stats().checks_ignored, 1);
}

#[test]
fn a_stale_check_is_ignored() {
    let mut sim = registered();
    // Replayed eleven minutes after it expired (beyond the 10 min clock allowance).
    sim.now = Time(VALID_UNTIL + 11 * 60_000);
    sim.inject(sim.server_addr, &check(FLOCK_SEED, "box"));
    assert!(sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.app.stats().checks_ignored, 1);
    // A changed expiry breaks the signature.
    let n = name("box");
    let sig = registration::sign_check(&keypair(FLOCK_SEED), &n, &CHALLENGE, VALID_UNTIL);
    let mut buf = [0u8; 1500];
    let len = registration::encode_check(&mut buf, &TXID, &n, &CHALLENGE, sim.now.0 + 60_000, &sig)
        .unwrap();
    sim.inject(sim.server_addr, &buf[..len]);
    assert!(sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.app.stats().checks_ignored, 2);
}

#[test]
fn the_answer_is_no_larger_than_the_check() {
    let mut sim = registered();
    for name_ in ["box", &"b".repeat(255)] {
        let n = name(name_);
        let sig = registration::sign_check(&keypair(FLOCK_SEED), &n, &CHALLENGE, VALID_UNTIL);
        let mut buf = [0u8; 1500];
        let len =
            registration::encode_check(&mut buf, &TXID, &n, &CHALLENGE, VALID_UNTIL, &sig).unwrap();
        let mut answer = [0u8; 1500];
        let a = registration::encode_check_answer(
            &mut answer,
            &TXID,
            &n,
            &keypair(APP_SEED),
            &CHALLENGE,
        )
        .unwrap();
        assert!(
            a <= len,
            "answer {a} > check {len} for a {}-byte name",
            name_.len()
        );
    }
    let from = addr("192.0.2.77:3478");
    sim.inject(from, &check(FLOCK_SEED, "box"));
    let answers = sim.app_elsewhere();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].bytes.len() <= check(FLOCK_SEED, "box").len());
}

#[test]
fn a_check_with_a_tampered_signature_or_challenge_is_ignored() {
    let mut sim = registered();
    let n = name("box");
    let mut sig = registration::sign_check(&keypair(FLOCK_SEED), &n, &CHALLENGE, VALID_UNTIL);
    sig[10] ^= 1;
    let mut buf = [0u8; 1500];
    let len =
        registration::encode_check(&mut buf, &TXID, &n, &CHALLENGE, VALID_UNTIL, &sig).unwrap();
    sim.inject(sim.server_addr, &buf[..len]);
    // A valid signature over another challenge.
    let sig = registration::sign_check(&keypair(FLOCK_SEED), &n, &[1; 16], VALID_UNTIL);
    let len =
        registration::encode_check(&mut buf, &TXID, &n, &CHALLENGE, VALID_UNTIL, &sig).unwrap();
    sim.inject(sim.server_addr, &buf[..len]);
    assert!(sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.app.stats().checks_ignored, 2);
}

#[test]
fn garbage_is_ignored() {
    let mut sim = registered();
    let before = sim.app.stats().ignored;
    for junk in [&b""[..], b"hello", &[0u8; 20], &[0xFF; 100]] {
        sim.inject(sim.server_addr, junk);
    }
    // A STUN Binding request (not ours to answer).
    let mut buf = [0u8; 100];
    let len = Encoder::new(
        &mut buf,
        MessageType {
            method: Method::BINDING,
            class: Class::Request,
        },
        &TXID,
    )
    .unwrap()
    .finish();
    sim.inject(sim.server_addr, &buf[..len]);
    assert_eq!(sim.app.stats().ignored, before + 5);
    assert!(sim.app_elsewhere().is_empty() && sim.app_requests(method::CHECK).is_empty());
    assert_eq!(sim.event_list().len(), 1);
}

#[test]
fn answers_to_unknown_transactions_or_from_elsewhere_are_ignored() {
    let mut sim = registered();
    // The next keep-alive is lost: we make up answers to it.
    sim.server_down(true);
    sim.run_for(secs(35));
    assert_eq!(sim.app.state(), State::KeepingAlive);
    let txid = sim.app_requests(method::KEEPALIVE)[0].txid();
    let seen = addr("203.0.113.99:1234");
    let answer = |txid: &TransactionId| {
        let mut buf = [0u8; 1500];
        let len = KeptAlive {
            mapped: seen,
            token: None,
        }
        .encode(&mut buf, txid)
        .unwrap();
        buf[..len].to_vec()
    };
    let events = sim.events.len();
    let ignored = sim.app.stats().ignored;
    sim.inject(addr("198.51.100.1:3478"), &answer(&txid)); // right transaction, wrong source
    sim.inject(sim.server_addr, &answer(&[9; 12])); // right source, unknown transaction
    let token = flock_proto::token::Token {
        expiry: u32::MAX,
        mac: [0; 16],
    };
    let mut buf = [0u8; 1500];
    let len = registration::Registered {
        mapped: seen,
        token,
        keepalive_interval_ms: 1000,
    }
    .encode(&mut buf, &txid)
    .unwrap();
    sim.inject(sim.server_addr, &buf[..len]); // a REGISTER answer while keeping alive
    assert_eq!(sim.app.stats().ignored, ignored + 3);
    assert_eq!(sim.events.len(), events);
    assert_eq!(sim.app.state(), State::KeepingAlive);
    // The real thing (as far as the appliance can tell) is taken.
    sim.inject(sim.server_addr, &answer(&txid));
    assert_eq!(
        sim.event_list()[events..],
        [
            Event::MappedAddressChanged {
                old: sim.app_addr,
                new: seen
            },
            Event::KeptAlive { mapped: seen }
        ]
    );
    assert_eq!(sim.app.state(), State::Registered);
}

#[test]
fn check_answers_are_rate_limited() {
    // A captured CHECK replayed in a flood: 8 answers at once, then one per second.
    let mut sim = registered();
    let bytes = check(FLOCK_SEED, "box");
    for i in 0..20u8 {
        sim.inject(addr(&format!("198.51.100.{i}:9")), &bytes);
    }
    assert_eq!(sim.app_elsewhere().len(), 8);
    assert_eq!(sim.app.stats().checks_dropped, 12);
    sim.run_for(ms(2_500));
    for i in 0..5u8 {
        sim.inject(addr(&format!("198.51.100.{i}:9")), &bytes);
    }
    assert_eq!(sim.app_elsewhere().len(), 10, "two more after 2.5 s");
    // The flock's own retransmission schedule (0.5, 1, 2, 4, 8 s ...) is never held back.
    let mut sim = registered();
    let mut t = sim.now;
    for rto in [
        0, 500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000,
    ] {
        t = t + ms(rto);
        sim.run_until(t);
        let from = sim.server_addr;
        sim.inject(from, &bytes);
    }
    assert_eq!(sim.app_elsewhere().len(), 0);
    assert_eq!(sim.app_requests(method::CHECK).len(), 11);
}
