//! Registration and keep-alive: the transactions, the REGISTER/KEEPALIVE answers, 300
//! redirects, pauses, and the flock's CHECKs.

use super::*;
use flock_proto::stun::{Class, Message, TransactionId};
use flock_proto::token::canonical;
use flock_proto::wire::registration::{
    code, Check, ErrorAnswer, KeptAlive, Registered, TryAlternate,
};
use flock_proto::Time;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// One request being (re)transmitted.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transaction {
    pub(super) txid: TransactionId,
    /// When the request (or the registration attempt it belongs to) was first sent.
    pub(super) started: Time,
    pub(super) next_send: Time,
    pub(super) rto: Duration,
    /// A transmission is due at the next `poll_output`.
    pub(super) send_now: bool,
    /// That transmission repeats an earlier one.
    pub(super) is_retransmission: bool,
}

/// A registration attempt: one REGISTER transaction whose content (and so transaction id) may
/// change, on a nonce error or a re-signature.
#[derive(Clone, Debug)]
pub(super) struct Attempt {
    pub(super) tx: Transaction,
    /// The signed TIMESTAMP of the current content.
    pub(super) timestamp: Time,
    pub(super) txids: VecDeque<TransactionId>,
    pub(super) nonce_retries: u32,
}

#[derive(Clone, Debug)]
pub(super) enum Phase {
    Starting,
    Registering(Attempt),
    Registered { next_keepalive: Time },
    KeepingAlive(Transaction),
    Paused { until: Time },
}

pub(super) struct PendingAnswer {
    pub(super) dst: SocketAddr,
    pub(super) txid: TransactionId,
    pub(super) challenge: [u8; 16],
}

impl Appliance {
    pub(super) fn deadline(&self, tx: &Transaction) -> Time {
        tx.started + self.config.give_up_after
    }

    /// A fresh transaction id, steered to the core that owns our name
    /// ([`NameHash::steer`](flock_proto::NameHash::steer)).
    pub(super) fn txid(&mut self) -> TransactionId {
        let mut t = [0; 12];
        self.entropy.fill(&mut t);
        t[..4].copy_from_slice(&self.core_hint);
        t
    }

    pub(super) fn event(&mut self, e: Event) {
        self.events.push(e);
    }

    /// `d` spread uniformly over ±`jitter`.
    pub(super) fn jittered(&mut self, d: Duration) -> Duration {
        let j = if self.config.jitter.is_finite() {
            self.config.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut b = [0; 4];
        self.entropy.fill(&mut b);
        let u = f64::from(u32::from_be_bytes(b)) / f64::from(u32::MAX);
        d.mul_f64(1.0 + j * (2.0 * u - 1.0))
    }

    /// The timestamp for new REGISTER content at `now`: later than any signed before.
    pub(super) fn signing_time(&mut self, now: Time) -> Time {
        self.last_signed = now.max(Time(self.last_signed.0 + 1));
        self.last_signed
    }

    pub(super) fn start_registering(&mut self, now: Time) {
        let txid = self.txid();
        let mut txids = VecDeque::with_capacity(4);
        txids.push_back(txid);
        let timestamp = self.signing_time(now);
        self.phase = Phase::Registering(Attempt {
            tx: Transaction::start(txid, now, self.config.rto_initial, self.config.rto_max),
            timestamp,
            txids,
            nonce_retries: 0,
        });
    }

    /// New REGISTER content (fresh timestamp, current nonce) under a new transaction id. The
    /// transmission schedule is the caller's business.
    pub(super) fn new_register_content(&mut self, now: Time) {
        let txid = self.txid();
        let timestamp = self.signing_time(now);
        if let Phase::Registering(a) = &mut self.phase {
            a.tx.txid = txid;
            a.tx.is_retransmission = false;
            a.timestamp = timestamp;
            if a.txids.len() >= MAX_TXIDS_PER_ATTEMPT {
                a.txids.pop_front();
            }
            a.txids.push_back(txid);
        }
    }

    pub(super) fn start_keepalive(&mut self, now: Time) {
        if self.token.is_none() {
            self.start_registering(now);
            return;
        }
        let txid = self.txid();
        self.phase = Phase::KeepingAlive(Transaction::start(
            txid,
            now,
            self.config.rto_initial,
            self.config.rto_max,
        ));
    }

    pub(super) fn schedule_keepalive(&mut self, now: Time) {
        let wait = self.jittered(self.keepalive_interval);
        self.phase = Phase::Registered {
            next_keepalive: now + wait,
        };
    }

    /// Pauses before registering again (backoff over consecutive failures).
    pub(super) fn pause(&mut self, now: Time) {
        self.use_server(self.config.server);
        self.redirects = 0;
        let doublings = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let base = self
            .config
            .retry_pause
            .saturating_mul(1 << doublings)
            .min(self.config.retry_pause_max);
        let wait = self.jittered(base);
        self.phase = Phase::Paused { until: now + wait };
    }

    /// Switches servers; tokens and nonces are bound to the server that issued them.
    pub(super) fn use_server(&mut self, server: SocketAddr) {
        if canonical(server) != canonical(self.server) {
            self.server = server;
            self.token = None;
            self.nonce = None;
        }
    }

    /// A 300 from the server we sent to: register at the owner it names, unless the address is
    /// unusable, points back at the same server, or we have followed too many in a row (then
    /// it counts as a refusal: pause, then start over at the configured server).
    pub(super) fn try_alternate(&mut self, now: Time, to: SocketAddr) {
        if !unicast(to)
            || canonical(to) == canonical(self.server)
            || self.redirects >= MAX_REDIRECTS
        {
            self.refused(now, code::TRY_ALTERNATE);
            return;
        }
        self.redirects += 1;
        self.stats.redirects += 1;
        self.event(Event::Redirected {
            from: self.server,
            to,
        });
        self.use_server(to);
        self.start_registering(now);
    }

    pub(super) fn give_up(&mut self, now: Time) {
        self.stats.gave_up += 1;
        self.event(Event::GaveUp);
        self.pause(now);
    }

    pub(super) fn refused(&mut self, now: Time, code: u16) {
        self.stats.refused += 1;
        self.event(Event::Refused { code });
        self.pause(now);
    }

    pub(super) fn saw_mapped(&mut self, mapped: SocketAddr) {
        if let Some(old) = self.mapped {
            if old != mapped {
                self.event(Event::MappedAddressChanged { old, new: mapped });
            }
        }
        self.mapped = Some(mapped);
    }

    pub(super) fn on_register_answer(&mut self, now: Time, m: &Message<'_>) -> bool {
        let Phase::Registering(a) = &self.phase else {
            return false;
        };
        let txid = m.transaction_id();
        if m.class() == Class::Success {
            // The server answers the latest REGISTER it saw, maybe late: any of ours counts.
            if !a.txids.contains(txid) {
                return false;
            }
            let Ok(r) = Registered::parse(m) else {
                return false;
            };
            self.stats.registrations += 1;
            self.token = Some(r.token);
            if r.keepalive_interval_ms > 0 {
                self.keepalive_interval = Duration::from_millis(u64::from(r.keepalive_interval_ms))
                    .max(MIN_KEEPALIVE_INTERVAL);
            }
            self.failures = 0;
            self.redirects = 0;
            self.saw_mapped(r.mapped);
            self.event(Event::Registered { mapped: r.mapped });
            self.schedule_keepalive(now);
            return true;
        }
        // Errors only count for the content in flight (an older one may carry an older nonce).
        if txid != &a.tx.txid {
            return false;
        }
        let Ok(e) = ErrorAnswer::parse(m) else {
            return false;
        };
        if e.code == code::TRY_ALTERNATE {
            let Ok(t) = TryAlternate::parse(m) else {
                return false;
            };
            self.try_alternate(now, t.alternate);
            return true;
        }
        match (e.code, e.nonce) {
            (code::NONCE_REQUIRED | code::STALE_NONCE, Some(nonce)) => {
                self.nonce = Some(nonce);
                self.new_register_content(now);
                let (initial, max) = (self.config.rto_initial, self.config.rto_max);
                if let Phase::Registering(a) = &mut self.phase {
                    a.nonce_retries += 1;
                    if a.nonce_retries <= MAX_IMMEDIATE_NONCE_RETRIES {
                        a.tx.restart(now, initial, max);
                    }
                }
                true
            }
            (code::NONCE_REQUIRED | code::STALE_NONCE, None) => false,
            (c, _) => {
                self.refused(now, c);
                true
            }
        }
    }

    pub(super) fn on_keepalive_answer(&mut self, now: Time, m: &Message<'_>) -> bool {
        let Phase::KeepingAlive(tx) = &self.phase else {
            return false;
        };
        if m.transaction_id() != &tx.txid {
            return false;
        }
        if m.class() == Class::Success {
            let Ok(k) = KeptAlive::parse(m) else {
                return false;
            };
            self.stats.keepalives += 1;
            if let Some(t) = k.token {
                self.token = Some(t);
            }
            self.failures = 0;
            self.saw_mapped(k.mapped);
            self.event(Event::KeptAlive { mapped: k.mapped });
            self.schedule_keepalive(now);
            return true;
        }
        let Ok(e) = ErrorAnswer::parse(m) else {
            return false;
        };
        if e.code == code::TRY_ALTERNATE {
            // The flock's list changed since we registered: the name has a new owner.
            let Ok(t) = TryAlternate::parse(m) else {
                return false;
            };
            self.try_alternate(now, t.alternate);
            return true;
        }
        if e.code == code::REREGISTER {
            self.token = None;
            self.event(Event::TokenRefused);
            self.start_registering(now);
        } else {
            self.refused(now, e.code);
        }
        true
    }

    pub(super) fn on_check(&mut self, now: Time, src: SocketAddr, m: &Message<'_>) {
        let Ok(c) = Check::parse(m) else {
            self.stats.checks_ignored += 1;
            return;
        };
        // Stale CHECKs (replayed long after the server sent them) are ignored; the skew allowance
        // matches the server's REGISTER timestamp tolerance.
        if c.name != self.config.name
            || !c.fresh(now.0, CLOCK_SKEW_MS)
            || !c.from_flock(&self.config.flock_public_key)
        {
            self.stats.checks_ignored += 1;
            return;
        }
        if !self.check_answers.take(now) || self.answers.len() >= MAX_PENDING_ANSWERS {
            self.stats.checks_dropped += 1;
            return;
        }
        self.answers.push_back(PendingAnswer {
            dst: src,
            txid: *m.transaction_id(),
            challenge: c.challenge,
        });
        self.stats.checks_answered += 1;
        self.event(Event::CheckAnswered { from: src });
    }
}

/// An address a 300 may send us to: a unicast IP and a port.
pub(super) fn unicast(a: SocketAddr) -> bool {
    let ip = canonical(a).ip();
    let multi = match ip {
        std::net::IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => v6.is_multicast(),
    };
    a.port() != 0 && !ip.is_unspecified() && !multi
}

impl Transaction {
    pub(super) fn start(
        txid: TransactionId,
        now: Time,
        rto_initial: Duration,
        rto_max: Duration,
    ) -> Transaction {
        Transaction {
            txid,
            started: now,
            next_send: now + rto_initial,
            rto: (rto_initial * 2).min(rto_max),
            send_now: true,
            is_retransmission: false,
        }
    }

    /// Due now: send again and back off.
    pub(super) fn retransmit(&mut self, now: Time, rto_max: Duration) {
        self.send_now = true;
        self.next_send = now + self.rto;
        self.rto = (self.rto * 2).min(rto_max);
    }

    /// Send at once and restart the backoff (new content, or a network change).
    pub(super) fn restart(&mut self, now: Time, rto_initial: Duration, rto_max: Duration) {
        self.send_now = true;
        self.next_send = now + rto_initial;
        self.rto = (rto_initial * 2).min(rto_max);
    }
}
