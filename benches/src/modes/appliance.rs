//! Bench appliances (deterministic keys) and the registration phase: per socket, one
//! REGISTER without nonce fetches the socket's nonce (401), then every appliance of that
//! socket registers signed with it. Retries lost requests until done or out of time.

use crate::gen::Workload;
use crate::template::Template;
use flock_proto::identity::{self, Fingerprint};
use flock_proto::stun::{Class, Message, TransactionId};
use flock_proto::token::{Nonce, Token};
use flock_proto::wire::registration::{self, ErrorAnswer, Registered};
use flock_proto::Name;
use ring::signature::Ed25519KeyPair;
use std::collections::VecDeque;

pub struct Appliance {
    pub name: Name,
    pub key: Ed25519KeyPair,
    pub identity: Fingerprint,
    pub token: Option<Token>,
    /// The signed REGISTER that succeeded (re-sent as is by the `register` mode).
    pub register: Option<Template>,
}

/// The key of appliance `i`: a seed made of `i` (fast: no hashing, no randomness).
pub fn seed(i: u64) -> [u8; 32] {
    let mut s = [0xB5; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s
}

impl Appliance {
    pub fn new(prefix: &str, i: u64) -> Result<Appliance, String> {
        let name: Name = format!("{prefix}{i}")
            .parse()
            .map_err(|e| format!("appliance name {prefix}{i}: {e}"))?;
        let key =
            Ed25519KeyPair::from_seed_unchecked(&seed(i)).map_err(|_| "bad seed".to_string())?;
        let identity = Fingerprint::of(&identity::public_key(&key));
        Ok(Appliance {
            name,
            key,
            identity,
            token: None,
            register: None,
        })
    }
}

/// Thread-local appliances, grouped by the thread-local socket they always use.
pub struct Fleet {
    pub apps: Vec<Appliance>,
    /// For each local socket, indices into `apps`.
    pub by_sock: Vec<Vec<u32>>,
}

impl Fleet {
    /// Appliances `i < n` whose socket (`i mod sockets`) belongs to `thread` (of `threads`).
    pub fn new(
        prefix: &str,
        n: usize,
        sockets: usize,
        threads: usize,
        thread: usize,
    ) -> Result<Fleet, String> {
        let local_socks = (sockets + threads - 1 - thread) / threads;
        let mut f = Fleet {
            apps: Vec::new(),
            by_sock: vec![Vec::new(); local_socks],
        };
        for i in 0..n {
            let (t, local) = super::place(i % sockets, threads);
            if t == thread {
                f.by_sock[local].push(f.apps.len() as u32);
                f.apps.push(Appliance::new(prefix, i as u64)?);
            }
        }
        Ok(f)
    }
}

/// Tag of the nonce-fetching REGISTER.
const PROBE: u32 = u32::MAX;

struct SockState {
    nonce: Option<Nonce>,
    probing: bool,
    pending: VecDeque<u32>,
}

/// The registration phase.
pub struct Registrar {
    pub fleet: Fleet,
    socks: Vec<SockState>,
    pub registered: usize,
    /// Refused for good (e.g. 409 name taken, 508 full): not retried.
    pub refused: usize,
    pub last_refusal: Option<u16>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Registrar {
    pub fn new(fleet: Fleet) -> Registrar {
        let socks = fleet
            .by_sock
            .iter()
            .map(|m| SockState {
                nonce: None,
                probing: false,
                pending: m.iter().copied().collect(),
            })
            .collect();
        Registrar {
            fleet,
            socks,
            registered: 0,
            refused: 0,
            last_refusal: None,
        }
    }

    pub fn total(&self) -> usize {
        self.fleet.apps.len()
    }
}

impl Workload for Registrar {
    fn next(&mut self, sock: usize, txid: &TransactionId, buf: &mut [u8]) -> Option<(usize, u32)> {
        let s = &mut self.socks[sock];
        match s.nonce {
            None if s.probing => None,
            None => {
                let a = &self.fleet.apps[*s.pending.front()? as usize];
                let mut txid = *txid;
                a.name.hash().steer(&mut txid);
                let n = registration::encode_register(buf, &txid, &a.name, &a.key, now_ms(), None)
                    .ok()?;
                s.probing = true;
                Some((n, PROBE))
            }
            Some(nonce) => {
                let i = s.pending.pop_front()?;
                let a = &mut self.fleet.apps[i as usize];
                let mut txid = *txid;
                a.name.hash().steer(&mut txid);
                match registration::encode_register(
                    buf,
                    &txid,
                    &a.name,
                    &a.key,
                    now_ms(),
                    Some(nonce),
                ) {
                    Ok(n) => {
                        a.register = Some(Template::new(&buf[..n]).steered(&a.name));
                        Some((n, i))
                    }
                    Err(_) => {
                        self.refused += 1;
                        None
                    }
                }
            }
        }
    }

    fn answer(&mut self, sock: usize, tag: u32, d: &[u8]) -> bool {
        let Ok(m) = Message::parse(d) else {
            return false;
        };
        let s = &mut self.socks[sock];
        if m.class() == Class::Error {
            let Ok(e) = ErrorAnswer::parse(&m) else {
                return false;
            };
            if let Some(nonce) = e.nonce {
                // 401 (no nonce) or 438 (stale): sign again with the new one.
                s.nonce = Some(nonce);
                s.probing = false;
                if tag != PROBE {
                    s.pending.push_back(tag);
                }
                return tag == PROBE;
            }
            if tag != PROBE {
                self.refused += 1;
                self.last_refusal = Some(e.code);
            }
            return false;
        }
        match Registered::parse(&m) {
            Ok(r) if tag != PROBE => {
                self.fleet.apps[tag as usize].token = Some(r.token);
                self.registered += 1;
                true
            }
            _ => false,
        }
    }

    fn lost(&mut self, sock: usize, tag: u32) {
        let s = &mut self.socks[sock];
        if tag == PROBE {
            s.probing = false;
        } else {
            s.pending.push_back(tag);
        }
    }

    fn done(&self) -> bool {
        self.registered + self.refused >= self.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_split_over_threads_and_sockets() {
        let (n, k, t) = (10, 4, 3);
        let fleets: Vec<Fleet> = (0..t)
            .map(|th| Fleet::new("bench-", n, k, t, th).unwrap())
            .collect();
        assert_eq!(fleets.iter().map(|f| f.apps.len()).sum::<usize>(), n);
        // Socket 0 (thread 0, local 0) holds appliances 0, 4, 8; socket 3 (thread 0, local 1): 3, 7.
        let names = |f: &Fleet, s: usize| {
            f.by_sock[s]
                .iter()
                .map(|&i| f.apps[i as usize].name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&fleets[0], 0), ["bench-0", "bench-4", "bench-8"]);
        assert_eq!(names(&fleets[0], 1), ["bench-3", "bench-7"]);
        assert_eq!(names(&fleets[2], 0), ["bench-2", "bench-6"]);
        assert_ne!(
            Appliance::new("x", 1).unwrap().identity,
            Appliance::new("x", 2).unwrap().identity
        );
    }
}
