//! A keep-alive with a forged token gets the typed "register again" error, never larger than
//! the request, and changes nothing.
use flock_proto::testing::{Answer, Device};
use flock_proto::token::Token;
use flock_proto::wire::registration::code;
use flock_tests::{raw_client, register_over, request, Flockd};

#[test]
fn forged_token_is_refused() {
    let server = Flockd::start(&[]);
    let sock = raw_client();
    let mut d = Device::new("box", 1);
    assert!(matches!(
        register_over(&mut d, &sock, server.udp),
        Answer::Registered(_)
    ));
    let good = d.token.unwrap();

    for forged in [
        Token {
            mac: [0; 16],
            ..good
        },
        Token {
            expiry: good.expiry + 10,
            ..good
        },
    ] {
        d.token = Some(forged);
        let txid = d.txid();
        let req = d.keepalive_bytes(&txid);
        let bytes = request(&sock, server.udp, &req).expect("typed error");
        assert!(bytes.len() <= req.len(), "{} > {}", bytes.len(), req.len());
        assert_eq!(Answer::read(&bytes).code(), Some(code::REREGISTER));
    }
    // The genuine token still works: nothing was changed by the forgeries.
    d.token = Some(good);
    let txid = d.txid();
    let bytes = request(&sock, server.udp, &d.keepalive_bytes(&txid)).unwrap();
    assert!(matches!(Answer::read(&bytes), Answer::KeptAlive(_)));
}

#[test]
fn another_key_cannot_hijack_a_registered_name() {
    let server = Flockd::start(&[]);
    let (owner_sock, thief_sock) = (raw_client(), raw_client());
    let mut owner = Device::new("box", 1);
    let mut thief = Device::new("box", 2);
    assert!(matches!(
        register_over(&mut owner, &owner_sock, server.udp),
        Answer::Registered(_)
    ));
    assert_eq!(
        register_over(&mut thief, &thief_sock, server.udp).code(),
        Some(code::NAME_TAKEN)
    );
    // The owner's mapping is intact: its keep-alive still succeeds with the owner's address.
    let txid = owner.txid();
    let bytes = request(&owner_sock, server.udp, &owner.keepalive_bytes(&txid)).unwrap();
    let Answer::KeptAlive(k) = Answer::read(&bytes) else {
        panic!()
    };
    assert_eq!(k.mapped, owner_sock.local_addr().unwrap());
}
