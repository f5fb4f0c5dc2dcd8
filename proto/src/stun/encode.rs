//! Writing STUN messages into a caller-owned buffer, without allocating.

use super::attr::{
    self, padded, xor_mask, FAMILY_IPV4, FAMILY_IPV6, MAX_REASON_CHARS, MAX_REASON_LEN,
};
use super::header::RawHeader;
use super::integrity::{fingerprint, integrity_sha256, INTEGRITY_SHA256_LEN};
use super::{EncodeError, MessageType, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE};
use core::net::{IpAddr, SocketAddr};
use ring::hmac;
use zerocopy::FromBytes;

/// Longest message the 16-bit length field can describe.
const MAX_MESSAGE_LEN: usize = HEADER_LEN + (u16::MAX as usize & !3);

/// Writes one STUN message into a buffer: header first, then attributes in call order.
///
/// The header's length field is kept equal to the bytes written after the header at every step.
pub struct Encoder<'b> {
    buf: &'b mut [u8],
    len: usize,
    integrity: bool,
}

impl<'b> Encoder<'b> {
    /// Starts a message of type `typ` and transaction id `txid` at the start of `buf`.
    pub fn new(
        buf: &'b mut [u8],
        typ: MessageType,
        txid: &TransactionId,
    ) -> Result<Encoder<'b>, EncodeError> {
        if typ.method.0 > Method::MAX {
            return Err(EncodeError::BadMethod);
        }
        let (header, _) =
            RawHeader::mut_from_prefix(buf).map_err(|_| EncodeError::BufferTooSmall)?;
        header.typ.set(typ.to_u16());
        header.length.set(0);
        header.cookie.set(MAGIC_COOKIE);
        header.txid = *txid;
        Ok(Encoder {
            buf,
            len: HEADER_LEN,
            integrity: false,
        })
    }

    /// Bytes written so far, header included.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // never empty: the header is written by `new`
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends an attribute, padding its value with zeros to a multiple of 4.
    #[inline]
    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> Result<(), EncodeError> {
        self.attribute_with(typ, value.len(), |v| v.copy_from_slice(value))
    }

    /// Appends an attribute of `len` value bytes written by `fill` (which gets them zeroed).
    pub fn attribute_with(
        &mut self,
        typ: u16,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), EncodeError> {
        if self.integrity && typ != attr::FINGERPRINT {
            return Err(EncodeError::AfterIntegrity);
        }
        self.append(typ, len, fill)
    }

    /// Appends without the order check; updates the header's length field.
    fn append(
        &mut self,
        typ: u16,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), EncodeError> {
        let value_len = u16::try_from(len).map_err(|_| EncodeError::ValueTooLong)?;
        let end = self.len + 4 + padded(len);
        if end > MAX_MESSAGE_LEN {
            return Err(EncodeError::MessageTooLong);
        }
        let space = self
            .buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferTooSmall)?;
        let (head, value) = space.split_at_mut(4);
        head[..2].copy_from_slice(&typ.to_be_bytes());
        head[2..].copy_from_slice(&value_len.to_be_bytes());
        value.fill(0);
        fill(&mut value[..len]);
        self.set_length(end);
        Ok(())
    }

    /// Sets the header's length field for a message of `total` bytes.
    #[inline]
    fn set_length(&mut self, total: usize) {
        self.len = total;
        // `total` ≤ MAX_MESSAGE_LEN, so the body length fits in 16 bits.
        let body = (total - HEADER_LEN) as u16;
        if let Some(field) = self.buf.get_mut(2..4) {
            field.copy_from_slice(&body.to_be_bytes());
        }
    }

    /// Appends XOR-MAPPED-ADDRESS. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 peers) is written as the IPv4 address it maps.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), EncodeError> {
        let mask = xor_mask(&self.txid());
        let ip = match addr.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let (family, octets, n) = match ip {
            IpAddr::V4(v4) => {
                let mut o = [0; 16];
                o[..4].copy_from_slice(&v4.octets());
                (FAMILY_IPV4, o, 4)
            }
            IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets(), 16),
        };
        self.attribute_with(attr::XOR_MAPPED_ADDRESS, 4 + n, |v| {
            v[1] = family;
            v[2..4].copy_from_slice(&port.to_be_bytes());
            for ((out, b), m) in v[4..].iter_mut().zip(octets).zip(mask) {
                *out = b ^ m;
            }
        })
    }

    /// Appends ERROR-CODE: `code` in 300..=699, `reason` at most 128 characters and 763 bytes.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<(), EncodeError> {
        if !(300..=699).contains(&code) {
            return Err(EncodeError::BadErrorCode);
        }
        if reason.len() > MAX_REASON_LEN || reason.chars().count() > MAX_REASON_CHARS {
            return Err(EncodeError::ValueTooLong);
        }
        self.attribute_with(attr::ERROR_CODE, 4 + reason.len(), |v| {
            v[2] = (code / 100) as u8;
            v[3] = (code % 100) as u8;
            v[4..].copy_from_slice(reason.as_bytes());
        })
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (32 bytes) with an `HMAC_SHA256` key. Only FINGERPRINT
    /// may be appended after it.
    pub fn message_integrity_sha256(&mut self, key: &hmac::Key) -> Result<(), EncodeError> {
        if self.integrity {
            return Err(EncodeError::AfterIntegrity);
        }
        if key.algorithm() != hmac::HMAC_SHA256 {
            return Err(EncodeError::WrongKeyAlgorithm);
        }
        let start = self.len;
        // Reserve the attribute first: the length field then covers it, as the HMAC requires.
        self.append(attr::MESSAGE_INTEGRITY_SHA256, INTEGRITY_SHA256_LEN, |_| {})?;
        let (covered, attribute) = self.buf.split_at_mut(start);
        let body = (self.len - HEADER_LEN) as u16;
        let tag = integrity_sha256(key, covered, body).ok_or(EncodeError::BufferTooSmall)?;
        let value = tag
            .as_ref()
            .get(..INTEGRITY_SHA256_LEN)
            .ok_or(EncodeError::ValueTooLong)?;
        attribute[4..4 + INTEGRITY_SHA256_LEN].copy_from_slice(value);
        self.integrity = true;
        Ok(())
    }

    /// Appends FINGERPRINT and returns the message's total length.
    pub fn fingerprint(mut self) -> Result<usize, EncodeError> {
        let start = self.len;
        self.append(attr::FINGERPRINT, 4, |_| {})?;
        let (covered, attribute) = self.buf.split_at_mut(start);
        attribute[4..8].copy_from_slice(&fingerprint(covered).to_be_bytes());
        Ok(self.len)
    }

    /// Ends the message without FINGERPRINT and returns its total length.
    #[inline]
    pub fn finish(self) -> usize {
        self.len
    }

    /// The transaction id written by `new`.
    #[inline]
    fn txid(&self) -> TransactionId {
        match RawHeader::ref_from_prefix(&*self.buf) {
            Ok((h, _)) => h.txid,
            Err(_) => [0; 12], // unreachable: `new` checked the buffer holds a header
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use core::net::SocketAddr;

    const TXID: TransactionId = [0x42; 12];

    fn req() -> MessageType {
        MessageType::new(Method::BINDING, Class::Request)
    }

    #[test]
    fn header_and_length_kept_current() {
        let mut buf = [0xEEu8; 128];
        let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
        assert_eq!(e.len(), 20);
        e.attribute(0x7F00, b"a").unwrap();
        assert_eq!(e.len(), 28);
        e.attribute_with(0x7F01, 5, |v| v.copy_from_slice(b"hello"))
            .unwrap();
        assert_eq!(e.len(), 40);
        let n = e.finish();
        assert_eq!(
            &buf[..n],
            &[
                0x00, 0x01, 0x00, 20, 0x21, 0x12, 0xA4, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                0x42, 0x42, 0x42, 0x42, 0x42, 0x42, // header
                0x7F, 0x00, 0x00, 0x01, b'a', 0, 0, 0, // zero padding, not the buffer's 0xEE
                0x7F, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
            ][..]
        );
        assert_eq!(buf[n], 0xEE, "nothing written past the message");
    }

    #[test]
    fn errors() {
        let mut small = [0u8; 19];
        assert_eq!(
            Encoder::new(&mut small, req(), &TXID).err(),
            Some(EncodeError::BufferTooSmall)
        );
        let mut buf = [0u8; 32];
        let bad = MessageType::new(Method(0x1000), Class::Request);
        assert_eq!(
            Encoder::new(&mut buf, bad, &TXID).err(),
            Some(EncodeError::BadMethod)
        );
        let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
        assert_eq!(e.attribute(1, &[0; 9]), Err(EncodeError::BufferTooSmall));
        assert_eq!(e.len(), 20, "a failed append writes nothing");
        e.attribute(1, &[0; 8]).unwrap();
        assert_eq!(e.error_code(200, "x"), Err(EncodeError::BadErrorCode));
        assert_eq!(e.error_code(700, "x"), Err(EncodeError::BadErrorCode));
        assert_eq!(
            e.error_code(400, &"x".repeat(129)),
            Err(EncodeError::ValueTooLong)
        );
        assert_eq!(
            e.error_code(400, &"€".repeat(128)).err(),
            Some(EncodeError::BufferTooSmall),
            "128 chars is allowed"
        );
        assert_eq!(e.fingerprint(), Err(EncodeError::BufferTooSmall));

        let sha1 = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"k");
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
        assert_eq!(
            e.message_integrity_sha256(&sha1),
            Err(EncodeError::WrongKeyAlgorithm)
        );
        assert_eq!(e.finish(), 20);

        let mut big = vec![0u8; 70_000];
        let mut e = Encoder::new(&mut big, req(), &TXID).unwrap();
        assert_eq!(e.attribute(1, &[0; 65_536]), Err(EncodeError::ValueTooLong));
        // The body may hold at most 65532 bytes (a multiple of 4 under 2^16).
        assert_eq!(
            e.attribute(1, &[0; 65_529]),
            Err(EncodeError::MessageTooLong)
        );
        e.attribute(1, &[0; 65_000]).unwrap();
        assert_eq!(e.attribute(2, &[0; 525]), Err(EncodeError::MessageTooLong));
        e.attribute(2, &[0; 524]).unwrap();
        let n = e.finish();
        assert_eq!(n, 20 + 65_532);
        let m = Message::parse(&big[..n]).unwrap();
        assert_eq!(m.get(2).map(<[u8]>::len), Some(524));
    }

    #[test]
    fn only_fingerprint_after_integrity() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
        e.message_integrity_sha256(&key).unwrap();
        assert_eq!(
            e.attribute(attr::SOFTWARE, b"x"),
            Err(EncodeError::AfterIntegrity)
        );
        assert_eq!(
            e.message_integrity_sha256(&key),
            Err(EncodeError::AfterIntegrity)
        );
        let n = e.fingerprint().unwrap();
        assert_eq!(n, 20 + 36 + 8);
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.verify_integrity_sha256(&key), Ok(()));
    }

    #[test]
    fn xor_mapped_address_round_trips() {
        for a in [
            "192.0.2.1:32853",
            "[2001:db8::1]:1",
            "0.0.0.0:0",
            "[::]:65535",
            "255.255.255.255:65535",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut buf = [0u8; 64];
            let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
            e.xor_mapped_address(addr).unwrap();
            let n = e.finish();
            assert_eq!(
                Message::parse(&buf[..n]).unwrap().xor_mapped_address(),
                Some(Ok(addr))
            );
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_encoded_as_ipv4() {
        let mut buf = [0u8; 64];
        let mut e = Encoder::new(&mut buf, req(), &TXID).unwrap();
        e.xor_mapped_address("[::ffff:192.0.2.9]:1".parse().unwrap())
            .unwrap();
        let n = e.finish();
        assert_eq!(n, 20 + 12);
        assert_eq!(buf[20 + 5], attr::FAMILY_IPV4);
        let got = Message::parse(&buf[..n]).unwrap().xor_mapped_address();
        assert_eq!(got, Some(Ok("192.0.2.9:1".parse().unwrap())));
    }
}
