//! What an appliance tells its caller: its outputs, events, state and counters.

use super::*;
use crate::login::{Candidate, SessionFailure, SessionNonce};
use flock_proto::identity::{self};
use flock_proto::wire::login::{self as login_wire};
use flock_proto::wire::registration::code;
use flock_proto::Time;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The server registered the name; `mapped` is the address it sees us at.
    Registered { mapped: SocketAddr },
    /// The address the server sees us at changed (reported before the `Registered` or
    /// `KeptAlive` that revealed it).
    MappedAddressChanged { old: SocketAddr, new: SocketAddr },
    /// A keep-alive was answered.
    KeptAlive { mapped: SocketAddr },
    /// The server refused our keep-alive token (441): registering again at once.
    TokenRefused,
    /// The server refused a request with this error code (403 bad signature, 409 name taken,
    /// 440 clock skew, 508 server full, ...). The appliance pauses, then registers again.
    Refused { code: u16 },
    /// The server at `from` does not own our name and sent us to `to` (300 Try-Alternate):
    /// registering there now.
    Redirected { from: SocketAddr, to: SocketAddr },
    /// A CHECK from the flock was answered (to `from`).
    CheckAnswered { from: SocketAddr },
    /// A request went unanswered for `give_up_after`. The appliance pauses, then registers again.
    GaveUp,
    /// The authenticator accepted a log-in: send the offer, candidates and end-of-candidates
    /// for `session` ([`Appliance::send_offer`] ...).
    LoginAccepted {
        session: SessionNonce,
        persona: String,
    },
    /// A log-in was refused with this code (460 bad credentials, 461 denied, 508 busy).
    LoginRefused {
        session: SessionNonce,
        persona: String,
        code: u16,
    },
    /// The browser's SDP answer.
    RemoteAnswer { session: SessionNonce, sdp: String },
    /// One of the browser's ICE candidates.
    RemoteCandidate {
        session: SessionNonce,
        candidate: Candidate,
    },
    /// The browser has no more candidates.
    RemoteEndOfCandidates { session: SessionNonce },
    /// End-of-candidates went both ways: the session is over (and forgotten).
    SessionDone { session: SessionNonce },
    /// The session ended before it was done (and is forgotten).
    SessionFailed {
        session: SessionNonce,
        reason: SessionFailure,
    },
}

/// First 4 bytes of a session nonce, in hex: enough to tell sessions apart in logs.
pub(crate) fn session_short(session: &SessionNonce) -> String {
    identity::to_hex(&session[..4])
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Registered { mapped } => write!(f, "registered, seen at {mapped}"),
            Event::MappedAddressChanged { old, new } => {
                write!(f, "mapped address changed from {old} to {new}")
            }
            Event::KeptAlive { mapped } => write!(f, "kept alive, seen at {mapped}"),
            Event::TokenRefused => write!(f, "token refused, registering again"),
            Event::Refused { code } => write!(f, "refused: {code} {}", code::reason(*code)),
            Event::Redirected { from, to } => {
                write!(f, "redirected by {from} to the owning server {to}")
            }
            Event::CheckAnswered { from } => write!(f, "answered a check from {from}"),
            Event::GaveUp => write!(f, "gave up: no answer from the server"),
            Event::LoginAccepted { session, persona } => write!(
                f,
                "log-in {} accepted as {persona:?}",
                session_short(session)
            ),
            Event::LoginRefused {
                session,
                persona,
                code,
            } => {
                write!(
                    f,
                    "log-in {} as {persona:?} refused: {code} {}",
                    session_short(session),
                    login_wire::code::reason(*code)
                )
            }
            Event::RemoteAnswer { session, sdp } => write!(
                f,
                "session {}: remote answer, {} bytes",
                session_short(session),
                sdp.len()
            ),
            Event::RemoteCandidate { session, candidate } => {
                write!(
                    f,
                    "session {}: remote candidate {:?} (mid {:?})",
                    session_short(session),
                    candidate.candidate,
                    candidate.mid
                )
            }
            Event::RemoteEndOfCandidates { session } => write!(
                f,
                "session {}: remote end of candidates",
                session_short(session)
            ),
            Event::SessionDone { session } => write!(f, "session {} done", session_short(session)),
            Event::SessionFailed { session, reason } => {
                write!(f, "session {} failed: {reason}", session_short(session))
            }
        }
    }
}

/// Where the appliance is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Built, nothing sent yet.
    Starting,
    /// A REGISTER transaction is running.
    Registering,
    /// Registered, waiting for the next keep-alive.
    Registered,
    /// Registered, a KEEPALIVE transaction is running.
    KeepingAlive,
    /// Waiting after a refusal or a give-up before registering again.
    Paused,
}

impl State {
    /// True while the server is believed to hold our registration.
    pub fn is_registered(self) -> bool {
        matches!(self, State::Registered | State::KeepingAlive)
    }
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed out by `poll_output`.
    pub transmitted: u64,
    /// Of those, retransmissions of an unanswered request.
    pub retransmitted: u64,
    /// Datagrams passed to `handle`.
    pub received: u64,
    /// Received datagrams that matched nothing (malformed, other sources, unknown transactions).
    pub ignored: u64,
    pub registrations: u64,
    pub keepalives: u64,
    pub checks_answered: u64,
    /// CHECKs not answered: not for our name, or not signed by the pinned flock key.
    pub checks_ignored: u64,
    /// CHECK answers dropped because too many were waiting or the answer rate was exceeded.
    pub checks_dropped: u64,
    pub gave_up: u64,
    pub refused: u64,
    /// 300 Try-Alternate answers followed.
    pub redirects: u64,
    /// Datagrams dropped by `only_known_peers`.
    pub unknown_peer_dropped: u64,
    pub personas_answered: u64,
    pub logins_accepted: u64,
    /// CONNECTs answered 460, 461 or 508 (retransmissions not counted).
    pub logins_refused: u64,
    /// PERSONAS and CONNECT requests not for our name, not signed by the pinned flock key, or
    /// stale.
    pub login_ignored: u64,
    /// Log-in answers not sent: answer rate exceeded, too many waiting, or a 481 that would
    /// have been larger than the SIGNAL it answers.
    pub login_dropped: u64,
    /// PERSONAS and CONNECT answered 508 because the answer rate was exceeded, or because
    /// the CONNECT may have been decided before and forgotten (`login_memory`).
    pub login_busy: u64,
    pub signals_sent: u64,
    pub signals_retransmitted: u64,
    pub sessions_done: u64,
    pub sessions_failed: u64,
}

/// The event queue: past [`MAX_EVENTS`] the oldest are dropped.
#[derive(Debug, Default)]
pub(crate) struct Events(pub(super) VecDeque<Event>);

impl Events {
    pub(crate) fn push(&mut self, e: Event) {
        if self.0.len() >= MAX_EVENTS {
            self.0.pop_front();
        }
        self.0.push_back(e);
    }
}

/// Next thing the appliance wants done, from [`Appliance::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send the first `len` bytes of the buffer given to `poll_output` to `dst`.
    Transmit { dst: SocketAddr, len: usize },
    /// Something happened (see [`Event`]).
    Event(Event),
    /// Nothing else to do now: call `handle_timeout` at this time (`None`: only a datagram
    /// can wake the appliance).
    Timeout(Option<Time>),
}
