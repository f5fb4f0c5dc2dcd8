//! A real flockd answers STUN Binding with the client's address, over loopback.
use flock_proto::stun::{attr, Class, Encoder, Message, MessageType, Method};
use flock_tests::{raw_client, request, Flockd};

fn binding(txid: [u8; 12], padding: usize) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let typ = MessageType {
        method: Method::BINDING,
        class: Class::Request,
    };
    let mut e = Encoder::new(&mut buf, typ, &txid).unwrap();
    if padding > 0 {
        e.attribute(attr::SOFTWARE, &vec![b'p'; padding]).unwrap();
    }
    let n = e.fingerprint().unwrap();
    buf[..n].to_vec()
}

#[test]
fn binding_returns_the_reflexive_address() {
    let server = Flockd::start(&[]);
    let sock = raw_client();
    let req = binding([9; 12], 16);
    let answer = request(&sock, server.udp, &req).expect("an answer");
    assert!(answer.len() <= req.len());
    let m = Message::parse(&answer).unwrap();
    assert_eq!((m.method(), m.class()), (Method::BINDING, Class::Success));
    assert_eq!(m.transaction_id(), &[9; 12]);
    assert_eq!(
        m.xor_mapped_address().unwrap().unwrap(),
        sock.local_addr().unwrap()
    );
}

#[test]
fn bare_binding_is_not_answered_by_default() {
    let server = Flockd::start(&[]);
    let sock = raw_client();
    assert!(
        request(&sock, server.udp, &binding([1; 12], 0)).is_none(),
        "28-byte request, 40-byte answer"
    );
    assert!(
        request(&sock, server.udp, &binding([2; 12], 16)).is_some(),
        "server still answers padded ones"
    );
}
