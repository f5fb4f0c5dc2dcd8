//! FINGERPRINT (CRC-32) and MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256) computations.
//!
//! Both cover the message from its first byte up to the attribute that carries them, with the
//! header's length field set to cover the message through that attribute.

use ring::hmac;

/// XORed into the CRC-32 to form FINGERPRINT ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Bytes of a MESSAGE-INTEGRITY-SHA256 value as we send it (never truncated).
pub const INTEGRITY_SHA256_LEN: usize = 32;

/// FINGERPRINT value of `message` (header through the attribute before FINGERPRINT), whose
/// length field must already count the FINGERPRINT attribute.
#[inline]
pub(crate) fn fingerprint(message: &[u8]) -> u32 {
    crc32fast::hash(message) ^ FINGERPRINT_XOR
}

/// HMAC of `message` (header through the attribute before MESSAGE-INTEGRITY-SHA256) as if its
/// length field were `length` (the body length through the integrity attribute).
/// `None` if `message` is shorter than the header.
pub(crate) fn integrity_sha256(key: &hmac::Key, message: &[u8], length: u16) -> Option<hmac::Tag> {
    let (typ, rest) = message.split_at_checked(2)?;
    let (_, rest) = rest.split_at_checked(2)?;
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(typ);
    ctx.update(&length.to_be_bytes());
    ctx.update(rest);
    Some(ctx.sign())
}

/// Equality in time independent of where the slices differ (lengths are not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use ring::hmac;

    fn key(k: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, k)
    }

    fn signed(k: &hmac::Key, fingerprint: bool) -> (Vec<u8>, usize) {
        let mut buf = [0u8; 256];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            &[3; 12],
        )
        .unwrap();
        e.attribute(attr::SOFTWARE, b"flock test").unwrap();
        e.attribute(0x7F01, b"name").unwrap();
        e.message_integrity_sha256(k).unwrap();
        let mi_end = e.len();
        let n = if fingerprint {
            e.fingerprint().unwrap()
        } else {
            e.finish()
        };
        (buf[..n].to_vec(), mi_end)
    }

    #[test]
    fn integrity_round_trip() {
        let k = key(b"secret");
        for fp in [false, true] {
            let (msg, _) = signed(&k, fp);
            let m = Message::parse(&msg).unwrap();
            assert_eq!(m.has_fingerprint(), fp);
            assert_eq!(m.verify_integrity_sha256(&k), Ok(()));
            assert_eq!(
                m.verify_integrity_sha256(&key(b"other")),
                Err(IntegrityError::Bad)
            );
            let mi = m.get(attr::MESSAGE_INTEGRITY_SHA256).unwrap();
            assert_eq!(mi.len(), INTEGRITY_SHA256_LEN);
        }
    }

    #[test]
    fn integrity_is_computed_with_the_adjusted_length() {
        // Independently: HMAC over the bytes before MI with the length field ending at MI.
        let k = key(b"secret");
        let (msg, mi_end) = signed(&k, true);
        let mut covered = msg[..mi_end - 36].to_vec();
        covered[2..4].copy_from_slice(&((mi_end - HEADER_LEN) as u16).to_be_bytes());
        let tag = hmac::sign(&k, &covered);
        assert_eq!(&msg[mi_end - 32..mi_end], tag.as_ref());
        // And FINGERPRINT covers the real, final length.
        let crc = crc32fast::hash(&msg[..msg.len() - 8]) ^ FINGERPRINT_XOR;
        assert_eq!(&msg[msg.len() - 4..], &crc.to_be_bytes());
    }

    #[test]
    fn integrity_detects_tampering() {
        let k = key(b"secret");
        let (msg, mi_end) = signed(&k, false);
        // Flip every bit covered by the HMAC except the length field (changing that breaks framing).
        for bit in 0..(mi_end - 36) * 8 {
            if (16..32).contains(&bit) {
                continue;
            }
            let mut t = msg.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            // Header bits (cookie, leading bits) already fail the parse.
            if let Ok(m) = Message::parse(&t) {
                assert_eq!(
                    m.verify_integrity_sha256(&k),
                    Err(IntegrityError::Bad),
                    "bit {bit}"
                );
            }
        }
        // A flipped bit of the tag itself.
        let mut t = msg.clone();
        t[mi_end - 1] ^= 0x80;
        assert_eq!(
            Message::parse(&t).unwrap().verify_integrity_sha256(&k),
            Err(IntegrityError::Bad)
        );
    }

    #[test]
    fn integrity_missing() {
        let mut buf = [0u8; 64];
        let e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            &[3; 12],
        )
        .unwrap();
        let n = e.fingerprint().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(
            m.verify_integrity_sha256(&key(b"k")),
            Err(IntegrityError::Missing)
        );
    }

    #[test]
    fn truncated_integrity_is_accepted_when_it_matches() {
        // RFC 8489 allows a sender to truncate the HMAC to 16..=32 bytes (multiple of 4).
        let k = key(b"secret");
        let (msg, mi_end) = signed(&k, false);
        let start = mi_end - 36; // MI attribute: type, length, 32-byte tag
        let mut t = msg[..start + 4 + 16].to_vec(); // keep 16 bytes of the tag
        t[start + 2..start + 4].copy_from_slice(&16u16.to_be_bytes());
        let body = (t.len() - HEADER_LEN) as u16;
        t[2..4].copy_from_slice(&body.to_be_bytes());
        // Recompute the HMAC for the shorter attribute (the length field differs).
        let tag = super::integrity_sha256(&k, &t[..start], body).unwrap();
        t[start + 4..].copy_from_slice(&tag.as_ref()[..16]);
        let m = Message::parse(&t).unwrap();
        assert_eq!(m.verify_integrity_sha256(&k), Ok(()));
        t[start + 4] ^= 1;
        assert_eq!(
            Message::parse(&t).unwrap().verify_integrity_sha256(&k),
            Err(IntegrityError::Bad)
        );
    }

    #[test]
    fn bad_integrity_lengths_are_parse_errors() {
        for len in [0usize, 12, 18, 36] {
            let mut buf = [0u8; 128];
            let mut e = Encoder::new(
                &mut buf,
                MessageType::new(Method::BINDING, Class::Request),
                &[3; 12],
            )
            .unwrap();
            e.attribute(attr::MESSAGE_INTEGRITY_SHA256, &[0; 40][..len])
                .unwrap();
            let n = e.finish();
            assert_eq!(
                Message::parse(&buf[..n]).map(|_| ()),
                Err(ParseError::BadAttributeLength(
                    attr::MESSAGE_INTEGRITY_SHA256
                )),
                "length {len}"
            );
        }
    }

    #[test]
    fn fingerprint_detects_tampering() {
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            &[9; 12],
        )
        .unwrap();
        e.attribute(attr::SOFTWARE, b"abc").unwrap();
        let n = e.fingerprint().unwrap();
        let msg = &buf[..n];
        assert!(Message::parse(msg).unwrap().has_fingerprint());
        for bit in 0..n * 8 {
            let mut t = msg.to_vec();
            t[bit / 8] ^= 1 << (bit % 8);
            let byte = bit / 8;
            let parsed = Message::parse(&t);
            if !(22..24).contains(&byte) && !(n - 8..n - 4).contains(&byte) {
                // All but SOFTWARE's length and FINGERPRINT's own header: a definite error.
                assert!(parsed.is_err(), "bit {bit} flipped and still parsed");
            }
            // Elsewhere a flip may reframe the message so that FINGERPRINT disappears (its type
            // changed, or a length that now swallows it): never a message that still has one.
            assert!(parsed.map_or(true, |m| !m.has_fingerprint()), "bit {bit}");
        }
        let mut t = msg.to_vec();
        t[n - 1] ^= 1;
        assert_eq!(
            Message::parse(&t).map(|_| ()),
            Err(ParseError::BadFingerprint)
        );
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
