//! LOOKUP: request NAME → answer address, identity prefix, remaining lifetime; or an error.

use super::{code, Sender};
use crate::identity::FINGERPRINT_PREFIX_LEN;
use crate::name::Name;
use crate::stun::{self, Class, EncodeError, Message, TransactionId};
use crate::wire::{attr, fixed, method, name_attr, MsgError};
use std::net::SocketAddr;

/// PADDING in a request: an answer (address, identity prefix, lifetime: at most 48 bytes more
/// for IPv6) is never larger than the request, even to a source that replays a captured one.
const REQUEST_PADDING: usize = 48;

/// LOOKUP request: FROM-SERVER, DIGEST, NAME, PADDING, MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupRequest {
    pub name: Name,
}

impl LookupRequest {
    /// Reads an [`super::open`]ed message.
    pub fn parse(msg: &Message<'_>) -> Result<LookupRequest, MsgError> {
        if msg.method() != method::LOOKUP || msg.class() != Class::Request {
            return Err(MsgError::WrongType);
        }
        Ok(LookupRequest {
            name: name_attr(msg)?,
        })
    }
}

pub fn encode_lookup(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    s: &Sender,
) -> Result<usize, EncodeError> {
    let mut e = s.start(buf, method::LOOKUP, Class::Request, txid)?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.attribute_with(stun::attr::PADDING, REQUEST_PADDING, |_| {})?;
    s.seal(e)
}

/// A LOOKUP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupAnswer {
    /// Success: FROM-SERVER, DIGEST, NAME, XOR-MAPPED-ADDRESS (the appliance's registered
    /// address), IDENTITY-PREFIX, EXPIRY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
    Found {
        name: Name,
        addr: SocketAddr,
        identity: [u8; FINGERPRINT_PREFIX_LEN],
        lifetime_ms: u32,
    },
    /// Error: FROM-SERVER, DIGEST, ERROR-CODE, NAME, MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
    Refused { name: Name, code: u16 },
}

impl LookupAnswer {
    /// Reads an [`super::open`]ed message.
    pub fn parse(msg: &Message<'_>) -> Result<LookupAnswer, MsgError> {
        if msg.method() != method::LOOKUP {
            return Err(MsgError::WrongType);
        }
        let name = name_attr(msg)?;
        match msg.class() {
            Class::Success => {
                let addr = msg
                    .xor_mapped_address()
                    .ok_or(MsgError::Missing(stun::attr::XOR_MAPPED_ADDRESS))??;
                let identity = *fixed(msg, attr::IDENTITY_PREFIX)?;
                let lifetime_ms = u32::from_be_bytes(*fixed(msg, attr::EXPIRY)?);
                Ok(LookupAnswer::Found {
                    name,
                    addr,
                    identity,
                    lifetime_ms,
                })
            }
            Class::Error => {
                let code = msg
                    .error_code()
                    .ok_or(MsgError::Missing(stun::attr::ERROR_CODE))??
                    .code;
                Ok(LookupAnswer::Refused { name, code })
            }
            _ => Err(MsgError::WrongType),
        }
    }

    pub fn name(&self) -> &Name {
        match self {
            LookupAnswer::Found { name, .. } | LookupAnswer::Refused { name, .. } => name,
        }
    }
}

pub fn encode_lookup_found(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    addr: SocketAddr,
    identity: &[u8; FINGERPRINT_PREFIX_LEN],
    lifetime_ms: u32,
    s: &Sender,
) -> Result<usize, EncodeError> {
    let mut e = s.start(buf, method::LOOKUP, Class::Success, txid)?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.xor_mapped_address(addr)?;
    e.attribute(attr::IDENTITY_PREFIX, identity)?;
    e.attribute(attr::EXPIRY, &lifetime_ms.to_be_bytes())?;
    s.seal(e)
}

pub fn encode_lookup_error(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    c: u16,
    s: &Sender,
) -> Result<usize, EncodeError> {
    let mut e = s.start(buf, method::LOOKUP, Class::Error, txid)?;
    e.error_code(c, code::reason(c))?;
    e.attribute(attr::NAME, name.as_bytes())?;
    s.seal(e)
}
