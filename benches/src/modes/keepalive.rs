//! `keepalive` mode: KEEPALIVE requests round-robin over each socket's appliances, checked
//! to be KEEPALIVE successes; a refreshed TOKEN replaces the appliance's request.

use super::appliance::Fleet;
use crate::gen::Workload;
use crate::template::Template;
use flock_proto::identity::{from_hex, PUBLIC_KEY_LEN};
use flock_proto::stun::{Message, TransactionId};
use flock_proto::wire::registration::{self, Check, Keepalive, KeptAlive};
use std::path::Path;

pub struct Keepalives {
    fleet: Fleet,
    /// Request of each appliance (`None`: it never registered).
    requests: Vec<Option<Template>>,
    cursor: Vec<usize>,
    flock_key: Option<[u8; PUBLIC_KEY_LEN]>,
    pub checks_answered: u64,
    pub tokens_refreshed: u64,
}

/// Reads the flock public key (hex) from `DIR/flock.pub`.
pub fn read_flock_key(dir: &Path) -> Result<[u8; PUBLIC_KEY_LEN], String> {
    let p = dir.join("flock.pub");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    from_hex(text.trim())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("{}: not a 32-byte hex key", p.display()))
}

fn request(a: &super::appliance::Appliance) -> Option<Template> {
    let ka = Keepalive {
        name: a.name,
        identity: a.identity,
        token: a.token?,
    };
    let mut buf = [0u8; 512];
    let n = ka.encode(&mut buf, &[0; 12]).ok()?;
    Some(Template::new(&buf[..n]).steered(&a.name))
}

impl Keepalives {
    pub fn new(fleet: Fleet, flock_key: Option<[u8; PUBLIC_KEY_LEN]>) -> Keepalives {
        let requests = fleet.apps.iter().map(request).collect();
        let cursor = vec![0; fleet.by_sock.len()];
        Keepalives {
            fleet,
            requests,
            cursor,
            flock_key,
            checks_answered: 0,
            tokens_refreshed: 0,
        }
    }

    /// Bytes of the longest keep-alive request.
    pub fn request_bytes(&self) -> usize {
        crate::template::longest(self.requests.iter().flatten())
    }
}

impl Workload for Keepalives {
    #[inline]
    fn next(&mut self, sock: usize, txid: &TransactionId, buf: &mut [u8]) -> Option<(usize, u32)> {
        let members = &self.fleet.by_sock[sock];
        // Bounded: one pass over the socket's appliances to skip unregistered ones.
        for _ in 0..members.len() {
            let c = &mut self.cursor[sock];
            let i = members[*c];
            *c = (*c + 1) % members.len();
            if let Some(t) = &self.requests[i as usize] {
                return Some((t.write(txid, buf), i));
            }
        }
        None
    }

    fn answer(&mut self, _sock: usize, tag: u32, d: &[u8]) -> bool {
        let Ok(m) = Message::parse(d) else {
            return false;
        };
        match KeptAlive::parse(&m) {
            Ok(k) => {
                if let Some(token) = k.token {
                    let a = &mut self.fleet.apps[tag as usize];
                    a.token = Some(token);
                    self.requests[tag as usize] = request(a);
                    self.tokens_refreshed += 1;
                }
                true
            }
            Err(_) => false,
        }
    }

    /// A CHECK for one of this socket's appliances, signed by the pinned flock key: answer it.
    fn unsolicited(&mut self, sock: usize, d: &[u8], reply: &mut [u8]) -> Option<usize> {
        let key = self.flock_key.as_ref()?;
        let m = Message::parse(d).ok()?;
        let check = Check::parse(&m).ok()?;
        if !check.from_flock(key) {
            return None;
        }
        let &i = self.fleet.by_sock[sock]
            .iter()
            .find(|&&i| self.fleet.apps[i as usize].name == check.name)?;
        let a = &self.fleet.apps[i as usize];
        let n = registration::encode_check_answer(
            reply,
            m.transaction_id(),
            &a.name,
            &a.key,
            &check.challenge,
        )
        .ok()?;
        self.checks_answered += 1;
        Some(n)
    }
}
