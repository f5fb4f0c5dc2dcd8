//! Attribute readers every message family shares, and the error they report.

use super::attr;
use crate::name::{Name, NameError};
use crate::stun::{self, Class, Message, Method};

/// Why a flock message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    Stun(stun::ParseError),
    /// A required attribute is absent.
    Missing(u16),
    /// An attribute has the wrong length.
    BadLength(u16),
    BadName(NameError),
    /// Not the method or class this view reads.
    WrongType,
    /// Flock messages always end with FINGERPRINT.
    MissingFingerprint,
}

impl From<stun::ParseError> for MsgError {
    fn from(e: stun::ParseError) -> Self {
        MsgError::Stun(e)
    }
}

/// A fixed-size attribute.
pub(crate) fn fixed<'a, const N: usize>(
    msg: &Message<'a>,
    typ: u16,
) -> Result<&'a [u8; N], MsgError> {
    msg.get(typ)
        .ok_or(MsgError::Missing(typ))?
        .try_into()
        .map_err(|_| MsgError::BadLength(typ))
}

/// NAME, normalized.
pub(crate) fn name_attr(msg: &Message<'_>) -> Result<Name, MsgError> {
    Name::normalize(msg.get(attr::NAME).ok_or(MsgError::Missing(attr::NAME))?)
        .map_err(MsgError::BadName)
}

/// Checks method and class, and that FINGERPRINT is present: without the rule, a bit flip in
/// FINGERPRINT's type would turn it into an unknown attribute and the corruption would pass.
pub(crate) fn expect(msg: &Message<'_>, method: Method, class: Class) -> Result<(), MsgError> {
    if !msg.has_fingerprint() {
        return Err(MsgError::MissingFingerprint);
    }
    if msg.method() == method && msg.class() == class {
        Ok(())
    } else {
        Err(MsgError::WrongType)
    }
}
