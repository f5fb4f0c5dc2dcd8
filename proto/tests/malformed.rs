//! Garbage, truncations and bit flips: no answer, no panic, no state.

use flock_proto::server::ServerConfig;
use flock_testkit::hand_driven::*;

#[test]
fn truncated_and_flipped_requests_get_no_answer() {
    let mut s = server(ServerConfig::default());
    let mut d = Device::new("box", 1);
    let src = addr("192.0.2.1:1");
    register(&mut d, &mut s, T0, src);
    let txid = d.txid();
    let valid = [d.register_bytes(T0.0, &txid), d.keepalive_bytes(&txid)];
    let before = s.stats().clone();
    let mut reply = [0u8; 1500];
    for v in &valid {
        for cut in 0..v.len() {
            assert!(
                s.handle(T0, src, &v[..cut], &mut reply).reply().is_none(),
                "truncated at {cut}"
            );
        }
        for bit in 0..v.len() * 8 {
            let mut f = v.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            // A flip is caught by FINGERPRINT or by the header checks.
            assert!(
                s.handle(T0, src, &f, &mut reply).reply().is_none(),
                "bit {bit} flipped"
            );
        }
    }
    assert_eq!(s.stats().registered, before.registered);
    assert_eq!(s.occupancy(), (1, 0));
}

#[test]
fn random_datagrams_never_panic() {
    let mut s = server(ServerConfig::default());
    let mut rng = XorShift(42);
    let mut reply = [0u8; 1500];
    let mut buf = [0u8; 600];
    for i in 0..50_000usize {
        let len = i % buf.len();
        flock_proto::server::Entropy::fill(&mut rng, &mut buf[..len]);
        if i % 2 == 0 && len >= 20 {
            // Make half of them look like STUN so the deeper parsers are reached.
            buf[0] &= 0x3f;
            buf[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            buf[2..4].copy_from_slice(&((len as u16 - 20) & !3).to_be_bytes());
        }
        assert!(s
            .handle(T0, addr("192.0.2.1:1"), &buf[..len], &mut reply)
            .reply()
            .is_none());
    }
}
