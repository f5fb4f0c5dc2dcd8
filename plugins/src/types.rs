//! The requests and answers of the hooks, as owned Rust values: the host builds them, the SDK
//! hands them to Rust plugins. Their C forms are in `abi`, the conversions in `view`.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// A policy answer. Chained plugins: the first `Deny` wins, else the longest `RetryAfter`,
/// else `Allow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Log-ins only (a registration hook answering it is denied): not now, maybe after this.
    RetryAfter(Duration),
}

impl Verdict {
    pub fn is_allow(self) -> bool {
        self == Verdict::Allow
    }
}

/// An appliance registering: the first time its name is seen, or with a new key (never a
/// keep-alive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Normalized (lowercase `[a-z0-9._-]`).
    pub name: String,
    /// SHA-256 of the appliance's public key.
    pub fingerprint: [u8; 32],
    pub addr: SocketAddr,
    /// The name is known with another key.
    pub key_change: bool,
}

impl Registration {
    /// Lowercase hex, as `flock-appliance` prints fingerprints.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }
}

/// A browser's log-in attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    pub appliance: String,
    /// The persona id, or the user name typed.
    pub persona: String,
    pub client: SocketAddr,
    /// The websocket's `Origin` header.
    pub origin: Option<String>,
}

/// One persona of an appliance's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persona {
    pub id: String,
    pub name: String,
}

/// A persona list about to be shown to a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonaQuery {
    pub appliance: String,
    pub client: SocketAddr,
    pub personas: Vec<Persona>,
}

/// Something that happened, for plugins that keep an audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    Registered {
        name: String,
        fingerprint: [u8; 32],
        addr: SocketAddr,
    },
    /// No keep-alive for the registration lifetime: the name left memory.
    Expired {
        name: String,
        fingerprint: [u8; 32],
        addr: SocketAddr,
    },
    AddressChanged {
        name: String,
        fingerprint: [u8; 32],
        old: SocketAddr,
        new: SocketAddr,
    },
    LoginOk {
        appliance: String,
        persona: String,
        client: SocketAddr,
    },
    /// `reason`: a short word such as `"bad-credentials"`, `"denied"`, `"rate-limited"`.
    LoginFailed {
        appliance: String,
        persona: String,
        client: SocketAddr,
        reason: String,
    },
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
