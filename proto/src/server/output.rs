//! What the server gives back: the [`Outcome`] of one datagram, and the [`Output`]s it wants
//! acted on afterwards (one enum, drained in one place by the host).

use super::{PeerAlarm, PolicyEvent};
use crate::login::{Event, SessionId};
use crate::time::Time;
use std::net::SocketAddr;

/// What [`Server::handle`](super::Server::handle) did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer to the datagram's source is the first `n` bytes of `reply`.
    Reply(usize),
    /// Taken or dropped; nothing to send now (what it caused comes out of `poll_output`).
    Done,
    /// Core `n` owns the name: hand the datagram there; nothing changed here.
    OtherCore(usize),
}

impl Outcome {
    /// The answer's length, if there is one to send now.
    pub fn reply(self) -> Option<usize> {
        match self {
            Outcome::Reply(n) => Some(n),
            Outcome::Done | Outcome::OtherCore(_) => None,
        }
    }
}

/// Next thing the server wants done, from [`Server::poll_output`](super::Server::poll_output).
// Events hold names and log-in messages inline; outputs are handed on at once, never stored.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send the first `len` bytes of the buffer given to `poll_output` to `dst`.
    Transmit { dst: SocketAddr, len: usize },
    /// A log-in event for the gateway's session.
    Event { session: SessionId, event: Event },
    /// A decision to take or a record for the operator's policy (see [`PolicyEvent`]).
    Policy(PolicyEvent),
    /// Something the operator must fix, to log as an error (see [`PeerAlarm`]).
    Alarm(PeerAlarm),
    /// Nothing else to do now: call `handle_timeout` at this time (`None`: no timer runs).
    Timeout(Option<Time>),
}
