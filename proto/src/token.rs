//! Stateless, address-bound proofs the server hands out and later checks with one HMAC.
//!
//! - [`Token`]: issued on a successful registration; proves "this server verified identity F
//!   for name N at address A", until its expiry. Keep-alives carry it, so the steady state costs
//!   one HMAC and no signature check, and a restarted server (same secret) accepts it.
//! - [`Nonce`]: handed to any source that sends a REGISTER without a fresh one; a registration
//!   is only verified (Ed25519) when it carries a nonce bound to its source address. That proves
//!   return routability before any expensive work and makes a captured registration useless
//!   from any other address. Its key is bound to the server's *boot* ([`ProofKeys::for_boot`],
//!   random bytes drawn once per start, shared by all its cores): a restarted server refuses
//!   every nonce it issued before, so the in-memory record of the REGISTERs it took (the replay
//!   guard, `server::replay`) never has to survive a restart.
//!
//! Both are `expiry (u32 BE, Unix seconds) || HMAC-SHA256(key, context || fields)[..n]`.

use crate::identity::Fingerprint;
use crate::name::Name;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;
use std::net::{IpAddr, SocketAddr};

/// Bytes of a token on the wire: 4 (expiry) + 16 (MAC).
pub const TOKEN_LEN: usize = 20;
/// Bytes of a registration nonce on the wire: 4 (expiry) + 12 (MAC).
pub const NONCE_LEN: usize = 16;

/// Why a token or nonce was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The MAC does not match: forged, or issued for another name, identity or address.
    Forged,
    /// The MAC matches but the expiry has passed.
    Expired,
}

/// The server's MAC keys, derived from its secret. Cheap to clone (the HMAC
/// key schedule once, so each check is the message blocks plus one outer block).
#[derive(Clone)]
pub struct ProofKeys {
    // HMAC-SHA256 states with the key already absorbed (RustCrypto's `hmac` over `sha2`, which
    // uses the CPU's SHA extensions: 104 ns per token MAC here against ring's 191 ns).
    token: HmacSha256,
    nonce: HmacSha256,
}

impl ProofKeys {
    /// Derives the keys from the server secret (any length; 32 random bytes in practice).
    pub fn from_secret(secret: &[u8]) -> ProofKeys {
        let master = mac_with_key(secret);
        let derive = |label: &[u8]| {
            mac_with_key(&master.clone().chain_update(label).finalize().into_bytes())
        };
        ProofKeys {
            token: derive(b"flock token key v1"),
            nonce: derive(b"flock nonce key v1"),
        }
    }

    /// The same keys with the nonce key bound to `boot`: random bytes a server draws when it
    /// starts and never stores. Tokens are unchanged (they survive restarts, by design); nonces
    /// issued under another boot are refused as forged.
    /// `K_nonce(boot) = HMAC(K_nonce, "flock nonce boot v1" ‖ boot)`.
    pub fn for_boot(&self, boot: &[u8; 16]) -> ProofKeys {
        let key = self
            .nonce
            .clone()
            .chain_update(b"flock nonce boot v1")
            .chain_update(boot)
            .finalize()
            .into_bytes();
        ProofKeys {
            token: self.token.clone(),
            nonce: mac_with_key(&key),
        }
    }

    /// Issues a keep-alive token for `name` held by `fp` at `addr`, valid until `expiry` (Unix s).
    pub fn issue_token(
        &self,
        name: &Name,
        fp: &Fingerprint,
        addr: SocketAddr,
        expiry: u32,
    ) -> Token {
        let mut mac = [0; 16];
        mac.copy_from_slice(&self.token_mac(name, fp, addr, expiry)[..16]);
        Token { expiry, mac }
    }

    /// Checks a token presented by `addr` at `now_secs`.
    pub fn verify_token(
        &self,
        name: &Name,
        fp: &Fingerprint,
        addr: SocketAddr,
        token: &Token,
        now_secs: u64,
    ) -> Result<(), ProofError> {
        let expected = self.token_mac(name, fp, addr, token.expiry);
        if !constant_time_eq(&expected[..16], &token.mac) {
            return Err(ProofError::Forged);
        }
        if u64::from(token.expiry) <= now_secs {
            return Err(ProofError::Expired);
        }
        Ok(())
    }

    /// Issues a registration nonce for source `addr`, valid until `expiry` (Unix s).
    pub fn issue_nonce(&self, addr: SocketAddr, expiry: u32) -> Nonce {
        let mut mac = [0; 12];
        mac.copy_from_slice(&self.nonce_mac(addr, expiry)[..12]);
        Nonce { expiry, mac }
    }

    /// Checks a nonce presented by `addr` at `now_secs`.
    pub fn verify_nonce(
        &self,
        addr: SocketAddr,
        nonce: &Nonce,
        now_secs: u64,
    ) -> Result<(), ProofError> {
        let expected = self.nonce_mac(addr, nonce.expiry);
        if !constant_time_eq(&expected[..12], &nonce.mac) {
            return Err(ProofError::Forged);
        }
        if u64::from(nonce.expiry) <= now_secs {
            return Err(ProofError::Expired);
        }
        Ok(())
    }

    fn token_mac(&self, name: &Name, fp: &Fingerprint, addr: SocketAddr, expiry: u32) -> [u8; 32] {
        let mut ctx = self.token.clone();
        ctx.update(&[name.as_bytes().len() as u8]);
        ctx.update(name.as_bytes());
        ctx.update(&fp.0);
        update_addr(&mut ctx, addr);
        ctx.update(&expiry.to_be_bytes());
        ctx.finalize().into_bytes().into()
    }

    fn nonce_mac(&self, addr: SocketAddr, expiry: u32) -> [u8; 32] {
        let mut ctx = self.nonce.clone();
        update_addr(&mut ctx, addr);
        ctx.update(&expiry.to_be_bytes());
        ctx.finalize().into_bytes().into()
    }
}

/// A keep-alive token as carried in the TOKEN attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub expiry: u32,
    pub mac: [u8; 16],
}

impl Token {
    pub fn to_bytes(&self) -> [u8; TOKEN_LEN] {
        let mut b = [0; TOKEN_LEN];
        b[..4].copy_from_slice(&self.expiry.to_be_bytes());
        b[4..].copy_from_slice(&self.mac);
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Token> {
        let b: &[u8; TOKEN_LEN] = b.try_into().ok()?;
        let (expiry, mac) = b.split_at(4);
        Some(Token {
            expiry: u32::from_be_bytes(expiry.try_into().ok()?),
            mac: mac.try_into().ok()?,
        })
    }
}

/// A registration nonce as carried in the NONCE attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Nonce {
    pub expiry: u32,
    pub mac: [u8; 12],
}

impl Nonce {
    pub fn to_bytes(&self) -> [u8; NONCE_LEN] {
        let mut b = [0; NONCE_LEN];
        b[..4].copy_from_slice(&self.expiry.to_be_bytes());
        b[4..].copy_from_slice(&self.mac);
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Nonce> {
        let b: &[u8; NONCE_LEN] = b.try_into().ok()?;
        let (expiry, mac) = b.split_at(4);
        Some(Nonce {
            expiry: u32::from_be_bytes(expiry.try_into().ok()?),
            mac: mac.try_into().ok()?,
        })
    }
}

/// The canonical form of an address: IPv4-mapped IPv6 counts as IPv4, so a dual-stack socket
/// and an IPv4 socket see the same appliance the same way.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn update_addr(ctx: &mut HmacSha256, addr: SocketAddr) {
    match canonical(addr) {
        SocketAddr::V4(a) => {
            ctx.update(&[4]);
            ctx.update(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            ctx.update(&[6]);
            ctx.update(&a.ip().octets());
        }
    }
    ctx.update(&addr.port().to_be_bytes());
}

/// HMAC-SHA256 keyed with `key` (any length).
fn mac_with_key(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (ProofKeys, Name, Fingerprint, SocketAddr) {
        let keys = ProofKeys::from_secret(b"test secret");
        let name: Name = "box".parse().unwrap();
        (
            keys,
            name,
            Fingerprint([7; 32]),
            "192.0.2.1:4000".parse().unwrap(),
        )
    }

    #[test]
    fn token_round_trip_and_binding() {
        let (keys, name, fp, addr) = setup();
        let t = keys.issue_token(&name, &fp, addr, 1000);
        assert_eq!(Token::from_bytes(&t.to_bytes()), Some(t));
        assert_eq!(keys.verify_token(&name, &fp, addr, &t, 999), Ok(()));
        assert_eq!(
            keys.verify_token(&name, &fp, addr, &t, 1000),
            Err(ProofError::Expired)
        );
        let other_addr: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        assert_eq!(
            keys.verify_token(&name, &fp, other_addr, &t, 0),
            Err(ProofError::Forged)
        );
        assert_eq!(
            keys.verify_token(&"boy".parse().unwrap(), &fp, addr, &t, 0),
            Err(ProofError::Forged)
        );
        assert_eq!(
            keys.verify_token(&name, &Fingerprint([8; 32]), addr, &t, 0),
            Err(ProofError::Forged)
        );
        let later = Token { expiry: 2000, ..t };
        assert_eq!(
            keys.verify_token(&name, &fp, addr, &later, 0),
            Err(ProofError::Forged)
        );
        let other_server = ProofKeys::from_secret(b"another secret");
        assert_eq!(
            other_server.verify_token(&name, &fp, addr, &t, 0),
            Err(ProofError::Forged)
        );
    }

    #[test]
    fn mapped_ipv4_is_the_same_address() {
        let (keys, name, fp, addr) = setup();
        let t = keys.issue_token(&name, &fp, addr, 1000);
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().unwrap();
        assert_eq!(keys.verify_token(&name, &fp, mapped, &t, 0), Ok(()));
    }

    #[test]
    fn nonce_is_bound_to_address() {
        let (keys, _, _, addr) = setup();
        let n = keys.issue_nonce(addr, 50);
        assert_eq!(Nonce::from_bytes(&n.to_bytes()), Some(n));
        assert_eq!(keys.verify_nonce(addr, &n, 49), Ok(()));
        assert_eq!(keys.verify_nonce(addr, &n, 50), Err(ProofError::Expired));
        assert_eq!(
            keys.verify_nonce("192.0.2.2:4000".parse().unwrap(), &n, 0),
            Err(ProofError::Forged)
        );
        let rebooted = keys.for_boot(&[1; 16]);
        assert_eq!(
            rebooted.verify_nonce(addr, &n, 0),
            Err(ProofError::Forged),
            "a nonce from another boot is refused"
        );
        let again = keys.for_boot(&[1; 16]).issue_nonce(addr, 50);
        assert_eq!(rebooted.verify_nonce(addr, &again, 0), Ok(()));
        let t = keys.issue_token(&"box".parse().unwrap(), &Fingerprint([7; 32]), addr, 50);
        assert_eq!(
            rebooted.verify_token(&"box".parse().unwrap(), &Fingerprint([7; 32]), addr, &t, 0),
            Ok(()),
            "tokens survive a restart"
        );
        assert!(Token::from_bytes(&[0; 19]).is_none());
        assert!(Nonce::from_bytes(&[0; 17]).is_none());
    }
}
