//! The 20-byte STUN header and the message type (method and class interleaved).

use super::ParseError;
use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The fixed value in bytes 4..8 of every STUN message (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Bytes in the STUN header.
pub const HEADER_LEN: usize = 20;
/// The 96-bit transaction id.
pub type TransactionId = [u8; 12];

/// The header as laid out on the wire (all fields big-endian, no alignment needed).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawHeader {
    /// Message type: two zero bits, then method and class interleaved.
    pub typ: U16,
    /// Bytes after the header.
    pub length: U16,
    /// Always [`MAGIC_COOKIE`].
    pub cookie: U32,
    /// Transaction id.
    pub txid: TransactionId,
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_LEN);

/// The class of a message: the two C bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// C1C0 = 0b00.
    Request,
    /// C1C0 = 0b01.
    Indication,
    /// C1C0 = 0b10.
    Success,
    /// C1C0 = 0b11.
    Error,
}

impl Class {
    /// The two class bits, C1C0.
    #[inline]
    pub const fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    /// The class of two bits C1C0 (higher bits are ignored).
    #[inline]
    pub const fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// A 12-bit STUN method number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Largest method number.
    pub const MAX: u16 = 0x0FFF;
}

/// Method and class: the first 16 bits of a STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method (12 bits).
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// Shorthand for a `MessageType` literal.
    #[inline]
    pub const fn new(method: Method, class: Class) -> MessageType {
        MessageType { method, class }
    }

    /// Wire value: M11..M7 C1 M6..M4 C0 M3..M0 under two zero bits (method bits above 12 are dropped).
    #[inline]
    pub const fn to_u16(self) -> u16 {
        let m = self.method.0 & Method::MAX;
        let c = self.class.bits();
        (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 0b01) << 4)
            | ((c & 0b10) << 7)
    }

    /// Reads a wire value; [`ParseError::NotStun`] if either of the two leading bits is set.
    #[inline]
    pub const fn from_u16(v: u16) -> Result<MessageType, ParseError> {
        if v & 0xC000 != 0 {
            return Err(ParseError::NotStun);
        }
        let method = (v & 0x000F) | ((v >> 1) & 0x0070) | ((v >> 2) & 0x0F80);
        let class = ((v >> 4) & 0b01) | ((v >> 7) & 0b10);
        Ok(MessageType {
            method: Method(method),
            class: Class::from_bits(class),
        })
    }
}

/// Quick check without a full parse (for demultiplexing and routing): at least a header, two
/// zero leading bits, the magic cookie, and a length field that is a multiple of 4.
#[inline]
pub fn looks_like_stun(datagram: &[u8]) -> bool {
    match RawHeader::ref_from_prefix(datagram) {
        Ok((h, _)) => {
            h.typ.get() & 0xC000 == 0 && h.cookie.get() == MAGIC_COOKIE && h.length.get() % 4 == 0
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_message_types() {
        let b = |class| MessageType::new(Method::BINDING, class).to_u16();
        assert_eq!(b(Class::Request), 0x0001);
        assert_eq!(b(Class::Indication), 0x0011);
        assert_eq!(b(Class::Success), 0x0101);
        assert_eq!(b(Class::Error), 0x0111);
        // Highest method: every M bit set, no C bit.
        assert_eq!(
            MessageType::new(Method(0xFFF), Class::Request).to_u16(),
            0x3EEF
        );
        assert_eq!(MessageType::new(Method(0), Class::Error).to_u16(), 0x0110);
        assert_eq!(
            MessageType::from_u16(0x0111),
            Ok(MessageType::new(Method::BINDING, Class::Error))
        );
    }

    #[test]
    fn every_method_and_class_round_trips() {
        let classes = [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ];
        let mut seen = std::collections::HashSet::new();
        for m in 0..=Method::MAX {
            for class in classes {
                let t = MessageType::new(Method(m), class);
                let v = t.to_u16();
                assert_eq!(v & 0xC000, 0);
                assert_eq!(MessageType::from_u16(v), Ok(t));
                assert!(seen.insert(v), "0x{v:04X} produced twice");
            }
        }
        // 4096 × 4 distinct values: the mapping is a bijection onto the 14-bit space.
        assert_eq!(seen.len(), 1 << 14);
    }

    #[test]
    fn leading_bits_are_rejected() {
        for v in [0x4000, 0x8000, 0xC001] {
            assert_eq!(MessageType::from_u16(v), Err(ParseError::NotStun));
        }
    }

    #[test]
    fn looks_like_stun_checks_cookie_bits_and_length() {
        let mut h = [0u8; 20];
        h[1] = 1;
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert!(looks_like_stun(&h));
        assert!(!looks_like_stun(&h[..19]));
        let mut bad = h;
        bad[0] = 0x40;
        assert!(!looks_like_stun(&bad));
        let mut bad = h;
        bad[7] ^= 1;
        assert!(!looks_like_stun(&bad));
        let mut bad = h;
        bad[3] = 2;
        assert!(!looks_like_stun(&bad));
    }
}
