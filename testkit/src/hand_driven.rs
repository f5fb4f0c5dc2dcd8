//! The simulation's server driven by hand, datagram by datagram and timer by timer, for
//! proto's tests, which play every appliance themselves (a [`Device`] each).

use crate::sim::{server_keyed, FLOCK_SEED, SECRET};
use flock_proto::server::{Keys, Server, ServerConfig};
pub use flock_proto::testing::{keypair, Answer, Device, Host, XorShift};
use flock_proto::token::ProofKeys;
use flock_proto::Time;
use std::net::SocketAddr;
use std::sync::Arc;

pub use crate::sim::{addr, T0};

/// The boot bytes of the hand-driven servers (`keys`); a restart is `keys_for_boot` with
/// others.
pub const BOOT: [u8; 16] = [0xb0; 16];

pub fn keys(secret: &[u8]) -> Keys {
    keys_for_boot(secret, &BOOT)
}

pub fn keys_for_boot(secret: &[u8], boot: &[u8; 16]) -> Keys {
    Keys {
        proof: ProofKeys::from_secret(secret).for_boot(boot),
        flock: Arc::new(keypair(FLOCK_SEED)),
    }
}

/// A server keyed with [`SECRET`] on [`BOOT`].
pub fn server(config: ServerConfig) -> Host {
    server_keyed(config, keys(SECRET))
}

/// Feeds one datagram, returns the immediate answer (checking it is never larger).
pub fn exchange(
    server: &mut Server<XorShift>,
    now: Time,
    src: SocketAddr,
    datagram: &[u8],
) -> Answer {
    let mut reply = [0u8; 1500];
    match server.handle(now, src, datagram, &mut reply).reply() {
        None => Answer::Silent,
        Some(n) => {
            assert!(
                n <= datagram.len(),
                "answer of {n} bytes to a {}-byte request",
                datagram.len()
            );
            Answer::read(&reply[..n])
        }
    }
}

/// Everything the server wants to send on its own.
pub fn drain(host: &mut Host) -> Vec<(SocketAddr, Vec<u8>)> {
    host.sent()
}

/// Runs the server's timers up to `until`, collecting what it sends on the way.
pub fn advance(host: &mut Host, until: Time) -> Vec<(Time, SocketAddr, Vec<u8>)> {
    let mut sent = vec![];
    while let Some(t) = host.timeout() {
        if t > until {
            break;
        }
        host.handle_timeout(t);
        sent.extend(host.sent().into_iter().map(|(d, b)| (t, d, b)));
    }
    sent
}

/// REGISTER from `src`, doing the nonce round trip when needed.
pub fn register(
    d: &mut Device,
    server: &mut Server<XorShift>,
    now: Time,
    src: SocketAddr,
) -> Answer {
    for _ in 0..2 {
        let txid = d.txid();
        let ts = d.stamp(now.0);
        let a = exchange(server, now, src, &d.register_bytes(ts, &txid));
        d.absorb(&a);
        match &a {
            Answer::Error(e) if e.nonce.is_some() => continue,
            _ => return a,
        }
    }
    panic!("nonce round trip did not converge")
}

/// KEEPALIVE from `src`.
pub fn keepalive(
    d: &mut Device,
    server: &mut Server<XorShift>,
    now: Time,
    src: SocketAddr,
) -> Answer {
    let txid = d.txid();
    let a = exchange(server, now, src, &d.keepalive_bytes(&txid));
    d.absorb(&a);
    a
}
