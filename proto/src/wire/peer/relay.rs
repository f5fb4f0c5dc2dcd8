//! RELAY: one log-in datagram (PERSONAS, CONNECT or SIGNAL, request or answer) carried between
//! the serving server and the appliance's owner. No outer NAME: the inner datagram carries it
//! (routing reads it there), which keeps a RELAY of a 1200-byte datagram under 1500 bytes.

use super::{Sender, MAX_INNER};
use crate::name::Name;
use crate::stun::{Class, EncodeError, Message};
use crate::wire::login::is_login;
use crate::wire::{attr, method, name_attr, MsgError};

/// RELAY indication: FROM-SERVER, DIGEST, DATAGRAM, MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct Relay<'a> {
    /// The inner datagram, parsed: a log-in message with NAME and FINGERPRINT.
    pub inner: Message<'a>,
    pub name: Name,
}

impl<'a> Relay<'a> {
    /// Reads a RELAY (verified or not: routing reads the name before anything is verified).
    pub fn parse(msg: &Message<'a>) -> Result<Relay<'a>, MsgError> {
        if msg.method() != method::RELAY || msg.class() != Class::Indication {
            return Err(MsgError::WrongType);
        }
        let bytes = msg
            .get(attr::DATAGRAM)
            .ok_or(MsgError::Missing(attr::DATAGRAM))?;
        if bytes.len() > MAX_INNER {
            return Err(MsgError::BadLength(attr::DATAGRAM));
        }
        let inner = Message::parse(bytes)?;
        if !is_login(&inner) {
            return Err(MsgError::WrongType);
        }
        let name = Some(&inner)
            .filter(|m| m.has_fingerprint())
            .and_then(|m| name_attr(m).ok())
            .ok_or(MsgError::Missing(attr::NAME))?;
        Ok(Relay { inner, name })
    }
}

/// Wraps `inner` (a log-in datagram) in a RELAY; its transaction id is reused.
pub fn encode_relay(buf: &mut [u8], inner: &[u8], s: &Sender) -> Result<usize, EncodeError> {
    if inner.len() > MAX_INNER {
        return Err(EncodeError::ValueTooLong);
    }
    let txid = Message::parse(inner)
        .map(|m| *m.transaction_id())
        .unwrap_or_default();
    let mut e = s.start(buf, method::RELAY, Class::Indication, &txid)?;
    e.attribute(attr::DATAGRAM, inner)?;
    s.seal(e)
}
