//! A parsed, validated STUN message borrowing its datagram.

use super::attr::{self, split_attribute, Attributes, ErrorCode, RawAttribute};
use super::header::RawHeader;
use super::integrity::{constant_time_eq, fingerprint, integrity_sha256};
use super::{
    Class, IntegrityError, MessageType, Method, ParseError, TransactionId, HEADER_LEN, MAGIC_COOKIE,
};
use core::net::SocketAddr;
use ring::hmac;
use zerocopy::FromBytes;

/// A validated STUN message: header, framing, FINGERPRINT and attribute order checked.
///
/// Accessors are cheap; attribute look-ups walk the (already validated) attribute list.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    header: &'a RawHeader,
    typ: MessageType,
    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute, 0 if there is none.
    integrity: u16,
    fingerprint: bool,
}

impl core::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.typ)
            .field("transaction_id", &self.header.txid)
            .field("len", &self.bytes.len())
            .field("attributes", &AttributeList(self.attributes()))
            .finish()
    }
}

/// Debug view of the attributes: (type, value length) pairs, without allocating.
struct AttributeList<'a>(Attributes<'a>);

impl core::fmt::Debug for AttributeList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.0.clone().map(|a| (a.typ, a.value.len())))
            .finish()
    }
}

impl<'a> Message<'a> {
    /// Validates `datagram` as one whole STUN message, in one pass over its attributes.
    ///
    /// Checks the header (leading bits, cookie), that the length field is a multiple of 4 and
    /// equals the bytes after the header, that every attribute with its padding is in bounds,
    /// that MESSAGE-INTEGRITY-SHA256 has a valid length and is followed by nothing but
    /// FINGERPRINT, and that FINGERPRINT (if any) is last and matches. Never allocates.
    pub fn parse(datagram: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let (header, body) =
            RawHeader::ref_from_prefix(datagram).map_err(|_| ParseError::TooShort)?;
        let typ = MessageType::from_u16(header.typ.get())?;
        if header.cookie.get() != MAGIC_COOKIE {
            return Err(ParseError::NotStun);
        }
        let length = usize::from(header.length.get());
        if length % 4 != 0 {
            return Err(ParseError::BadLength);
        }
        if length != body.len() {
            return Err(ParseError::LengthMismatch);
        }

        let mut integrity = 0u16;
        let mut has_fingerprint = false;
        let mut rest = body;
        while !rest.is_empty() {
            let offset = datagram.len() - rest.len();
            let (t, value, after) = split_attribute(rest).ok_or(ParseError::TruncatedAttribute)?;
            match t {
                attr::FINGERPRINT => {
                    if !after.is_empty() {
                        return Err(ParseError::FingerprintNotLast);
                    }
                    let Ok(&crc) = <&[u8; 4]>::try_from(value) else {
                        return Err(ParseError::BadAttributeLength(attr::FINGERPRINT));
                    };
                    // The length field already covers FINGERPRINT: it is the last attribute.
                    let covered = datagram
                        .get(..offset)
                        .ok_or(ParseError::TruncatedAttribute)?;
                    if fingerprint(covered) != u32::from_be_bytes(crc) {
                        return Err(ParseError::BadFingerprint);
                    }
                    has_fingerprint = true;
                }
                _ if integrity != 0 => return Err(ParseError::AttributeAfterIntegrity),
                attr::MESSAGE_INTEGRITY_SHA256 => {
                    if !(16..=32).contains(&value.len()) || value.len() % 4 != 0 {
                        return Err(ParseError::BadAttributeLength(
                            attr::MESSAGE_INTEGRITY_SHA256,
                        ));
                    }
                    // offset ≤ 65532 (the attribute's 20+ bytes end by 20 + 65532), and it is
                    // never 0 (the header comes first): 0 stays "none".
                    integrity = offset as u16;
                }
                _ => {}
            }
            rest = after;
        }
        Ok(Message {
            bytes: datagram,
            header,
            typ,
            integrity,
            fingerprint: has_fingerprint,
        })
    }

    /// Method and class.
    #[inline]
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The method.
    #[inline]
    pub fn method(&self) -> Method {
        self.typ.method
    }

    /// The class.
    #[inline]
    pub fn class(&self) -> Class {
        self.typ.class
    }

    /// The 96-bit transaction id.
    #[inline]
    pub fn transaction_id(&self) -> &'a TransactionId {
        &self.header.txid
    }

    /// Bytes of the whole message, header included (the datagram's length).
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a message is never empty
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The whole message as received.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attributes, in order (FINGERPRINT and MESSAGE-INTEGRITY-SHA256 included).
    #[inline]
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.bytes.get(HEADER_LEN..).unwrap_or_default())
    }

    /// Value of the first attribute of type `typ`.
    #[inline]
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// True when the message ends with a (verified) FINGERPRINT.
    #[inline]
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint
    }

    /// True when the message carries MESSAGE-INTEGRITY-SHA256 (not yet verified).
    #[inline]
    pub fn has_integrity_sha256(&self) -> bool {
        self.integrity != 0
    }

    /// Checks MESSAGE-INTEGRITY-SHA256 with an `HMAC_SHA256` key, in constant time.
    /// A value truncated by the sender (16..=32 bytes) is compared with as many bytes of the HMAC.
    pub fn verify_integrity_sha256(&self, key: &hmac::Key) -> Result<(), IntegrityError> {
        if self.integrity == 0 {
            return Err(IntegrityError::Missing);
        }
        if key.algorithm() != hmac::HMAC_SHA256 {
            return Err(IntegrityError::Bad);
        }
        let start = usize::from(self.integrity);
        let (covered, attribute) = self
            .bytes
            .split_at_checked(start)
            .ok_or(IntegrityError::Bad)?;
        let RawAttribute { value, .. } = Attributes::new(attribute)
            .next()
            .ok_or(IntegrityError::Bad)?;
        // Length field as if the message ended right after this attribute (its value is 16..=32, a multiple of 4).
        let length =
            u16::try_from(start + 4 + value.len() - HEADER_LEN).map_err(|_| IntegrityError::Bad)?;
        let tag = integrity_sha256(key, covered, length).ok_or(IntegrityError::Bad)?;
        let expected = tag.as_ref().get(..value.len()).ok_or(IntegrityError::Bad)?;
        if constant_time_eq(expected, value) {
            Ok(())
        } else {
            Err(IntegrityError::Bad)
        }
    }

    /// The first XOR-MAPPED-ADDRESS, decoded.
    #[inline]
    pub fn xor_mapped_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        self.get(attr::XOR_MAPPED_ADDRESS)
            .map(|v| attr::decode_xor_address(v, self.transaction_id()))
    }

    /// The first MAPPED-ADDRESS, decoded.
    #[inline]
    pub fn mapped_address(&self) -> Option<Result<SocketAddr, ParseError>> {
        self.get(attr::MAPPED_ADDRESS).map(attr::decode_address)
    }

    /// The first ERROR-CODE, decoded.
    #[inline]
    pub fn error_code(&self) -> Option<Result<ErrorCode<'a>, ParseError>> {
        self.get(attr::ERROR_CODE).map(attr::decode_error_code)
    }

    /// The first comprehension-required attribute (type < 0x8000) whose type is not in `known`:
    /// the caller answers a request carrying one with error 420 (and such a response is dropped).
    pub fn unknown_comprehension_required(&self, known: &[u16]) -> Option<u16> {
        self.attributes()
            .map(|a| a.typ)
            .find(|&t| attr::is_comprehension_required(t) && !known.contains(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    const TXID: TransactionId = [0x11; 12];

    /// A valid message with the given attributes, FINGERPRINT optional.
    fn build(attrs: &[(u16, &[u8])], fp: bool) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            &TXID,
        )
        .unwrap();
        for (t, v) in attrs {
            e.attribute(*t, v).unwrap();
        }
        let n = if fp {
            e.fingerprint().unwrap()
        } else {
            e.finish()
        };
        buf[..n].to_vec()
    }

    fn set_len(m: &mut [u8], len: usize) {
        m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }

    fn err(bytes: &[u8]) -> ParseError {
        Message::parse(bytes).map(|_| ()).unwrap_err()
    }

    #[test]
    fn minimal_message() {
        let m = build(&[], false);
        assert_eq!(m.len(), 20);
        let p = Message::parse(&m).unwrap();
        assert_eq!(p.len(), 20);
        assert_eq!(
            p.message_type(),
            MessageType::new(Method::BINDING, Class::Request)
        );
        assert_eq!(p.transaction_id(), &TXID);
        assert_eq!(p.attributes().count(), 0);
        assert!(!p.has_fingerprint());
        assert!(p.get(attr::SOFTWARE).is_none());
        assert!(p.xor_mapped_address().is_none());
        assert!(looks_like_stun(&m));
    }

    #[test]
    fn header_errors() {
        let good = build(&[(attr::SOFTWARE, b"x")], false);
        assert_eq!(err(&good[..19]), ParseError::TooShort);
        assert_eq!(err(&[]), ParseError::TooShort);
        let mut m = good.clone();
        m[5] ^= 0x01;
        assert_eq!(err(&m), ParseError::NotStun);
        let mut m = good.clone();
        m[0] |= 0x80;
        assert_eq!(err(&m), ParseError::NotStun);
        let mut m = good.clone();
        set_len(&mut m, 6);
        assert_eq!(err(&m), ParseError::BadLength);
        let mut m = good.clone();
        set_len(&mut m, 4);
        assert_eq!(err(&m), ParseError::LengthMismatch);
        let mut m = good.clone();
        m.extend_from_slice(&[0; 4]);
        assert_eq!(err(&m), ParseError::LengthMismatch, "trailing bytes");
    }

    #[test]
    fn attribute_overrunning_is_truncated() {
        let mut m = build(&[(attr::SOFTWARE, b"abcd"), (0x7F00, b"efgh")], false);
        // Second attribute claims 8 bytes but has 4.
        m[20 + 8 + 3] = 8;
        assert_eq!(err(&m), ParseError::TruncatedAttribute);
        // Claims 5: value fits in the remaining 4? No: 5 > 4.
        m[20 + 8 + 3] = 5;
        assert_eq!(err(&m), ParseError::TruncatedAttribute);
        // Claims 3: value fits, padding takes the fourth byte: valid.
        m[20 + 8 + 3] = 3;
        assert_eq!(Message::parse(&m).unwrap().get(0x7F00), Some(&b"efg"[..]));
        // A value that fits but whose padding would not cannot occur once the length field is
        // a multiple of 4 (see `attr::tests::padding_is_required` for the splitter itself).
        let mut m = build(&[(attr::SOFTWARE, b"abcd")], false);
        m[20 + 3] = 0xFF;
        assert_eq!(err(&m), ParseError::TruncatedAttribute);
        // No room for an attribute header.
        let mut m = build(&[], false);
        m.extend_from_slice(&[0x7F, 0x00]);
        m.extend_from_slice(&[0x00, 0x00]);
        set_len(&mut m, 4);
        assert!(Message::parse(&m).is_ok(), "an empty attribute is fine");
    }

    #[test]
    fn fingerprint_must_be_last() {
        let with_fp = build(&[(attr::SOFTWARE, b"abc")], true);
        let mut m = with_fp.clone();
        m.extend_from_slice(&[0x7F, 0x00, 0x00, 0x00]);
        let body = m.len() - 20;
        set_len(&mut m, body);
        assert_eq!(err(&m), ParseError::FingerprintNotLast);
        // A FINGERPRINT-typed attribute of the wrong length.
        let m = build(&[(attr::FINGERPRINT, b"12345678")], false);
        assert_eq!(err(&m), ParseError::BadAttributeLength(attr::FINGERPRINT));
        // A wrong CRC.
        let m = build(&[(attr::FINGERPRINT, b"1234")], false);
        assert_eq!(err(&m), ParseError::BadFingerprint);
    }

    #[test]
    fn attribute_after_integrity() {
        let m = build(
            &[
                (attr::MESSAGE_INTEGRITY_SHA256, &[0; 32]),
                (attr::SOFTWARE, b"late"),
            ],
            false,
        );
        assert_eq!(err(&m), ParseError::AttributeAfterIntegrity);
        let m = build(
            &[
                (attr::MESSAGE_INTEGRITY_SHA256, &[0; 32]),
                (attr::MESSAGE_INTEGRITY_SHA256, &[0; 32]),
            ],
            false,
        );
        assert_eq!(err(&m), ParseError::AttributeAfterIntegrity);
        // FINGERPRINT may follow.
        let m = build(&[(attr::MESSAGE_INTEGRITY_SHA256, &[0; 32])], true);
        let p = Message::parse(&m).unwrap();
        assert!(p.has_fingerprint() && p.has_integrity_sha256());
    }

    #[test]
    fn attributes_get_and_unknown() {
        let m = build(
            &[
                (0x7F01, b"one"),
                (attr::SOFTWARE, b"sw"),
                (0x7F01, b"two"),
                (0x0002, b""),
            ],
            true,
        );
        let p = Message::parse(&m).unwrap();
        let types: Vec<u16> = p.attributes().map(|a| a.typ).collect();
        assert_eq!(
            types,
            [0x7F01, attr::SOFTWARE, 0x7F01, 0x0002, attr::FINGERPRINT]
        );
        assert_eq!(p.get(0x7F01), Some(&b"one"[..]), "first occurrence");
        assert_eq!(p.get(0x0002), Some(&b""[..]));
        assert_eq!(p.unknown_comprehension_required(&[]), Some(0x7F01));
        assert_eq!(p.unknown_comprehension_required(&[0x7F01]), Some(0x0002));
        assert_eq!(p.unknown_comprehension_required(&[0x7F01, 0x0002]), None);
        assert!(format!("{p:?}").starts_with("Message"));
    }

    #[test]
    fn error_code_accessor() {
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Error),
            &TXID,
        )
        .unwrap();
        e.error_code(420, "Unknown Attribute").unwrap();
        let n = e.fingerprint().unwrap();
        let p = Message::parse(&buf[..n]).unwrap();
        assert_eq!(p.class(), Class::Error);
        assert_eq!(
            p.error_code(),
            Some(Ok(ErrorCode {
                code: 420,
                reason: "Unknown Attribute"
            }))
        );
    }

    /// Deterministic xorshift64.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Calls every accessor so that none of them can hide a panic.
    fn exercise(bytes: &[u8]) -> bool {
        let _ = looks_like_stun(bytes);
        let Ok(p) = Message::parse(bytes) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let _ = (
            p.message_type(),
            p.transaction_id(),
            p.len(),
            p.has_fingerprint(),
        );
        let _ = p.attributes().count();
        let _ = (p.xor_mapped_address(), p.mapped_address(), p.error_code());
        let _ = p.unknown_comprehension_required(&[1, 2, 3]);
        let _ = p.verify_integrity_sha256(&key);
        true
    }

    #[test]
    fn every_truncation_is_an_error() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let mut buf = [0u8; 256];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method(0xF01), Class::Success),
            &TXID,
        )
        .unwrap();
        e.xor_mapped_address("[2001:db8::1]:9".parse().unwrap())
            .unwrap();
        e.error_code(401, "Unauthorized").unwrap();
        e.attribute(attr::SOFTWARE, b"odd").unwrap();
        e.message_integrity_sha256(&key).unwrap();
        let n = e.fingerprint().unwrap();
        let samples = [
            build(&[(attr::SOFTWARE, b"abcdefg"), (0x7F01, &[7; 33])], true),
            buf[..n].to_vec(),
        ];
        for s in &samples {
            assert!(exercise(s));
            for cut in 0..s.len() {
                assert!(Message::parse(&s[..cut]).is_err(), "cut at {cut}");
                // Also with the length field patched to match the cut: no panic (a cut at an
                // attribute boundary is a valid, shorter message).
                if cut >= 20 {
                    let mut t = s[..cut].to_vec();
                    set_len(&mut t, cut - 20);
                    exercise(&t);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = [0u8; 256];
        let mut parsed = 0;
        for i in 0..100_000usize {
            let len = (rng.next() % buf.len() as u64) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            if i % 2 == 0 && len >= 20 {
                // Make half of them pass the header checks so attribute parsing is reached.
                let body = (len - 20) & !3;
                buf[0] &= 0x3F;
                buf[2..4].copy_from_slice(&(body as u16).to_be_bytes());
                buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                if i % 4 == 0 {
                    // Short attribute lengths, so that some attribute lists are well formed.
                    let mut off = 20;
                    while off + 4 <= 20 + body {
                        let l = (rng.next() % 12) as usize;
                        buf[off + 2..off + 4].copy_from_slice(&(l as u16).to_be_bytes());
                        if rng.next() & 7 == 0 {
                            let t = [
                                attr::XOR_MAPPED_ADDRESS,
                                attr::ERROR_CODE,
                                attr::MAPPED_ADDRESS,
                            ][i % 3];
                            buf[off..off + 2].copy_from_slice(&t.to_be_bytes());
                        }
                        off += 4 + ((l + 3) & !3);
                    }
                }
                if exercise(&buf[..20 + body]) {
                    parsed += 1;
                }
            } else {
                exercise(&buf[..len]);
            }
        }
        assert!(
            parsed > 100,
            "the generator reaches the attribute-level code ({parsed})"
        );
    }
}
