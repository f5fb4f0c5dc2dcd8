//! An appliance's side of the browser log-in written by hand: the answers to the server's
//! PERSONAS, CONNECT and SIGNAL requests and the appliance's own SIGNALs, for tests and
//! benchmarks that drive the server and play the appliance. The builders check nothing (a
//! benchmark must not pay for it); [`signed_by_flock`] checks a request's signature.

use flock_proto::identity;
use flock_proto::login::SessionNonce;
use flock_proto::stun::{Message, TransactionId};
use flock_proto::testing::keypair;
use flock_proto::wire::login::{Ack, Connect, PersonasChunk, PersonasRequest, Signal, SignalBody};
use flock_proto::wire::method;
use flock_proto::Name;
use sha2::{Digest, Sha256};

/// The key seed of the flock the simulated servers share.
pub const FLOCK_SEED: u8 = 200;

/// The flock's public key (the one the appliances trust).
pub fn flock_public_key() -> [u8; 32] {
    identity::public_key(&keypair(FLOCK_SEED))
}

/// The SHA-256 of a persona list, as PERSONAS carries it.
pub fn checksum(list: &[u8]) -> [u8; 32] {
    Sha256::digest(list).into()
}

/// Whether a PERSONAS or CONNECT request is signed with the flock's key.
pub fn signed_by_flock(req: &[u8]) -> bool {
    let m = Message::parse(req).expect("a STUN message");
    let key = flock_public_key();
    match m.method() {
        x if x == method::PERSONAS => PersonasRequest::parse(&m).unwrap().from_flock(&key),
        x if x == method::CONNECT => Connect::parse(&m).unwrap().from_flock(&key),
        other => panic!("not a signed request: {other:?}"),
    }
}

/// The answer to a PERSONAS request serving `list`: the chunk at the requested offset (as much
/// as fits in the request's size), only the checksum when the server already knows the list,
/// no data when credentials are required. Never larger than the request.
pub fn personas_answer(req: &[u8], list: &[u8], credentials_required: bool) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let r = PersonasRequest::parse(&m).unwrap();
    let sum = checksum(list);
    let start = r.offset as usize;
    let room = PersonasChunk::room(req.len(), &r.name);
    let data = if credentials_required || r.known == Some(sum) {
        &[][..]
    } else {
        &list[start..(start + room).min(list.len())]
    };
    let chunk = PersonasChunk {
        name: r.name,
        checksum: sum,
        total: list.len() as u32,
        offset: r.offset,
        credentials_required,
        data,
    };
    let mut buf = [0u8; 1500];
    let n = chunk.encode(&mut buf, m.transaction_id()).unwrap();
    assert!(
        n <= req.len(),
        "a {n}-byte answer to a {}-byte PERSONAS",
        req.len()
    );
    buf[..n].to_vec()
}

/// A CONNECT's session nonce, persona and credential.
pub fn connect_request(req: &[u8]) -> (SessionNonce, String, Vec<u8>) {
    let m = Message::parse(req).unwrap();
    let c = Connect::parse(&m).unwrap();
    (c.session, c.persona.to_owned(), c.credential.to_vec())
}

/// The answer to a CONNECT: accepted (`None`) or the error `code`.
pub fn connect_answer(req: &[u8], error: Option<u16>) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let c = Connect::parse(&m).unwrap();
    let mut buf = [0u8; 1500];
    let n = Ack {
        method: method::CONNECT,
        name: c.name,
        session: c.session,
        seq: None,
        error,
    }
    .encode(&mut buf, m.transaction_id())
    .unwrap();
    buf[..n].to_vec()
}

/// The appliance's SIGNAL number `seq` of session `nonce` (its transaction id names `seq`).
pub fn signal(name: Name, nonce: SessionNonce, seq: u32, body: SignalBody<'_>) -> Vec<u8> {
    let mut txid = [0u8; 12];
    txid[..4].copy_from_slice(&seq.to_be_bytes());
    txid[4] = 0xAA;
    signal_with(&txid, name, nonce, seq, body)
}

/// A SIGNAL with transaction id `txid` (a server's SIGNAL to an appliance has the same form).
pub fn signal_with(
    txid: &TransactionId,
    name: Name,
    nonce: SessionNonce,
    seq: u32,
    body: SignalBody<'_>,
) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let n = Signal {
        name,
        session: nonce,
        seq,
        body,
    }
    .encode(&mut buf, txid)
    .unwrap();
    buf[..n].to_vec()
}

/// Reads a SIGNAL from the server and acknowledges it: (the SIGNAL, the ack's bytes).
pub fn ack_signal(b: &[u8]) -> (Signal<'_>, Vec<u8>) {
    let m = Message::parse(b).unwrap();
    let sig = Signal::parse(&m).unwrap();
    let mut buf = [0u8; 1500];
    let n = Ack {
        method: method::SIGNAL,
        name: sig.name,
        session: sig.session,
        seq: Some(sig.seq),
        error: None,
    }
    .encode(&mut buf, m.transaction_id())
    .unwrap();
    (sig, buf[..n].to_vec())
}
