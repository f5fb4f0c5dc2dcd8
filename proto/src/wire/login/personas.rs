//! PERSONAS (flock → appliance, signed, padded): one chunk of the persona list at an offset;
//! its answers (a chunk, or a refusal).

use super::*;
use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::identity::{self, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::name::Name;
use crate::stun::{self, Class, EncodeError, Encoder, Message, TransactionId};
use ring::signature::Ed25519KeyPair;

pub(super) const PERSONAS_CONTEXT: &[u8] = b"flock personas v1";

/// PERSONAS request: NAME, OFFSET, [CHECKSUM the flock has cached], TIMESTAMP (valid until, ms),
/// SIGNATURE (flock key), PADDING, FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct PersonasRequest<'a> {
    pub name: Name,
    pub offset: u32,
    pub known: Option<[u8; 32]>,
    pub valid_until_ms: u64,
    pub signature: &'a [u8; SIGNATURE_LEN],
    txid: TransactionId,
}

impl<'a> PersonasRequest<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<PersonasRequest<'a>, MsgError> {
        expect(msg, method::PERSONAS, Class::Request)?;
        Ok(PersonasRequest {
            name: name_attr(msg)?,
            offset: u32_attr(msg, attr::OFFSET)?,
            known: msg
                .get(attr::CHECKSUM)
                .map(|_| fixed(msg, attr::CHECKSUM).copied())
                .transpose()?,
            valid_until_ms: u64::from_be_bytes(*fixed(msg, attr::TIMESTAMP)?),
            signature: fixed(msg, attr::SIGNATURE)?,
            txid: *msg.transaction_id(),
        })
    }

    /// True when a server holding the flock key (pinned as `flock_public_key`) sent this.
    pub fn from_flock(&self, flock_public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        let s = personas_signed(
            &self.txid,
            &self.name,
            self.offset,
            self.known.as_ref(),
            self.valid_until_ms,
        );
        identity::verify(flock_public_key, &s, self.signature)
    }
}

pub(super) fn personas_signed(
    txid: &TransactionId,
    name: &Name,
    offset: u32,
    known: Option<&[u8; 32]>,
    until: u64,
) -> Vec<u8> {
    let known: &[u8] = known.map_or(&[], |k| k);
    signed(
        PERSONAS_CONTEXT,
        txid,
        name,
        &[&offset.to_be_bytes(), known, &until.to_be_bytes()],
    )
}

/// Encodes a signed PERSONAS request padded to [`PERSONAS_REQUEST_LEN`].
pub fn encode_personas_request(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    offset: u32,
    known: Option<&[u8; 32]>,
    valid_until_ms: u64,
    flock_key: &Ed25519KeyPair,
) -> Result<usize, EncodeError> {
    let sig = identity::sign(
        flock_key,
        &personas_signed(txid, name, offset, known, valid_until_ms),
    );
    let mut e = Encoder::new(buf, typ(method::PERSONAS, Class::Request), txid)?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.attribute(attr::OFFSET, &offset.to_be_bytes())?;
    if let Some(k) = known {
        e.attribute(attr::CHECKSUM, k)?;
    }
    e.attribute(attr::TIMESTAMP, &valid_until_ms.to_be_bytes())?;
    e.attribute(attr::SIGNATURE, &sig)?;
    pad_to(&mut e, PERSONAS_REQUEST_LEN)?;
    e.fingerprint()
}

/// PERSONAS success: NAME, CHECKSUM, TOTAL, OFFSET, \[FLAGS\], \[DATA\], FINGERPRINT. No DATA when
/// the request's CHECKSUM is current (the flock's cache is good) or credentials are required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonasChunk<'a> {
    pub name: Name,
    pub checksum: [u8; 32],
    pub total: u32,
    pub offset: u32,
    pub credentials_required: bool,
    pub data: &'a [u8],
}

impl<'a> PersonasChunk<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<PersonasChunk<'a>, MsgError> {
        expect(msg, method::PERSONAS, Class::Success)?;
        let flags = msg
            .get(attr::FLAGS)
            .map(|_| u32_attr(msg, attr::FLAGS))
            .transpose()?
            .unwrap_or(0);
        Ok(PersonasChunk {
            name: name_attr(msg)?,
            checksum: *fixed(msg, attr::CHECKSUM)?,
            total: u32_attr(msg, attr::TOTAL)?,
            offset: u32_attr(msg, attr::OFFSET)?,
            credentials_required: flags & FLAG_CREDENTIALS_REQUIRED != 0,
            data: msg.get(attr::DATA).unwrap_or(&[]),
        })
    }

    /// Chunk bytes that fit in an answer no larger than a request of `request_len` bytes.
    pub fn room(request_len: usize, name: &Name) -> usize {
        // header 20, NAME, CHECKSUM 36, TOTAL 8, OFFSET 8, FLAGS 8, DATA header 4, FINGERPRINT 8.
        let fixed = 20 + 4 + stun_padded(name.as_bytes().len()) + 36 + 8 + 8 + 8 + 4 + 8;
        request_len.saturating_sub(fixed) & !3
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(buf, typ(method::PERSONAS, Class::Success), txid)?;
        e.attribute(attr::NAME, self.name.as_bytes())?;
        e.attribute(attr::CHECKSUM, &self.checksum)?;
        e.attribute(attr::TOTAL, &self.total.to_be_bytes())?;
        e.attribute(attr::OFFSET, &self.offset.to_be_bytes())?;
        if self.credentials_required {
            e.attribute(attr::FLAGS, &FLAG_CREDENTIALS_REQUIRED.to_be_bytes())?;
        }
        if !self.data.is_empty() {
            e.attribute(attr::DATA, self.data)?;
        }
        e.fingerprint()
    }
}

/// PERSONAS error: ERROR-CODE, NAME, FINGERPRINT. The appliance sends 508 when its answer rate
/// is exceeded, so the log-in fails at once instead of after retransmissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonasRefused {
    pub name: Name,
    pub code: u16,
}

impl PersonasRefused {
    pub fn parse(msg: &Message<'_>) -> Result<PersonasRefused, MsgError> {
        expect(msg, method::PERSONAS, Class::Error)?;
        let code = msg
            .error_code()
            .ok_or(MsgError::Missing(stun::attr::ERROR_CODE))??
            .code;
        Ok(PersonasRefused {
            name: name_attr(msg)?,
            code,
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(buf, typ(method::PERSONAS, Class::Error), txid)?;
        e.error_code(self.code, code::reason(self.code))?;
        e.attribute(attr::NAME, self.name.as_bytes())?;
        e.fingerprint()
    }
}

impl PersonasRequest<'_> {
    /// True while not stale at `now_ms`, allowing `skew_ms` of clock difference.
    pub fn fresh(&self, now_ms: u64, skew_ms: u64) -> bool {
        now_ms <= self.valid_until_ms.saturating_add(skew_ms)
    }
}
