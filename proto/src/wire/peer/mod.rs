//! The peer protocol between the servers of a flock (docs/PROTOCOL.md, "Peer protocol"): the
//! codec only; the state lives in `server::peers` (asking side) and `server::relay_table` (owner).
//!
//! - LOOKUP (request/answer): where is the appliance of NAME? Answered by its owner from the
//!   registration table: address, identity prefix and remaining lifetime, or not-found.
//! - RELAY (indication): one log-in datagram carried between the serving server and the owner,
//!   for appliances behind NATs that drop packets from addresses they never sent to.
//!
//! Every peer message carries FROM-SERVER (the sender's index) and DIGEST (its membership list),
//! and ends with MESSAGE-INTEGRITY-SHA256 under the flock's peer secret, then FINGERPRINT.
//! [`open`] checks all of that before anything reads the rest.

mod lookup;
mod relay;

pub use lookup::{
    encode_lookup, encode_lookup_error, encode_lookup_found, LookupAnswer, LookupRequest,
};
pub use relay::{encode_relay, Relay};

use crate::stun::{Class, EncodeError, Encoder, Message, MessageType, Method, TransactionId};
use crate::wire::{attr, fixed, method, MsgError};
use ring::hmac;

/// Error codes of LOOKUP answers.
pub mod code {
    /// No live registration for the name.
    pub const NOT_FOUND: u16 = 404;
    /// The receiver does not own the name (the two servers split names differently).
    pub const NOT_OWNER: u16 = 421;
    /// The receiver's membership list differs from the sender's: refused.
    pub const MEMBERSHIP_DIFFERS: u16 = 470;

    pub fn reason(code: u16) -> &'static str {
        match code {
            NOT_FOUND => "Not found",
            NOT_OWNER => "Not owner",
            MEMBERSHIP_DIFFERS => "Membership differs",
            _ => "Error",
        }
    }
}

/// Largest RELAY: an inner log-in datagram of 1200 bytes plus the envelope stays under the
/// 1500-byte payload a packet core hands to another over the channel mesh.
pub const MAX_INNER: usize = crate::wire::login::MAX_DATAGRAM;

/// Who signs and how: what every peer message carries.
#[derive(Clone)]
pub struct Sender {
    /// This server's index in the flock.
    pub me: u32,
    pub digest: [u8; 32],
    pub key: hmac::Key,
}

impl Sender {
    /// From the host's flock settings.
    pub fn new(me: usize, digest: [u8; 32], peer_secret: &[u8; 32]) -> Sender {
        Sender {
            me: me as u32,
            digest,
            key: hmac::Key::new(hmac::HMAC_SHA256, peer_secret),
        }
    }

    fn start<'b>(
        &self,
        buf: &'b mut [u8],
        method: Method,
        class: Class,
        txid: &TransactionId,
    ) -> Result<Encoder<'b>, EncodeError> {
        let mut e = Encoder::new(buf, MessageType::new(method, class), txid)?;
        e.attribute(attr::FROM_SERVER, &self.me.to_be_bytes())?;
        e.attribute(attr::DIGEST, &self.digest)?;
        Ok(e)
    }

    fn seal(&self, mut e: Encoder<'_>) -> Result<usize, EncodeError> {
        e.message_integrity_sha256(&self.key)?;
        e.fingerprint()
    }
}

/// What every verified peer message says about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: u32,
    pub digest: [u8; 32],
}

/// Why a peer message was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// Not LOOKUP or RELAY, or no FINGERPRINT.
    NotPeer,
    /// MESSAGE-INTEGRITY-SHA256 missing or wrong: drop silently.
    Integrity,
    /// Verified, but FROM-SERVER or DIGEST missing or of the wrong size.
    Msg(MsgError),
}

/// True for the peer methods (used for routing and dispatch; nothing is verified).
pub fn is_peer(msg: &Message<'_>) -> bool {
    let m = msg.method();
    m == method::LOOKUP || m == method::RELAY
}

/// Checks a peer message: method, FINGERPRINT, integrity under `key`, then reads the envelope.
/// Nothing else of the message may be trusted before this returns `Ok`.
pub fn open(msg: &Message<'_>, key: &hmac::Key) -> Result<Envelope, PeerError> {
    if !is_peer(msg) || !msg.has_fingerprint() {
        return Err(PeerError::NotPeer);
    }
    msg.verify_integrity_sha256(key)
        .map_err(|_| PeerError::Integrity)?;
    let from = u32::from_be_bytes(*fixed(msg, attr::FROM_SERVER).map_err(PeerError::Msg)?);
    let digest = *fixed(msg, attr::DIGEST).map_err(PeerError::Msg)?;
    Ok(Envelope { from, digest })
}
