//! `stun` and `echo` modes: one Binding request template for every socket.

use crate::gen::{Sock, Workload};
use crate::template::Template;
use flock_proto::stun::{attr, Class, Encoder, Message, MessageType, Method, TransactionId};
use std::net::SocketAddr;

/// SOFTWARE value padding the request (16 bytes with padding) so that the 40-byte answer
/// (XOR-MAPPED-ADDRESS + FINGERPRINT) is no larger than the 48-byte request.
pub const SOFTWARE: &[u8] = b"flock-bench/0.1";

/// The Binding request sent by both modes.
pub fn binding_request() -> Template {
    let mut buf = [0u8; 128];
    let n = Encoder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        &[0; 12],
    )
    .and_then(|mut e| {
        e.attribute(attr::SOFTWARE, SOFTWARE)?;
        e.fingerprint()
    })
    .expect("a Binding request fits 128 bytes");
    Template::new(&buf[..n])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A Binding success with FINGERPRINT whose XOR-MAPPED-ADDRESS is the socket's address.
    Stun,
    /// The request's bytes back (the transaction id is matched by the loop).
    Echo,
}

pub struct Binding {
    request: Template,
    check: Check,
    local: Vec<Option<SocketAddr>>,
}

impl Binding {
    pub fn new(check: Check, socks: &[Sock]) -> Binding {
        Binding {
            request: binding_request(),
            check,
            local: socks.iter().map(|s| s.udp.local_addr().ok()).collect(),
        }
    }
}

impl Workload for Binding {
    #[inline]
    fn next(&mut self, _sock: usize, txid: &TransactionId, buf: &mut [u8]) -> Option<(usize, u32)> {
        Some((self.request.write(txid, buf), 0))
    }

    fn answer(&mut self, sock: usize, _tag: u32, d: &[u8]) -> bool {
        match self.check {
            Check::Echo => {
                let t = self.request.bytes();
                // All but the transaction id and the FINGERPRINT value (which covers the id).
                d.len() == t.len() && d[..8] == t[..8] && d[20..d.len() - 4] == t[20..t.len() - 4]
            }
            Check::Stun => match Message::parse(d) {
                Ok(m) => {
                    m.method() == Method::BINDING
                        && m.class() == Class::Success
                        && m.has_fingerprint()
                        && m.xor_mapped_address().and_then(Result::ok) == self.local[sock]
                }
                Err(_) => false,
            },
        }
    }
}
