//! Garbage and truncated datagrams get no answer, and the server stays up and keeps serving.
use flock_proto::testing::Device;
use flock_tests::{raw_client, Flockd};
use std::time::Duration;

#[test]
fn garbage_gets_no_answer_and_server_stays_up() {
    let server = Flockd::start(&[]);
    let sock = raw_client();
    let d = Device::new("box", 1);
    let txid = [3; 12];
    let valid = d.register_bytes(1_700_000_000_000, &txid);
    let mut junk: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    junk.push(vec![]);
    junk.push(vec![0xff; 1500]);
    junk.push(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    let mut x = 0x1234_5678u32;
    for len in [1usize, 19, 20, 21, 64, 300, 1400] {
        junk.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for j in &junk {
        sock.send_to(j, server.udp).unwrap();
    }
    // Then a valid request: its answer must be the only one that ever arrives.
    sock.send_to(&valid, server.udp).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut answers = vec![];
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        answers.push(buf[..n].to_vec());
    }
    assert_eq!(
        answers.len(),
        1,
        "only the valid request is answered ({} junk datagrams sent)",
        junk.len()
    );
    let m = flock_proto::stun::Message::parse(&answers[0]).unwrap();
    assert_eq!(m.transaction_id(), &txid);
    assert!(answers[0].len() <= valid.len());
}
