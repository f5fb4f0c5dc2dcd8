//! CONNECT (flock → appliance, signed): persona and credential under a fresh session nonce.

use super::*;
use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::identity::{self, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::login::SessionNonce;
use crate::name::Name;
use crate::stun::{Class, EncodeError, Encoder, Message, TransactionId};
use ring::signature::Ed25519KeyPair;

pub(super) const CONNECT_CONTEXT: &[u8] = b"flock connect v1";

/// CONNECT request: NAME, SESSION, PERSONA, CREDENTIAL, TIMESTAMP (valid until, ms), SIGNATURE
/// (flock key), FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct Connect<'a> {
    pub name: Name,
    pub session: SessionNonce,
    pub persona: &'a str,
    pub credential: &'a [u8],
    pub valid_until_ms: u64,
    pub signature: &'a [u8; SIGNATURE_LEN],
    pub(super) txid: TransactionId,
}

impl<'a> Connect<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<Connect<'a>, MsgError> {
        expect(msg, method::CONNECT, Class::Request)?;
        let credential = msg
            .get(attr::CREDENTIAL)
            .ok_or(MsgError::Missing(attr::CREDENTIAL))?;
        if credential.len() > MAX_CREDENTIAL_LEN {
            return Err(MsgError::BadLength(attr::CREDENTIAL));
        }
        Ok(Connect {
            name: name_attr(msg)?,
            session: *fixed(msg, attr::SESSION)?,
            persona: text(msg, attr::PERSONA, MAX_PERSONA_LEN)?,
            credential,
            valid_until_ms: u64::from_be_bytes(*fixed(msg, attr::TIMESTAMP)?),
            signature: fixed(msg, attr::SIGNATURE)?,
            txid: *msg.transaction_id(),
        })
    }

    pub fn from_flock(&self, flock_public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        let s = connect_signed(
            &self.txid,
            &self.name,
            &self.session,
            self.persona,
            self.credential,
            self.valid_until_ms,
        );
        identity::verify(flock_public_key, &s, self.signature)
    }

    /// True while not stale at `now_ms`, allowing `skew_ms` of clock difference.
    pub fn fresh(&self, now_ms: u64, skew_ms: u64) -> bool {
        now_ms <= self.valid_until_ms.saturating_add(skew_ms)
    }
}

pub(super) fn connect_signed(
    txid: &TransactionId,
    name: &Name,
    session: &SessionNonce,
    persona: &str,
    credential: &[u8],
    until: u64,
) -> Vec<u8> {
    signed(
        CONNECT_CONTEXT,
        txid,
        name,
        &[
            session,
            persona.as_bytes(),
            credential,
            &until.to_be_bytes(),
        ],
    )
}

/// Why a CONNECT could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    PersonaTooLong,
    CredentialTooLong,
    Encode(EncodeError),
}

/// Encodes a signed CONNECT request.
#[allow(clippy::too_many_arguments)]
pub fn encode_connect(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    session: &SessionNonce,
    persona: &str,
    credential: &[u8],
    valid_until_ms: u64,
    flock_key: &Ed25519KeyPair,
) -> Result<usize, ConnectError> {
    if persona.len() > MAX_PERSONA_LEN {
        return Err(ConnectError::PersonaTooLong);
    }
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(ConnectError::CredentialTooLong);
    }
    let mut signed = connect_signed(txid, name, session, persona, credential, valid_until_ms);
    let sig = identity::sign(flock_key, &signed);
    // The buffer holds the credential: do not leave it in freed memory.
    signed.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&signed);
    let enc = |buf: &mut [u8]| -> Result<usize, EncodeError> {
        let mut e = Encoder::new(buf, typ(method::CONNECT, Class::Request), txid)?;
        e.attribute(attr::NAME, name.as_bytes())?;
        e.attribute(attr::SESSION, session)?;
        e.attribute(attr::PERSONA, persona.as_bytes())?;
        e.attribute(attr::CREDENTIAL, credential)?;
        e.attribute(attr::TIMESTAMP, &valid_until_ms.to_be_bytes())?;
        e.attribute(attr::SIGNATURE, &sig)?;
        e.fingerprint()
    };
    enc(buf).map_err(ConnectError::Encode)
}
