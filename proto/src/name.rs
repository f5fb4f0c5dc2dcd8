//! Appliance names: normalization and the hash that places a name on a server and a core.
//!
//! Normalization: trim ASCII whitespace, ASCII-lowercase; the result must be 1..=255 bytes of
//! `[a-z0-9._-]`. The name's SHA-256 (of the normalized bytes) decides everything else: bytes
//! 0..8 (big-endian u64) mod the number of servers pick the server, bytes 8..16 mod the number
//! of cores pick the owning core, bytes 16..26 are the key of the registration table.

use sha2::{Digest, Sha256};

/// Longest normalized name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    /// A byte outside `[a-z0-9._-]` after lowercasing (the offending byte).
    BadCharacter(u8),
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NameError::Empty => write!(f, "name is empty"),
            NameError::TooLong => write!(f, "name is longer than {MAX_NAME_LEN} bytes"),
            NameError::BadCharacter(b) => {
                write!(
                    f,
                    "name contains byte 0x{b:02x}; allowed are a-z, 0-9, '.', '_' and '-'"
                )
            }
        }
    }
}

impl std::error::Error for NameError {}

/// A normalized name, held inline (no allocation).
#[derive(Clone, Copy)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl Name {
    /// Normalizes `raw` (see the module docs).
    pub fn normalize(raw: &[u8]) -> Result<Name, NameError> {
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let mut name = Name {
            len: trimmed.len() as u8,
            bytes: [0; MAX_NAME_LEN],
        };
        for (dst, &b) in name.bytes.iter_mut().zip(trimmed) {
            let b = b.to_ascii_lowercase();
            if !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-') {
                return Err(NameError::BadCharacter(b));
            }
            *dst = b;
        }
        Ok(name)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ever gets in (see `normalize`).
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn hash(&self) -> NameHash {
        NameHash(Sha256::digest(self.as_bytes()).into())
    }
}

impl core::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::normalize(s.as_bytes())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Name {}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

impl core::fmt::Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SHA-256 of a normalized name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NameHash(pub [u8; 32]);

/// The part of a name's hash that keys the registration table (80 bits: finding a name that
/// collides with a given one takes 2^80 hashes; accidental collisions among 10 M names have
/// odds of about 10^-10).
pub type TableKey = [u8; 10];

/// Where the core hint sits in a datagram: the first 4 bytes of the STUN transaction id.
pub const CORE_HINT_OFFSET: usize = 8;

impl NameHash {
    /// Index of the server that owns the name in a flock of `servers` (≥ 1).
    pub fn server_index(&self, servers: usize) -> usize {
        slice_mod(&self.0[0..8], servers)
    }

    /// Index of the owning core inside a server running `cores` (≥ 1) cores: the
    /// [core hint](Self::core_hint) mod `cores`.
    pub fn core_index(&self, cores: usize) -> usize {
        core_of_hint(self.core_hint(), cores)
    }

    /// The 4 bytes of the hash that pick the owning core (bytes 8..12, a big-endian u32).
    pub fn core_hint(&self) -> [u8; 4] {
        [self.0[8], self.0[9], self.0[10], self.0[11]]
    }

    /// Puts the core hint into the first 4 bytes of `txid`, the rest staying random. Senders do
    /// this for every message about the name, so that a server with several cores can have the
    /// kernel hand the datagram to the owning core (a reuseport BPF program reads it at
    /// [`CORE_HINT_OFFSET`]) instead of crossing cores in user space. Which core a datagram
    /// reaches never decides anything: a core re-checks ownership and forwards.
    pub fn steer(&self, txid: &mut [u8; 12]) {
        txid[..4].copy_from_slice(&self.core_hint());
    }

    /// Key of the name in a registration table.
    pub fn table_key(&self) -> TableKey {
        let mut k = [0; 10];
        k.copy_from_slice(&self.0[16..26]);
        k
    }
}

/// The core, among `cores` (≥ 1), that a core hint picks.
pub fn core_of_hint(hint: [u8; 4], cores: usize) -> usize {
    (u32::from_be_bytes(hint) as u64 % cores.max(1) as u64) as usize
}

fn slice_mod(bytes: &[u8], n: usize) -> usize {
    let mut v = [0u8; 8];
    v.copy_from_slice(bytes);
    (u64::from_be_bytes(v) % n.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_whitespace() {
        let n = Name::normalize(b"  My-Box.Home_1 \t").unwrap();
        assert_eq!(n.as_str(), "my-box.home_1");
        assert_eq!(n, "MY-BOX.HOME_1".parse().unwrap());
    }

    #[test]
    fn rejects_empty_long_and_bad_characters() {
        assert_eq!(Name::normalize(b"").unwrap_err(), NameError::Empty);
        assert_eq!(Name::normalize(b" \t ").unwrap_err(), NameError::Empty);
        assert_eq!(
            Name::normalize(&[b'a'; 256]).unwrap_err(),
            NameError::TooLong
        );
        assert!(Name::normalize(&[b'a'; 255]).is_ok());
        assert_eq!(
            Name::normalize(b"a b").unwrap_err(),
            NameError::BadCharacter(b' ')
        );
        assert_eq!(
            Name::normalize(b"a/b").unwrap_err(),
            NameError::BadCharacter(b'/')
        );
        assert_eq!(
            Name::normalize("é".as_bytes()).unwrap_err(),
            NameError::BadCharacter(0xc3)
        );
    }

    #[test]
    fn hash_is_sha256_of_normalized_name() {
        // SHA-256("abc"), FIPS 180-2 example.
        let h = Name::normalize(b" ABC ").unwrap().hash();
        assert_eq!(
            h.0[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "hash must be over the normalized bytes"
        );
        // Server index uses bytes 0..8: 0xba7816bf8f01cfea mod 3.
        assert_eq!(h.server_index(3), (0xba7816bf8f01cfeau64 % 3) as usize);
        assert_eq!(h.server_index(1), 0);
        assert_eq!(h.core_index(1), 0);
        // Core hint: bytes 8..12 = 0x414140de.
        assert_eq!(h.core_hint(), [0x41, 0x41, 0x40, 0xde]);
        assert_eq!(h.core_index(7), (0x414140deu32 % 7) as usize);
        let mut txid = [0xee; 12];
        h.steer(&mut txid);
        assert_eq!(txid[..4], h.core_hint());
        assert_eq!(txid[4..], [0xee; 8], "the rest of the id stays random");
        assert_eq!(core_of_hint(h.core_hint(), 5), h.core_index(5));
    }

    #[test]
    fn cores_get_a_fair_share() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let n = Name::normalize(format!("appliance-{i}").as_bytes()).unwrap();
            counts[n.hash().core_index(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
