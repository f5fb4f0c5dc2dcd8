//! A pre-encoded STUN request re-sent with a new transaction id: copy, patch the id,
//! recompute FINGERPRINT. Costs a memcpy and one CRC-32 of the message, no allocation.

use flock_proto::stun::{TransactionId, FINGERPRINT_XOR, HEADER_LEN};

const FINGERPRINT: u16 = 0x8028;

#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    fingerprint: bool,
    /// First 4 bytes of every transaction id written (the appliance name's core hint, as
    /// appliances send it), instead of the generator's.
    core_hint: Option<[u8; 4]>,
}

impl Template {
    /// Wraps an encoded message (its transaction id is replaced on every write).
    pub fn new(bytes: &[u8]) -> Template {
        let n = bytes.len();
        let fingerprint = n >= HEADER_LEN + 8 && bytes[n - 8..n - 6] == FINGERPRINT.to_be_bytes();
        Template {
            bytes: bytes.to_vec(),
            fingerprint,
            core_hint: None,
        }
    }

    /// Steers every write to the core owning `name` (the first 4 bytes of the transaction id,
    /// see `NameHash::steer`); the generator's id bytes 4..12 stay.
    pub fn steered(mut self, name: &flock_proto::Name) -> Template {
        self.core_hint = Some(name.hash().core_hint());
        self
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
        if let Some(h) = self.core_hint {
            out[8..12].copy_from_slice(&h);
        }
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

    #[test]
    fn a_steered_template_keeps_the_names_core_hint() {
        let name = flock_proto::Name::normalize(b"bench-7").unwrap();
        let t = Template::new(&binding(&[1; 12])).steered(&name);
        let mut out = [0u8; 128];
        let n = t.write(&[7; 12], &mut out);
        let mut want = [7; 12];
        name.hash().steer(&mut want);
        assert_eq!(
            &out[..n],
            &binding(&want)[..],
            "hint, then the generator's bytes 4..12"
        );
        assert!(Message::parse(&out[..n]).unwrap().has_fingerprint());
    }
}
