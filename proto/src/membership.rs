//! Flock membership: the ordered list of servers, this server's place in it, the digest peers
//! compare to refuse a server configured with another list, and the peer secret derived from
//! the shared flock key. Names are split with [`crate::NameHash::server_index`] (PROTOCOL.md §2).

use crate::server::FlockConfig;
use crate::Name;
use ring::hkdf;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Most servers in a flock.
pub const MAX_SERVERS: usize = 1024;
/// First bytes of the digest's input: a new encoding gets a new tag.
pub const DIGEST_TAG: &[u8] = b"flock membership v1";
/// HKDF-SHA256 salt and info of the peer secret.
pub const PEER_SECRET_LABEL: &[u8] = b"flock peer secret v1";

/// One server of a flock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Where appliances (and peers) reach its UDP port; sent as ALTERNATE-SERVER, so it must be
    /// the address appliances see.
    pub udp: SocketAddr,
    /// Its websocket gateway.
    pub ws: SocketAddr,
}

/// The flock as one server sees it: every server in order (index = position) and which one it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub servers: Vec<Member>,
    pub me: usize,
}

/// Why a membership list is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipError {
    Empty,
    TooMany(usize),
    IndexOutOfRange {
        me: usize,
        servers: usize,
    },
    /// Two servers share an address (`what` is "udp" or "ws").
    Duplicate {
        what: &'static str,
        first: usize,
        second: usize,
        addr: SocketAddr,
    },
    /// An address nobody can send to: unspecified IP, port 0, multicast or broadcast.
    Unusable {
        what: &'static str,
        index: usize,
        addr: SocketAddr,
    },
    /// UDP addresses of both families: an appliance redirected from an IPv4 server to an IPv6
    /// owner (or back) may have no socket of that family to follow with.
    MixedFamilies {
        v4: usize,
        v6: usize,
    },
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::Empty => write!(f, "the flock has no servers"),
            MembershipError::TooMany(n) => write!(f, "the flock lists {n} servers; at most {MAX_SERVERS} are supported"),
            MembershipError::IndexOutOfRange { me, servers } => {
                write!(f, "this server's index {me} is not in the list of {servers} servers (valid: 0..={})", servers.saturating_sub(1))
            }
            MembershipError::Duplicate { what, first, second, addr } => {
                write!(f, "servers {first} and {second} have the same {what} address {addr}")
            }
            MembershipError::Unusable { what, index, addr } => {
                write!(f, "server {index} has an unusable {what} address {addr} (needs a unicast IP and a non-zero port)")
            }
            MembershipError::MixedFamilies { v4, v6 } => write!(
                f,
                "server {v4} has an IPv4 udp address and server {v6} an IPv6 one: list one family (appliances follow redirects with the socket they have)"
            ),
        }
    }
}

impl std::error::Error for MembershipError {}

fn usable(a: SocketAddr) -> bool {
    let ip = crate::token::canonical(a).ip();
    let special = match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    };
    a.port() != 0 && !ip.is_unspecified() && !special
}

/// `0x04` ‖ IPv4 (4) or `0x06` ‖ IPv6 (16), then the port (2); IPv4-mapped IPv6 counts as IPv4.
fn encode_addr(h: &mut Sha256, a: SocketAddr) {
    match crate::token::canonical(a) {
        SocketAddr::V4(v4) => {
            h.update([0x04]);
            h.update(v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            h.update([0x06]);
            h.update(v6.ip().octets());
        }
    }
    h.update(a.port().to_be_bytes());
}

impl Membership {
    /// Checks that the list is usable and names this server.
    pub fn validate(&self) -> Result<(), MembershipError> {
        let n = self.servers.len();
        if n == 0 {
            return Err(MembershipError::Empty);
        }
        if n > MAX_SERVERS {
            return Err(MembershipError::TooMany(n));
        }
        if self.me >= n {
            return Err(MembershipError::IndexOutOfRange {
                me: self.me,
                servers: n,
            });
        }
        for (i, m) in self.servers.iter().enumerate() {
            for (what, addr) in [("udp", m.udp), ("ws", m.ws)] {
                if !usable(addr) {
                    return Err(MembershipError::Unusable {
                        what,
                        index: i,
                        addr,
                    });
                }
            }
        }
        let family = |m: &Member| crate::token::canonical(m.udp).is_ipv4();
        if let (Some(v4), Some(v6)) = (
            self.servers.iter().position(family),
            self.servers.iter().position(|m| !family(m)),
        ) {
            return Err(MembershipError::MixedFamilies { v4, v6 });
        }
        // O(n²) over at most 1024 entries, once at start.
        for (j, b) in self.servers.iter().enumerate() {
            for (i, a) in self.servers[..j].iter().enumerate() {
                for (what, x, y) in [("udp", a.udp, b.udp), ("ws", a.ws, b.ws)] {
                    if crate::token::canonical(x) == crate::token::canonical(y) {
                        return Err(MembershipError::Duplicate {
                            what,
                            first: i,
                            second: j,
                            addr: x,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// SHA-256 of the canonical list: [`DIGEST_TAG`] ‖ N (u32) ‖ for each server in order, its
    /// udp then its ws address (`0x04` ‖ IPv4 ‖ port or `0x06` ‖ IPv6 ‖ port). `me` is left
    /// out, so every server of one flock has the same digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DIGEST_TAG);
        h.update((self.servers.len() as u32).to_be_bytes());
        for m in &self.servers {
            encode_addr(&mut h, m.udp);
            encode_addr(&mut h, m.ws);
        }
        h.finalize().into()
    }

    /// Index of the server owning `name`.
    pub fn owner(&self, name: &Name) -> usize {
        name.hash().server_index(self.servers.len().max(1))
    }

    /// What a shard needs: the UDP addresses in order, `me`, the digest and the peer secret.
    pub fn flock_config(&self, peer_secret: [u8; 32]) -> FlockConfig {
        FlockConfig {
            me: self.me,
            servers: self.servers.iter().map(|m| m.udp).collect(),
            digest: self.digest(),
            peer_secret,
        }
    }
}

/// The key of peer messages' MESSAGE-INTEGRITY-SHA256: HKDF-SHA256 over the flock key's PKCS#8
/// bytes (as stored in the key file), salt and info both [`PEER_SECRET_LABEL`]. Every server
/// holding the same key file derives the same secret; nobody without it can.
pub fn peer_secret(flock_key_pkcs8: &[u8]) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, PEER_SECRET_LABEL).extract(flock_key_pkcs8);
    let mut out = [0; 32];
    prk.expand(&[PEER_SECRET_LABEL], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u8) -> Member {
        Member {
            udp: format!("10.0.0.{i}:3478").parse().unwrap(),
            ws: format!("10.0.0.{i}:8080").parse().unwrap(),
        }
    }

    fn flock(n: u8, me: usize) -> Membership {
        Membership {
            servers: (1..=n).map(member).collect(),
            me,
        }
    }

    #[test]
    fn a_good_list_validates() {
        flock(1, 0).validate().unwrap();
        flock(3, 2).validate().unwrap();
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        assert_eq!(flock(0, 0).validate(), Err(MembershipError::Empty));
        assert_eq!(
            flock(3, 3).validate(),
            Err(MembershipError::IndexOutOfRange { me: 3, servers: 3 })
        );
        let mut f = flock(3, 0);
        f.servers[2].udp = f.servers[0].udp;
        let e = f.validate().unwrap_err();
        assert_eq!(
            e,
            MembershipError::Duplicate {
                what: "udp",
                first: 0,
                second: 2,
                addr: f.servers[0].udp
            }
        );
        assert_eq!(
            e.to_string(),
            "servers 0 and 2 have the same udp address 10.0.0.1:3478"
        );
        let mut f = flock(3, 0);
        f.servers[1].udp = "[::ffff:10.0.0.1]:3478".parse().unwrap();
        assert!(
            matches!(
                f.validate(),
                Err(MembershipError::Duplicate {
                    what: "udp",
                    first: 0,
                    second: 1,
                    ..
                })
            ),
            "mapped IPv6 is the same address"
        );
        let mut f = flock(2, 0);
        f.servers[1].ws = f.servers[0].ws;
        assert!(matches!(
            f.validate(),
            Err(MembershipError::Duplicate { what: "ws", .. })
        ));
        for bad in [
            "0.0.0.0:3478",
            "10.0.0.9:0",
            "255.255.255.255:1",
            "224.0.0.1:3478",
            "[::]:3478",
            "[ff02::1]:3478",
        ] {
            let mut f = flock(2, 0);
            f.servers[1].udp = bad.parse().unwrap();
            let e = f.validate().unwrap_err();
            assert!(
                matches!(
                    e,
                    MembershipError::Unusable {
                        what: "udp",
                        index: 1,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(bad), "{e}");
        }
        let mut f = flock(3, 0);
        f.servers[2].udp = "[2001:db8::3]:3478".parse().unwrap();
        let e = f.validate().unwrap_err();
        assert_eq!(e, MembershipError::MixedFamilies { v4: 0, v6: 2 });
        assert!(e.to_string().contains("list one family"), "{e}");
        let big = Membership {
            servers: (0..=MAX_SERVERS)
                .map(|i| Member {
                    udp: SocketAddr::new([10, 1, (i >> 8) as u8, i as u8].into(), 1),
                    ws: SocketAddr::new([10, 2, (i >> 8) as u8, i as u8].into(), 1),
                })
                .collect(),
            me: 0,
        };
        assert_eq!(
            big.validate(),
            Err(MembershipError::TooMany(MAX_SERVERS + 1))
        );
        Membership {
            servers: big.servers[..MAX_SERVERS].to_vec(),
            me: 1023,
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn digest_covers_the_list_not_the_index() {
        let d = flock(3, 0).digest();
        assert_eq!(d, flock(3, 1).digest());
        assert_ne!(d, flock(2, 0).digest());
        let mut swapped = flock(3, 0);
        swapped.servers.swap(0, 1);
        assert_ne!(d, swapped.digest(), "order matters: it decides ownership");
        let mut ws = flock(3, 0);
        ws.servers[2].ws.set_port(8081);
        assert_ne!(d, ws.digest());
        let mut mapped = flock(3, 0);
        mapped.servers[0].udp = "[::ffff:10.0.0.1]:3478".parse().unwrap();
        assert_eq!(d, mapped.digest(), "IPv4-mapped IPv6 encodes as IPv4");
        // The canonical encoding, spelled out.
        let mut h = Sha256::new();
        h.update(b"flock membership v1\x00\x00\x00\x01");
        h.update([4, 10, 0, 0, 1, 0x0d, 0x96, 4, 10, 0, 0, 1, 0x1f, 0x90]);
        assert_eq!(flock(1, 0).digest(), <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn ownership_is_the_name_hash_mod_n() {
        let f = flock(3, 1);
        let mut counts = [0; 3];
        for i in 0..3000 {
            let name: Name = format!("box-{i}").parse().unwrap();
            let o = f.owner(&name);
            assert_eq!(o, name.hash().server_index(3));
            let c = f.flock_config([7; 32]);
            assert_eq!(c.owner(&name.hash()), o);
            assert_eq!(c.owns(&name.hash()), o == 1);
            counts[o] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
        let c = f.flock_config([7; 32]);
        assert_eq!(
            (c.me, c.servers.len(), c.digest, c.peer_secret),
            (1, 3, f.digest(), [7; 32])
        );
        assert_eq!(c.servers[2], f.servers[2].udp);
    }

    #[test]
    fn peer_secret_is_a_fixed_function_of_the_key() {
        let a = peer_secret(b"key one");
        assert_eq!(a, peer_secret(b"key one"));
        assert_ne!(a, peer_secret(b"key two"));
        // HKDF-SHA256 by hand: PRK = HMAC(salt, ikm); OKM = HMAC(PRK, info ‖ 0x01).
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<Sha256>::new_from_slice(PEER_SECRET_LABEL).unwrap();
        m.update(b"key one");
        let prk = m.finalize().into_bytes();
        let mut m = Hmac::<Sha256>::new_from_slice(&prk).unwrap();
        m.update(PEER_SECRET_LABEL);
        m.update(&[1]);
        assert_eq!(a[..], m.finalize().into_bytes()[..]);
    }
}
