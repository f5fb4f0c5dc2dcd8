//! One log-in session's state: its phase, the request outstanding, the persona list being
//! fetched, the signalling streams.

use super::*;
use crate::login::{Candidate, Failure, Personas, SessionNonce};
use crate::name::{Name, TableKey};
use crate::server::peers::Peers;
use crate::server::persona_cache::PersonaCache;
use crate::server::Stats;
use crate::stun::TransactionId;
use crate::time::Time;
use crate::wire::login::{Outbound, PersonasChunk, SdpAssembly};
use core::time::Duration;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// Request bytes, wiped when dropped: a CONNECT carries a credential.
pub(super) struct Wiped(pub(super) Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Wiped {
    /// These bytes wrapped in a RELAY for the owner (the original is wiped).
    pub(super) fn relayed(mut self, peers: &Peers) -> Vec<u8> {
        peers
            .wrap(&self.0)
            .unwrap_or_else(|| std::mem::take(&mut self.0))
    }
}

pub(super) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    // Keeps the stores from being optimized away as dead.
    std::hint::black_box(bytes);
}

/// The request a session waits on.
pub(super) struct Request {
    pub(super) txid: TransactionId,
    pub(super) bytes: Wiped,
    pub(super) next_send: Time,
    pub(super) rto: Duration,
    pub(super) give_up: Time,
    /// Transmissions so far.
    pub(super) sends: u32,
}

/// Persona list being fetched.
#[derive(Default)]
pub(super) struct Fetch {
    /// Checksum of the cached list, sent as `known`.
    pub(super) known: Option<[u8; 32]>,
    /// Set by the first answer that carries data.
    pub(super) started: bool,
    pub(super) checksum: [u8; 32],
    pub(super) total: u32,
    pub(super) buf: Vec<u8>,
}

/// The two signalling streams of an accepted session.
pub(super) struct Signalling {
    // Appliance → flock.
    pub(super) next_in: u32,
    pub(super) offer: SdpAssembly,
    /// `Offer` was emitted.
    pub(super) offer_done: bool,
    /// Candidates that came before the offer was complete.
    pub(super) held_in: Vec<Candidate>,
    pub(super) candidates_in: usize,
    pub(super) end_in: bool,
    /// Until the offer is complete, silence past this fails the session.
    pub(super) quiet_until: Time,
    // Flock → appliance.
    /// Items to send; the front one is in flight, piece `piece` of it.
    pub(super) queue: VecDeque<Outbound>,
    pub(super) piece: usize,
    pub(super) next_out: u32,
    pub(super) answered: bool,
    /// Candidates (and end-of-candidates) the browser sent before its answer.
    pub(super) held_out: Vec<Outbound>,
    pub(super) candidates_out: usize,
    pub(super) end_out: bool,
    pub(super) end_out_acked: bool,
}

impl Signalling {
    pub(super) fn new(quiet_until: Time) -> Signalling {
        Signalling {
            next_in: 0,
            offer: SdpAssembly::default(),
            offer_done: false,
            held_in: Vec::new(),
            candidates_in: 0,
            end_in: false,
            quiet_until,
            queue: VecDeque::new(),
            piece: 0,
            next_out: 0,
            answered: false,
            held_out: Vec::new(),
            candidates_out: 0,
            end_out: false,
            end_out_acked: false,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.offer_done && self.end_in && self.end_out_acked
    }
}

pub(super) enum Phase {
    /// The name is owned by another server: waiting for its LOOKUP answer.
    Locating,
    Personas(Fetch),
    /// Personas delivered, or credentials rejected: waiting for `Login`.
    Ready,
    Connecting,
    Connected(Box<Signalling>),
}

pub(super) struct Session {
    pub(super) name: Name,
    pub(super) key: TableKey,
    /// The appliance: requests go there, and only answers from there count.
    pub(super) addr: SocketAddr,
    /// The server owning the name, when it is not us (its LOOKUP found `addr`).
    pub(super) owner: Option<usize>,
    /// Requests go wrapped in RELAY through `owner`: the appliance did not answer us directly.
    pub(super) relayed: bool,
    pub(super) expires: Time,
    /// Time of this session's live heap item; `NEVER` when none is live.
    pub(super) timer: Time,
    /// In `outgoing`: its request goes out at the next `poll_transmit`.
    pub(super) queued: bool,
    pub(super) request: Option<Request>,
    pub(super) phase: Phase,
    pub(super) attempts: u8,
    pub(super) nonce: Option<SessionNonce>,
}

impl Session {
    /// The appliance left the first PERSONAS unanswered `relay_after` times, and the name is
    /// owned elsewhere: its NAT may drop what it never sent to, so try through the owner.
    pub(super) fn relay_due(&self, cx: &Ctx<'_>) -> bool {
        let first = matches!(&self.phase, Phase::Personas(f) if !f.started);
        let sends = self.request.as_ref().map_or(0, |r| r.sends);
        first && self.owner.is_some() && !self.relayed && sends > cx.peers.config.relay_after
    }

    /// Relays every request of this session from now on, the outstanding one first.
    pub(super) fn relay_from_now(&mut self, cx: &mut Ctx<'_>) {
        self.relayed = true;
        cx.stats.relay_fallbacks += 1;
        let Some(r) = &mut self.request else { return };
        if let Some(b) = cx.peers.wrap(&r.bytes.0) {
            r.bytes = Wiped(b);
        }
        let rto = cx.config.rto_initial.max(Duration::from_millis(1));
        r.next_send = (cx.now + rto).min(r.give_up);
        r.rto = (rto * 2).min(cx.config.rto_max.max(rto));
    }

    pub(super) fn next_event(&self) -> Time {
        let mut t = self.expires;
        if let Some(r) = &self.request {
            t = t.min(r.next_send); // never past `give_up`
        }
        if let Phase::Connected(c) = &self.phase {
            if !c.offer_done {
                t = t.min(c.quiet_until);
            }
        }
        t
    }
}

/// What a step did to a session.
pub(super) enum Step {
    Keep,
    Done,
    Fail(Failure),
}

/// A session that ended with `Done`: its appliance may still retransmit its last SIGNAL (our
/// ack was lost), and that retransmission is acknowledged again rather than left to time out.
pub(super) struct Finished {
    pub(super) addr: SocketAddr,
    pub(super) owner: Option<usize>,
    pub(super) next_in: u32,
    pub(super) until: Time,
}

pub(super) enum FetchNext {
    Deliver(Personas),
    Ask {
        offset: u32,
        known: Option<[u8; 32]>,
    },
}

/// Takes one PERSONAS answer into `f`: deliver, ask for more, or fail.
pub(super) fn fetch_step(
    f: &mut Fetch,
    chunk: &PersonasChunk<'_>,
    cache: &mut PersonaCache,
    key: &TableKey,
    max: usize,
    stats: &mut Stats,
) -> Result<FetchNext, Failure> {
    if chunk.credentials_required {
        cache.remove(key);
        return Ok(FetchNext::Deliver(Personas::CredentialsRequired));
    }
    if !f.started {
        if f.known == Some(chunk.checksum) {
            if let Some(list) = cache.get(key, &chunk.checksum) {
                stats.personas_cache_hits += 1;
                return Ok(FetchNext::Deliver(Personas::List(list)));
            }
            // Evicted (or replaced) while the request was out: fetch it whole.
            f.known = None;
            return Ok(FetchNext::Ask {
                offset: 0,
                known: None,
            });
        }
        stats.personas_cache_misses += 1;
        if f.known.is_some() {
            cache.remove(key); // the appliance changed its list
        }
        if chunk.total as usize > max {
            return Err(Failure::Malformed);
        }
        f.started = true;
        f.checksum = chunk.checksum;
        f.total = chunk.total;
    } else if chunk.checksum != f.checksum || chunk.total != f.total {
        return Err(Failure::Malformed); // the list changed under the fetch
    }
    let total = f.total as usize;
    let have = f.buf.len();
    let stuck = chunk.data.is_empty() && have < total;
    if chunk.offset as usize != have || have + chunk.data.len() > total || stuck {
        return Err(Failure::Malformed);
    }
    f.buf.extend_from_slice(chunk.data);
    if f.buf.len() < total {
        return Ok(FetchNext::Ask {
            offset: f.buf.len() as u32,
            known: None,
        });
    }
    if Sha256::digest(&f.buf)[..] != f.checksum[..] {
        return Err(Failure::Malformed);
    }
    let list: Arc<[u8]> = std::mem::take(&mut f.buf).into();
    cache.insert(*key, f.checksum, list.clone());
    Ok(FetchNext::Deliver(Personas::List(list)))
}
