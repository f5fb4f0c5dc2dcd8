//! STUN framing (RFC 8489): header, attributes, FINGERPRINT, MESSAGE-INTEGRITY-SHA256.
//!
//! [`Message::parse`] validates a whole datagram in one pass and borrows it; it never allocates
//! or panics, whatever the input. [`Encoder`] writes a message into a caller-owned buffer.
//! MESSAGE-INTEGRITY (HMAC-SHA1) and the long-term credential mechanism are not implemented:
//! such attributes parse as opaque ones.

pub mod attr;
mod encode;
mod error;
mod header;
mod integrity;
mod message;

#[cfg(test)]
mod tests;

pub use attr::{
    decode_address, decode_error_code, decode_xor_address, Attributes, ErrorCode, RawAttribute,
};
pub use encode::Encoder;
pub use error::{EncodeError, IntegrityError, ParseError};
pub use header::{
    looks_like_stun, Class, MessageType, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE,
};
pub use integrity::{FINGERPRINT_XOR, INTEGRITY_SHA256_LEN};
pub use message::Message;
