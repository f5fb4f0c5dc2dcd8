//! The registration messages (appliance ↔ server): REGISTER, KEEPALIVE, CHECK, their answers
//! and the error answers (ERROR-CODE, Try-Alternate) of the registration methods.

use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::identity::{self, Fingerprint, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::name::{Name, MAX_NAME_LEN};
use crate::stun::{self, Class, EncodeError, Encoder, Message, MessageType, Method, TransactionId};
use crate::token::{Nonce, Token, NONCE_LEN, TOKEN_LEN};
use ring::signature::Ed25519KeyPair;
use std::net::SocketAddr;

/// Error codes a flock server answers with (ERROR-CODE attribute).
pub mod code {
    /// STUN Try-Alternate (RFC 8489 §10): another server of the flock owns the name; the
    /// answer carries its address in ALTERNATE-SERVER.
    pub const TRY_ALTERNATE: u16 = 300;
    /// REGISTER without a nonce for this source address; the answer carries one.
    pub const NONCE_REQUIRED: u16 = 401;
    /// REGISTER whose signature does not verify.
    pub const BAD_SIGNATURE: u16 = 403;
    /// The name is held by another identity.
    pub const NAME_TAKEN: u16 = 409;
    /// REGISTER whose nonce expired; the answer carries a fresh one.
    pub const STALE_NONCE: u16 = 438;
    /// REGISTER whose timestamp is too far from the server's clock.
    pub const CLOCK_SKEW: u16 = 440;
    /// KEEPALIVE with a token that is unknown, forged, expired or for another address: register again.
    pub const REREGISTER: u16 = 441;
    /// The operator's policy does not admit this identity for this name.
    pub const NOT_ADMITTED: u16 = 442;
    /// The server's registration table is full; try later or elsewhere.
    pub const CAPACITY: u16 = 508;

    /// Short reason phrase for a code (kept short: errors to unverified sources must stay small).
    pub fn reason(code: u16) -> &'static str {
        match code {
            TRY_ALTERNATE => "Try alternate",
            NONCE_REQUIRED => "Nonce required",
            BAD_SIGNATURE => "Bad signature",
            NAME_TAKEN => "Name taken",
            STALE_NONCE => "Stale nonce",
            CLOCK_SKEW => "Clock skew",
            REREGISTER => "Register again",
            NOT_ADMITTED => "Not admitted",
            CAPACITY => "Full",
            _ => "Error",
        }
    }
}

const REGISTER_CONTEXT: &[u8] = b"flock register v1";
const CHECK_CONTEXT: &[u8] = b"flock check v1";
const CHECK_ANSWER_CONTEXT: &[u8] = b"flock check answer v1";
/// Longest signed blob: context + name length + name + key + timestamp + nonce.
const SIGNED_MAX: usize = 32 + 1 + MAX_NAME_LEN + PUBLIC_KEY_LEN + 8 + NONCE_LEN;

/// Bytes an Ed25519 signature covers, built on the stack.
struct Signed {
    buf: [u8; SIGNED_MAX],
    len: usize,
}

impl Signed {
    fn new(context: &[u8], name: &Name) -> Signed {
        let mut s = Signed {
            buf: [0; SIGNED_MAX],
            len: 0,
        };
        s.push(context);
        s.push(&[name.as_bytes().len() as u8]);
        s.push(name.as_bytes());
        s
    }
    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// REGISTER request: NAME, PUBLIC-KEY, TIMESTAMP, \[NONCE\], SIGNATURE, FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct Register<'a> {
    pub name: Name,
    pub public_key: &'a [u8; PUBLIC_KEY_LEN],
    pub timestamp_ms: u64,
    pub nonce: Option<Nonce>,
    pub signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> Register<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<Register<'a>, MsgError> {
        expect(msg, method::REGISTER, Class::Request)?;
        let nonce = match msg.get(attr::NONCE) {
            None => None,
            Some(b) => Some(Nonce::from_bytes(b).ok_or(MsgError::BadLength(attr::NONCE))?),
        };
        Ok(Register {
            name: name_attr(msg)?,
            public_key: fixed(msg, attr::PUBLIC_KEY)?,
            timestamp_ms: u64::from_be_bytes(*fixed(msg, attr::TIMESTAMP)?),
            nonce,
            signature: fixed(msg, attr::SIGNATURE)?,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.public_key)
    }

    /// Checks the Ed25519 signature (the expensive step: do it last).
    pub fn signature_ok(&self) -> bool {
        let signed = register_signed(&self.name, self.public_key, self.timestamp_ms, self.nonce);
        identity::verify(self.public_key, signed.as_bytes(), self.signature)
    }
}

fn register_signed(
    name: &Name,
    pk: &[u8; PUBLIC_KEY_LEN],
    ts: u64,
    nonce: Option<Nonce>,
) -> Signed {
    let mut s = Signed::new(REGISTER_CONTEXT, name);
    s.push(pk);
    s.push(&ts.to_be_bytes());
    s.push(&nonce.unwrap_or_default().to_bytes());
    s
}

/// Encodes a signed REGISTER request.
pub fn encode_register(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    key: &Ed25519KeyPair,
    timestamp_ms: u64,
    nonce: Option<Nonce>,
) -> Result<usize, EncodeError> {
    let pk = identity::public_key(key);
    let sig = identity::sign(
        key,
        register_signed(name, &pk, timestamp_ms, nonce).as_bytes(),
    );
    let mut e = Encoder::new(
        buf,
        MessageType {
            method: method::REGISTER,
            class: Class::Request,
        },
        txid,
    )?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.attribute(attr::PUBLIC_KEY, &pk)?;
    e.attribute(attr::TIMESTAMP, &timestamp_ms.to_be_bytes())?;
    if let Some(n) = nonce {
        e.attribute(attr::NONCE, &n.to_bytes())?;
    }
    e.attribute(attr::SIGNATURE, &sig)?;
    e.fingerprint()
}

/// REGISTER success: XOR-MAPPED-ADDRESS, TOKEN, KEEPALIVE-INTERVAL, FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub mapped: SocketAddr,
    pub token: Token,
    pub keepalive_interval_ms: u32,
}

impl Registered {
    pub fn parse(msg: &Message<'_>) -> Result<Registered, MsgError> {
        expect(msg, method::REGISTER, Class::Success)?;
        Ok(Registered {
            mapped: msg
                .xor_mapped_address()
                .ok_or(MsgError::Missing(stun::attr::XOR_MAPPED_ADDRESS))??,
            token: Token::from_bytes(msg.get(attr::TOKEN).ok_or(MsgError::Missing(attr::TOKEN))?)
                .ok_or(MsgError::BadLength(attr::TOKEN))?,
            keepalive_interval_ms: u32::from_be_bytes(*fixed(msg, attr::KEEPALIVE_INTERVAL)?),
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(
            buf,
            MessageType {
                method: method::REGISTER,
                class: Class::Success,
            },
            txid,
        )?;
        e.xor_mapped_address(self.mapped)?;
        e.attribute(attr::TOKEN, &self.token.to_bytes())?;
        e.attribute(
            attr::KEEPALIVE_INTERVAL,
            &self.keepalive_interval_ms.to_be_bytes(),
        )?;
        e.fingerprint()
    }
}

/// KEEPALIVE request: NAME, IDENTITY, TOKEN, FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    pub name: Name,
    pub identity: Fingerprint,
    pub token: Token,
}

impl Keepalive {
    pub fn parse(msg: &Message<'_>) -> Result<Keepalive, MsgError> {
        expect(msg, method::KEEPALIVE, Class::Request)?;
        Ok(Keepalive {
            name: name_attr(msg)?,
            identity: Fingerprint(*fixed(msg, attr::IDENTITY)?),
            token: Token::from_bytes(msg.get(attr::TOKEN).ok_or(MsgError::Missing(attr::TOKEN))?)
                .ok_or(MsgError::BadLength(attr::TOKEN))?,
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(
            buf,
            MessageType {
                method: method::KEEPALIVE,
                class: Class::Request,
            },
            txid,
        )?;
        e.attribute(attr::NAME, self.name.as_bytes())?;
        e.attribute(attr::IDENTITY, &self.identity.0)?;
        e.attribute(attr::TOKEN, &self.token.to_bytes())?;
        e.fingerprint()
    }
}

/// KEEPALIVE success: XOR-MAPPED-ADDRESS, [TOKEN when the server refreshed it], FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptAlive {
    pub mapped: SocketAddr,
    pub token: Option<Token>,
}

impl KeptAlive {
    pub fn parse(msg: &Message<'_>) -> Result<KeptAlive, MsgError> {
        expect(msg, method::KEEPALIVE, Class::Success)?;
        let token = match msg.get(attr::TOKEN) {
            None => None,
            Some(b) => Some(Token::from_bytes(b).ok_or(MsgError::BadLength(attr::TOKEN))?),
        };
        Ok(KeptAlive {
            mapped: msg
                .xor_mapped_address()
                .ok_or(MsgError::Missing(stun::attr::XOR_MAPPED_ADDRESS))??,
            token,
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(
            buf,
            MessageType {
                method: method::KEEPALIVE,
                class: Class::Success,
            },
            txid,
        )?;
        e.xor_mapped_address(self.mapped)?;
        if let Some(t) = self.token {
            e.attribute(attr::TOKEN, &t.to_bytes())?;
        }
        e.fingerprint()
    }
}

/// CHECK request (server → appliance): NAME, CHALLENGE, TIMESTAMP (valid until, ms),
/// SIGNATURE (flock key), PADDING, FINGERPRINT. The padding keeps the appliance's answer no
/// larger than the CHECK, so a replayed CHECK cannot turn appliances into amplifiers; the
/// signed expiry bounds how long a captured CHECK can be replayed at all.
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    pub name: Name,
    pub challenge: [u8; 16],
    /// Milliseconds since the Unix epoch after which the CHECK is stale.
    pub valid_until_ms: u64,
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// PADDING bytes in a CHECK request (see [`Check`]).
pub const CHECK_PADDING: usize = 8;

impl<'a> Check<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<Check<'a>, MsgError> {
        expect(msg, method::CHECK, Class::Request)?;
        Ok(Check {
            name: name_attr(msg)?,
            challenge: *fixed(msg, attr::CHALLENGE)?,
            valid_until_ms: u64::from_be_bytes(*fixed(msg, attr::TIMESTAMP)?),
            signature: fixed(msg, attr::SIGNATURE)?,
        })
    }

    /// True when the flock whose public key the appliance pinned sent this challenge.
    pub fn from_flock(&self, flock_public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        let signed = check_signed(&self.name, &self.challenge, self.valid_until_ms);
        identity::verify(flock_public_key, signed.as_bytes(), self.signature)
    }

    /// True while the CHECK is not stale at `now_ms`, allowing `skew_ms` of clock difference.
    pub fn fresh(&self, now_ms: u64, skew_ms: u64) -> bool {
        now_ms <= self.valid_until_ms.saturating_add(skew_ms)
    }
}

fn check_signed(name: &Name, challenge: &[u8; 16], valid_until_ms: u64) -> Signed {
    let mut s = Signed::new(CHECK_CONTEXT, name);
    s.push(challenge);
    s.push(&valid_until_ms.to_be_bytes());
    s
}

/// The flock's signature over a challenge (computed once per check, reused by retransmissions).
pub fn sign_check(
    flock_key: &Ed25519KeyPair,
    name: &Name,
    challenge: &[u8; 16],
    valid_until_ms: u64,
) -> [u8; SIGNATURE_LEN] {
    identity::sign(
        flock_key,
        check_signed(name, challenge, valid_until_ms).as_bytes(),
    )
}

/// Encodes a CHECK request with a signature from [`sign_check`].
pub fn encode_check(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    challenge: &[u8; 16],
    valid_until_ms: u64,
    signature: &[u8; SIGNATURE_LEN],
) -> Result<usize, EncodeError> {
    let mut e = Encoder::new(
        buf,
        MessageType {
            method: method::CHECK,
            class: Class::Request,
        },
        txid,
    )?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.attribute(attr::CHALLENGE, challenge)?;
    e.attribute(attr::TIMESTAMP, &valid_until_ms.to_be_bytes())?;
    e.attribute(attr::SIGNATURE, signature)?;
    e.attribute(stun::attr::PADDING, &[0; CHECK_PADDING])?;
    e.fingerprint()
}

/// CHECK success (appliance → server): NAME, PUBLIC-KEY, SIGNATURE (appliance key), FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct CheckAnswer<'a> {
    pub name: Name,
    pub public_key: &'a [u8; PUBLIC_KEY_LEN],
    pub signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> CheckAnswer<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<CheckAnswer<'a>, MsgError> {
        expect(msg, method::CHECK, Class::Success)?;
        Ok(CheckAnswer {
            name: name_attr(msg)?,
            public_key: fixed(msg, attr::PUBLIC_KEY)?,
            signature: fixed(msg, attr::SIGNATURE)?,
        })
    }

    /// True when the answer is signed by the key behind `fingerprint_prefix` over `challenge`.
    pub fn proves(&self, fingerprint_prefix: &[u8], challenge: &[u8; 16]) -> bool {
        Fingerprint::of(self.public_key)
            .0
            .starts_with(fingerprint_prefix)
            && identity::verify(
                self.public_key,
                check_answer_signed(&self.name, challenge).as_bytes(),
                self.signature,
            )
    }
}

fn check_answer_signed(name: &Name, challenge: &[u8; 16]) -> Signed {
    let mut s = Signed::new(CHECK_ANSWER_CONTEXT, name);
    s.push(challenge);
    s
}

/// Encodes an appliance's answer to a CHECK.
pub fn encode_check_answer(
    buf: &mut [u8],
    txid: &TransactionId,
    name: &Name,
    key: &Ed25519KeyPair,
    challenge: &[u8; 16],
) -> Result<usize, EncodeError> {
    let sig = identity::sign(key, check_answer_signed(name, challenge).as_bytes());
    let mut e = Encoder::new(
        buf,
        MessageType {
            method: method::CHECK,
            class: Class::Success,
        },
        txid,
    )?;
    e.attribute(attr::NAME, name.as_bytes())?;
    e.attribute(attr::PUBLIC_KEY, &identity::public_key(key))?;
    e.attribute(attr::SIGNATURE, &sig)?;
    e.fingerprint()
}

/// An error response: ERROR-CODE, \[NONCE\], FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub code: u16,
    pub nonce: Option<Nonce>,
}

impl ErrorAnswer {
    pub fn parse(msg: &Message<'_>) -> Result<ErrorAnswer, MsgError> {
        if msg.class() != Class::Error {
            return Err(MsgError::WrongType);
        }
        if !msg.has_fingerprint() {
            return Err(MsgError::MissingFingerprint);
        }
        let ec = msg
            .error_code()
            .ok_or(MsgError::Missing(stun::attr::ERROR_CODE))??;
        let nonce = match msg.get(attr::NONCE) {
            None => None,
            Some(b) => Some(Nonce::from_bytes(b).ok_or(MsgError::BadLength(attr::NONCE))?),
        };
        Ok(ErrorAnswer {
            code: ec.code,
            nonce,
        })
    }

    pub fn encode(
        &self,
        buf: &mut [u8],
        method: Method,
        txid: &TransactionId,
    ) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(
            buf,
            MessageType {
                method,
                class: Class::Error,
            },
            txid,
        )?;
        e.error_code(self.code, code::reason(self.code))?;
        if let Some(n) = self.nonce {
            e.attribute(attr::NONCE, &n.to_bytes())?;
        }
        e.fingerprint()
    }
}

/// Error 300 Try-Alternate: ERROR-CODE, ALTERNATE-SERVER (the owning server's UDP address,
/// encoded like MAPPED-ADDRESS: not XORed), FINGERPRINT. Stateless and small (64 bytes for
/// IPv4, 76 for IPv6): smaller than any REGISTER or KEEPALIVE it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TryAlternate {
    pub alternate: SocketAddr,
}

impl TryAlternate {
    /// Reads a 300 answer; other errors are [`MsgError::WrongType`].
    pub fn parse(msg: &Message<'_>) -> Result<TryAlternate, MsgError> {
        if ErrorAnswer::parse(msg)?.code != code::TRY_ALTERNATE {
            return Err(MsgError::WrongType);
        }
        let value = msg
            .get(stun::attr::ALTERNATE_SERVER)
            .ok_or(MsgError::Missing(stun::attr::ALTERNATE_SERVER))?;
        Ok(TryAlternate {
            alternate: stun::attr::decode_address(value)?,
        })
    }

    pub fn encode(
        &self,
        buf: &mut [u8],
        method: Method,
        txid: &TransactionId,
    ) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(
            buf,
            MessageType {
                method,
                class: Class::Error,
            },
            txid,
        )?;
        e.error_code(code::TRY_ALTERNATE, code::reason(code::TRY_ALTERNATE))?;
        let (family, octets, n) = match crate::token::canonical(self.alternate).ip() {
            std::net::IpAddr::V4(v4) => {
                let mut o = [0; 16];
                o[..4].copy_from_slice(&v4.octets());
                (stun::attr::FAMILY_IPV4, o, 4)
            }
            std::net::IpAddr::V6(v6) => (stun::attr::FAMILY_IPV6, v6.octets(), 16),
        };
        e.attribute_with(stun::attr::ALTERNATE_SERVER, 4 + n, |v| {
            v[1] = family;
            v[2..4].copy_from_slice(&self.alternate.port().to_be_bytes());
            v[4..].copy_from_slice(&octets[..n]);
        })?;
        e.fingerprint()
    }
}

/// Bytes of the token attribute (for size arithmetic in docs and tests).
pub const TOKEN_ATTR_LEN: usize = 4 + TOKEN_LEN;
