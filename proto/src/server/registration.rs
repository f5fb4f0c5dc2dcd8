//! The registration state machine: a REGISTER passes nonce → timestamp → signature → replay
//! guard → (admission) → table; a KEEPALIVE passes token → table. Answers are encoded by
//! [`crate::wire::registration`]; an address change hands over to [`super::checks`].

use super::{admission, replay, table, Server};
use crate::entropy::Entropy;
use crate::identity::Fingerprint;
use crate::name::{Name, NameHash, TableKey};
use crate::stun::{Message, Method, TransactionId};
use crate::time::Time;
use crate::token::{canonical, ProofError};
use crate::wire::method;
use crate::wire::registration::{
    code, ErrorAnswer, Keepalive, KeptAlive, Register, Registered, TryAlternate,
};
use admission::PolicyEvent;
use std::net::SocketAddr;
use table::Insert;

/// A verified REGISTER about to be taken: its timestamp and how long the replay guard keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taken {
    pub(super) guard: replay::GuardKey,
    pub(super) ts: u64,
    forget_at: u32,
}

impl<E: Entropy> Server<E> {
    pub(super) fn error(
        &self,
        reply: &mut [u8],
        method: Method,
        txid: &TransactionId,
        code: u16,
        nonce: Option<crate::token::Nonce>,
    ) -> Option<usize> {
        ErrorAnswer { code, nonce }.encode(reply, method, txid).ok()
    }

    /// The UDP address of the server owning `hash` when it is not this one (flocks of 2+).
    pub(super) fn owner_elsewhere(&self, hash: &NameHash) -> Option<SocketAddr> {
        let f = &self.config.flock;
        f.owner_elsewhere(hash).map(|o| f.servers[o])
    }

    /// 300 Try-Alternate: checked before any MAC or signature (cheap, keeps no state); `handle`
    /// still drops it if it were larger than the request.
    pub(super) fn try_alternate(
        &mut self,
        reply: &mut [u8],
        method: Method,
        txid: &TransactionId,
        owner: SocketAddr,
    ) -> Option<usize> {
        self.stats.redirected += 1;
        TryAlternate { alternate: owner }
            .encode(reply, method, txid)
            .ok()
    }

    pub(super) fn register(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        req: &Register<'_>,
        hash: &NameHash,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        let txid = msg.transaction_id();
        if let Some(owner) = self.owner_elsewhere(hash) {
            return self.try_alternate(reply, method::REGISTER, txid, owner);
        }
        if let Err(refused) = self.prove_register(now, req, src, txid, reply) {
            return refused;
        }
        let fp = req.fingerprint();
        let key = hash.table_key();
        let taken = match self.guard_register(now, req, &fp, &key, src, txid, reply) {
            Ok(taken) => taken,
            Err(answer) => return answer,
        };
        self.place_register(now, req, fp, key, src, txid, taken, reply)
    }

    /// Steps 1–3 of a REGISTER, cheapest first: a nonce for this source, a fresh timestamp, the
    /// signature. `Err` holds the refusal to send.
    fn prove_register(
        &mut self,
        now: Time,
        req: &Register<'_>,
        src: SocketAddr,
        txid: &TransactionId,
        reply: &mut [u8],
    ) -> Result<(), Option<usize>> {
        // 1. Return routability: a nonce bound to this source, before any expensive work.
        let nonce_err = match req.nonce {
            None => Some(code::NONCE_REQUIRED),
            Some(n) => match self.keys.proof.verify_nonce(src, &n, now.as_secs()) {
                Ok(()) => None,
                Err(ProofError::Forged) => Some(code::NONCE_REQUIRED),
                Err(ProofError::Expired) => Some(code::STALE_NONCE),
            },
        };
        if let Some(c) = nonce_err {
            self.stats.nonces_issued += 1;
            let nonce = self
                .keys
                .proof
                .issue_nonce(src, secs_after(now, self.config.nonce_lifetime));
            return Err(self.error(reply, method::REGISTER, txid, c, Some(nonce)));
        }
        // 2. Freshness.
        let skew = now.0.abs_diff(req.timestamp_ms);
        if skew > self.config.timestamp_tolerance.as_millis() as u64 {
            self.stats.clock_skew += 1;
            return Err(self.error(reply, method::REGISTER, txid, code::CLOCK_SKEW, None));
        }
        // 3. Identity.
        if !req.signature_ok() {
            self.stats.bad_signature += 1;
            return Err(self.error(reply, method::REGISTER, txid, code::BAD_SIGNATURE, None));
        }
        Ok(())
    }

    /// Step 4 of a verified REGISTER: taken before? `Ok` holds what the replay guard keeps once
    /// it is taken; `Err` the answer (or silence) to a retransmission or a replay.
    #[allow(clippy::too_many_arguments)]
    fn guard_register(
        &mut self,
        now: Time,
        req: &Register<'_>,
        fp: &Fingerprint,
        key: &TableKey,
        src: SocketAddr,
        txid: &TransactionId,
        reply: &mut [u8],
    ) -> Result<Taken, Option<usize>> {
        let (fp, key) = (*fp, *key);
        let ts = req.timestamp_ms;
        let guard = replay::guard_key(&key, &fp);
        // 4. Taken before? A retransmission of the REGISTER a running check is for joins it;
        // anything signed no later than the last REGISTER taken for the name is refused.
        if let Some(p) = self.checks.get_mut(&key) {
            if p.fp == fp && p.new_addr == src && p.register_ts == ts {
                p.register_txid = *txid;
                self.stats.silent_while_checking += 1;
                return Err(None);
            }
        }
        if let Some(r) = self.replays.get(&guard, now).filter(|r| ts <= r.ts) {
            self.stats.register_replays += 1;
            if r.kept && r.ts == ts {
                // The check it started found the name's appliance at its address: same answer.
                return Err(self.error(reply, method::REGISTER, txid, code::NAME_TAKEN, None));
            }
            self.stats.nonces_issued += 1;
            let nonce = self
                .keys
                .proof
                .issue_nonce(src, secs_after(now, self.config.nonce_lifetime));
            return Err(self.error(
                reply,
                method::REGISTER,
                txid,
                code::STALE_NONCE,
                Some(nonce),
            ));
        }
        if self.replays.room_for(&guard, now).is_err() {
            self.stats.replay_full += 1;
            return Err(self.error(reply, method::REGISTER, txid, code::CAPACITY, None));
        }
        // Remembered while this REGISTER could pass the checks above: until its nonce expires
        // or its timestamp leaves the tolerance.
        let stale_at =
            ts.saturating_add(self.config.timestamp_tolerance.as_millis() as u64) / 1000 + 1;
        Ok(Taken {
            guard,
            ts,
            forget_at: req
                .nonce
                .map_or(0, |n| n.expiry)
                .min(stale_at.min(u64::from(u32::MAX)) as u32),
        })
    }

    /// Step 5 of a verified, fresh REGISTER: the table (a new name, a renewal, a key change
    /// refused, an address change checked first, or the admission policy asked).
    #[allow(clippy::too_many_arguments)]
    fn place_register(
        &mut self,
        now: Time,
        req: &Register<'_>,
        fp: Fingerprint,
        key: TableKey,
        src: SocketAddr,
        txid: &TransactionId,
        taken: Taken,
        reply: &mut [u8],
    ) -> Option<usize> {
        let ts = req.timestamp_ms;
        // 5. The table.
        if let Some(p) = self.checks.get_mut(&key) {
            if p.fp == fp && !self.table.get(&key, now).is_some_and(|e| e.same_addr(src)) {
                // Still checking the old address: stay silent; follow the latest new address.
                p.new_addr = src;
                p.register_txid = *txid;
                p.register_ts = ts;
                self.take(taken, now);
                self.stats.silent_while_checking += 1;
                return None;
            }
        }
        let held = self.table.get(&key, now).copied();
        if self.config.policy.admission && held.is_none_or(|e| e.fp != fp.prefix()) {
            return self.admit(
                now,
                key,
                &req.name,
                fp,
                src,
                txid,
                taken,
                held.is_some(),
                reply,
            );
        }
        match held {
            Some(e) if e.fp != fp.prefix() => {
                self.take(taken, now);
                self.stats.name_taken += 1;
                self.error(reply, method::REGISTER, txid, code::NAME_TAKEN, None)
            }
            Some(e) if !e.same_addr(src) => {
                let old = (e.addr(), Time::from_secs(u64::from(e.expires)));
                if self.start_check(now, key, &req.name, fp, old, src, (*txid, ts)) {
                    self.take(taken, now);
                }
                None
            }
            _ => self.enter(
                now,
                taken,
                key,
                &req.name,
                fp,
                src,
                txid,
                held.is_none(),
                reply,
            ),
        }
    }

    /// Takes a REGISTER into the table and answers it: registered (audited when `new_here`),
    /// or 508 when the table is full.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enter(
        &mut self,
        now: Time,
        taken: Taken,
        key: TableKey,
        name: &Name,
        fp: Fingerprint,
        src: SocketAddr,
        txid: &TransactionId,
        new_here: bool,
        reply: &mut [u8],
    ) -> Option<usize> {
        self.take(taken, now);
        let expires = secs_after(now, self.config.entry_lifetime);
        if self
            .table
            .insert(table::Entry::new(key, src, fp.prefix(), expires), now)
            == Insert::Full
        {
            self.stats.capacity_refused += 1;
            return self.error(reply, method::REGISTER, txid, code::CAPACITY, None);
        }
        self.stats.registered += 1;
        if new_here {
            self.audit(PolicyEvent::Registered {
                name: *name,
                fingerprint: fp,
                addr: src,
            });
        }
        self.registered(now, name, &fp, src, txid, reply)
    }

    /// Remembers a REGISTER as taken (the replay guard had room: checked before).
    pub(super) fn take(&mut self, taken: Taken, now: Time) {
        self.replays
            .record(taken.guard, taken.ts, taken.forget_at, now);
    }

    pub(super) fn registered(
        &self,
        now: Time,
        name: &Name,
        fp: &Fingerprint,
        dst: SocketAddr,
        txid: &TransactionId,
        buf: &mut [u8],
    ) -> Option<usize> {
        let token =
            self.keys
                .proof
                .issue_token(name, fp, dst, secs_after(now, self.config.token_lifetime));
        let interval = self
            .config
            .keepalive_interval
            .as_millis()
            .min(u32::MAX as u128) as u32;
        Registered {
            mapped: canonical(dst),
            token,
            keepalive_interval_ms: interval,
        }
        .encode(buf, txid)
        .ok()
    }

    pub(super) fn keepalive(
        &mut self,
        now: Time,
        msg: &Message<'_>,
        req: &Keepalive,
        hash: &NameHash,
        src: SocketAddr,
        reply: &mut [u8],
    ) -> Option<usize> {
        let txid = msg.transaction_id();
        if let Some(owner) = self.owner_elsewhere(hash) {
            return self.try_alternate(reply, method::KEEPALIVE, txid, owner);
        }
        if self
            .keys
            .proof
            .verify_token(&req.name, &req.identity, src, &req.token, now.as_secs())
            .is_err()
        {
            self.stats.tokens_refused += 1;
            return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
        }
        let key = hash.table_key();
        let expires = secs_after(now, self.config.entry_lifetime);
        match self.table.get_mut(&key, now) {
            Some(e) if e.fp != req.identity.prefix() => {
                self.stats.name_taken += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::NAME_TAKEN, None);
            }
            Some(e) if e.same_addr(src) => e.expires = expires,
            Some(_) => {
                if self.checks.get(&key).is_some_and(|p| p.new_addr == src) {
                    self.stats.silent_while_checking += 1;
                    return None;
                }
                // A valid token from another address than the registered one: moving needs a
                // signed REGISTER (and a check of the old address).
                self.stats.tokens_refused += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
            }
            None if self
                .started
                .is_some_and(|t| now >= t + self.config.entry_lifetime) =>
            {
                // Every registration from before our start would have ended by now: this one
                // ended here, and a token (a bearer proof, replayable from its address) does
                // not bring it back. Moving back needs a signed REGISTER.
                self.stats.tokens_refused += 1;
                return self.error(reply, method::KEEPALIVE, txid, code::REREGISTER, None);
            }
            None => {
                // Just after a start (a restart: the table is empty), the token proves we
                // verified this identity here before: take it back without a signature.
                let entry = table::Entry::new(key, src, req.identity.prefix(), expires);
                if self.table.insert(entry, now) == Insert::Full {
                    self.stats.capacity_refused += 1;
                    return self.error(reply, method::KEEPALIVE, txid, code::CAPACITY, None);
                }
            }
        }
        self.stats.keepalives += 1;
        let half_life = self.config.token_lifetime.as_secs() / 2;
        let token = (u64::from(req.token.expiry) < now.as_secs() + half_life).then(|| {
            let expiry = secs_after(now, self.config.token_lifetime);
            self.keys
                .proof
                .issue_token(&req.name, &req.identity, src, expiry)
        });
        KeptAlive {
            mapped: canonical(src),
            token,
        }
        .encode(reply, txid)
        .ok()
    }
}

/// Unix seconds `d` after `now`, rounded down (so a lifetime is never exceeded).
pub(super) fn secs_after(now: Time, d: core::time::Duration) -> u32 {
    (now + d).as_secs().min(u32::MAX as u64) as u32
}
