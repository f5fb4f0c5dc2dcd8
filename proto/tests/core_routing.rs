//! On a server of several cores, each core's `Server` takes only the names it owns: a datagram
//! about a name another core owns comes back as `Outcome::OtherCore(owner)` with nothing
//! changed (no answer, no state, not counted), and the owner then serves it as usual. Stateless
//! requests (STUN Binding) are answered by whichever core reads them.

use flock_proto::server::{CoreSlot, Outcome, ServerConfig};
use flock_proto::stun::{self, Class, Encoder, MessageType, Method};
use flock_proto::wire::registration;
use flock_proto::{Name, Time};
use flock_testkit::hand_driven::*;

const CORES: usize = 3;

fn core(index: usize) -> Host {
    on_core(CoreSlot {
        index,
        cores: CORES,
    })
}

fn on_core(slot: CoreSlot) -> Host {
    Host::new(server(ServerConfig::default()).server.on_core(slot))
}

/// A device whose name core `owner` of 3 owns.
fn device_on_core(owner: usize, seed: u8) -> Device {
    let name = (0..)
        .map(|i| format!("core-{owner}-{i}"))
        .find(|n| n.parse::<Name>().unwrap().hash().core_index(CORES) == owner)
        .unwrap();
    Device::new(&name, seed)
}

fn feed(c: &mut Host, now: Time, datagram: &[u8]) -> (Outcome, Vec<u8>) {
    let mut reply = [0u8; 1500];
    let out = c.handle(now, addr("198.51.100.7:4000"), datagram, &mut reply);
    let bytes = match out {
        Outcome::Reply(n) => reply[..n].to_vec(),
        _ => vec![],
    };
    (out, bytes)
}

#[test]
fn a_name_of_another_core_is_handed_over_untouched() {
    let now = Time(1_700_000_000_000);
    let mut cores: Vec<_> = (0..CORES).map(core).collect();
    let mut d = device_on_core(2, 1);

    // REGISTER (without a nonce) read by core 0: handed to core 2, nothing done on core 0.
    let txid = d.txid();
    let probe = d.register_bytes(now.0, &txid);
    assert_eq!(feed(&mut cores[0], now, &probe).0, Outcome::OtherCore(2));
    assert_eq!(
        cores[0].stats().received,
        0,
        "not counted where it was not handled"
    );
    assert_eq!(cores[0].stats().nonces_issued, 0);
    assert_eq!(cores[0].timeout(), None, "no timer started for it");

    // The owner answers it (401 with a nonce), then takes the signed REGISTER.
    let (out, bytes) = feed(&mut cores[2], now, &probe);
    assert!(matches!(out, Outcome::Reply(_)), "{out:?}");
    d.absorb(&Answer::read(&bytes));
    assert!(d.nonce.is_some());
    let txid = d.txid();
    let signed = d.register_bytes(now.0, &txid);
    assert_eq!(feed(&mut cores[1], now, &signed).0, Outcome::OtherCore(2));
    let (_, bytes) = feed(&mut cores[2], now, &signed);
    let registered = Answer::read(&bytes);
    assert!(
        matches!(registered, Answer::Registered(_)),
        "{registered:?}"
    );
    d.absorb(&registered);

    // KEEPALIVE: read by core 1, handed to core 2, which has the registration.
    let txid = d.txid();
    let ka = d.keepalive_bytes(&txid);
    assert_eq!(feed(&mut cores[1], now, &ka).0, Outcome::OtherCore(2));
    assert_eq!(cores[1].occupancy().0, 0);
    let (_, bytes) = feed(&mut cores[2], now, &ka);
    assert!(matches!(Answer::read(&bytes), Answer::KeptAlive(_)));
    assert_eq!(cores[2].occupancy().0, 1);
    assert_eq!(cores[2].stats().received, 3);

    // A CHECK answer about the name goes to its owner too (routed by NAME).
    let mut buf = [0u8; 512];
    let txid = d.txid();
    let n = registration::encode_check_answer(&mut buf, &txid, &d.name, &d.key, &[7; 16]).unwrap();
    assert_eq!(feed(&mut cores[0], now, &buf[..n]).0, Outcome::OtherCore(2));
}

#[test]
fn stateless_and_own_requests_stay_where_they_are_read() {
    let now = Time(1_700_000_000_000);
    let mut c1 = core(1);
    // STUN Binding: answered by any core.
    let mut buf = [0u8; 64];
    let mut e = Encoder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        &[3; 12],
    )
    .unwrap();
    e.attribute(stun::attr::SOFTWARE, b"a padded binding request, 48 b")
        .unwrap();
    let n = e.fingerprint().unwrap();
    assert!(matches!(feed(&mut c1, now, &buf[..n]).0, Outcome::Reply(_)));
    // Its own names: served here.
    let mut d = device_on_core(1, 2);
    let txid = d.txid();
    let probe = d.register_bytes(now.0, &txid);
    assert!(matches!(feed(&mut c1, now, &probe).0, Outcome::Reply(_)));
    // Garbage: dropped here, counted.
    assert_eq!(feed(&mut c1, now, b"not stun at all").0, Outcome::Done);
    assert_eq!(c1.stats().malformed, 1);
}

#[test]
fn one_core_owns_everything() {
    let now = Time(1_700_000_000_000);
    let mut only = on_core(CoreSlot { index: 0, cores: 1 });
    for owner in 0..CORES {
        let mut d = device_on_core(owner, 3 + owner as u8);
        let txid = d.txid();
        let probe = d.register_bytes(now.0, &txid);
        assert!(matches!(feed(&mut only, now, &probe).0, Outcome::Reply(_)));
    }
}
