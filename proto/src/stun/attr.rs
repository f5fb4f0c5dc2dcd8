//! Attribute numbers, the attribute iterator, and decoders of typed attribute values.

use super::{ParseError, TransactionId, MAGIC_COOKIE};
use core::iter::FusedIterator;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// MAPPED-ADDRESS (RFC 8489 §14.1).
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// ERROR-CODE (RFC 8489 §14.8).
pub const ERROR_CODE: u16 = 0x0009;
/// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PADDING (RFC 5780 §7.6).
pub const PADDING: u16 = 0x0026;
/// SOFTWARE (RFC 8489 §14.14).
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER (RFC 8489 §14.15).
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT: u16 = 0x8028;

/// Address family byte for IPv4.
pub const FAMILY_IPV4: u8 = 0x01;
/// Address family byte for IPv6.
pub const FAMILY_IPV6: u8 = 0x02;
/// Longest ERROR-CODE reason phrase in bytes (128 characters of up to 6 bytes, per RFC 8489).
pub const MAX_REASON_LEN: usize = 763;
/// Longest ERROR-CODE reason phrase in characters.
pub const MAX_REASON_CHARS: usize = 128;

/// Types 0x0000..=0x7FFF must be understood by the receiver (RFC 8489 §14).
#[inline]
pub const fn is_comprehension_required(typ: u16) -> bool {
    typ < 0x8000
}

/// Bytes an attribute of `value_len` takes on the wire: 4 of header, value, padding to 4.
#[inline]
pub const fn wire_len(value_len: usize) -> usize {
    padded(value_len).saturating_add(4)
}

/// `len` rounded up to a multiple of 4.
#[inline]
pub(crate) const fn padded(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// One attribute of a parsed message: type and value (padding excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// Attribute type.
    pub typ: u16,
    /// Value bytes, `length` of them, without padding.
    pub value: &'a [u8],
}

/// The attributes of a parsed [`Message`](super::Message), in order.
///
/// The message was validated when parsed, so items are plain attributes; should the bytes
/// nevertheless be malformed, iteration simply stops.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Attributes<'a> {
    /// Iterates over the attributes in `body` (the bytes after the header).
    #[inline]
    pub(crate) fn new(body: &'a [u8]) -> Attributes<'a> {
        Attributes { rest: body }
    }
}

/// Splits the first attribute off `bytes`: `(type, value, rest after padding)`.
/// `None` if the attribute header, value or padding does not fit.
#[inline]
pub(crate) fn split_attribute(bytes: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let (head, after) = bytes.split_first_chunk::<4>()?;
    let typ = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let (value, _) = after.split_at_checked(len)?;
    let (_, rest) = after.split_at_checked(padded(len))?;
    Some((typ, value, rest))
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawAttribute<'a>> {
        match split_attribute(self.rest) {
            Some((typ, value, rest)) => {
                self.rest = rest;
                Some(RawAttribute { typ, value })
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

impl FusedIterator for Attributes<'_> {}

/// Decodes a MAPPED-ADDRESS or ALTERNATE-SERVER value: reserved byte, family, port, address.
pub fn decode_address(value: &[u8]) -> Result<SocketAddr, ParseError> {
    decode_address_with(value, MAPPED_ADDRESS, 0, &[0; 16])
}

/// Decodes an XOR-MAPPED-ADDRESS value of a message with transaction id `txid`.
pub fn decode_xor_address(value: &[u8], txid: &TransactionId) -> Result<SocketAddr, ParseError> {
    decode_address_with(
        value,
        XOR_MAPPED_ADDRESS,
        (MAGIC_COOKIE >> 16) as u16,
        &xor_mask(txid),
    )
}

/// The 16 bytes an IPv6 X-Address is XORed with: magic cookie then transaction id
/// (its first 4 bytes are the IPv4 mask).
#[inline]
pub(crate) fn xor_mask(txid: &TransactionId) -> [u8; 16] {
    let mut mask = [0; 16];
    let (cookie, id) = mask.split_at_mut(4);
    cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    id.copy_from_slice(txid);
    mask
}

fn decode_address_with(
    value: &[u8],
    typ: u16,
    port_mask: u16,
    mask: &[u8; 16],
) -> Result<SocketAddr, ParseError> {
    let Some((&[_reserved, family, p0, p1], addr)) = value.split_first_chunk::<4>() else {
        return Err(ParseError::BadAttributeLength(typ));
    };
    let port = u16::from_be_bytes([p0, p1]) ^ port_mask;
    let ip = match family {
        FAMILY_IPV4 => {
            let bytes: [u8; 4] = addr
                .try_into()
                .map_err(|_| ParseError::BadAttributeLength(typ))?;
            let mut out = [0; 4];
            for ((o, b), m) in out.iter_mut().zip(bytes).zip(mask) {
                *o = b ^ m;
            }
            IpAddr::V4(Ipv4Addr::from(out))
        }
        FAMILY_IPV6 => {
            let bytes: [u8; 16] = addr
                .try_into()
                .map_err(|_| ParseError::BadAttributeLength(typ))?;
            let mut out = [0; 16];
            for ((o, b), m) in out.iter_mut().zip(bytes).zip(mask) {
                *o = b ^ m;
            }
            IpAddr::V6(Ipv6Addr::from(out))
        }
        other => return Err(ParseError::BadAddressFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// A decoded ERROR-CODE attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// Three-digit code, 300..=699.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a str,
}

/// Decodes an ERROR-CODE value: 21 reserved bits (ignored), class (3 bits), number, reason.
pub fn decode_error_code(value: &[u8]) -> Result<ErrorCode<'_>, ParseError> {
    let Some((&[_, _, class, number], reason)) = value.split_first_chunk::<4>() else {
        return Err(ParseError::BadAttributeLength(ERROR_CODE));
    };
    let class = class & 0x07;
    if !(3..=6).contains(&class) || number > 99 || reason.len() > MAX_REASON_LEN {
        return Err(ParseError::BadErrorCode);
    }
    let reason = core::str::from_utf8(reason).map_err(|_| ParseError::BadErrorCode)?;
    Ok(ErrorCode {
        code: u16::from(class) * 100 + u16::from(number),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterator_stops_on_malformed_bytes() {
        let body = [
            0x00, 0x01, 0x00, 0x02, 0xAA, 0xBB, 0x00, 0x00, 0x00, 0x02, 0x00, 0x09, 1,
        ];
        let mut it = Attributes::new(&body);
        assert_eq!(
            it.next(),
            Some(RawAttribute {
                typ: 1,
                value: &[0xAA, 0xBB]
            })
        );
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn padding_is_required() {
        assert_eq!(split_attribute(&[0, 1, 0, 1, 0xAA]), None);
        assert_eq!(split_attribute(&[0, 1, 0, 1, 0xAA, 0, 0]), None);
        assert_eq!(
            split_attribute(&[0, 1, 0, 1, 0xAA, 0, 0, 0]),
            Some((1, &[0xAA][..], &[][..]))
        );
        assert_eq!(split_attribute(&[0, 1, 0]), None);
    }

    #[test]
    fn mapped_address_decodes() {
        let v = [0, 1, 0x0D, 0x96, 192, 0, 2, 7];
        assert_eq!(decode_address(&v), Ok("192.0.2.7:3478".parse().unwrap()));
        let mut v6 = [0u8; 20];
        v6[1] = 2;
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[4..].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            decode_address(&v6),
            Ok("[2001:db8::9]:443".parse().unwrap())
        );
    }

    #[test]
    fn bad_addresses_are_errors() {
        let txid = [0; 12];
        assert_eq!(
            decode_xor_address(&[0, 1, 0], &txid),
            Err(ParseError::BadAttributeLength(XOR_MAPPED_ADDRESS))
        );
        assert_eq!(
            decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &txid),
            Err(ParseError::BadAttributeLength(XOR_MAPPED_ADDRESS))
        );
        assert_eq!(
            decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &txid),
            Err(ParseError::BadAttributeLength(XOR_MAPPED_ADDRESS))
        );
        assert_eq!(
            decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &txid),
            Err(ParseError::BadAddressFamily(3))
        );
        assert_eq!(
            decode_address(&[0, 1, 0, 0, 1, 2, 3, 4, 5]),
            Err(ParseError::BadAttributeLength(MAPPED_ADDRESS))
        );
    }

    #[test]
    fn error_code_decodes_and_rejects() {
        assert_eq!(
            decode_error_code(&[0, 0, 4, 20, b'h', b'i']),
            Ok(ErrorCode {
                code: 420,
                reason: "hi"
            })
        );
        assert_eq!(
            decode_error_code(&[0, 0, 6, 99]),
            Ok(ErrorCode {
                code: 699,
                reason: ""
            })
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4]),
            Err(ParseError::BadAttributeLength(ERROR_CODE))
        );
        assert_eq!(
            decode_error_code(&[0, 0, 2, 0]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 7, 0]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4, 100]),
            Err(ParseError::BadErrorCode)
        );
        assert_eq!(
            decode_error_code(&[0, 0, 4, 1, 0xFF]),
            Err(ParseError::BadErrorCode)
        );
        let mut long = [b'a'; 4 + MAX_REASON_LEN + 1];
        long[..4].copy_from_slice(&[0, 0, 5, 0]);
        assert_eq!(decode_error_code(&long), Err(ParseError::BadErrorCode));
        assert!(decode_error_code(&long[..4 + MAX_REASON_LEN]).is_ok());
    }
}
