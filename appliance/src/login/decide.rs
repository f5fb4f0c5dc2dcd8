//! PERSONAS and CONNECT: the persona list served in chunks, and the log-in decided (and
//! remembered by session nonce) under the answer rate.

use super::*;
use crate::machine::{Event, CLOCK_SKEW_MS};
use flock_proto::stun::Message;
use flock_proto::wire::login::{
    self as login_wire, code, Ack, Connect, PersonasChunk, PersonasRefused, PersonasRequest,
};
use flock_proto::wire::method;
use flock_proto::Time;
use std::net::SocketAddr;

impl Login {
    pub(super) fn on_personas(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        len: usize,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(r) = PersonasRequest::parse(m) else {
            return false;
        };
        if r.name != cx.config.name
            || !r.fresh(now.0, CLOCK_SKEW_MS)
            || !r.from_flock(&cx.config.flock_public_key)
        {
            cx.stats.login_ignored += 1;
            return true;
        }
        if !self.bucket.take(now) {
            let busy = PersonasRefused {
                name: cx.config.name,
                code: code::BUSY,
            };
            let mut buf = [0; login_wire::MAX_DATAGRAM];
            match busy.encode(&mut buf, m.transaction_id()) {
                Ok(n) if self.refusal_bucket.take(now) => {
                    cx.stats.login_busy += 1;
                    self.queue(src, buf[..n].to_vec(), cx.stats);
                }
                _ => cx.stats.login_dropped += 1,
            }
            return true;
        }
        let list = self.personas.as_deref().unwrap_or_default();
        let start = (r.offset as usize).min(list.len());
        let data = if self.personas.is_none() || r.known == Some(self.checksum) {
            &[][..]
        } else {
            &list[start..start + PersonasChunk::room(len, &cx.config.name).min(list.len() - start)]
        };
        let chunk = PersonasChunk {
            name: cx.config.name,
            checksum: self.checksum,
            total: list.len() as u32,
            offset: r.offset,
            credentials_required: self.personas.is_none(),
            data,
        };
        let mut buf = [0; login_wire::MAX_DATAGRAM];
        if let Ok(n) = chunk.encode(&mut buf, m.transaction_id()) {
            cx.stats.personas_answered += 1;
            let bytes = buf[..n].to_vec();
            self.queue(src, bytes, cx.stats);
        }
        true
    }

    pub(super) fn on_connect(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(c) = Connect::parse(m) else {
            return false;
        };
        if c.name != cx.config.name
            || !c.fresh(now.0, CLOCK_SKEW_MS)
            || !c.from_flock(&cx.config.flock_public_key)
        {
            cx.stats.login_ignored += 1;
            return true;
        }
        let ack = |error| Ack {
            method: method::CONNECT,
            name: cx.config.name,
            session: c.session,
            seq: None,
            error,
        };
        if let Some(d) = self.decided.iter().find(|d| d.nonce == c.session) {
            // A retransmission (or a replay): the same answer, within the answer rate.
            let a = ack(d.error);
            if self.bucket.take(now) || (a.error.is_some() && self.refusal_bucket.take(now)) {
                self.answer_ack(src, a, m.transaction_id(), cx.stats);
            } else {
                cx.stats.login_dropped += 1;
            }
            return true;
        }
        let rate_ok = self.bucket.take(now);
        if !rate_ok || c.valid_until_ms <= self.forgotten_until {
            // Over the answer rate, or possibly decided before and forgotten: busy, at once.
            if self.refusal_bucket.take(now) {
                cx.stats.login_busy += 1;
                self.answer_ack(src, ack(Some(code::BUSY)), m.transaction_id(), cx.stats);
            } else {
                cx.stats.login_dropped += 1;
            }
            if c.valid_until_ms <= self.forgotten_until {
                return true;
            }
            // Remembered as refused, so that a retransmission gets the same answer.
            self.remember(now, &c, Some(code::BUSY));
            cx.stats.logins_refused += 1;
            cx.events.push(Event::LoginRefused {
                session: c.session,
                persona: c.persona.into(),
                code: code::BUSY,
            });
            return true;
        }
        let error = if self.conns.len() >= cx.config.max_connections {
            Some(code::BUSY)
        } else {
            match (self.auth)(&LoginRequest {
                persona: c.persona,
                credential: c.credential,
                from: src,
            }) {
                Decision::Accept => None,
                Decision::BadCredentials => Some(code::BAD_CREDENTIALS),
                Decision::Deny => Some(code::DENIED),
            }
        };
        self.remember(now, &c, error);
        match error {
            None => {
                self.conns.push(Connection::new(
                    c.session,
                    src,
                    now + cx.config.session_timeout,
                ));
                cx.stats.logins_accepted += 1;
                cx.events.push(Event::LoginAccepted {
                    session: c.session,
                    persona: c.persona.into(),
                });
            }
            Some(code) => {
                cx.stats.logins_refused += 1;
                cx.events.push(Event::LoginRefused {
                    session: c.session,
                    persona: c.persona.into(),
                    code,
                });
            }
        }
        self.answer_ack(src, ack(error), m.transaction_id(), cx.stats);
        true
    }

    /// Remembers the decision on `c` until it is stale; when the memory is full, forgets the
    /// decision whose CONNECT expires first and refuses every CONNECT valid no longer than it.
    pub(super) fn remember(&mut self, now: Time, c: &Connect<'_>, error: Option<u16>) {
        self.decided.retain(|d| d.keep_until >= now);
        if self.decided.len() >= self.memory {
            if let Some(i) = (0..self.decided.len()).min_by_key(|&i| self.decided[i].valid_until) {
                let gone = self.decided.remove(i).expect("in range");
                self.forgotten_until = self.forgotten_until.max(gone.valid_until);
            }
        }
        self.decided.push_back(Decided {
            nonce: c.session,
            error,
            valid_until: c.valid_until_ms,
            keep_until: Time(c.valid_until_ms.saturating_add(CLOCK_SKEW_MS)),
        });
    }
}
