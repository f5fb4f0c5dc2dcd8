//! Browser log-in, sans-IO: what the websocket gateway asks of the core that owns an appliance
//! ([`Command`]), what the core tells it back ([`Event`]), and the UDP messages the core and the
//! appliance exchange on the way are in [`crate::wire::login`].
//!
//! One log-in is a *session*, numbered by the gateway ([`SessionId`]). On the wire each
//! CONNECT attempt carries a random [`SessionNonce`]: the appliance keys its connection by it, so
//! a retransmitted CONNECT never makes a second connection, and later SIGNAL messages name the
//! connection by it.

use crate::name::Name;
use std::sync::Arc;

/// The gateway's number for one browser log-in (unique per gateway).
pub type SessionId = u64;

/// Random name of one accepted (or attempted) connection, chosen by the flock per CONNECT.
pub type SessionNonce = [u8; 16];

/// One ICE candidate as the browser's `RTCIceCandidate` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The `candidate:…` attribute line.
    pub candidate: String,
    /// The media id (`sdpMid`) the candidate belongs to, if given.
    pub mid: Option<String>,
}

/// Gateway → owning core.
// `Name` is held inline (no allocation); commands are few and short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// A browser chose this appliance: fetch (or confirm the cached) persona list.
    Open { name: Name },
    /// Log in as `persona` (or, when credentials are entered separately, the user name).
    /// The credential is passed to the appliance and never logged.
    Login { persona: String, credential: String },
    /// The browser's SDP answer to the appliance's offer.
    Answer { sdp: String },
    /// One of the browser's ICE candidates.
    Candidate(Candidate),
    /// The browser has no more candidates.
    EndOfCandidates,
    /// The websocket went away: forget the session.
    Close,
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_credential() {
        let c = super::Command::Login {
            persona: "alice".into(),
            credential: "pwd:hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

/// Written by hand so that a logged command never shows a credential.
impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Command::Open { name } => f.debug_struct("Open").field("name", name).finish(),
            Command::Login { persona, .. } => f
                .debug_struct("Login")
                .field("persona", persona)
                .finish_non_exhaustive(),
            Command::Answer { sdp } => f
                .debug_struct("Answer")
                .field("sdp_len", &sdp.len())
                .finish(),
            Command::Candidate(c) => f.debug_tuple("Candidate").field(c).finish(),
            Command::EndOfCandidates => f.write_str("EndOfCandidates"),
            Command::Close => f.write_str("Close"),
        }
    }
}

/// What the appliance said about personas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Personas {
    /// The appliance's persona list (JSON bytes as the appliance serves them; the gateway
    /// decodes and checks them), checksum verified.
    List(Arc<[u8]>),
    /// The user name and credential must be entered separately.
    CredentialsRequired,
}

/// Why a session ended badly (each maps to one typed error the browser sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No live registration for that name.
    UnknownAppliance,
    /// The appliance did not answer the persona request or the connection request in time.
    Unreachable,
    /// Too many wrong credentials in this session.
    BadCredentials,
    /// The appliance (or a policy) refused this log-in.
    Denied,
    /// The appliance went silent after accepting, or the session outlived its limit.
    Timeout,
    /// The core is at its session bound (the server is busy).
    Busy,
    /// The appliance answered 508: it has no room for another log-in now (too many
    /// connections, or log-ins over its answer rate).
    ApplianceBusy,
    /// The command made no sense in this state, or the appliance sent something unusable.
    Malformed,
    /// Another server of the flock owns the name and did not answer (or refused us).
    OwnerDown,
}

/// Owning core → gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Personas(Personas),
    /// The appliance accepted the credentials; its offer follows.
    Accepted,
    /// Wrong credentials; the browser may try again `attempts_left` more times.
    Rejected {
        attempts_left: u8,
    },
    /// The appliance's SDP offer.
    Offer {
        sdp: String,
    },
    /// One of the appliance's ICE candidates (never before [`Event::Offer`]).
    Candidate(Candidate),
    /// The appliance has no more candidates.
    EndOfCandidates,
    /// End-of-candidates went both ways: the session is over, close the websocket normally.
    Done,
    /// The session is over: report the failure and close.
    Failed(Failure),
}
