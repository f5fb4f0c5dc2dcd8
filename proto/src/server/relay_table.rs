//! RELAY on the owner's side: a serving server's log-in datagram goes to the registered
//! address of its name, and only there (never an open relay); the appliance's answers to it,
//! and its own SIGNALs for a session relayed that way, go back wrapped to that serving server.
//!
//! The relay table remembers which peer asked, by inner transaction id (answers) and by session
//! nonce (the appliance's SIGNALs). It is bounded (`PeerConfig::max_relays`: past it new relays
//! are refused) and entries expire (`login.give_up_after` for transactions, `session_lifetime`
//! for sessions, refreshed by use).

use super::peers::Origin;
use super::Server;
use crate::entropy::Entropy;
use crate::login::SessionNonce;
use crate::name::TableKey;
use crate::stun::{Class, Message, TransactionId};
use crate::time::Time;
use crate::token::canonical;
use crate::wire::attr::SESSION;
use crate::wire::fixed;
use crate::wire::peer::{self, Relay};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RelayKey {
    Txid(TransactionId),
    Session(SessionNonce),
}

#[derive(Clone, Copy)]
struct Route {
    peer: usize,
    key: TableKey,
    until: Time,
}

#[derive(Default)]
pub(crate) struct Relays {
    routes: HashMap<RelayKey, Route>,
    /// Datagrams to send: to an appliance, or wrapped for a peer.
    out: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Relays {
    fn remember(&mut self, now: Time, max: usize, k: RelayKey, r: Route) -> bool {
        if self.routes.len() >= max && !self.routes.contains_key(&k) {
            self.routes.retain(|_, r| r.until > now);
            if self.routes.len() >= max {
                return false;
            }
        }
        self.routes.insert(k, r);
        true
    }

    fn route(&self, now: Time, k: &RelayKey) -> Option<Route> {
        self.routes.get(k).filter(|r| r.until > now).copied()
    }

    /// Drops expired routes (called from the shard's timer, so an idle table drains).
    pub(crate) fn sweep(&mut self, now: Time) {
        if !self.routes.is_empty() {
            self.routes.retain(|_, r| r.until > now);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    fn push(&mut self, max: usize, dst: SocketAddr, bytes: Vec<u8>) -> bool {
        if self.out.len() >= max {
            return false;
        }
        self.out.push_back((dst, bytes));
        true
    }

    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        while let Some((dst, bytes)) = self.out.pop_front() {
            if let Some(b) = buf.get_mut(..bytes.len()) {
                b.copy_from_slice(&bytes);
                return Some((dst, bytes.len()));
            }
        }
        None
    }
}

fn session_of(msg: &Message<'_>) -> Option<SessionNonce> {
    msg.get(SESSION)
        .and_then(|_| fixed(msg, SESSION).ok().copied())
}

impl<E: Entropy> Server<E> {
    /// A verified RELAY from peer `from`: for a name we own it goes to the appliance; for one we
    /// do not, it is the appliance's datagram for one of our log-in sessions.
    pub(super) fn relay_in(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        from: usize,
        reply: &mut [u8],
    ) -> Option<usize> {
        let Ok(relay) = Relay::parse(msg) else {
            self.stats.malformed += 1;
            return None;
        };
        if self.peers.owner_elsewhere(&relay.name).is_none() {
            self.relay_to_appliance(now, &relay, from);
            return None;
        }
        if self.peers.owner_elsewhere(&relay.name) != Some(from) {
            self.stats.relay_refused += 1;
            return None;
        }
        // The session's answer (a SIGNAL ack) goes back the same way, wrapped.
        let mut inner = [0u8; peer::MAX_INNER];
        let n = {
            let (login, mut cx) = self.login_parts(now);
            login.datagram(&mut cx, &relay.inner, Origin::Owner(from), &mut inner)?
        };
        let n = peer::encode_relay(reply, &inner[..n], &self.peers.sender).ok()?;
        self.stats.relayed_from_appliance += 1;
        Some(n)
    }

    fn relay_to_appliance(&mut self, now: Time, relay: &Relay<'_>, from: usize) {
        let key = relay.name.hash().table_key();
        let Some(e) = self.table.get(&key, now) else {
            self.stats.relay_refused += 1;
            return;
        };
        let dst = e.addr();
        let inner = &relay.inner;
        let max = self.peers.config.max_relays;
        let login = &self.config.login;
        let mut ok = true;
        if inner.class() == Class::Request {
            let r = Route {
                peer: from,
                key,
                until: now + login.give_up_after,
            };
            ok &= self
                .relays
                .remember(now, max, RelayKey::Txid(*inner.transaction_id()), r);
        }
        if let Some(nonce) = session_of(inner) {
            let r = Route {
                peer: from,
                key,
                until: now + login.session_lifetime,
            };
            ok &= self.relays.remember(now, max, RelayKey::Session(nonce), r);
        }
        if !ok {
            self.stats.relay_table_full += 1;
            return;
        }
        if self.relays.push(
            self.peers.config.max_relay_queue,
            dst,
            inner.as_bytes().to_vec(),
        ) {
            self.stats.relayed_to_appliance += 1;
        }
    }

    /// Owner side: a log-in datagram from an appliance that belongs to a relayed exchange goes
    /// back to the peer that relayed it. Returns false when it is not ours to relay.
    pub(super) fn relay_from_appliance(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        src: SocketAddr,
    ) -> bool {
        if self.relays.len() == 0 {
            return false;
        }
        let k = match msg.class() {
            Class::Success | Class::Error => RelayKey::Txid(*msg.transaction_id()),
            Class::Request => match session_of(msg) {
                Some(n) => RelayKey::Session(n),
                None => return false,
            },
            Class::Indication => return false,
        };
        let Some(route) = self.relays.route(now, &k) else {
            return false;
        };
        // Only the registered appliance speaks for its name.
        let from_it = self
            .table
            .get(&route.key, now)
            .is_some_and(|e| canonical(e.addr()) == canonical(src));
        let named =
            super::routing::request_name(msg).is_some_and(|n| n.hash().table_key() == route.key);
        if !from_it || !named {
            return false;
        }
        let Some(dst) = self.peers.servers.get(route.peer).copied() else {
            return false;
        };
        let Some(bytes) = self.peers.wrap(msg.as_bytes()) else {
            return false;
        };
        if let RelayKey::Session(_) = k {
            let r = Route {
                until: now + self.config.login.session_lifetime,
                ..route
            };
            self.relays
                .remember(now, self.peers.config.max_relays, k, r);
        }
        if self
            .relays
            .push(self.peers.config.max_relay_queue, dst, bytes)
        {
            self.stats.relayed_to_peer += 1;
        }
        true
    }

    /// Sizes of the peer tables: LOOKUP cache entries, relay routes, relayed datagrams queued.
    pub fn peer_occupancy(&self) -> (usize, usize, usize) {
        (
            self.peers.cache_len(),
            self.relays.len(),
            self.relays.out.len(),
        )
    }
}
