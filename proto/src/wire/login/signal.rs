//! SIGNAL (either way, acknowledged): one item of a session's ordered signalling stream (an
//! SDP chunk, an ICE candidate, end-of-candidates), and the SDP's chunking and reassembly.

use super::*;
use super::{attr, expect, fixed, method, name_attr, MsgError};
use crate::login::{Candidate, SessionNonce};
use crate::name::Name;
use crate::stun::{Class, EncodeError, Encoder, Message, TransactionId};

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

pub(super) const KIND_SDP: u32 = 1;

pub(super) const KIND_CANDIDATE: u32 = 2;

pub(super) const KIND_END: u32 = 3;

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
