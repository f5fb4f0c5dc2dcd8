//! Error types of the STUN codec.

use core::fmt;

/// Why a datagram is not a well-formed STUN message (or an attribute value is malformed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Shorter than the 20-byte header.
    TooShort,
    /// The two leading bits are not zero or the magic cookie is wrong.
    NotStun,
    /// The header's length field is not a multiple of 4.
    BadLength,
    /// The header's length field does not match the bytes after the header.
    LengthMismatch,
    /// An attribute header, value or padding runs past the end of the message.
    TruncatedAttribute,
    /// FINGERPRINT is followed by another attribute.
    FingerprintNotLast,
    /// FINGERPRINT does not match the message's CRC-32.
    BadFingerprint,
    /// An attribute other than FINGERPRINT follows MESSAGE-INTEGRITY-SHA256.
    AttributeAfterIntegrity,
    /// The attribute of this type has a value of the wrong length for its format.
    BadAttributeLength(u16),
    /// An address attribute names an unknown address family.
    BadAddressFamily(u8),
    /// ERROR-CODE with a class outside 3..=6, a number over 99, or a reason that is not short UTF-8.
    BadErrorCode,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => f.write_str("shorter than a STUN header"),
            ParseError::NotStun => f.write_str("not STUN (leading bits or magic cookie)"),
            ParseError::BadLength => f.write_str("STUN length not a multiple of 4"),
            ParseError::LengthMismatch => f.write_str("STUN length does not match the datagram"),
            ParseError::TruncatedAttribute => {
                f.write_str("attribute runs past the end of the message")
            }
            ParseError::FingerprintNotLast => f.write_str("FINGERPRINT is not the last attribute"),
            ParseError::BadFingerprint => f.write_str("FINGERPRINT does not match"),
            ParseError::AttributeAfterIntegrity => {
                f.write_str("attribute after MESSAGE-INTEGRITY-SHA256")
            }
            ParseError::BadAttributeLength(t) => write!(f, "attribute 0x{t:04X} has a bad length"),
            ParseError::BadAddressFamily(fam) => write!(f, "unknown address family 0x{fam:02X}"),
            ParseError::BadErrorCode => f.write_str("malformed ERROR-CODE"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why an [`Encoder`](super::Encoder) could not write what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The caller's buffer has no room for it.
    BufferTooSmall,
    /// A value longer than its format allows (65535 bytes for any attribute, less for some).
    ValueTooLong,
    /// The message would exceed the 16-bit length field.
    MessageTooLong,
    /// The method does not fit in 12 bits.
    BadMethod,
    /// An error code outside 300..=699.
    BadErrorCode,
    /// Only FINGERPRINT may follow MESSAGE-INTEGRITY-SHA256.
    AfterIntegrity,
    /// MESSAGE-INTEGRITY-SHA256 needs an `HMAC_SHA256` key.
    WrongKeyAlgorithm,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BufferTooSmall => "buffer too small",
            EncodeError::ValueTooLong => "attribute value too long",
            EncodeError::MessageTooLong => "message too long for the STUN length field",
            EncodeError::BadMethod => "method does not fit in 12 bits",
            EncodeError::BadErrorCode => "error code outside 300..=699",
            EncodeError::AfterIntegrity => "only FINGERPRINT may follow MESSAGE-INTEGRITY-SHA256",
            EncodeError::WrongKeyAlgorithm => "MESSAGE-INTEGRITY-SHA256 needs an HMAC-SHA256 key",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Why MESSAGE-INTEGRITY-SHA256 did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntegrityError {
    /// The message has no MESSAGE-INTEGRITY-SHA256 attribute.
    Missing,
    /// The HMAC does not match (wrong key or altered message).
    Bad,
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntegrityError::Missing => "no MESSAGE-INTEGRITY-SHA256",
            IntegrityError::Bad => "MESSAGE-INTEGRITY-SHA256 does not verify",
        })
    }
}

impl std::error::Error for IntegrityError {}
