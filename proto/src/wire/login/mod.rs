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
//! `personas`, `connect` and `signal` hold each method's messages; here: the codes, bounds,
//! shared helpers and the acknowledgement.

mod connect;
mod personas;
mod signal;

use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::login::SessionNonce;
use crate::name::Name;
use crate::stun::{self, Class, EncodeError, Encoder, Message, MessageType, Method, TransactionId};
pub use connect::*;
pub use personas::*;
pub use signal::*;

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

pub(super) fn typ(method: Method, class: Class) -> MessageType {
    MessageType { method, class }
}

pub(super) fn u32_attr(msg: &Message<'_>, typ: u16) -> Result<u32, MsgError> {
    Ok(u32::from_be_bytes(*fixed(msg, typ)?))
}

/// A UTF-8 attribute of at most `max` bytes.
pub(super) fn text<'a>(msg: &Message<'a>, typ: u16, max: usize) -> Result<&'a str, MsgError> {
    let b = msg.get(typ).ok_or(MsgError::Missing(typ))?;
    if b.len() > max {
        return Err(MsgError::BadLength(typ));
    }
    core::str::from_utf8(b).map_err(|_| MsgError::BadLength(typ))
}

/// The bytes a flock signature covers: context, then each field with its length.
pub(super) fn signed(
    context: &[u8],
    txid: &TransactionId,
    name: &Name,
    fields: &[&[u8]],
) -> Vec<u8> {
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
pub(super) fn pad_to(e: &mut Encoder<'_>, target: usize) -> Result<(), EncodeError> {
    // PADDING header 4 + FINGERPRINT 8.
    let room = target.saturating_sub(e.len() + 4 + 8) & !3;
    if room > 0 {
        e.attribute_with(stun::attr::PADDING, room, |_| {})?;
    }
    Ok(())
}

pub(super) fn stun_padded(len: usize) -> usize {
    (len + 3) & !3
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

/// The session a log-in message belongs to (for routing and quick filtering), if it is one.
pub fn is_login(msg: &Message<'_>) -> bool {
    let m = msg.method();
    m == method::PERSONAS || m == method::CONNECT || m == method::SIGNAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity;
    use crate::login::Candidate;
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
