//! SIGNAL both ways on an accepted connection: the flock's stream taken in order, ours sent
//! stop-and-wait, and the end of a session (done or failed).

use super::*;
use crate::machine::{Event, Events, Stats};
use flock_proto::entropy::Entropy;
use flock_proto::stun::{Message, TransactionId};
use flock_proto::wire::login::{self as login_wire, code, Ack, Outbound, Signal, SignalBody};
use flock_proto::wire::method;
use flock_proto::Time;
use std::collections::VecDeque;
use std::net::SocketAddr;

impl Login {
    pub(super) fn on_signal(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        len: usize,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(s) = Signal::parse(m) else {
            return false;
        };
        if s.name != cx.config.name {
            return false;
        }
        let ack = |error| Ack {
            method: method::SIGNAL,
            name: cx.config.name,
            session: s.session,
            seq: Some(s.seq),
            error,
        };
        let txid = m.transaction_id();
        let Some(i) = self
            .conns
            .iter()
            .position(|c| c.nonce == s.session && same(c.flock, src))
        else {
            self.finished.retain(|f| f.until > now);
            if self
                .finished
                .iter()
                .any(|f| f.nonce == s.session && same(f.flock, src) && s.seq < f.expect)
            {
                self.answer_ack(src, ack(None), txid, cx.stats);
            } else {
                self.unknown_session(
                    now,
                    src,
                    ack(Some(code::UNKNOWN_SESSION)),
                    txid,
                    len,
                    cx.stats,
                );
            }
            return true;
        };
        let conn = &mut self.conns[i];
        if s.seq > conn.expect {
            // A gap: the flock sends stop-and-wait, so this is a stray; it will come again in turn.
            return true;
        }
        if s.seq == conn.expect {
            let session = s.session;
            match s.body {
                SignalBody::Sdp {
                    offset,
                    total,
                    data,
                } => match conn.sdp.add(offset, total, data, MAX_SDP) {
                    Ok(Some(sdp)) => cx.events.push(Event::RemoteAnswer { session, sdp }),
                    Ok(None) => {}
                    Err(_) => {
                        self.fail(i, SessionFailure::Malformed, cx.stats, cx.events);
                        self.unknown_session(
                            now,
                            src,
                            ack(Some(code::UNKNOWN_SESSION)),
                            txid,
                            len,
                            cx.stats,
                        );
                        return true;
                    }
                },
                SignalBody::Candidate { candidate, mid } => {
                    let candidate = Candidate {
                        candidate: candidate.into(),
                        mid: mid.map(Into::into),
                    };
                    cx.events
                        .push(Event::RemoteCandidate { session, candidate });
                }
                SignalBody::EndOfCandidates => {
                    conn.remote_end = true;
                    cx.events.push(Event::RemoteEndOfCandidates { session });
                }
            }
            conn.expect += 1;
        }
        // In turn, or a retransmission whose ack was lost: acknowledge (no second delivery).
        self.answer_ack(src, ack(None), txid, cx.stats);
        self.finish_if_done(i, now, cx.stats, cx.events);
        true
    }

    /// A 481 for a SIGNAL we cannot place, unless it would be larger than the SIGNAL (a short
    /// one, like end-of-candidates) or the answer rate is exceeded: then nothing.
    pub(super) fn unknown_session(
        &mut self,
        now: Time,
        src: SocketAddr,
        ack: Ack,
        txid: &TransactionId,
        len: usize,
        stats: &mut Stats,
    ) {
        let mut buf = [0; login_wire::MAX_DATAGRAM];
        match ack.encode(&mut buf, txid) {
            Ok(n) if n <= len && self.unknown_bucket.take(now) => {
                self.queue(src, buf[..n].to_vec(), stats)
            }
            _ => stats.login_dropped += 1,
        }
    }

    pub(super) fn on_ack(
        &mut self,
        now: Time,
        src: SocketAddr,
        m: &Message<'_>,
        cx: Cx<'_>,
    ) -> bool {
        let Ok(a) = Ack::parse(m) else { return false };
        let Some(i) = self
            .conns
            .iter()
            .position(|c| c.nonce == a.session && same(c.flock, src))
        else {
            return false;
        };
        let conn = &mut self.conns[i];
        let Some(out) = &conn.outstanding else {
            return false;
        };
        if a.seq != Some(conn.seq) || a.name != cx.config.name || m.transaction_id() != &out.txid {
            return false; // a late ack of an earlier SIGNAL, or not ours
        }
        if a.error.is_some() {
            self.fail(i, SessionFailure::Closed, cx.stats, cx.events);
            return true;
        }
        conn.outstanding = None;
        conn.seq += 1;
        conn.piece += 1;
        let front = conn
            .queue
            .front()
            .expect("an outstanding SIGNAL has its item");
        if conn.piece >= login_wire::pieces(front) {
            conn.end_acked |= matches!(front, Outbound::EndOfCandidates);
            conn.queue.pop_front();
            conn.piece = 0;
        }
        conn.kick(now, self.rto, self.core_hint, cx.entropy);
        self.finish_if_done(i, now, cx.stats, cx.events);
        true
    }

    pub(super) fn finish_if_done(
        &mut self,
        i: usize,
        now: Time,
        stats: &mut Stats,
        events: &mut Events,
    ) {
        let c = &self.conns[i];
        if !(c.end_acked && c.remote_end) {
            return;
        }
        let c = self.conns.swap_remove(i);
        if self.finished.len() >= MAX_FINISHED {
            self.finished.pop_front();
        }
        self.finished.push_back(Finished {
            nonce: c.nonce,
            flock: c.flock,
            expect: c.expect,
            until: now + FINISHED_LINGER,
        });
        stats.sessions_done += 1;
        events.push(Event::SessionDone { session: c.nonce });
    }

    pub(super) fn fail(
        &mut self,
        i: usize,
        reason: SessionFailure,
        stats: &mut Stats,
        events: &mut Events,
    ) {
        let c = self.conns.swap_remove(i);
        stats.sessions_failed += 1;
        events.push(Event::SessionFailed {
            session: c.nonce,
            reason,
        });
    }
}

impl Connection {
    pub(super) fn new(nonce: SessionNonce, flock: SocketAddr, expires: Time) -> Connection {
        Connection {
            nonce,
            flock,
            expires,
            queue: VecDeque::new(),
            piece: 0,
            seq: 0,
            outstanding: None,
            offer_queued: false,
            end_queued: false,
            end_acked: false,
            expect: 0,
            sdp: login_wire::SdpAssembly::default(),
            remote_end: false,
        }
    }

    /// Puts the next piece in flight if none is (stop-and-wait).
    pub(super) fn kick(
        &mut self,
        now: Time,
        rto: Rto,
        core_hint: [u8; 4],
        entropy: &mut dyn Entropy,
    ) {
        if self.outstanding.is_some() || self.queue.is_empty() {
            return;
        }
        let mut txid = [0; 12];
        entropy.fill(&mut txid);
        txid[..4].copy_from_slice(&core_hint);
        self.outstanding = Some(Outstanding {
            txid,
            started: now,
            next_send: now + rto.initial,
            rto: (rto.initial * 2).min(rto.max),
            send_now: true,
        });
    }
}
