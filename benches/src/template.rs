//! A pre-encoded STUN request re-sent with a new transaction id: copy, patch the id,
//! recompute FINGERPRINT. Costs a memcpy and one CRC-32 of the message, no allocation.

use flock_proto::stun::{TransactionId, FINGERPRINT_XOR, HEADER_LEN};

const FINGERPRINT: u16 = 0x8028;

#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    fingerprint: bool,
}

impl Template {
    /// Wraps an encoded message (its transaction id is replaced on every write).
    pub fn new(bytes: &[u8]) -> Template {
        let n = bytes.len();
        let fingerprint = n >= HEADER_LEN + 8 && bytes[n - 8..n - 6] == FINGERPRINT.to_be_bytes();
        Template {
            bytes: bytes.to_vec(),
            fingerprint,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the message with `txid` into `out`; returns its length (0 if `out` is too small).
    #[inline]
    pub fn write(&self, txid: &TransactionId, out: &mut [u8]) -> usize {
        let n = self.bytes.len();
        let Some(out) = out.get_mut(..n) else {
            return 0;
        };
        out.copy_from_slice(&self.bytes);
        out[8..20].copy_from_slice(txid);
        if self.fingerprint {
            let crc = crc32fast::hash(&out[..n - 8]) ^ FINGERPRINT_XOR;
            out[n - 4..].copy_from_slice(&crc.to_be_bytes());
        }
        n
    }
}

/// Bytes of the longest of `templates` (0 for none): the request size a mode reports.
pub fn longest<'a>(templates: impl IntoIterator<Item = &'a Template>) -> usize {
    templates.into_iter().map(Template::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flock_proto::stun::{attr, Class, Encoder, Message, MessageType, Method};

    fn binding(txid: &TransactionId) -> Vec<u8> {
        let mut buf = [0u8; 128];
        let mut e = Encoder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            txid,
        )
        .unwrap();
        e.attribute(attr::SOFTWARE, b"flock-bench test").unwrap();
        let n = e.fingerprint().unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn same_bytes_as_a_fresh_encoding() {
        let t = Template::new(&binding(&[1; 12]));
        let mut out = [0u8; 128];
        let n = t.write(&[7; 12], &mut out);
        assert_eq!(&out[..n], &binding(&[7; 12])[..]);
        assert!(Message::parse(&out[..n]).unwrap().has_fingerprint());
        assert_eq!(t.write(&[7; 12], &mut [0u8; 8]), 0);
    }
}
