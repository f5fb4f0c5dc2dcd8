//! The log-in messages between a flock core and an appliance, on STUN framing. Byte layouts and
//! examples are in `docs/PROTOCOL.md`.
//!
//! - PERSONAS (flock → appliance, signed): one chunk of the persona list at an offset. The request
//!   is padded so the answer, which carries the chunk, is never larger than the request.
//! - CONNECT (flock → appliance, signed): persona + credential under a fresh session nonce.
//! - SIGNAL (either way, acknowledged): one item of the ordered signalling stream of a session:
//!   an SDP chunk, an ICE candidate, or end-of-candidates. Unsigned: the session nonce, known only
//!   to the two ends, names the connection, and each end only takes SIGNALs from the other's
//!   address. Acknowledgements are smaller than what they acknowledge.
//!
//! Every message carries NAME, so any core routes it to the core that owns the appliance.

use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::identity::{self, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::login::{Candidate, SessionNonce};
use crate::name::Name;
use crate::stun::{self, Class, EncodeError, Encoder, Message, MessageType, Method, TransactionId};
use ring::signature::Ed25519KeyPair;

/// Error codes of log-in answers.
pub mod code {
    /// CONNECT: wrong credentials.
    pub const BAD_CREDENTIALS: u16 = 460;
    /// CONNECT: the appliance refuses this log-in (policy).
    pub const DENIED: u16 = 461;
    /// SIGNAL: no such session (ended, or never accepted).
    pub const UNKNOWN_SESSION: u16 = 481;
    /// PERSONAS or CONNECT: the appliance is busy (too many connections, or log-in answers
    /// over its rate); the browser sees `appliance-busy`.
    pub const BUSY: u16 = 508;

    pub fn reason(code: u16) -> &'static str {
        match code {
            BAD_CREDENTIALS => "Bad credentials",
            DENIED => "Denied",
            UNKNOWN_SESSION => "No such session",
            BUSY => "Busy",
            _ => "Error",
        }
    }
}

/// FLAGS bit: the appliance wants user name and credential entered, not a persona picked.
pub const FLAG_CREDENTIALS_REQUIRED: u32 = 1;
pub const MAX_PERSONA_LEN: usize = 255;
pub const MAX_CREDENTIAL_LEN: usize = 512;
pub const MAX_MID_LEN: usize = 64;
/// Largest datagram either side sends (every log-in message stays below it).
pub const MAX_DATAGRAM: usize = 1200;
/// Chunk bytes per SDP SIGNAL: with the largest name and every attribute, the datagram stays
/// under [`MAX_DATAGRAM`].
pub const SDP_CHUNK: usize = 800;
/// Longest candidate line carried in one SIGNAL.
pub const MAX_CANDIDATE_LEN: usize = 800;
/// What a PERSONAS request is padded to: room for an answer chunk of a few hundred bytes.
pub const PERSONAS_REQUEST_LEN: usize = 1100;

const PERSONAS_CONTEXT: &[u8] = b"flock personas v1";
const CONNECT_CONTEXT: &[u8] = b"flock connect v1";

fn typ(method: Method, class: Class) -> MessageType {
    MessageType { method, class }
}

fn u32_attr(msg: &Message<'_>, typ: u16) -> Result<u32, MsgError> {
    Ok(u32::from_be_bytes(*fixed(msg, typ)?))
}

/// A UTF-8 attribute of at most `max` bytes.
fn text<'a>(msg: &Message<'a>, typ: u16, max: usize) -> Result<&'a str, MsgError> {
    let b = msg.get(typ).ok_or(MsgError::Missing(typ))?;
    if b.len() > max {
        return Err(MsgError::BadLength(typ));
    }
    core::str::from_utf8(b).map_err(|_| MsgError::BadLength(typ))
}

/// The bytes a flock signature covers: context, then each field with its length.
fn signed(context: &[u8], txid: &TransactionId, name: &Name, fields: &[&[u8]]) -> Vec<u8> {
    let mut s = Vec::with_capacity(128);
    s.extend_from_slice(context);
    s.extend_from_slice(txid);
    s.push(name.as_bytes().len() as u8);
    s.extend_from_slice(name.as_bytes());
    for f in fields {
        s.extend_from_slice(&(f.len() as u16).to_be_bytes());
        s.extend_from_slice(f);
    }
    s
}

/// Adds PADDING so the finished message (FINGERPRINT included) is about `target` bytes long.
fn pad_to(e: &mut Encoder<'_>, target: usize) -> Result<(), EncodeError> {
    // PADDING header 4 + FINGERPRINT 8.
    let room = target.saturating_sub(e.len() + 4 + 8) & !3;
    if room > 0 {
        e.attribute_with(stun::attr::PADDING, room, |_| {})?;
    }
    Ok(())
}

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

fn personas_signed(
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

fn stun_padded(len: usize) -> usize {
    (len + 3) & !3
}

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
    txid: TransactionId,
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

impl PersonasRequest<'_> {
    /// True while not stale at `now_ms`, allowing `skew_ms` of clock difference.
    pub fn fresh(&self, now_ms: u64, skew_ms: u64) -> bool {
        now_ms <= self.valid_until_ms.saturating_add(skew_ms)
    }
}

fn connect_signed(
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

/// Answer to a CONNECT or a SIGNAL: success (NAME, SESSION, \[SEQ\], FINGERPRINT) or error
/// (ERROR-CODE, NAME, SESSION, \[SEQ\], FINGERPRINT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub method: Method,
    pub name: Name,
    pub session: SessionNonce,
    /// The SIGNAL's position; `None` for CONNECT.
    pub seq: Option<u32>,
    /// `None` on success, else the error code.
    pub error: Option<u16>,
}

impl Ack {
    pub fn parse(msg: &Message<'_>) -> Result<Ack, MsgError> {
        if !msg.has_fingerprint() {
            return Err(MsgError::MissingFingerprint);
        }
        let m = msg.method();
        if !(m == method::CONNECT || m == method::SIGNAL) {
            return Err(MsgError::WrongType);
        }
        let error = match msg.class() {
            Class::Success => None,
            Class::Error => Some(
                msg.error_code()
                    .ok_or(MsgError::Missing(stun::attr::ERROR_CODE))??
                    .code,
            ),
            _ => return Err(MsgError::WrongType),
        };
        let seq = if m == method::SIGNAL {
            Some(u32_attr(msg, attr::SEQ)?)
        } else {
            None
        };
        Ok(Ack {
            method: m,
            name: name_attr(msg)?,
            session: *fixed(msg, attr::SESSION)?,
            seq,
            error,
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let class = if self.error.is_some() {
            Class::Error
        } else {
            Class::Success
        };
        let mut e = Encoder::new(buf, typ(self.method, class), txid)?;
        if let Some(c) = self.error {
            e.error_code(c, code::reason(c))?;
        }
        e.attribute(attr::NAME, self.name.as_bytes())?;
        e.attribute(attr::SESSION, &self.session)?;
        if let Some(s) = self.seq {
            e.attribute(attr::SEQ, &s.to_be_bytes())?;
        }
        e.fingerprint()
    }
}

/// What one SIGNAL carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalBody<'a> {
    /// Bytes `offset..offset + data.len()` of an SDP of `total` bytes.
    Sdp {
        offset: u32,
        total: u32,
        data: &'a [u8],
    },
    Candidate {
        candidate: &'a str,
        mid: Option<&'a str>,
    },
    EndOfCandidates,
}

const KIND_SDP: u32 = 1;
const KIND_CANDIDATE: u32 = 2;
const KIND_END: u32 = 3;

/// SIGNAL request: NAME, SESSION, SEQ, SIGNAL-KIND, then by kind: OFFSET + TOTAL + DATA (SDP
/// chunk), DATA + \[MID\] (candidate), nothing (end-of-candidates); FINGERPRINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal<'a> {
    pub name: Name,
    pub session: SessionNonce,
    pub seq: u32,
    pub body: SignalBody<'a>,
}

impl<'a> Signal<'a> {
    pub fn parse(msg: &Message<'a>) -> Result<Signal<'a>, MsgError> {
        expect(msg, method::SIGNAL, Class::Request)?;
        let body = match u32_attr(msg, attr::SIGNAL_KIND)? {
            KIND_SDP => SignalBody::Sdp {
                offset: u32_attr(msg, attr::OFFSET)?,
                total: u32_attr(msg, attr::TOTAL)?,
                data: msg.get(attr::DATA).ok_or(MsgError::Missing(attr::DATA))?,
            },
            KIND_CANDIDATE => SignalBody::Candidate {
                candidate: text(msg, attr::DATA, MAX_CANDIDATE_LEN)?,
                mid: msg
                    .get(attr::MID)
                    .map(|_| text(msg, attr::MID, MAX_MID_LEN))
                    .transpose()?,
            },
            KIND_END => SignalBody::EndOfCandidates,
            _ => return Err(MsgError::BadLength(attr::SIGNAL_KIND)),
        };
        Ok(Signal {
            name: name_attr(msg)?,
            session: *fixed(msg, attr::SESSION)?,
            seq: u32_attr(msg, attr::SEQ)?,
            body,
        })
    }

    pub fn encode(&self, buf: &mut [u8], txid: &TransactionId) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(buf, typ(method::SIGNAL, Class::Request), txid)?;
        e.attribute(attr::NAME, self.name.as_bytes())?;
        e.attribute(attr::SESSION, &self.session)?;
        e.attribute(attr::SEQ, &self.seq.to_be_bytes())?;
        match self.body {
            SignalBody::Sdp {
                offset,
                total,
                data,
            } => {
                e.attribute(attr::SIGNAL_KIND, &KIND_SDP.to_be_bytes())?;
                e.attribute(attr::OFFSET, &offset.to_be_bytes())?;
                e.attribute(attr::TOTAL, &total.to_be_bytes())?;
                e.attribute(attr::DATA, data)?;
            }
            SignalBody::Candidate { candidate, mid } => {
                if candidate.len() > MAX_CANDIDATE_LEN || mid.is_some_and(|m| m.len() > MAX_MID_LEN)
                {
                    return Err(EncodeError::ValueTooLong);
                }
                e.attribute(attr::SIGNAL_KIND, &KIND_CANDIDATE.to_be_bytes())?;
                e.attribute(attr::DATA, candidate.as_bytes())?;
                if let Some(m) = mid {
                    e.attribute(attr::MID, m.as_bytes())?;
                }
            }
            SignalBody::EndOfCandidates => {
                e.attribute(attr::SIGNAL_KIND, &KIND_END.to_be_bytes())?
            }
        }
        e.fingerprint()
    }
}

/// An owned item of a signalling stream, before it is cut into SIGNALs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    Sdp(String),
    Candidate(Candidate),
    EndOfCandidates,
}

/// Cuts an ordered list of outbound items into SIGNAL bodies (SDP into [`SDP_CHUNK`] pieces).
/// `k` is the index of the piece wanted across the whole stream; returns the body or `None`
/// past the end. Used by both ends to (re)build the SIGNAL at a given sequence number.
pub fn piece(item: &Outbound, chunk: usize) -> Option<SignalBody<'_>> {
    match item {
        Outbound::Sdp(s) => {
            let start = chunk.checked_mul(SDP_CHUNK)?;
            if start >= s.len() && !(start == 0 && s.is_empty()) {
                return None;
            }
            let end = (start + SDP_CHUNK).min(s.len());
            Some(SignalBody::Sdp {
                offset: start as u32,
                total: s.len() as u32,
                data: &s.as_bytes()[start..end],
            })
        }
        Outbound::Candidate(c) if chunk == 0 => Some(SignalBody::Candidate {
            candidate: &c.candidate,
            mid: c.mid.as_deref(),
        }),
        Outbound::EndOfCandidates if chunk == 0 => Some(SignalBody::EndOfCandidates),
        _ => None,
    }
}

/// How many SIGNALs an item takes.
pub fn pieces(item: &Outbound) -> usize {
    match item {
        Outbound::Sdp(s) => s.len().div_ceil(SDP_CHUNK).max(1),
        _ => 1,
    }
}

/// Reassembles an SDP sent in chunks, in order. Bounded by `max`.
#[derive(Debug, Default)]
pub struct SdpAssembly {
    buf: Vec<u8>,
    total: Option<u32>,
}

/// Why a chunk was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssemblyError {
    /// Not the next offset, or a total that changed.
    OutOfOrder,
    TooLarge,
    NotUtf8,
}

impl SdpAssembly {
    /// Adds a chunk; `Ok(Some(sdp))` once the whole value is in.
    pub fn add(
        &mut self,
        offset: u32,
        total: u32,
        data: &[u8],
        max: usize,
    ) -> Result<Option<String>, AssemblyError> {
        if total as usize > max {
            return Err(AssemblyError::TooLarge);
        }
        if self.total.is_some_and(|t| t != total) || offset as usize != self.buf.len() {
            return Err(AssemblyError::OutOfOrder);
        }
        if self.buf.len() + data.len() > total as usize {
            return Err(AssemblyError::TooLarge);
        }
        self.total = Some(total);
        self.buf.extend_from_slice(data);
        if self.buf.len() < total as usize {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.buf);
        self.total = None;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| AssemblyError::NotUtf8)
    }
}

/// The session a log-in message belongs to (for routing and quick filtering), if it is one.
pub fn is_login(msg: &Message<'_>) -> bool {
    let m = msg.method();
    m == method::PERSONAS || m == method::CONNECT || m == method::SIGNAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::keypair;

    fn name() -> Name {
        Name::normalize(b"home.example").unwrap()
    }

    #[test]
    fn personas_request_round_trip_signed_and_padded() {
        let key = keypair(1);
        let pk = identity::public_key(&key);
        let mut buf = [0; MAX_DATAGRAM];
        let txid = [7; 12];
        let len = encode_personas_request(&mut buf, &txid, &name(), 0, Some(&[3; 32]), 5000, &key)
            .unwrap();
        assert!(
            len <= PERSONAS_REQUEST_LEN && len + 4 > PERSONAS_REQUEST_LEN,
            "len {len}"
        );
        let msg = Message::parse(&buf[..len]).unwrap();
        let req = PersonasRequest::parse(&msg).unwrap();
        assert_eq!(
            (req.offset, req.known, req.valid_until_ms),
            (0, Some([3; 32]), 5000)
        );
        assert!(req.from_flock(&pk));
        assert!(!req.from_flock(&identity::public_key(&keypair(2))));
        // The answer that fits is never larger than the request.
        let room = PersonasChunk::room(len, &req.name);
        let data = vec![b'x'; room];
        let chunk = PersonasChunk {
            name: name(),
            checksum: [1; 32],
            total: 5000,
            offset: 0,
            credentials_required: false,
            data: &data,
        };
        let mut out = [0; MAX_DATAGRAM];
        let alen = chunk.encode(&mut out, &txid).unwrap();
        assert!(alen <= len, "answer {alen} > request {len}");
        assert_eq!(
            PersonasChunk::parse(&Message::parse(&out[..alen]).unwrap()).unwrap(),
            chunk
        );
    }

    #[test]
    fn connect_signature_covers_the_credential() {
        let key = keypair(1);
        let pk = identity::public_key(&key);
        let mut buf = [0; MAX_DATAGRAM];
        let len = encode_connect(
            &mut buf,
            &[1; 12],
            &name(),
            &[9; 16],
            "alice",
            b"pwd:secret",
            77,
            &key,
        )
        .unwrap();
        let c = Connect::parse(&Message::parse(&buf[..len]).unwrap()).unwrap();
        assert_eq!(
            (c.persona, c.credential, c.session),
            ("alice", &b"pwd:secret"[..], [9; 16])
        );
        assert!(c.from_flock(&pk));
        let forged = Connect {
            credential: b"pwd:other",
            ..c
        };
        assert!(!forged.from_flock(&pk));
        assert_eq!(
            encode_connect(
                &mut buf,
                &[1; 12],
                &name(),
                &[9; 16],
                "a",
                &[0; 513],
                77,
                &key
            ),
            Err(ConnectError::CredentialTooLong)
        );
    }

    #[test]
    fn signals_and_acks_round_trip_and_acks_are_smaller() {
        let sdp = "v=0\r\n".repeat(400);
        let items = [
            Outbound::Sdp(sdp.clone()),
            Outbound::Candidate(Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                mid: Some("0".into()),
            }),
            Outbound::EndOfCandidates,
        ];
        let mut asm = SdpAssembly::default();
        let mut got = None;
        let mut seq = 0;
        for item in &items {
            for k in 0..pieces(item) {
                let body = piece(item, k).unwrap();
                let s = Signal {
                    name: name(),
                    session: [5; 16],
                    seq,
                    body,
                };
                let mut buf = [0; MAX_DATAGRAM];
                let len = s.encode(&mut buf, &[2; 12]).unwrap();
                assert!(len < MAX_DATAGRAM);
                let parsed = Signal::parse(&Message::parse(&buf[..len]).unwrap()).unwrap();
                assert_eq!(parsed, s);
                if let SignalBody::Sdp {
                    offset,
                    total,
                    data,
                } = parsed.body
                {
                    if let Some(v) = asm.add(offset, total, data, 64 * 1024).unwrap() {
                        got = Some(v);
                    }
                }
                let ack = Ack {
                    method: method::SIGNAL,
                    name: name(),
                    session: [5; 16],
                    seq: Some(seq),
                    error: None,
                };
                let mut out = [0; MAX_DATAGRAM];
                let alen = ack.encode(&mut out, &[2; 12]).unwrap();
                assert!(alen <= len);
                assert_eq!(
                    Ack::parse(&Message::parse(&out[..alen]).unwrap()).unwrap(),
                    ack
                );
                seq += 1;
            }
            assert!(piece(item, pieces(item)).is_none());
        }
        assert_eq!(got.as_deref(), Some(sdp.as_str()));
        assert_eq!(seq as usize, sdp.len().div_ceil(SDP_CHUNK) + 2);
    }

    #[test]
    fn assembly_refuses_gaps_and_oversize() {
        let mut a = SdpAssembly::default();
        assert_eq!(a.add(4, 8, b"abcd", 100), Err(AssemblyError::OutOfOrder));
        assert_eq!(a.add(0, 200, b"abcd", 100), Err(AssemblyError::TooLarge));
        assert_eq!(a.add(0, 8, b"abcd", 100), Ok(None));
        assert_eq!(a.add(4, 9, b"efgh", 100), Err(AssemblyError::OutOfOrder));
        assert_eq!(a.add(4, 8, b"efgh", 100), Ok(Some("abcdefgh".into())));
    }

    #[test]
    fn error_ack_round_trip() {
        let ack = Ack {
            method: method::CONNECT,
            name: name(),
            session: [1; 16],
            seq: None,
            error: Some(code::BAD_CREDENTIALS),
        };
        let mut out = [0; 256];
        let len = ack.encode(&mut out, &[3; 12]).unwrap();
        assert_eq!(
            Ack::parse(&Message::parse(&out[..len]).unwrap()).unwrap(),
            ack
        );
    }
}
