//! Ed25519 identities: appliances and the flock sign with `ring`; an identity is the SHA-256
//! fingerprint of the public key.

use ring::signature::{self, Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of the fingerprint that the registration table keeps (96 bits: a second preimage of
/// that many bits of SHA-256 is out of reach).
pub const FINGERPRINT_PREFIX_LEN: usize = 12;

/// SHA-256 of an Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(public_key: &[u8; PUBLIC_KEY_LEN]) -> Fingerprint {
        Fingerprint(Sha256::digest(public_key).into())
    }

    pub fn prefix(&self) -> [u8; FINGERPRINT_PREFIX_LEN] {
        let mut p = [0; FINGERPRINT_PREFIX_LEN];
        p.copy_from_slice(&self.0[..FINGERPRINT_PREFIX_LEN]);
        p
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Fingerprint({})", to_hex(&self.0[..8]))
    }
}

/// Checks an Ed25519 signature.
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .is_ok()
}

/// The public key of a key pair, as a fixed array.
pub fn public_key(pair: &Ed25519KeyPair) -> [u8; PUBLIC_KEY_LEN] {
    let mut pk = [0; PUBLIC_KEY_LEN];
    pk.copy_from_slice(pair.public_key().as_ref());
    pk
}

/// Signs `message`, returning the signature as a fixed array.
pub fn sign(pair: &Ed25519KeyPair, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut s = [0; SIGNATURE_LEN];
    s.copy_from_slice(pair.sign(message).as_ref());
    s
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex (either case, no separators).
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_fingerprint() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk = public_key(&pair);
        let sig = sign(&pair, b"hello");
        assert!(verify(&pk, b"hello", &sig));
        assert!(!verify(&pk, b"hellp", &sig));
        let fp = Fingerprint::of(&pk);
        assert_eq!(fp.0.to_vec(), Sha256::digest(pk).to_vec());
        assert_eq!(from_hex(&fp.to_hex()).unwrap(), fp.0.to_vec());
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
