//! `register` mode: each name's signed REGISTER (from the registration phase, with its
//! socket's nonce) re-sent round-robin; every one costs the server a nonce check, a signature
//! check and its replay guard, and is answered 438 with a fresh nonce (taken before:
//! PROTOCOL.md §4.2), the same work as a re-registration.

use super::appliance::Fleet;
use crate::gen::Workload;
use crate::template::Template;
use flock_proto::stun::{Message, TransactionId};
use flock_proto::wire::registration::{code, ErrorAnswer};

pub struct Reregister {
    requests: Vec<Vec<Template>>,
    cursor: Vec<usize>,
}

impl Reregister {
    pub fn new(fleet: &Fleet) -> Reregister {
        let requests: Vec<Vec<Template>> = fleet
            .by_sock
            .iter()
            .map(|m| {
                m.iter()
                    .map(|&i| &fleet.apps[i as usize])
                    .filter(|a| a.token.is_some())
                    .filter_map(|a| a.register.clone())
                    .collect()
            })
            .collect();
        let cursor = vec![0; requests.len()];
        Reregister { requests, cursor }
    }

    pub fn request_bytes(&self) -> usize {
        crate::template::longest(self.requests.iter().flatten())
    }
}

impl Workload for Reregister {
    #[inline]
    fn next(&mut self, sock: usize, txid: &TransactionId, buf: &mut [u8]) -> Option<(usize, u32)> {
        let r = &self.requests[sock];
        if r.is_empty() {
            return None;
        }
        let c = &mut self.cursor[sock];
        let i = *c;
        *c = (*c + 1) % r.len();
        Some((r[i].write(txid, buf), i as u32))
    }

    fn answer(&mut self, _sock: usize, _tag: u32, d: &[u8]) -> bool {
        Message::parse(d).ok().is_some_and(|m| {
            ErrorAnswer::parse(&m).is_ok_and(|e| e.code == code::STALE_NONCE && e.nonce.is_some())
        })
    }
}
